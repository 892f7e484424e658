//! Moving a file over a channel: a reader thread that reads and hashes
//! while the connection thread seals and writes; on the receiving side the
//! connection thread opens each record and writes it (the receiver does not
//! hash: PROTOCOL.md 7.7.6) while a helper flushes to disk in the background;
//! and the two loops that drive `proto::transfer`'s [`Sender`] and
//! [`Receiver`]. Upload and download use both alike; memory stays at a few
//! chunks.

use super::channel::{Channel, OwnedRecord};
use super::sealing::SealPool;
use crate::constants::*;
use crate::error::{Error, Result};
use crate::message::Progress;
use crate::proto::codec::Body;
use crate::proto::msg::{FileData, FileEnd, REC_FILE_DATA, REC_FILE_END};
use crate::proto::transfer::{Receiver, Refusal, Sender, Start};
use crate::store::partial;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// Calls a progress callback at most every [`PROGRESS_INTERVAL`], and paces
/// the transfer it follows when given a rate.
pub(crate) struct Ticker<'a, 'b> {
    f: &'b mut Progress<'a>,
    last: Option<Instant>,
    pacer: Option<Pacer>,
}

impl<'a, 'b> Ticker<'a, 'b> {
    pub(crate) fn new(f: &'b mut Progress<'a>) -> Self {
        Ticker { f, last: None, pacer: None }
    }

    /// A ticker that also holds the transfer to `rate` bytes per second
    /// (each tick waits until the bytes moved since the last fit the rate).
    pub(crate) fn paced(f: &'b mut Progress<'a>, rate: Option<u64>) -> Self {
        Ticker { pacer: rate.map(Pacer::new), ..Ticker::new(f) }
    }

    /// The largest chunk to read at once: all of [`FILE_CHUNK`], or when
    /// paced about a tenth of a second's worth, so the line stays smooth.
    fn chunk_len(&self) -> usize {
        let tenth = |p: &Pacer| usize::try_from(p.rate / 10).unwrap_or(FILE_CHUNK);
        self.pacer.as_ref().map_or(FILE_CHUNK, |p| tenth(p).clamp(MIN_FILE_RECORD, FILE_CHUNK))
    }

    pub(crate) fn tick(&mut self, done: u64, total: u64, force: bool) {
        if let Some(pacer) = self.pacer.as_mut() {
            pacer.reached(done);
        }
        if let Some(f) = self.f.as_mut()
            && (force || self.last.is_none_or(|t| t.elapsed() >= PROGRESS_INTERVAL))
        {
            f(done, total);
            self.last = Some(Instant::now());
        }
    }
}

/// Time idle (a slow disk, a pause) that a [`Pacer`] makes up for at full
/// speed afterwards: a small burst, never a flood after a stall.
const PACE_BURST: Duration = Duration::from_millis(100);

/// Holds a transfer to a rate: after each stretch of bytes, sleep until the
/// bytes moved so far fit it. The sender paces what it sends; a receiver
/// paces its reads and the peer's sends stall on TCP's flow control.
struct Pacer {
    rate: u64,
    /// When the bytes moved so far may all have been moved.
    due: Instant,
    /// The transfer's position at the last call (`None` before the first).
    at: Option<u64>,
}

impl Pacer {
    fn new(rate: u64) -> Pacer {
        Pacer { rate: rate.max(1), due: Instant::now(), at: None }
    }

    /// The transfer is now at byte `pos`: wait as long as the rate asks.
    fn reached(&mut self, pos: u64) {
        // A restart moves the position back: count from there.
        let moved = self.at.map_or(0, |at| pos.saturating_sub(at));
        self.at = Some(pos);
        let now = Instant::now();
        let earliest = now.checked_sub(PACE_BURST).unwrap_or(now);
        let cost = Duration::from_secs_f64(moved as f64 / self.rate as f64);
        self.due = self.due.max(earliest) + cost;
        if self.due > now {
            std::thread::sleep(self.due - now);
        }
    }
}

/// How long to wait for a peer that must first read `bytes` of a file (hash a
/// prefix, or sync a whole file): the I/O timeout plus 20 ms per MB, i.e. it
/// may go as slowly as 50 MB/s before we give up.
pub(crate) fn slow_wait(base: Duration, bytes: u64) -> Duration {
    base.saturating_add(Duration::from_millis(bytes / 50_000))
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

/// The digest state after the first `offer` bytes of `file` (`size` bytes),
/// when a resume there is possible at all: the offer is inside the file and
/// the file has that many bytes.
pub(crate) fn own_prefix(file: &mut File, size: u64, offer: u64) -> io::Result<Option<Sha256>> {
    let Some(len) = Sender::prefix_to_check(size, offer) else {
        return Ok(None);
    };
    let (n, hasher) = partial::hash_prefix(file, len)?;
    Ok((n == len).then_some(hasher))
}

/// The sender of `file` (`size` bytes) from `start` (0, or the offer whose
/// digest state `prefix` is), and the digest state there; the file is
/// positioned where the data starts.
pub(crate) fn sender_at(
    file: &mut File,
    size: u64,
    start: u64,
    prefix: Option<Sha256>,
) -> io::Result<(Sender, Sha256)> {
    let sender = Sender::new(size, start);
    let hasher = prefix.filter(|_| sender.start() > 0).unwrap_or_default();
    file.seek(SeekFrom::Start(sender.start()))?;
    Ok((sender, hasher))
}

/// How a streamed send ended.
pub(crate) enum Sent {
    /// Everything and FILE_END were sent; the SHA-256 of the whole file.
    Done([u8; 32]),
    /// The file ended early; a FILE_END with ABORT was sent.
    Shrank,
    /// Reading the file failed; nothing more was sent.
    ReadFailed(io::Error),
    /// The peer sent a record (an early answer) while we were sending; we stopped.
    Answered(OwnedRecord),
}

/// What the reading thread hands to the sealing thread.
enum Chunk {
    Data(Vec<u8>, usize),
    Shrank,
    Failed(io::Error),
    End([u8; 32]),
}

/// The reading thread: each chunk `sender` asks for (at most `max` bytes),
/// read and hashed.
fn read_chunks(
    file: &mut File,
    (mut sender, max): (Sender, usize),
    mut hasher: Sha256,
    chunks: mpsc::SyncSender<Chunk>,
    spare: mpsc::Receiver<Vec<u8>>,
) {
    while let Some(want) = sender.next_len().map(|n| n.min(max)) {
        let mut buf = spare.try_recv().unwrap_or_else(|_| vec![0u8; FILE_CHUNK]);
        let n = match read_some(file, &mut buf[..want]) {
            Ok(0) if want > 0 => return drop(chunks.send(Chunk::Shrank)),
            Ok(n) => n,
            Err(e) => return drop(chunks.send(Chunk::Failed(e))),
        };
        sender.chunk(&buf[..n]);
        hasher.update(&buf[..n]);
        if chunks.send(Chunk::Data(buf, n)).is_err() {
            return; // the sealing side stopped
        }
    }
    let _ = chunks.send(Chunk::End(hasher.finalize().into()));
}

fn send_end(ch: &mut Channel, end: &FileEnd) -> Result<()> {
    ch.send_record(REC_FILE_END, end.flags(), &[&end.to_vec()])
}

/// Send the file from `sender`'s start as FILE_DATA records, then FILE_END.
/// With `watch_peer`, stop as soon as the peer sends something (an early
/// refusal) and hand that record back.
pub(crate) fn send_file(
    ch: &mut Channel,
    file: &mut File,
    sender: &mut Sender,
    hasher: Sha256,
    watch_peer: bool,
    ticker: &mut Ticker<'_, '_>,
) -> Result<Sent> {
    let mut pool = SealPool::for_send();
    std::thread::scope(|scope| {
        let (chunks, from_reader) = mpsc::sync_channel::<Chunk>(2);
        let (recycle, spare) = mpsc::channel::<Vec<u8>>();
        let reading = (sender.clone(), ticker.chunk_len());
        scope.spawn(move || read_chunks(file, reading, hasher, chunks, spare));
        for chunk in from_reader {
            match chunk {
                Chunk::Data(buf, n) => {
                    let data = sender.chunk(&buf[..n]).ok_or(Error::Malformed("file chunk"))?;
                    let (offset, buf) = (data.offset, Arc::new(buf));
                    ch.send_file_data(&mut pool, offset, &buf, n)?;
                    if let Ok(buf) = Arc::try_unwrap(buf) {
                        let _ = recycle.send(buf);
                    }
                    ticker.tick(sender.position(), sender.size(), false);
                    if watch_peer && ch.peer_has_data() {
                        let rec = ch.recv_record(Instant::now() + Duration::from_secs(5))?;
                        return Ok(Sent::Answered(rec));
                    }
                }
                Chunk::Shrank => return send_end(ch, &sender.abort()).map(|()| Sent::Shrank),
                Chunk::Failed(e) => return Ok(Sent::ReadFailed(e)),
                Chunk::End(digest) => {
                    let end = sender.end(digest).ok_or(Error::Malformed("file end"))?;
                    return send_end(ch, &end).map(|()| Sent::Done(digest));
                }
            }
        }
        Err(Error::Malformed("file reader stopped unexpectedly"))
    })
}

/// Send FILE_END with ABORT for a transfer stopped at `sender`'s position.
pub(crate) fn abort(ch: &mut Channel, sender: &Sender) -> Result<()> {
    send_end(ch, &sender.abort())
}

/// A receiver's writes to its partial file, made on the connection thread
/// as each record is opened: the record's buffer then goes back to the
/// channel while it is still in this core's cache (a writer thread cost a
/// second pass over every byte from another core, and a wake-up per batch).
/// After a write error the rest is dropped, so the caller can answer and
/// read on until FILE_END.
struct Sink<'f> {
    file: &'f mut File,
    syncer: Syncer,
    /// The first write error.
    error: Option<io::Error>,
}

impl Sink<'_> {
    fn run(&mut self, write: impl FnOnce(&mut File, &mut Syncer) -> io::Result<()>) {
        if self.error.is_none() {
            self.error = write(self.file, &mut self.syncer).err();
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.run(|file, syncer| file.write_all(bytes).map(|()| syncer.wrote(file, bytes.len())));
    }

    /// The first write error, with the background sync's if it failed.
    fn finish(self) -> Option<io::Error> {
        let synced = self.syncer.finish();
        self.error.or(synced.err())
    }
}

/// Bytes written after which the receiver has them flushed to disk in the
/// background, so that the fsync before the commit finds little left to do.
const SYNC_EVERY: u64 = 32 * 1024 * 1024;

/// Flushes a file's data to disk (`sync_data` on a second handle) on its own
/// thread, started once [`SYNC_EVERY`] bytes were written, while the writing
/// goes on. Both handles share one open file, so an error it sees would not
/// be reported again to the commit's fsync: [`Syncer::finish`] returns it.
#[derive(Default)]
struct Syncer {
    poke: Option<mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
    unsynced: u64,
}

impl Syncer {
    fn wrote(&mut self, file: &File, n: usize) {
        self.unsynced += n as u64;
        if self.unsynced < SYNC_EVERY {
            return;
        }
        self.unsynced = 0;
        if self.thread.is_none() {
            let (poke, pokes) = mpsc::sync_channel::<()>(1);
            self.thread = file.try_clone().ok().and_then(|f| {
                let sync = move || pokes.iter().try_for_each(|()| f.sync_data());
                std::thread::Builder::new().name("ovtp-sync".into()).spawn(sync).ok()
            });
            self.poke = Some(poke);
        }
        // Still busy with the last flush: this one joins the next.
        let _ = self.poke.as_ref().map(|p| p.try_send(()));
    }

    /// Wait for the flush under way; its error, if any.
    fn finish(mut self) -> io::Result<()> {
        self.poke = None;
        let thread = self.thread.take();
        thread
            .map_or(Ok(()), |t| t.join().unwrap_or_else(|_| Err(io::Error::other("sync panicked"))))
    }
}

/// Why a receive could not take a chunk.
pub(crate) enum Problem {
    /// The receiver refused it (offset or size).
    Chunk(Refusal),
    /// Writing to the partial file failed.
    Write(io::Error),
}

/// How a receive ended.
pub(crate) struct Received {
    /// The sender's FILE_END, whose SHA-256 becomes the file's digest.
    pub(crate) end: FileEnd,
    /// The first write error.
    pub(crate) write_error: Option<io::Error>,
}

/// Receive FILE_DATA records until FILE_END into `file` (positioned after the
/// bytes `receiver` holds), each checked by `receiver`, beginning with
/// `first` if the caller already read it. Nothing is hashed: each record's
/// MAC binds its bytes, sequence number and offset (PROTOCOL.md 7.7.6).
/// `refuse` is told of the first problem: `Ok` means read and discard the
/// rest until FILE_END (the caller has answered), an error ends the
/// transfer. The first record may take `first_slack` longer (the sender
/// hashes its prefix first); after it, each MiB must arrive within another
/// `io_timeout`, so a peer trickling tiny records cannot hold a connection.
pub(crate) fn receive_file(
    ch: &mut Channel,
    file: &mut File,
    (receiver, mut first): (&mut Receiver, Option<OwnedRecord>),
    (io_timeout, first_slack): (Duration, Duration),
    ticker: &mut Ticker<'_, '_>,
    refuse: &mut dyn FnMut(&mut Channel, Problem) -> Result<()>,
) -> Result<Received> {
    let mut sink = Sink { file, syncer: Syncer::default(), error: None };
    let mut receive = || {
        let (started, mut received, mut refused) = (Instant::now(), 0u64, false);
        loop {
            let earned = 1 + u32::try_from(received / FILE_CHUNK as u64).unwrap_or(u32::MAX - 1);
            let progress = started + io_timeout.saturating_mul(earned);
            let rec = match first.take() {
                Some(rec) => rec,
                None if received == 0 => {
                    ch.recv_record_by((Instant::now() + io_timeout).min(progress) + first_slack)?
                }
                None => ch.recv_record(progress)?,
            };
            received += rec.plaintext().len() as u64;
            if rec.rtype == REC_FILE_END {
                return FileEnd::from_record(rec.flags, rec.plaintext());
            } else if rec.rtype != REC_FILE_DATA {
                return Err(Error::Malformed("unexpected record during a file transfer"));
            }
            let chunk = FileData::decode(rec.plaintext())?;
            if refused {
                ch.recycle(rec);
                continue; // draining after a refusal
            }
            let problem = match receiver.data(&chunk) {
                Err(refusal) => Some(Problem::Chunk(refusal)),
                Ok(start) => {
                    if start == Some(Start::Restart) {
                        sink.run(|file, _| partial::restart(file));
                    }
                    sink.write(chunk.bytes);
                    ticker.tick(receiver.position(), receiver.size(), false);
                    sink.error
                        .as_ref()
                        .map(|e| Problem::Write(io::Error::new(e.kind(), e.to_string())))
                }
            };
            ch.recycle(rec);
            if let Some(problem) = problem {
                refuse(ch, problem)?;
                refused = true;
            }
        }
    };
    let ended = receive();
    // Waits for a background flush under way, also when the receive failed.
    let write_error = sink.finish();
    Ok(Received { end: ended?, write_error })
}
