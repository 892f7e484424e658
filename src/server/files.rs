//! The server's file operations: PUT (it receives), GET (it sends) and
//! DIGEST, each checked against the files directory, the handler's verdict
//! and the name locks before any data moves (PROTOCOL.md 7.7).

use crate::error::{Error, Result};
use crate::io::channel::{Channel, OwnedRecord};
use crate::io::pipes::{self, Problem, Sent, Ticker};
use crate::message::{Payload, Reply};
use crate::proto::codec::Body;
use crate::proto::msg::{
    DigestReply, FLAG_FIN, FileMeta, FilePrefix, Get, List, Put, REC_FILE_PREFIX, REC_FILE_READY,
    REC_RESPONSE, ReadyToReceive, ReadyToSend, RequestId, Response,
};
use crate::proto::transfer::{Receiver, Refusal, Verdict, resume_point};
use crate::status;
use crate::store::locks::{NameGuard, NameLocks, Owner};
use crate::store::{listing, names, partial};
use sha2::Digest;
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the server needs from its shared state to serve file requests.
pub(crate) struct FileContext<'a> {
    pub(crate) root: Option<&'a Path>,
    pub(crate) max_file_size: Option<u64>,
    pub(crate) io_timeout: Duration,
    pub(crate) locks: &'a NameLocks,
    pub(crate) handler: &'a dyn Fn(Payload) -> Reply,
    /// This request and connection, for the name lock.
    pub(crate) owner: Owner,
    /// Close another connection of ours (a retry supersedes a stale attempt).
    pub(crate) supersede: &'a dyn Fn(u64),
    /// Remember an upload's final reply for retries; called before it is sent,
    /// so that a reply lost on the wire is still found by the retry.
    pub(crate) remember: &'a dyn Fn(&Reply),
}

/// Send `reply` as the RESPONSE to `id`, and return it.
pub(crate) fn respond(ch: &mut Channel, id: &RequestId, reply: Reply) -> Result<Reply> {
    ch.send(REC_RESPONSE, &Response::header(id, reply.status), &reply.body)?;
    Ok(reply)
}

fn io_reply(e: io::Error) -> Reply {
    Reply::new(status::IO_ERROR, format!("server file error: {e}"))
}

/// A step of serving a file request: its value, or the reply that refuses it.
type Answer<T> = std::result::Result<T, Reply>;

/// The handler's verdict on `payload`: go on if OK, else refused with its reply.
fn allowed(ctx: &FileContext<'_>, payload: Payload) -> Answer<()> {
    let verdict = (ctx.handler)(payload);
    if verdict.is_ok() { Ok(()) } else { Err(verdict) }
}

fn root<'a>(ctx: &FileContext<'a>) -> Answer<&'a Path> {
    ctx.root.ok_or_else(|| {
        Reply::new(status::UNSUPPORTED, "this server does not accept file transfers")
    })
}

/// The checks before an upload may start: files directory, size, name,
/// existing target, the name lock, the handler's verdict; then this client
/// key's own partial file is opened (no other key can find or resume it).
/// Returns the files directory, the target, the lock, the partial file's
/// path, the file and the bytes it holds.
fn put_target<'a>(
    ctx: &FileContext<'a>,
    put: &Put<'_>,
) -> Answer<(&'a Path, PathBuf, NameGuard<'a>, PathBuf, File, u64)> {
    let root = root(ctx)?;
    if let Some(max) = ctx.max_file_size
        && put.size > max
    {
        let msg = format!("{} bytes; this server accepts at most {max}", put.size);
        return Err(Reply::new(status::TOO_LARGE, msg));
    }
    let target = names::resolve_for_write(root, put.name).map_err(Reply::from)?;
    if !put.overwrite && target.exists() {
        let msg = format!("{} exists; ask to overwrite to replace it", put.name);
        return Err(Reply::new(status::FILE_EXISTS, msg));
    }
    let Some(guard) = lock_name(ctx, &target) else {
        let msg = format!("another upload to {} is in progress", put.name);
        return Err(Reply::new(status::NAME_BUSY, msg));
    };
    allowed(ctx, Payload::FileOffer { name: put.name.to_string(), size: put.size })?;
    let partial = partial::upload_partial_path(&target, &ctx.owner.request.0);
    let (file, held) = open_upload(root, &partial, put.resume, put.size)?;
    Ok((root, target, guard, partial, file, held))
}

/// Take the name lock. If the holder is this very request on an older
/// connection (the client lost it and retried, but this server has not noticed
/// yet), close that connection and wait briefly for the name to free.
fn lock_name<'a>(ctx: &FileContext<'a>, target: &Path) -> Option<NameGuard<'a>> {
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

/// Serve a PUT. Returns the final reply (already sent to the client), or an
/// error if the connection failed; the partial file is then kept for resuming.
pub(crate) fn serve_put(
    ctx: &FileContext<'_>,
    ch: &mut Channel,
    id: &RequestId,
    put: &Put<'_>,
) -> Result<Reply> {
    let (root, target, _guard, partial, mut file, held) = match put_target(ctx, put) {
        Ok(found) => found,
        Err(reply) => return respond(ch, id, reply),
    };
    // Its length only, never its digest: the client proves the prefix.
    ch.send_record(REC_FILE_READY, FLAG_FIN, &[&ReadyToReceive { offset: held }.to_vec()])?;
    let (resumable, first) = match held {
        0 => (false, None),
        _ => agree_on_prefix(ctx, ch, &mut file, held, put.size)?,
    };

    let mut receiver = Receiver::new(held, put.size, resumable);
    let mut early: Option<Reply> = None;
    let got = pipes::receive_file(
        ch,
        &mut file,
        (&mut receiver, first),
        (ctx.io_timeout, pipes::slow_wait(Duration::ZERO, held)),
        &mut Ticker::new(&mut None),
        &mut |ch, problem| {
            // Tell the sender now; it stops and ends with FILE_END (drained).
            drop(fs::remove_file(&partial));
            early = Some(respond(ch, id, problem_reply(problem))?);
            Ok(())
        },
    )?;
    if let Some(reply) = early {
        return Ok(reply); // already sent
    }
    if let Some(e) = got.write_error {
        // A write failed after the last chunk was handed over.
        drop(fs::remove_file(&partial));
        return respond(ch, id, io_reply(e));
    }
    let reply = match receiver.end(&got.end) {
        Verdict::Aborted => {
            let msg = "upload abandoned by the sender; partial file kept for resuming";
            return respond(ch, id, Reply::new(status::ABORTED, msg));
        }
        Verdict::Mismatch => {
            drop(fs::remove_file(&partial));
            let (pos, total, size) = (receiver.position(), got.end.total, put.size);
            let msg =
                format!("received {pos} of {size} bytes, FILE_END says {total}; nothing kept");
            Reply::new(status::DIGEST_MISMATCH, msg)
        }
        Verdict::Complete => commit_upload(ctx, root, put, &partial, file, target, got.end.sha256),
    };
    (ctx.remember)(&reply);
    respond(ch, id, reply)
}

/// After a FILE_READY that offered the `held` bytes of the client's partial
/// file: a FILE_PREFIX (the client's SHA-256 of its own first `held` bytes)
/// is compared with the partial file's, hashed from disk only now, and
/// answered with a FILE_READY saying where the data starts (`held`, or 0);
/// any other record is the first of the data, which must then start at 0.
fn agree_on_prefix(
    ctx: &FileContext<'_>,
    ch: &mut Channel,
    file: &mut File,
    held: u64,
    size: u64,
) -> Result<(bool, Option<OwnedRecord>)> {
    // The client hashes its prefix before it answers.
    let rec = ch.recv_record_by(Instant::now() + pipes::slow_wait(ctx.io_timeout, held))?;
    if rec.rtype != REC_FILE_PREFIX {
        return Ok((false, Some(rec)));
    }
    let claimed = FilePrefix::decode(rec.plaintext())?.sha256;
    let own = partial::prefix_digest(file, held)?;
    let start = resume_point(size, held, &claimed, own.as_ref());
    file.seek(SeekFrom::Start(held))?;
    ch.send_record(REC_FILE_READY, FLAG_FIN, &[&ReadyToReceive { offset: start }.to_vec()])?;
    Ok((start > 0, None))
}

fn problem_reply(problem: Problem) -> Reply {
    match problem {
        Problem::Chunk(Refusal::Offset) => {
            Reply::new(status::BAD_REQUEST, "file chunk at an unexpected offset")
        }
        Problem::Chunk(Refusal::TooLarge) => {
            Reply::new(status::TOO_LARGE, "more data than the announced size")
        }
        Problem::Write(e) => io_reply(e),
    }
}

/// The partial file of an upload, opened (or created) and checked to be inside `root`.
fn open_upload(root: &Path, partial: &Path, resume: bool, size: u64) -> Answer<(File, u64)> {
    let opened = partial::open_partial(partial, resume, size)
        .map_err(|e| Reply::new(status::IO_ERROR, format!("cannot create the file: {e}")))?;
    names::opened_inside(root, &opened.0).map(|()| opened).map_err(Reply::from)
}

/// Give a verified upload its final name, then let the handler answer it.
fn commit_upload(
    ctx: &FileContext<'_>,
    root: &Path,
    put: &Put<'_>,
    partial: &Path,
    file: File,
    target: PathBuf,
    sha256: [u8; 32],
) -> Reply {
    // Mode and time go on the partial file, before it has its name; never
    // writable by group or others (local users could change what is served).
    if let Some(meta) = put.meta.map(|m| FileMeta { mode: m.mode & 0o755, ..m })
        && let Err(e) = listing::apply_meta(&file, &meta)
    {
        drop(fs::remove_file(partial));
        return io_reply(e);
    }
    if let Err(reply) = commit_checked(root, partial, file, &target, put.overwrite) {
        return reply;
    }
    let name = put.name.to_string();
    (ctx.handler)(Payload::FileReceived { name, path: target, size: put.size, sha256 })
}

/// Commit, then check that the final name holds this very file, inside `root`
/// (a directory swapped for a link meanwhile would have sent the commit elsewhere).
fn commit_checked(
    root: &Path,
    partial: &Path,
    file: File,
    target: &Path,
    overwrite: bool,
) -> Answer<()> {
    let ours = file.metadata().map_err(io_reply)?;
    if let Err(e) = partial::commit(partial, file, target, overwrite) {
        drop(fs::remove_file(partial));
        return Err(if e.kind() == io::ErrorKind::AlreadyExists {
            Reply::new(status::FILE_EXISTS, "the file appeared meanwhile; not replaced")
        } else {
            io_reply(e)
        });
    }
    let placed = match names::open_read(root, target) {
        Ok(placed) => placed.metadata().map_err(io_reply)?,
        // A preserved mode that denies the owner reading: look without opening.
        Err(_) if listing::meta_of(&ours).mode & 0o400 == 0 => {
            names::metadata_inside(root, target).map_err(Reply::from)?
        }
        Err(refused) => return Err(refused.into()),
    };
    if !names::same_file(&ours, &placed) {
        let msg = "the files directory changed during the upload; the file is not where asked";
        return Err(Reply::new(status::IO_ERROR, msg));
    }
    Ok(())
}

/// Resolve `name` for reading, open it, and let the handler decide.
fn readable(ctx: &FileContext<'_>, name: &str, digest_only: bool) -> Answer<(File, u64)> {
    let root = root(ctx)?;
    let path = names::resolve_for_read(root, name).map_err(Reply::from)?;
    let file = names::open_read(root, &path).map_err(Reply::from)?;
    let size = file.metadata().map_err(io_reply)?.len();
    allowed(ctx, Payload::FileRequest { name: name.to_string(), size, digest_only })?;
    Ok((file, size))
}

/// Serve a GET: stream the file, or answer with a refusal.
pub(crate) fn serve_get(
    ctx: &FileContext<'_>,
    ch: &mut Channel,
    id: &RequestId,
    get: &Get<'_>,
) -> Result<Reply> {
    let (mut file, size) = match readable(ctx, get.name, false) {
        Ok(v) => v,
        Err(reply) => return respond(ch, id, reply),
    };
    // The client sent the digest of its partial file; we compare it with ours.
    let offer = if get.resume { get.offset } else { 0 };
    let own = pipes::own_prefix(&mut file, size, offer)?;
    let digest = own.as_ref().map(|h| h.clone().finalize().into());
    let start = resume_point(size, offer, &get.prefix, digest.as_ref());
    let (mut sender, hasher) = pipes::sender_at(&mut file, size, start, own)?;
    let meta = if get.preserve { Some(listing::meta_of(&file.metadata()?)) } else { None };
    let ready = ReadyToSend { size, start, meta }.to_vec();
    ch.send_record(REC_FILE_READY, FLAG_FIN, &[&ready])?;
    match pipes::send_file(ch, &mut file, &mut sender, hasher, false, &mut Ticker::new(&mut None))?
    {
        Sent::Done(_) => Ok(Reply::ok("")),
        Sent::Shrank => Ok(Reply::new(status::ABORTED, "file changed during the download")),
        Sent::ReadFailed(e) => Err(Error::Io(e)),
        Sent::Answered(_) => Err(Error::Malformed("unexpected record during a download")),
    }
}

/// Serve a DIGEST request.
pub(crate) fn serve_digest(
    ctx: &FileContext<'_>,
    ch: &mut Channel,
    id: &RequestId,
    name: &str,
) -> Result<Reply> {
    let reply = readable(ctx, name, true)
        .and_then(|(mut file, _)| partial::hash_prefix(&mut file, u64::MAX).map_err(io_reply))
        .map(|(size, h)| Reply::ok(DigestReply { size, sha256: h.finalize().into() }.to_vec()))
        .unwrap_or_else(|r| r);
    respond(ch, id, reply)
}

/// Serve a LIST: one page of a directory's entries, or a refusal.
pub(crate) fn serve_list(
    ctx: &FileContext<'_>,
    ch: &mut Channel,
    id: &RequestId,
    list: &List<'_>,
) -> Result<Reply> {
    let page = root(ctx).and_then(|root| {
        let real = names::resolve_dir(root, list.dir).map_err(Reply::from)?;
        allowed(ctx, Payload::Listing { dir: list.dir.to_string() })?;
        // Read through the opened directory: a swap after the checks is not followed.
        let (_dir, path) = names::open_dir(root, &real).map_err(Reply::from)?;
        listing::list_page(&path, list.after).map_err(io_reply)
    });
    let reply = page.map(|page| Reply::ok(page.to_vec())).unwrap_or_else(|r| r);
    respond(ch, id, reply)
}

/// Serve a MKDIR: the handler decides, then the directory and its parents are made.
pub(crate) fn serve_mkdir(
    ctx: &FileContext<'_>,
    ch: &mut Channel,
    id: &RequestId,
    name: &str,
) -> Result<Reply> {
    let made = root(ctx).and_then(|root| {
        names::check_name(name).map_err(|m| Reply::new(status::BAD_NAME, m))?;
        allowed(ctx, Payload::MakeDir { name: name.to_string() })?;
        names::make_dir(root, name).map_err(Reply::from)
    });
    respond(ch, id, made.map(|_| Reply::ok("")).unwrap_or_else(|r| r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn an_upload_through_a_directory_swapped_for_a_link_is_refused_before_and_after_its_data() {
        use crate::store::names::tests::{race_dirs, swap};
        let (base, root, outside) = race_dirs("put");
        let target = names::resolve_for_write(&root, "d/x").unwrap();
        let partial = partial::partial_path(&target);
        // Swapped before the partial file is created: refused, nothing written through it.
        swap(&root, &outside);
        let opened = open_upload(&root, &partial, false, 10).map(|_| ());
        assert_eq!(opened.map_err(|r| r.status), Err(status::BAD_NAME));
        fs::remove_file(root.join("d")).unwrap();
        fs::rename(root.join("d.old"), root.join("d")).unwrap();
        // Swapped after it, before the commit, with a file planted outside.
        let (file, _) = open_upload(&root, &partial, false, 10).unwrap();
        swap(&root, &outside);
        fs::write(outside.join(".x.ovtp-part"), b"planted").unwrap();
        let committed = commit_checked(&root, &partial, file, &target, true);
        assert_eq!(committed.map_err(|r| r.status), Err(status::BAD_NAME));
        fs::remove_dir_all(base).unwrap();
    }
}
