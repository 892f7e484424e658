//! Section `ceiling`: what the machine allows, crypto on one core (AES-CBC,
//! HMAC, SHA-256, the library's own seal / open) and loopback TCP, and the
//! file transfer bound that follows from them.

use crate::Opts;
use crate::harness::{
    BenchResult, Budget, RECORD, Report, Spent, err, mbps, process_cpu, sample, thousands,
};
use crate::tcp::tcp_stream;
use aes::Aes256;
use cbc::cipher::consts::U16;
use cbc::cipher::{Array, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use ovtp::Rng;
// Library internals: the record layer's flag and test-only session keys.
use ovtp::hooks::dh::DH_LEN;
use ovtp::hooks::{SealPool, SessionKeys, msg::FLAG_FIN};
use sha2::Sha256;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One ceiling row: MB per CPU-second (the machine's limit, robust against other
/// load), with the wall-clock figure beside it. Returns the CPU-based figure.
fn ceiling_row(r: &mut Report, key: &str, what: &str, bytes: f64, spent: Spent, note: &str) -> f64 {
    let wall = mbps(bytes, spent.wall);
    let cpu = spent.cpu.map(|c| mbps(bytes, c)).unwrap_or(wall);
    r.value(format!("ceiling.{key}.mbps"), cpu);
    r.value(format!("ceiling.{key}.wall_mbps"), wall);
    r.row_note(
        "ceiling",
        what,
        format!("{} MB/s", thousands(cpu)),
        format!("wall clock {} MB/s; {note}", thousands(wall)),
    );
    cpu
}

pub fn bench_ceiling(opts: &Opts, r: &mut Report) -> BenchResult<()> {
    let b = opts.budget(2.0, 0.4, 100_000);
    let sha = primitive_rows(b, r)?;
    let (_, vtd) = record_rows(b, r)?;
    let etm = file_seal_rows(b, r)?;
    let tcp_cpu_ns = tcp_row(opts, r)?;
    bound_row(r, sha, etm, vtd, tcp_cpu_ns);
    Ok(())
}

/// AES-256-CBC both ways, HMAC-SHA256 and SHA-256 over 1 MiB buffers; returns
/// the SHA-256 figure.
fn primitive_rows(b: Budget, r: &mut Report) -> BenchResult<f64> {
    let key = [7u8; 32];
    let iv = [9u8; 16];
    let mut buf: Vec<u8> = (0..RECORD).map(|i| (i * 31) as u8).collect();
    let run = |f: &mut dyn FnMut() -> BenchResult<()>| -> BenchResult<(f64, Spent)> {
        let mut s = Spent::new();
        let t = s.time(|| sample(b, f))?;
        Ok(((RECORD * t.len()) as f64, s))
    };

    let blocks = Array::<u8, U16>::slice_as_chunks_mut(&mut buf).0;
    let (bytes, s) = run(&mut || {
        cbc::Encryptor::<Aes256>::new(&key.into(), &iv.into()).encrypt_blocks(blocks);
        black_box(&blocks[0]);
        Ok(())
    })?;
    ceiling_row(
        r,
        "aes_cbc_encrypt",
        "AES-256-CBC encrypt, one core, 1 MiB",
        bytes,
        s,
        "DESIGN.md §6: ~740",
    );
    let (bytes, s) = run(&mut || {
        cbc::Decryptor::<Aes256>::new(&key.into(), &iv.into()).decrypt_blocks(blocks);
        black_box(&blocks[0]);
        Ok(())
    })?;
    ceiling_row(
        r,
        "aes_cbc_decrypt",
        "AES-256-CBC decrypt, one core, 1 MiB",
        bytes,
        s,
        "DESIGN.md §6: ~6,600",
    );
    let (bytes, s) = run(&mut || {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).map_err(err("hmac"))?;
        mac.update(&buf);
        black_box(mac.finalize());
        Ok(())
    })?;
    ceiling_row(r, "hmac_sha256", "HMAC-SHA256, one core, 1 MiB", bytes, s, "DESIGN.md §6: ~1,530");
    // Plain SHA-256: what each side of a file transfer spends on the file digest.
    let (bytes, s) = run(&mut || {
        black_box(<Sha256 as sha2::Digest>::digest(&buf[..]));
        Ok(())
    })?;
    Ok(ceiling_row(
        r,
        "sha256",
        "SHA-256 (file digest), one core, 1 MiB",
        bytes,
        s,
        "each side of a file transfer hashes the whole file once",
    ))
}

/// The buffers of the record loops, kept across loops as one loop did.
struct RecordLoops {
    rng: Rng,
    plaintext: Vec<u8>,
    frame: Vec<u8>,
    body: Vec<u8>,
}

impl RecordLoops {
    /// One loop of `b`: copies a frame, and seals it first and / or opens the
    /// copy if asked. Returns the time spent and the number of records.
    fn spent(
        &mut self,
        b: Budget,
        with_seal: bool,
        with_open: bool,
    ) -> BenchResult<(Spent, usize)> {
        let RecordLoops { rng, plaintext, frame, body } = self;
        let ((mut sealer, _), (_, mut opener)) = SessionKeys::from_handshake_secrets_for_testing(
            &[1; 32],
            &[2; 32],
            &[0; DH_LEN],
            &[3; 32],
        );
        // Loop A copies a sealed frame too, so that it moves the same bytes.
        if !with_seal {
            frame.clear();
            sealer.seal(rng, 0x10, FLAG_FIN, plaintext, frame).map_err(err("seal"))?;
        }
        let mut spent = Spent::new();
        let n = spent
            .time(|| {
                sample(b, || {
                    if with_seal {
                        frame.clear();
                        sealer.seal(rng, 0x10, FLAG_FIN, plaintext, frame).map_err(err("seal"))?;
                    }
                    body.clear();
                    body.extend_from_slice(&frame[4..]);
                    if with_open {
                        let len = opener
                            .open(body)
                            .map(|rec| rec.plaintext.len())
                            .map_err(err("open"))?;
                        if len != RECORD {
                            return Err("opened record has the wrong length".into());
                        }
                    }
                    black_box(&*body);
                    Ok(())
                })
            })?
            .len();
        Ok((spent, n))
    }
}

/// The library's own record path: Sealer::seal and Opener::open, 1 MiB
/// records; returns the seal and open figures (the file rows use the
/// file-data sealing of `file_seal_rows` instead).
fn record_rows(b: Budget, r: &mut Report) -> BenchResult<(f64, f64)> {
    // Each figure comes from whole loops, with the thread's CPU time
    // read once before and once after a loop (the kernel brings a running
    // thread's /proc runtime up to date only at scheduler events, so reading
    // it around single 1-2 ms calls is noisy): loop A copies a frame, loop B
    // seals and copies, loop C seals, copies and opens; seal = B - A and
    // open = C - B, per record.
    let mut loops = RecordLoops {
        rng: Rng::system(),
        plaintext: vec![0x5au8; RECORD],
        frame: Vec::with_capacity(RECORD + 128),
        body: Vec::new(),
    };
    let (a, b_, c) =
        (loops.spent(b, false, false)?, loops.spent(b, true, false)?, loops.spent(b, true, true)?);
    // Per record: (wall, cpu) of each loop, and the differences.
    let per = |(s, n): (Spent, usize)| (s.wall / n as u32, s.cpu.map(|c| c / n as u32));
    let diff = |x: (Duration, Option<Duration>), y: (Duration, Option<Duration>)| Spent {
        wall: x.0.saturating_sub(y.0),
        cpu: x.1.zip(y.1).map(|(p, q)| p.saturating_sub(q)),
    };
    let (pa, pb, pc) = (per(a), per(b_), per(c));
    let etm = ceiling_row(
        r,
        "seal_one",
        "encrypt-then-MAC (record::Sealer::seal), one 1 MiB record",
        RECORD as f64,
        diff(pb, pa),
        "DESIGN.md §6: ~500 (64 KiB chunks); one CBC chain; a pooled getrandom IV",
    );
    let vtd = ceiling_row(
        r,
        "open",
        "verify-then-decrypt (record::Opener::open), 1 MiB",
        RECORD as f64,
        diff(pc, pb),
        "DESIGN.md §6: ~1,230; in place",
    );
    Ok((etm, vtd))
}

/// File data sealed as a file send seals it (io::sealing::SealPool: each
/// 1 MiB read cut into 8 records per thread, each thread's in one interleaved
/// CBC pass, then a MAC per record), with 1 and with 2 threads; the frames are
/// not written anywhere. CPU is the whole process's (`/proc/self/stat`, 10 ms
/// ticks, over a whole loop). Returns the 1-thread figure per CPU-second.
fn file_seal_rows(b: Budget, r: &mut Report) -> BenchResult<f64> {
    let data = Arc::new(vec![0x5au8; RECORD]);
    let (mut one, mut one_wall) = (0.0, 0.0);
    for threads in [1, 2] {
        let ((mut sealer, _), _) = SessionKeys::from_handshake_secrets_for_testing(
            &[1; 32],
            &[2; 32],
            &[0; DH_LEN],
            &[3; 32],
        );
        let (mut pool, mut rng) = (SealPool::new(threads), Rng::system());
        let mut frames = 0usize;
        let mut write = |f: &[u8]| {
            frames += black_box(f).len();
            Ok(())
        };
        let (c0, t0) = (process_cpu(), Instant::now());
        let n = sample(b, || {
            pool.seal(&mut sealer, &mut rng, 0, &data, RECORD, &mut write).map_err(err("seal"))
        })?
        .len();
        let (wall, cpu) = (t0.elapsed(), process_cpu().zip(c0).map(|(a, b)| a.saturating_sub(b)));
        let bytes = (n * RECORD) as f64;
        let (w, c) = (mbps(bytes, wall), cpu.map_or(0.0, |c| mbps(bytes, c)));
        r.value(format!("ceiling.seal_file{threads}.mbps"), w);
        r.value(format!("ceiling.seal_file{threads}.cpu_mbps"), c);
        let what = format!("sealing file data as sent, {threads} thread{}", ["", "s"][threads - 1]);
        let (value, note) = if threads == 1 {
            (one, one_wall) = (c, w);
            (
                c,
                format!(
                    "per CPU-second (wall clock {} MB/s); io::sealing: 8 records of 128 KiB in one interleaved pass, a MAC each; DESIGN.md §6: ~450 before",
                    thousands(w)
                ),
            )
        } else {
            (
                w,
                format!(
                    "wall clock, {:.2}x one thread's; {} MB/s per CPU-second; 8 records of 64 KiB per thread",
                    w / one_wall,
                    thousands(c)
                ),
            )
        };
        r.row_note("ceiling", what, format!("{} MB/s", thousands(value)), note);
    }
    r.value("ceiling.seal.mbps", one);
    Ok(one)
}

/// One TCP stream over loopback, and what it costs in CPU per byte (both
/// ends); returns the CPU figure.
fn tcp_row(opts: &Opts, r: &mut Report) -> BenchResult<f64> {
    let (tcp, tcp_cpu_ns) = tcp_stream(opts.budget(2.0, 0.5, 100_000))?;
    r.value("ceiling.tcp_stream.mbps", tcp);
    r.value("ceiling.tcp_stream.cpu_ns_per_byte", tcp_cpu_ns);
    r.row_note(
        "ceiling",
        "TCP over loopback, one stream, 1 MiB writes",
        format!("{} MB/s", thousands(tcp)),
        format!(
            "wall clock; {:.2} ns of CPU per byte, both ends; DESIGN.md §6: ~1,900",
            tcp_cpu_ns
        ),
    );
    Ok(tcp_cpu_ns)
}

/// The bound for a file transfer when sender and receiver share this machine:
/// every byte is hashed (SHA-256) and sealed by the sender, crosses loopback
/// once, and is opened and hashed by the receiver; with perfect overlap over
/// the cores, the total CPU per byte is the limit.
fn bound_row(r: &mut Report, sha: f64, etm: f64, vtd: f64, tcp_cpu_ns: f64) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let (sha_ns, seal_ns, open_ns) = (1e3 / sha, 1e3 / etm, 1e3 / vtd);
    let ns_per_byte = 2.0 * sha_ns + seal_ns + open_ns + tcp_cpu_ns;
    let bound = cores * 1e3 / ns_per_byte;
    let without_hash = cores * 1e3 / (seal_ns + open_ns + tcp_cpu_ns);
    r.value("ceiling.cpu_ns_per_byte", ns_per_byte);
    r.value("ceiling.transfer_bound.mbps", bound);
    r.value("ceiling.record_bound.mbps", without_hash);
    r.row_note(
        "ceiling",
        format!("file transfer bound, both ends on {cores} cores (estimate)"),
        format!("{} MB/s", thousands(bound)),
        format!(
            "{cores} cores / ({sha_ns:.2} SHA-256 + {seal_ns:.2} seal + {open_ns:.2} open + {sha_ns:.2} SHA-256 + {tcp_cpu_ns:.2} TCP = {ns_per_byte:.2} ns of CPU per byte); \
             without the file digests {} MB/s; one sealing thread alone caps one stream at {} MB/s; file I/O not counted",
            thousands(without_hash),
            thousands(etm)
        ),
    );
}
