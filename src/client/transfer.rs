//! The client's side of file operations: one attempt of an upload (it
//! sends), a download (it receives) or a digest request over a channel. The
//! retry loop around them is `Client::with_retries`.

use crate::constants::MIN_LIMIT_RATE;
use crate::error::{Error, Result};
use crate::io::channel::{Channel, OwnedRecord};
use crate::io::pipes::{self, Problem, Sent, Ticker};
use crate::message::{FileDigest, FileReport, Progress, Reply};
use crate::proto::codec::Body;
use crate::proto::msg::{
    Assembler, DigestReply, FLAG_FIN, FileEnd, FileMeta, FilePrefix, Get, List, ListPage, Op, Put,
    REC_FILE_PREFIX, REC_FILE_READY, REC_REQUEST, REC_RESPONSE, RESPONSE_HEADER, ReadyToReceive,
    ReadyToSend, Request, RequestId, Response,
};
use crate::proto::transfer::{Receiver, Start, Verdict};
use crate::status;
use crate::store::{listing, partial};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Parse a RESPONSE message for request `id`.
pub(crate) fn parse_response(id: &RequestId, payload: &[u8]) -> Result<Reply> {
    let response = Response::decode(payload)?;
    if &response.id != id {
        return Err(Error::Malformed("response to a different request"));
    }
    Ok(Reply::new(response.status, response.body))
}

fn remote(reply: Reply) -> Error {
    Error::Remote { status: reply.status, message: reply.text() }
}

/// Read a RESPONSE that began with `first` and may span records.
fn recv_response(
    ch: &mut Channel,
    id: &RequestId,
    first: OwnedRecord,
    wait: Duration,
) -> Result<Reply> {
    // The same limit as every other message (ClientConfig::max_message_size).
    let mut message = Assembler::new(ch.max_message + RESPONSE_HEADER);
    let mut rec = first;
    loop {
        if rec.rtype != REC_RESPONSE {
            return Err(Error::Malformed("bad response continuation"));
        }
        if let Some((_, payload)) = message.push(rec.rtype, rec.flags, rec.plaintext())? {
            return parse_response(id, &payload);
        }
        rec = ch.recv_record(Instant::now() + wait)?;
    }
}

/// The first answer to a file request: FILE_READY (returned), or a RESPONSE
/// (a refusal, or on a retry the stored final reply).
fn ready_or_reply(
    ch: &mut Channel,
    id: &RequestId,
    wait: Duration,
    slow: Duration,
) -> Result<std::result::Result<OwnedRecord, Reply>> {
    let rec = ch.recv_record_by(Instant::now() + slow)?;
    match rec.rtype {
        REC_FILE_READY => Ok(Ok(rec)),
        REC_RESPONSE => recv_response(ch, id, rec, wait).map(Err),
        _ => Err(Error::Malformed("expected FILE_READY or a response")),
    }
}

fn send_request(ch: &mut Channel, id: &RequestId, op: Op<'_>) -> Result<()> {
    ch.send(REC_REQUEST, &Request { id: *id, op }.to_vec(), &[])
}

/// One upload attempt over `ch`.
pub(crate) fn put_once(
    ch: &mut Channel,
    id: &RequestId,
    (local, name): (&Path, &str),
    (overwrite, resume, preserve): (bool, bool, bool),
    wait: Duration,
    (progress, rate): (&mut Progress<'_>, Option<u64>),
) -> Result<FileReport> {
    let local_err = |e| Error::File { path: local.to_path_buf(), source: e };
    let mut file = File::open(local).map_err(local_err)?;
    let meta = file.metadata().map_err(local_err)?;
    let size = meta.len();
    let meta = preserve.then(|| listing::meta_of(&meta));
    let put = Put { name, size, overwrite, resume, meta };
    send_request(ch, id, Op::Put(put))?;
    let ready = match ready_or_reply(ch, id, wait, pipes::slow_wait(wait, size))? {
        Ok(rec) => ReadyToReceive::decode(rec.plaintext())?,
        // Refused, or (on a retry) already finished: the stored final reply.
        Err(reply) if reply.is_ok() => {
            let (size, sha256) = partial::digest_file(local).map_err(local_err)?;
            let resumed_from = size;
            return Ok(FileReport { size, sha256, resumed_from, reply });
        }
        Err(reply) => return Err(remote(reply)),
    };
    let own = pipes::own_prefix(&mut file, size, ready.offset).map_err(local_err)?;
    let start = match &own {
        Some(prefix) => prove_prefix(ch, prefix, ready.offset, pipes::slow_wait(wait, size))?,
        None => 0, // nothing held, or not our prefix: the data starts at 0
    };
    let (mut sender, hasher) = pipes::sender_at(&mut file, size, start, own).map_err(local_err)?;
    let mut ticker = Ticker::paced(progress, rate);
    let sha256 = match pipes::send_file(ch, &mut file, &mut sender, hasher, true, &mut ticker)? {
        Sent::Done(digest) => digest,
        Sent::Shrank => {
            let _ = ch.recv_record(Instant::now() + wait); // the server's ABORTED
            let msg = format!("{} shrank while it was being sent", local.display());
            return Err(Error::InvalidInput(msg));
        }
        Sent::ReadFailed(e) => return Err(local_err(e)),
        // The server answered early (disk full, bad offset): we stopped sending.
        Sent::Answered(rec) => {
            let reply = recv_response(ch, id, rec, wait)?;
            pipes::abort(ch, &sender)?;
            return Err(remote(reply));
        }
    };
    ticker.tick(size, size, true);
    let rec = ch.recv_record_by(Instant::now() + pipes::slow_wait(wait, size))?;
    let reply = recv_response(ch, id, rec, wait)?;
    // Same rule as for a replayed final reply: only OK is success. (A non-OK
    // status from the handler's FileReceived means it rejected a stored file.)
    if !reply.is_ok() {
        return Err(remote(reply));
    }
    let resumed_from = sender.start();
    Ok(FileReport { size, sha256, resumed_from, reply })
}

/// The server holds `offset` bytes of our partial upload: send the SHA-256
/// of our own first `offset` bytes (state `prefix`); the server compares
/// and answers where the data starts, `offset` or 0.
fn prove_prefix(ch: &mut Channel, prefix: &Sha256, offset: u64, wait: Duration) -> Result<u64> {
    let sha256 = prefix.clone().finalize().into();
    ch.send_record(REC_FILE_PREFIX, FLAG_FIN, &[&FilePrefix { sha256 }.to_vec()])?;
    let rec = ch.recv_record_by(Instant::now() + wait)?;
    if rec.rtype != REC_FILE_READY {
        return Err(Error::Malformed("expected FILE_READY after FILE_PREFIX"));
    }
    match ReadyToReceive::decode(rec.plaintext())?.offset {
        start if start == offset || start == 0 => Ok(start),
        _ => Err(Error::Malformed("server resumed at an offset it did not offer")),
    }
}

/// One download attempt over `ch` into `local` (via its partial file).
pub(crate) fn get_once(
    ch: &mut Channel,
    id: &RequestId,
    (name, local): (&str, &Path),
    (overwrite, resume, verify, preserve): (bool, bool, bool, bool),
    wait: Duration,
    (progress, rate): (&mut Progress<'_>, Option<u64>),
) -> Result<FileReport> {
    if !overwrite && local.exists() {
        return Err(Error::Exists(local.to_path_buf()));
    }
    let partial = partial::partial_path(local);
    let partial_err = |e| Error::File { path: partial.clone(), source: e };
    let (mut file, offset) =
        partial::open_partial(&partial, resume, u64::MAX).map_err(partial_err)?;
    // Our partial file's digest goes to the server, which compares it with its
    // file; it is hashed only when there is something to resume.
    let prefix = held_digest(&mut file, offset).map_err(partial_err)?;
    send_request(ch, id, Op::Get(Get { name, offset, prefix, resume, preserve }))?;
    let ready = match ready_or_reply(ch, id, wait, pipes::slow_wait(wait, offset))? {
        Ok(rec) => ready_as_asked(rec.plaintext(), preserve)?,
        Err(reply) => {
            // Refused: do not leave behind an empty partial file we just created.
            if offset == 0 {
                drop(file);
                let _ = fs::remove_file(&partial);
            }
            return Err(remote(reply));
        }
    };
    let mut receiver = Receiver::new(offset, ready.size, true);
    match receiver.start(ready.start) {
        Ok(Start::Continue) => {}
        Ok(Start::Restart) => partial::restart(&mut file).map_err(partial_err)?,
        Err(_) => return Err(Error::Malformed("server resumed at an offset we did not offer")),
    }
    let mut ticker = Ticker::paced(progress, rate);
    let got = pipes::receive_file(
        ch,
        &mut file,
        (&mut receiver, None),
        (wait, Duration::ZERO),
        &mut ticker,
        &mut |_, problem| match problem {
            // Our disk failed: stop here (the caller drops the connection).
            Problem::Write(e) => Err(partial_err(e)),
            Problem::Chunk(_) => Err(Error::Malformed("file chunk at an unexpected offset")),
        },
    )?;
    if let Some(e) = got.write_error {
        return Err(partial_err(e));
    }
    // Nothing unverified is kept.
    let discard = |file: File, why: String| {
        drop(file);
        let _ = fs::remove_file(&partial);
        Err(Error::DigestMismatch(why))
    };
    match receiver.end(&got.end) {
        Verdict::Aborted => Err(Error::Remote {
            status: status::ABORTED,
            message: "the file changed on the server during the download; try again".into(),
        }),
        Verdict::Mismatch => {
            discard(file, format!("got {} of {} bytes", receiver.position(), ready.size))
        }
        Verdict::Complete if verify && !reads_back(&mut file, &got.end).map_err(partial_err)? => {
            discard(file, format!("the received file does not read back as the server's {name}"))
        }
        Verdict::Complete => {
            commit_download(&partial, file, (local, overwrite), ready.meta.as_ref())?;
            ticker.tick(ready.size, ready.size, true);
            let (size, sha256, resumed_from) = (ready.size, got.end.sha256, ready.start);
            Ok(FileReport { size, sha256, resumed_from, reply: Reply::ok("") })
        }
    }
}

/// Whether `file` holds exactly `end.total` bytes whose SHA-256 is `end.sha256`.
fn reads_back(file: &mut File, end: &FileEnd) -> io::Result<bool> {
    let (len, hasher) = partial::hash_prefix(file, u64::MAX)?;
    Ok(len == end.total && <[u8; 32]>::from(hasher.finalize()) == end.sha256)
}

/// SHA-256 of the first `offset` bytes held (of nothing, when none are).
fn held_digest(file: &mut File, offset: u64) -> io::Result<[u8; 32]> {
    match offset {
        0 => Ok(Sha256::digest(b"").into()),
        _ => Ok(partial::prefix_digest(file, offset)?.unwrap_or_default()),
    }
}

/// The FILE_READY of a download, with mode and time exactly when asked for.
fn ready_as_asked(plaintext: &[u8], preserve: bool) -> Result<ReadyToSend> {
    let ready = ReadyToSend::decode(plaintext)?;
    if ready.meta.is_some() != preserve {
        return Err(Error::Malformed("mode and time in FILE_READY not as asked"));
    }
    Ok(ready)
}

/// Give the verified partial file its mode and time if asked (before it
/// has its name), then its name.
fn commit_download(
    partial: &Path,
    file: File,
    (local, overwrite): (&Path, bool),
    meta: Option<&FileMeta>,
) -> Result<()> {
    if let Some(meta) = meta {
        let err = |e| Error::File { path: partial.to_path_buf(), source: e };
        listing::apply_meta(&file, meta).map_err(err)?;
    }
    partial::commit(partial, file, local, overwrite).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            Error::Exists(local.to_path_buf())
        } else {
            Error::File { path: local.to_path_buf(), source: e }
        }
    })
}

/// One digest request over `ch` (the server reads the whole file first).
pub(crate) fn digest_once(
    ch: &mut Channel,
    id: &RequestId,
    name: &str,
    wait: Duration,
) -> Result<FileDigest> {
    let reply = simple_request(ch, id, Op::Digest(name), (wait.saturating_mul(10), wait))?;
    let DigestReply { size, sha256 } = DigestReply::decode(&reply.body)?;
    Ok(FileDigest { size, sha256 })
}

/// A rate limit, refused below [`MIN_LIMIT_RATE`].
pub(crate) fn check_rate(rate: Option<u64>) -> Result<Option<u64>> {
    match rate {
        Some(r) if r < MIN_LIMIT_RATE => Err(Error::InvalidInput(format!(
            "a rate limit of {r} bytes/s is below the lowest, {MIN_LIMIT_RATE} \
             (a receiver drops a sender slower than about 17 kB/s)"
        ))),
        rate => Ok(rate),
    }
}

/// Check a local path argument early, with a message that names it.
pub(crate) fn local_file(path: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Error::InvalidInput(format!("{} is not a regular file", path.display())));
    }
    Ok(path.to_path_buf())
}

/// One page of a listing over `ch`: the entries of `dir` after `after`,
/// checked (PROTOCOL.md 7.9) before anyone sees them.
pub(crate) fn list_once(
    ch: &mut Channel,
    id: &RequestId,
    (dir, after): (&str, &str),
    wait: Duration,
) -> Result<ListPage> {
    let reply = simple_request(ch, id, Op::List(List { dir, after }), (wait, wait))?;
    let page = ListPage::decode(&reply.body)?;
    page.check(after).map_err(Error::BadListing)?;
    Ok(page)
}

/// One directory creation over `ch`.
pub(crate) fn mkdir_once(
    ch: &mut Channel,
    id: &RequestId,
    name: &str,
    wait: Duration,
) -> Result<()> {
    simple_request(ch, id, Op::MkDir(name), (wait, wait)).map(drop)
}

/// Send a request answered by one RESPONSE, which must begin within
/// `first` and go on within `wait`; anything but OK is an error.
fn simple_request(
    ch: &mut Channel,
    id: &RequestId,
    op: Op<'_>,
    (first, wait): (Duration, Duration),
) -> Result<Reply> {
    send_request(ch, id, op)?;
    let rec = ch.recv_record_by(Instant::now() + first)?;
    if rec.rtype != REC_RESPONSE {
        return Err(Error::Malformed("expected a response"));
    }
    let reply = recv_response(ch, id, rec, wait)?;
    if !reply.is_ok() {
        return Err(remote(reply));
    }
    Ok(reply)
}
