//! File transfer, both sides, over an established session: upload (PUT),
//! download (GET) and remote digest. Data moves in FILE_DATA records of up to
//! [`FILE_CHUNK`] bytes, each carrying its offset; a FILE_END record carries the
//! total length and the SHA-256 of the whole file. The receiver writes to a
//! partial file beside the target and renames it only after both match.
//!
//! Resume: the receiver reports how much it already has and the SHA-256 of
//! that prefix; the sender hashes its own prefix and continues from there only
//! if the digests agree, otherwise it starts over at offset 0.

use crate::channel::{
    Channel, FLAG_ABORT, OwnedRecord, REC_FILE_DATA, REC_FILE_END, REC_FILE_READY, REC_RESPONSE,
};
use crate::constants::*;
use crate::error::{Error, Result};
use crate::files::{self, Refusal};
use crate::message::{Payload, Reply, status};
use crate::record::FLAG_FIN;
use crate::wire::{Reader, put_vec16};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Request operation: upload a file.
pub const OP_PUT: u8 = 3;
/// Request operation: download a file.
pub const OP_GET: u8 = 4;
/// Request operation: size and SHA-256 of a remote file.
pub const OP_DIGEST: u8 = 5;
/// PUT flag: replace an existing file.
pub const PUT_OVERWRITE: u8 = 0x01;
/// PUT/GET flag: keep a partial file from an earlier attempt if its prefix matches.
pub const XFER_RESUME: u8 = 0x02;

/// Options of an upload or download.
#[derive(Debug, Clone, Copy)]
pub struct TransferOptions {
    /// Replace the destination if it exists (default: refuse).
    pub overwrite: bool,
    /// Continue from a partial file left by an interrupted transfer (default: yes).
    pub resume: bool,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            overwrite: false,
            resume: true,
        }
    }
}

/// What a finished transfer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// Size of the file in bytes.
    pub size: u64,
    /// SHA-256 of the whole file, checked by the receiver.
    pub sha256: [u8; 32],
    /// Bytes that were already present from an interrupted transfer and not sent again.
    pub resumed_from: u64,
    /// For uploads, the server handler's final reply; for downloads, `Reply::ok("")`.
    pub reply: Reply,
}

/// Size and SHA-256 of a remote file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the contents.
    pub sha256: [u8; 32],
}

/// A progress callback: `(bytes done, total)`, called at most every 100 ms and at the end.
pub type Progress<'a> = Option<&'a mut dyn FnMut(u64, u64)>;

struct Ticker<'a, 'b> {
    f: &'b mut Progress<'a>,
    last: Option<Instant>,
}

impl Ticker<'_, '_> {
    fn tick(&mut self, done: u64, total: u64, force: bool) {
        if let Some(f) = self.f.as_mut()
            && (force || self.last.is_none_or(|t| t.elapsed() >= PROGRESS_INTERVAL))
        {
            f(done, total);
            self.last = Some(Instant::now());
        }
    }
}

/// How long to wait for a peer that must first read `bytes` of a file (hash a
/// prefix, or sync a whole file): the I/O timeout plus 20 ms per MB, i.e. it
/// may go as slowly as 50 MB/s before we give up.
fn slow_wait(base: Duration, bytes: u64) -> Duration {
    base.saturating_add(Duration::from_millis(bytes / 50_000))
}

/// FILE_END: `total u64 || sha256 [32]`, nothing after.
fn parse_file_end(mut r: Reader<'_>) -> Result<(u64, [u8; 32])> {
    let total = u64_at(&mut r, "total length")?;
    let digest: [u8; 32] = r.array("sha256")?;
    r.finish("file end")?;
    Ok((total, digest))
}

fn u64_at(r: &mut Reader<'_>, what: &'static str) -> Result<u64> {
    Ok(u64::from_be_bytes(r.array(what)?))
}

/// Read up to `buf.len()` bytes, retrying on interruption; 0 only at end of file.
fn read_some(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// How a streamed send ended.
enum Sent {
    /// All bytes sent; the SHA-256 of the whole file.
    Done([u8; 32]),
    /// The file ended early, at this offset.
    Shrank(u64),
    /// Reading the file failed.
    ReadFailed(io::Error),
    /// The peer sent a record (an early answer) while we were sending; we
    /// stopped at the given offset.
    Answered((OwnedRecord, u64)),
}

/// What the reading thread hands to the sealing thread.
enum Chunk {
    Data(Vec<u8>, usize),
    Shrank,
    Failed(io::Error),
    End([u8; 32]),
}

/// Send `file[start..size]` as FILE_DATA records. A second thread reads and
/// hashes the file while this one encrypts, authenticates and writes, so the
/// digest costs no time on the critical path; memory stays at a few chunks.
fn send_file_data(
    ch: &mut Channel,
    file: &mut File,
    start: u64,
    size: u64,
    hasher: Sha256,
    watch_peer: bool,
    ticker: &mut Ticker<'_, '_>,
) -> Result<Sent> {
    std::thread::scope(|scope| {
        let (chunks, from_reader) = mpsc::sync_channel::<Chunk>(2);
        let (recycle, spare) = mpsc::channel::<Vec<u8>>();
        scope.spawn(move || {
            let mut hasher = hasher;
            let mut pos = start;
            loop {
                let mut buf = spare.try_recv().unwrap_or_else(|_| vec![0u8; FILE_CHUNK]);
                let want = (size - pos).min(FILE_CHUNK as u64) as usize;
                let n = match if want == 0 {
                    Ok(0)
                } else {
                    read_some(file, &mut buf[..want])
                } {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = chunks.send(Chunk::Failed(e));
                        return;
                    }
                };
                if n == 0 && pos < size {
                    let _ = chunks.send(Chunk::Shrank);
                    return;
                }
                hasher.update(&buf[..n]);
                // An empty file still sends one (empty) chunk, so the receiver sees where it starts.
                if (n > 0 || pos == start) && chunks.send(Chunk::Data(buf, n)).is_err() {
                    return; // the sender stopped
                }
                pos += n as u64;
                if pos == size {
                    let _ = chunks.send(Chunk::End(hasher.finalize().into()));
                    return;
                }
            }
        });
        let mut pos = start;
        for chunk in from_reader {
            match chunk {
                Chunk::Data(buf, n) => {
                    ch.send_record(REC_FILE_DATA, FLAG_FIN, &[&pos.to_be_bytes(), &buf[..n]])?;
                    pos += n as u64;
                    let _ = recycle.send(buf);
                    ticker.tick(pos, size, false);
                    if watch_peer && ch.peer_has_data() {
                        let rec = ch.recv_record(Instant::now() + Duration::from_secs(5))?;
                        return Ok(Sent::Answered((rec, pos)));
                    }
                }
                Chunk::Shrank => return Ok(Sent::Shrank(pos)),
                Chunk::Failed(e) => return Ok(Sent::ReadFailed(e)),
                Chunk::End(digest) => return Ok(Sent::Done(digest)),
            }
        }
        Err(Error::Malformed("file reader stopped unexpectedly"))
    })
}

/// Work for the writing thread of a receiver.
enum SinkMsg {
    /// The sender starts over: truncate the partial file and the digest.
    Restart,
    /// A FILE_DATA record: write and hash its bytes after the 8-byte offset.
    Data(OwnedRecord),
}

/// The receiving side's second thread: it writes and hashes chunks while the
/// first thread verifies and decrypts the next record. After a write error it
/// keeps taking (and dropping) chunks, so the first thread never blocks on it.
struct Sink {
    tx: mpsc::SyncSender<SinkMsg>,
    back: mpsc::Receiver<OwnedRecord>,
    failure: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl Sink {
    fn send(&self, msg: SinkMsg) -> Result<()> {
        self.tx
            .send(msg)
            .map_err(|_| Error::Malformed("file writer stopped unexpectedly"))
    }

    /// The first write error, as text, once one happened.
    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Hand written buffers back to the channel for reuse.
    fn recycle(&self, ch: &mut Channel) {
        while let Ok(rec) = self.back.try_recv() {
            ch.recycle(rec);
        }
    }
}

/// Run `receive` with a writing thread for `file`; returns its result, the
/// digest state after everything written, and the first write error.
fn with_sink<R>(
    file: &mut File,
    hasher: Sha256,
    receive: impl FnOnce(&Sink) -> R,
) -> (R, Sha256, Option<io::Error>) {
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<SinkMsg>(2);
        let (back_tx, back) = mpsc::channel::<OwnedRecord>();
        let failure = std::sync::Arc::new(std::sync::Mutex::new(None));
        let failure_w = failure.clone();
        let writer = scope.spawn(move || {
            let mut hasher = hasher;
            let mut error: Option<io::Error> = None;
            for msg in rx {
                let result = match &msg {
                    _ if error.is_some() => Ok(()),
                    SinkMsg::Restart => files::restart(file).map(|h| hasher = h),
                    SinkMsg::Data(rec) => {
                        let bytes = &rec.plaintext()[8..];
                        file.write_all(bytes).map(|()| hasher.update(bytes))
                    }
                };
                if let Err(e) = result {
                    *failure_w.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    error = Some(e);
                }
                if let SinkMsg::Data(rec) = msg {
                    let _ = back_tx.send(rec);
                }
            }
            (hasher, error)
        });
        let sink = Sink { tx, back, failure };
        let result = receive(&sink);
        drop(sink); // ends the writer's loop
        let (hasher, error) = writer.join().unwrap_or_else(|_| {
            (
                Sha256::new(),
                Some(io::Error::other("file writer panicked")),
            )
        });
        (result, hasher, error)
    })
}

// ---------------------------------------------------------------- server side

/// What the server needs from its shared state to serve file requests.
pub(crate) struct FileContext<'a> {
    pub(crate) root: Option<&'a Path>,
    pub(crate) max_file_size: Option<u64>,
    pub(crate) io_timeout: Duration,
    pub(crate) locks: &'a files::NameLocks,
    pub(crate) handler: &'a dyn Fn(Payload) -> Reply,
    /// This request and connection, for the name lock.
    pub(crate) owner: files::Owner,
    /// Close another connection of ours (a retry supersedes a stale attempt).
    pub(crate) supersede: &'a dyn Fn(u64),
    /// Remember an upload's final reply for retries; called before it is sent,
    /// so that a reply lost on the wire is still found by the retry.
    pub(crate) remember: &'a dyn Fn(&Reply),
}

pub(crate) fn response_header(id: &[u8; REQUEST_ID_LEN], status: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(REQUEST_ID_LEN + 2);
    h.extend_from_slice(id);
    h.extend_from_slice(&status.to_be_bytes());
    h
}

fn respond(ch: &mut Channel, id: &[u8; REQUEST_ID_LEN], reply: &Reply) -> Result<()> {
    ch.send(
        REC_RESPONSE,
        &response_header(id, reply.status),
        &reply.body,
    )
}

fn refusal((code, msg): Refusal) -> Reply {
    Reply::new(code, msg)
}

fn root<'a>(ctx: &FileContext<'a>) -> std::result::Result<&'a Path, Reply> {
    ctx.root.ok_or_else(|| {
        Reply::new(
            status::UNSUPPORTED,
            "this server does not accept file transfers",
        )
    })
}

/// Serve a PUT. Returns the final reply (already sent to the client), or an
/// error if the connection failed; the partial file is then kept for resuming.
pub(crate) fn serve_put(
    ctx: &FileContext<'_>,
    ch: &mut Channel,
    id: &[u8; REQUEST_ID_LEN],
    req: &[u8],
) -> Result<Reply> {
    let mut r = Reader::new(req);
    let name = String::from_utf8(r.vec16(MAX_NAME_LEN, "file name")?.to_vec())
        .map_err(|_| Error::Malformed("file name is not UTF-8"))?;
    let size = u64_at(&mut r, "file size")?;
    let flags = r.u8("flags")?;
    r.finish("put request")?;
    let overwrite = flags & PUT_OVERWRITE != 0;

    let prepared = (|| {
        let root = root(ctx)?;
        if let Some(max) = ctx.max_file_size
            && size > max
        {
            return Err(Reply::new(
                status::TOO_LARGE,
                format!("{size} bytes; this server accepts at most {max}"),
            ));
        }
        let target = files::resolve_for_write(root, &name).map_err(refusal)?;
        if !overwrite && target.exists() {
            return Err(Reply::new(
                status::FILE_EXISTS,
                format!("{name} exists; ask to overwrite to replace it"),
            ));
        }
        Ok(target)
    })();
    let target = match prepared {
        Ok(t) => t,
        Err(reply) => return respond(ch, id, &reply).map(|_| reply),
    };
    let _guard = match lock_name(ctx, &target) {
        Some(guard) => guard,
        None => {
            let reply = Reply::new(
                status::NAME_BUSY,
                format!("another upload to {name} is in progress"),
            );
            return respond(ch, id, &reply).map(|_| reply);
        }
    };
    let offer = (ctx.handler)(Payload::FileOffer {
        name: name.clone(),
        size,
    });
    if !offer.is_ok() {
        return respond(ch, id, &offer).map(|_| offer);
    }
    let partial = files::partial_path(&target);
    let (mut file, offset, hasher) =
        match files::open_partial(&partial, flags & XFER_RESUME != 0, size) {
            Ok(v) => v,
            Err(e) => {
                let reply = Reply::new(status::IO_ERROR, format!("cannot create the file: {e}"));
                return respond(ch, id, &reply).map(|_| reply);
            }
        };
    let prefix: [u8; 32] = hasher.clone().finalize().into();
    ch.send_record(REC_FILE_READY, FLAG_FIN, &[&offset.to_be_bytes(), &prefix])?;

    // Receive until FILE_END; chunks are written on the sink's thread.
    let mut pos: Option<u64> = None;
    let mut failed: Option<Reply> = None;
    let (ended, hasher, write_error) =
        with_sink(&mut file, hasher, |sink| -> Result<(u64, [u8; 32], u8)> {
            let started = Instant::now();
            let mut received = 0u64;
            loop {
                sink.recycle(ch);
                // The upload must keep moving: each MiB earns another I/O timeout, so a
                // client trickling tiny records cannot hold a connection slot forever.
                let earned =
                    1 + u32::try_from(received / FILE_CHUNK as u64).unwrap_or(u32::MAX - 1);
                let progress = started + ctx.io_timeout.saturating_mul(earned);
                let rec = if pos.is_none() {
                    // The first chunk may follow the client's hashing of its own prefix.
                    let slack = slow_wait(Duration::ZERO, offset);
                    ch.recv_record_by((Instant::now() + ctx.io_timeout).min(progress) + slack)?
                } else {
                    ch.recv_record(progress)?
                };
                received += rec.plaintext().len() as u64;
                let mut r = Reader::new(rec.plaintext());
                match rec.rtype {
                    REC_FILE_DATA => {
                        let off = u64_at(&mut r, "chunk offset")?;
                        let len = r.rest().len() as u64;
                        if failed.is_some() {
                            continue; // draining after an early error reply
                        }
                        let problem = match pos {
                            None if off == 0 && offset > 0 => {
                                sink.send(SinkMsg::Restart).map(|()| None)?
                            }
                            None if off == offset => None,
                            Some(p) if p == off => None,
                            _ => Some(Reply::new(
                                status::BAD_REQUEST,
                                "file chunk at an unexpected offset",
                            )),
                        };
                        let problem = problem.or_else(|| {
                            (off + len > size).then(|| {
                                Reply::new(status::TOO_LARGE, "more data than the announced size")
                            })
                        });
                        let problem = match problem {
                            Some(p) => Some(p),
                            None => {
                                pos = Some(off + len);
                                sink.send(SinkMsg::Data(rec))?;
                                sink.failure().map(|e| {
                                    Reply::new(status::IO_ERROR, format!("server file error: {e}"))
                                })
                            }
                        };
                        if let Some(reply) = problem {
                            // Tell the sender now; keep reading (and discarding) until its FILE_END.
                            drop(std::fs::remove_file(&partial));
                            respond(ch, id, &reply)?;
                            failed = Some(reply);
                        }
                    }
                    REC_FILE_END => {
                        let (total, digest) = parse_file_end(r)?;
                        return Ok((total, digest, rec.flags));
                    }
                    _ => return Err(Error::Malformed("unexpected record during an upload")),
                }
            }
        });
    let (total, digest, flags) = ended?;
    if let Some(reply) = failed {
        return Ok(reply); // already sent
    }
    if let Some(e) = write_error {
        // A write failed after the last chunk was handed over.
        drop(std::fs::remove_file(&partial));
        let reply = io_reply(e);
        return respond(ch, id, &reply).map(|_| reply);
    }
    if flags & FLAG_ABORT != 0 {
        let reply = Reply::new(
            status::ABORTED,
            "upload abandoned by the sender; partial file kept for resuming",
        );
        return respond(ch, id, &reply).map(|_| reply);
    }
    let got: [u8; 32] = hasher.finalize().into();
    let reply = if pos != Some(total) || total != size || got != digest {
        drop(std::fs::remove_file(&partial));
        Reply::new(
            status::DIGEST_MISMATCH,
            format!(
                "received {} of {size} bytes, sha256 {}; nothing kept",
                pos.unwrap_or(0),
                files::hex(&got)
            ),
        )
    } else {
        match files::commit(&partial, file, &target, overwrite) {
            Ok(()) => (ctx.handler)(Payload::FileReceived {
                name,
                path: target,
                size,
                sha256: got,
            }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                drop(std::fs::remove_file(&partial));
                Reply::new(
                    status::FILE_EXISTS,
                    "the file appeared meanwhile; not replaced",
                )
            }
            Err(e) => {
                drop(std::fs::remove_file(&partial));
                io_reply(e)
            }
        }
    };
    (ctx.remember)(&reply);
    respond(ch, id, &reply).map(|_| reply)
}

/// Take the name lock. If the holder is this very request on an older
/// connection (the client lost it and retried, but this server has not noticed
/// yet), close that connection and wait briefly for the name to free.
fn lock_name<'a>(ctx: &FileContext<'a>, target: &Path) -> Option<files::NameGuard<'a>> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match ctx.locks.try_lock(target, &ctx.owner) {
            Ok(guard) => return Some(guard),
            Err(holder) if holder.request == ctx.owner.request && Instant::now() < until => {
                (ctx.supersede)(holder.conn);
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => return None,
        }
    }
}

fn io_reply(e: io::Error) -> Reply {
    Reply::new(status::IO_ERROR, format!("server file error: {e}"))
}

/// Serve a GET: stream the file, or answer with a refusal.
pub(crate) fn serve_get(
    ctx: &FileContext<'_>,
    ch: &mut Channel,
    id: &[u8; REQUEST_ID_LEN],
    req: &[u8],
) -> Result<Reply> {
    let mut r = Reader::new(req);
    let name = String::from_utf8(r.vec16(MAX_NAME_LEN, "file name")?.to_vec())
        .map_err(|_| Error::Malformed("file name is not UTF-8"))?;
    let offset = u64_at(&mut r, "offset")?;
    let prefix: [u8; 32] = r.array("prefix sha256")?;
    let flags = r.u8("flags")?;
    r.finish("get request")?;

    let opened = (|| {
        let path = files::resolve_for_read(root(ctx)?, &name).map_err(refusal)?;
        let file = File::open(&path).map_err(io_reply)?;
        let size = file.metadata().map_err(io_reply)?.len();
        let verdict = (ctx.handler)(Payload::FileRequest {
            name: name.clone(),
            size,
            digest_only: false,
        });
        if !verdict.is_ok() {
            return Err(verdict);
        }
        Ok((file, size))
    })();
    let (mut file, size) = match opened {
        Ok(v) => v,
        Err(reply) => return respond(ch, id, &reply).map(|_| reply),
    };
    let mut start = 0;
    let mut hasher = Sha256::new();
    if flags & XFER_RESUME != 0 && offset > 0 && offset <= size {
        let (n, h) = files::hash_prefix(&mut file, offset)?;
        if n == offset && <[u8; 32]>::from(h.clone().finalize()) == prefix {
            (start, hasher) = (offset, h);
        }
    }
    file.seek(SeekFrom::Start(start))?;
    ch.send_record(
        REC_FILE_READY,
        FLAG_FIN,
        &[&size.to_be_bytes(), &start.to_be_bytes()],
    )?;
    match send_file_data(
        ch,
        &mut file,
        start,
        size,
        hasher,
        false,
        &mut Ticker {
            f: &mut None,
            last: None,
        },
    )? {
        Sent::Done(digest) => {
            ch.send_record(REC_FILE_END, FLAG_FIN, &[&size.to_be_bytes(), &digest])?;
        }
        Sent::Shrank(pos) => {
            ch.send_record(
                REC_FILE_END,
                FLAG_FIN | FLAG_ABORT,
                &[&pos.to_be_bytes(), &[0u8; 32]],
            )?;
            return Ok(Reply::new(
                status::ABORTED,
                "file changed during the download",
            ));
        }
        Sent::ReadFailed(e) => return Err(Error::Io(e)),
        Sent::Answered(_) => unreachable!("the server does not watch for early answers"),
    }
    Ok(Reply::ok(""))
}

/// Serve a DIGEST request.
pub(crate) fn serve_digest(
    ctx: &FileContext<'_>,
    ch: &mut Channel,
    id: &[u8; REQUEST_ID_LEN],
    req: &[u8],
) -> Result<Reply> {
    let mut r = Reader::new(req);
    let name = String::from_utf8(r.vec16(MAX_NAME_LEN, "file name")?.to_vec())
        .map_err(|_| Error::Malformed("file name is not UTF-8"))?;
    r.finish("digest request")?;
    let reply = (|| {
        let path = files::resolve_for_read(root(ctx)?, &name).map_err(refusal)?;
        let size = std::fs::metadata(&path).map_err(io_reply)?.len();
        let verdict = (ctx.handler)(Payload::FileRequest {
            name: name.clone(),
            size,
            digest_only: true,
        });
        if !verdict.is_ok() {
            return Err(verdict);
        }
        let (size, digest) = files::digest_file(&path).map_err(io_reply)?;
        Ok(Reply::ok([size.to_be_bytes().as_slice(), &digest].concat()))
    })()
    .unwrap_or_else(|r| r);
    respond(ch, id, &reply).map(|_| reply)
}

// ---------------------------------------------------------------- client side

fn request_header(id: &[u8; REQUEST_ID_LEN], op: u8) -> Vec<u8> {
    let mut h = id.to_vec();
    h.push(op);
    h
}

/// Parse a RESPONSE record's plaintext for request `id`.
pub(crate) fn parse_response(id: &[u8; REQUEST_ID_LEN], pt: &[u8]) -> Result<Reply> {
    let mut r = Reader::new(pt);
    let rid: [u8; REQUEST_ID_LEN] = r.array("request id")?;
    if &rid != id {
        return Err(Error::Malformed("response to a different request"));
    }
    let status = r.u16("status")?;
    Ok(Reply {
        status,
        body: r.rest().to_vec(),
    })
}

fn remote(reply: Reply) -> Error {
    Error::Remote {
        status: reply.status,
        message: reply.text(),
    }
}

/// Read a RESPONSE that may span records (its body can be long).
fn recv_response(
    ch: &mut Channel,
    id: &[u8; REQUEST_ID_LEN],
    first: crate::channel::OwnedRecord,
    wait: Duration,
) -> Result<Reply> {
    let mut payload = first.plaintext().to_vec();
    let mut fin = first.flags & FLAG_FIN != 0;
    while !fin {
        let rec = ch.recv_record(Instant::now() + wait)?;
        if rec.rtype != REC_RESPONSE || payload.len() + rec.plaintext().len() > DEFAULT_MAX_MESSAGE
        {
            return Err(Error::Malformed("bad response continuation"));
        }
        payload.extend_from_slice(rec.plaintext());
        fin = rec.flags & FLAG_FIN != 0;
    }
    parse_response(id, &payload)
}

/// One upload attempt over `ch`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn put_once(
    ch: &mut Channel,
    id: &[u8; REQUEST_ID_LEN],
    local: &Path,
    remote_name: &str,
    opts: TransferOptions,
    wait: Duration,
    progress: &mut Progress<'_>,
) -> Result<FileReport> {
    let local_err = |e| Error::File {
        path: local.to_path_buf(),
        source: e,
    };
    let mut file = File::open(local).map_err(local_err)?;
    let size = file.metadata().map_err(local_err)?.len();
    let mut body = Vec::with_capacity(remote_name.len() + 16);
    put_vec16(&mut body, remote_name.as_bytes());
    body.extend_from_slice(&size.to_be_bytes());
    body.push(
        if opts.overwrite { PUT_OVERWRITE } else { 0 } | if opts.resume { XFER_RESUME } else { 0 },
    );
    ch.send(
        crate::channel::REC_REQUEST,
        &request_header(id, OP_PUT),
        &body,
    )?;

    let rec = ch.recv_record_by(Instant::now() + slow_wait(wait, size))?;
    match rec.rtype {
        // Refused, or (on a retry) already finished: the cached final reply.
        REC_RESPONSE => {
            let reply = recv_response(ch, id, rec, wait)?;
            if !reply.is_ok() {
                return Err(remote(reply));
            }
            let (size, digest) = files::digest_file(local).map_err(local_err)?;
            return Ok(FileReport {
                size,
                sha256: digest,
                resumed_from: size,
                reply,
            });
        }
        REC_FILE_READY => {}
        _ => return Err(Error::Malformed("expected FILE_READY or a response")),
    }
    let mut r = Reader::new(rec.plaintext());
    let offset = u64_at(&mut r, "offset")?;
    let prefix: [u8; 32] = r.array("prefix sha256")?;
    r.finish("file ready")?;
    let mut start = 0;
    let mut hasher = Sha256::new();
    if offset > 0 && offset <= size {
        let (n, h) = files::hash_prefix(&mut file, offset).map_err(local_err)?;
        if n == offset && <[u8; 32]>::from(h.clone().finalize()) == prefix {
            (start, hasher) = (offset, h);
        }
    }
    file.seek(SeekFrom::Start(start)).map_err(local_err)?;
    let mut ticker = Ticker {
        f: progress,
        last: None,
    };
    let digest = match send_file_data(ch, &mut file, start, size, hasher, true, &mut ticker)? {
        Sent::Done(digest) => digest,
        Sent::Shrank(pos) => {
            ch.send_record(
                REC_FILE_END,
                FLAG_FIN | FLAG_ABORT,
                &[&pos.to_be_bytes(), &[0u8; 32]],
            )?;
            let _ = ch.recv_record(Instant::now() + wait);
            return Err(Error::InvalidInput(format!(
                "{} shrank while it was being sent",
                local.display()
            )));
        }
        Sent::ReadFailed(e) => return Err(local_err(e)),
        // The server answered early (disk full, bad offset): we stopped sending.
        Sent::Answered((rec, pos)) => {
            if rec.rtype != REC_RESPONSE {
                return Err(Error::Malformed("unexpected record during an upload"));
            }
            let reply = recv_response(ch, id, rec, wait)?;
            ch.send_record(
                REC_FILE_END,
                FLAG_FIN | FLAG_ABORT,
                &[&pos.to_be_bytes(), &[0u8; 32]],
            )?;
            return Err(remote(reply));
        }
    };

    ch.send_record(REC_FILE_END, FLAG_FIN, &[&size.to_be_bytes(), &digest])?;
    ticker.tick(size, size, true);
    let rec = ch.recv_record_by(Instant::now() + slow_wait(wait, size))?;
    if rec.rtype != REC_RESPONSE {
        return Err(Error::Malformed("expected the upload's final response"));
    }
    let reply = recv_response(ch, id, rec, wait)?;
    // Same rule as for a replayed final reply: only OK is success. (A non-OK
    // status from the handler's FileReceived means it rejected a stored file.)
    if !reply.is_ok() {
        return Err(remote(reply));
    }
    Ok(FileReport {
        size,
        sha256: digest,
        resumed_from: start,
        reply,
    })
}

/// One download attempt over `ch` into `local` (via its partial file).
pub(crate) fn get_once(
    ch: &mut Channel,
    id: &[u8; REQUEST_ID_LEN],
    remote_name: &str,
    local: &Path,
    opts: TransferOptions,
    wait: Duration,
    progress: &mut Progress<'_>,
) -> Result<FileReport> {
    if !opts.overwrite && local.exists() {
        return Err(Error::Exists(local.to_path_buf()));
    }
    let partial = files::partial_path(local);
    let partial_err = |e| Error::File {
        path: partial.clone(),
        source: e,
    };
    let (mut file, offset, mut hasher) =
        files::open_partial(&partial, opts.resume, u64::MAX).map_err(partial_err)?;
    let prefix: [u8; 32] = hasher.clone().finalize().into();
    let mut body = Vec::with_capacity(remote_name.len() + 48);
    put_vec16(&mut body, remote_name.as_bytes());
    body.extend_from_slice(&offset.to_be_bytes());
    body.extend_from_slice(&prefix);
    body.push(if opts.resume { XFER_RESUME } else { 0 });
    ch.send(
        crate::channel::REC_REQUEST,
        &request_header(id, OP_GET),
        &body,
    )?;

    let rec = ch.recv_record_by(Instant::now() + slow_wait(wait, offset))?;
    match rec.rtype {
        REC_RESPONSE => {
            // Refused: do not leave behind an empty partial file we just created.
            if offset == 0 {
                drop(file);
                let _ = std::fs::remove_file(&partial);
            }
            return Err(remote(recv_response(ch, id, rec, wait)?));
        }
        REC_FILE_READY => {}
        _ => return Err(Error::Malformed("expected FILE_READY or a response")),
    }
    let mut r = Reader::new(rec.plaintext());
    let size = u64_at(&mut r, "size")?;
    let start = u64_at(&mut r, "start")?;
    r.finish("file ready")?;
    if start == 0 && offset > 0 {
        hasher = files::restart(&mut file).map_err(partial_err)?;
    } else if start != offset {
        return Err(Error::Malformed(
            "server resumed at an offset we did not offer",
        ));
    }
    let mut ticker = Ticker {
        f: progress,
        last: None,
    };
    let mut pos = start;
    let (ended, hasher, write_error) =
        with_sink(&mut file, hasher, |sink| -> Result<(u64, [u8; 32], u8)> {
            loop {
                sink.recycle(ch);
                let rec = ch.recv_record(Instant::now() + wait)?;
                let mut r = Reader::new(rec.plaintext());
                match rec.rtype {
                    REC_FILE_DATA => {
                        let off = u64_at(&mut r, "chunk offset")?;
                        let len = r.rest().len() as u64;
                        if off != pos || pos + len > size {
                            return Err(Error::Malformed("file chunk at an unexpected offset"));
                        }
                        if let Some(e) = sink.failure() {
                            // Our disk failed: stop here (the caller drops the connection).
                            return Err(Error::File {
                                path: partial.clone(),
                                source: io::Error::other(e),
                            });
                        }
                        sink.send(SinkMsg::Data(rec))?;
                        pos += len;
                        ticker.tick(pos, size, false);
                    }
                    REC_FILE_END => {
                        let (total, digest) = parse_file_end(r)?;
                        return Ok((total, digest, rec.flags));
                    }
                    _ => return Err(Error::Malformed("unexpected record during a download")),
                }
            }
        });
    let (total, digest, flags) = ended?;
    if let Some(e) = write_error {
        return Err(partial_err(e));
    }
    if flags & FLAG_ABORT != 0 {
        return Err(Error::Remote {
            status: status::ABORTED,
            message: "the file changed on the server during the download; try again".into(),
        });
    }
    let got: [u8; 32] = hasher.finalize().into();
    if pos != total || total != size || got != digest {
        drop(file);
        let _ = std::fs::remove_file(&partial);
        return Err(Error::DigestMismatch(format!("got {pos} of {size} bytes")));
    }
    files::commit(&partial, file, local, opts.overwrite).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            Error::Exists(local.to_path_buf())
        } else {
            Error::File {
                path: local.to_path_buf(),
                source: e,
            }
        }
    })?;
    ticker.tick(size, size, true);
    Ok(FileReport {
        size,
        sha256: got,
        resumed_from: start,
        reply: Reply::ok(""),
    })
}

/// One digest request over `ch`.
pub(crate) fn digest_once(
    ch: &mut Channel,
    id: &[u8; REQUEST_ID_LEN],
    remote_name: &str,
    wait: Duration,
) -> Result<FileDigest> {
    let mut body = Vec::new();
    put_vec16(&mut body, remote_name.as_bytes());
    ch.send(
        crate::channel::REC_REQUEST,
        &request_header(id, OP_DIGEST),
        &body,
    )?;
    let rec = ch.recv_record_by(Instant::now() + wait.saturating_mul(10))?;
    if rec.rtype != REC_RESPONSE {
        return Err(Error::Malformed("expected a response"));
    }
    let reply = recv_response(ch, id, rec, wait)?;
    if !reply.is_ok() {
        return Err(remote(reply));
    }
    let mut r = Reader::new(&reply.body);
    let size = u64_at(&mut r, "size")?;
    let sha256 = r.array("sha256")?;
    r.finish("digest")?;
    Ok(FileDigest { size, sha256 })
}

/// Check a local path argument early, with a message that names it.
pub(crate) fn local_file(path: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Error::InvalidInput(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(path.to_path_buf())
}
