//! Sealing file data on the cores a connection may use. Each chunk read from
//! the file is cut into FILE_DATA records, [`SEAL_CHAINS`] per thread, each
//! thread's sealed in one interleaved pass (`Sealer::seal_batch`): this
//! thread seals the first records of the chunk and helper threads the rest,
//! each with its own range of sequence numbers (`Sealer::split_off`), and
//! the frames are written in sequence order.

use crate::constants::*;
use crate::error::{Error, Result};
use crate::proto::msg::{FLAG_FIN, REC_FILE_DATA};
use crate::proto::record::{Plain, Sealer};
use crate::rand::Rng;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

/// File sends running in this process: each gets its share of the cores.
static SENDING: AtomicUsize = AtomicUsize::new(0);

/// Most threads sealing for one file send: beyond that one connection
/// seals far faster than its peer opens records (on one core).
const MAX_SEAL_THREADS: usize = 4;

/// Seal `bytes`, read at `offset`, as FILE_DATA records (`offset u64 ||
/// data`, PROTOCOL.md 7.7) of `record` bytes each, one if empty, in one pass.
fn seal_records(
    (sealer, rng): (&mut Sealer, &mut Rng),
    offset: u64,
    bytes: &[u8],
    record: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    let pieces: Vec<&[u8]> =
        if bytes.is_empty() { vec![bytes] } else { bytes.chunks(record).collect() };
    let offsets: Vec<[u8; 8]> =
        (0..pieces.len()).map(|i| (offset + (i * record) as u64).to_be_bytes()).collect();
    let parts: Vec<[&[u8]; 2]> = offsets.iter().zip(&pieces).map(|(o, p)| [&o[..], p]).collect();
    let records: Vec<Plain<'_>> =
        parts.iter().map(|p| Plain { rtype: REC_FILE_DATA, flags: FLAG_FIN, parts: p }).collect();
    sealer.seal_batch(rng, &records, out)
}

/// Work for a helper: seal `data[range]`, read at `offset`, into `out`.
struct Job {
    sealer: Sealer,
    data: Arc<Vec<u8>>,
    range: Range<usize>,
    offset: u64,
    record: usize,
    out: Vec<u8>,
    result: Result<()>,
}

struct Helper {
    jobs: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Job>,
    /// The frame buffer of the last job, reused by the next.
    spare: Vec<u8>,
    thread: Option<JoinHandle<()>>,
}

/// This thread and `threads - 1` helpers that seal file data.
pub struct SealPool {
    helpers: Vec<Helper>,
    /// The frames this thread sealed last.
    own: Vec<u8>,
    /// Counted in [`SENDING`] until dropped.
    counted: bool,
}

impl SealPool {
    /// A pool of `threads` (at least 1: this thread alone). A helper that
    /// cannot be started is left out.
    pub fn new(threads: usize) -> SealPool {
        let mut helpers = Vec::new();
        for _ in 1..threads.min(MAX_SEAL_THREADS) {
            let (jobs, rx) = mpsc::channel::<Job>();
            let (tx, done) = mpsc::channel::<Job>();
            let spawned = std::thread::Builder::new().name("ovtp-seal".into()).spawn(move || {
                let mut rng = Rng::system();
                for mut job in rx {
                    job.out.clear();
                    let (keys, bytes) = ((&mut job.sealer, &mut rng), &job.data[job.range.clone()]);
                    job.result = seal_records(keys, job.offset, bytes, job.record, &mut job.out);
                    if tx.send(job).is_err() {
                        return;
                    }
                }
            });
            let Ok(t) = spawned else { break };
            helpers.push(Helper { jobs: Some(jobs), done, spare: Vec::new(), thread: Some(t) });
        }
        SealPool { helpers, own: Vec::new(), counted: false }
    }

    /// The pool for one file send: its share of the cores this process may
    /// use (`available_parallelism`, divided among the file sends running
    /// now), less one for its reader thread, which reads and hashes the file
    /// at about the rate one thread seals. On 2 cores that is this thread
    /// alone: a helper there only takes turns with the reader and the peer.
    pub(crate) fn for_send() -> SealPool {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let sending = SENDING.fetch_add(1, Ordering::Relaxed) + 1;
        let mut pool = SealPool::new((cores / sending).saturating_sub(1));
        pool.counted = true;
        pool
    }

    /// Seal `data[..n]`, read at `offset`, as FILE_DATA records, and hand
    /// their frames to `write` in sequence order.
    pub fn seal(
        &mut self,
        sealer: &mut Sealer,
        rng: &mut Rng,
        offset: u64,
        data: &Arc<Vec<u8>>,
        n: usize,
        write: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        // SEAL_CHAINS records for each thread, as long as they are at least
        // MIN_FILE_RECORD bytes; then each takes a `share` of whole records.
        let threads = self.helpers.len() + 1;
        let record = (FILE_CHUNK / (SEAL_CHAINS * threads)).max(MIN_FILE_RECORD);
        let records = n.div_ceil(record).max(1);
        let share = records.div_ceil(threads.min(records)) * record;
        // Every sequence number is taken before any job starts.
        let mut own = sealer.split_off(share.min(n).div_ceil(record).max(1) as u64)?;
        let jobs = (share..n).step_by(share).map(|at| {
            let range = at..(at + share).min(n);
            let sealer = sealer.split_off(range.len().div_ceil(record) as u64)?;
            let (data, offset) = (data.clone(), offset + at as u64);
            Ok(Job { sealer, data, range, offset, record, out: Vec::new(), result: Ok(()) })
        });
        let jobs: Vec<Job> = jobs.collect::<Result<_>>()?;
        // `share * threads >= n`: there is a helper for each job.
        debug_assert!(jobs.len() <= self.helpers.len());
        let given = jobs.len();
        for (mut job, helper) in jobs.into_iter().zip(&mut self.helpers) {
            job.out = std::mem::take(&mut helper.spare);
            let sent = helper.jobs.as_ref().and_then(|j| j.send(job).ok());
            sent.ok_or(Error::Malformed("sealing thread stopped"))?;
        }
        self.own.clear();
        let sealed =
            seal_records((&mut own, rng), offset, &data[..share.min(n)], record, &mut self.own);
        // Collect every job given, even after a failure, so none is left behind.
        let mut result = sealed.and_then(|()| write(&self.own));
        for helper in &mut self.helpers[..given] {
            let job = helper.done.recv().map_err(|_| Error::Malformed("sealing thread stopped"));
            result = result.and_then(|()| {
                let job = job?;
                let r = job.result.and_then(|()| write(&job.out));
                helper.spare = job.out;
                r
            });
        }
        result
    }
}

impl Drop for SealPool {
    fn drop(&mut self) {
        if self.counted {
            SENDING.fetch_sub(1, Ordering::Relaxed);
        }
        for helper in &mut self.helpers {
            helper.jobs = None; // ends its loop
            if let Some(t) = helper.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::schedule::SessionKeys;

    #[test]
    fn a_chunk_sealed_on_several_threads_opens_in_order_as_contiguous_file_data() {
        for threads in 1..=MAX_SEAL_THREADS + 1 {
            let mut pool = SealPool::new(threads);
            let keys = SessionKeys::derive(&[1; 32], &[2; 32], &[4; 384], &[3; 32]);
            let ((mut sealer, _), (_, mut opener)) = (keys.client_halves(), keys.server_halves());
            let mut rng = Rng::system();
            let mut offset = 5u64;
            for n in [0, 1, MIN_FILE_RECORD + 3, 300_000, FILE_CHUNK - 1, FILE_CHUNK] {
                let data: Arc<Vec<u8>> =
                    Arc::new((0..FILE_CHUNK).map(|i| (i % 251) as u8).collect());
                let mut frames = Vec::new();
                let mut write = |f: &[u8]| {
                    frames.extend_from_slice(f);
                    Ok(())
                };
                pool.seal(&mut sealer, &mut rng, offset, &data, n, &mut write).unwrap();
                let (mut got, mut rest, mut records) = (Vec::new(), &mut frames[..], 0u64);
                while !rest.is_empty() {
                    let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                    let (frame, tail) = rest.split_at_mut(LEN_PREFIX + len);
                    let rec = opener.open(&mut frame[LEN_PREFIX..]).unwrap();
                    assert_eq!((rec.rtype, rec.flags), (REC_FILE_DATA, FLAG_FIN));
                    let at = u64::from_be_bytes(rec.plaintext[..8].try_into().unwrap());
                    assert_eq!(at, offset + got.len() as u64, "{threads} threads, {n} bytes");
                    got.extend_from_slice(&rec.plaintext[8..]);
                    (rest, records) = (tail, records + 1);
                }
                assert_eq!(got, data[..n], "{threads} threads, {n} bytes");
                assert_eq!(opener.sequence(), sealer.sequence(), "every number sealed once");
                assert!(records >= 1 && records <= (n.div_ceil(MIN_FILE_RECORD).max(1)) as u64);
                offset += n as u64;
            }
        }
    }
}
