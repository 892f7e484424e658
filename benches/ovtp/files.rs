//! Section `files`: upload and download of a 1 GiB file (128 MiB in quick
//! mode) over 127.0.0.1, server and client each in a process of its own, with
//! CPU and peak memory per side and the share of the ceiling reached.

use crate::Opts;
use crate::child::{CHILD_LOCAL, CHILD_REMOTE, ServerProcess, child_env, lookup, print_cpu};
use crate::harness::{
    BenchResult, Budget, RECORD, Report, Spent, ThreadMonitor, err, machine_busy, mib,
    peak_memory_kib, process_cpu, temp_dir_in, thousands,
};
use crate::servers::KeySet;
use crate::tempdir::TempDir;
use ovtp::{Client, Rng};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Size of the file in the file rows.
const FILE_SIZE: u64 = 1 << 30;
/// ... in quick mode.
const QUICK_FILE_SIZE: u64 = 128 << 20;

/// One file transfer job, as the client and server processes reported it.
struct TransferRun {
    secs: f64,
    client: Vec<(String, f64)>,
    server: Vec<(String, f64)>,
}

impl TransferRun {
    fn threads(side: &[(String, f64)]) -> Vec<f64> {
        (0..4).filter_map(|i| lookup(side, &format!("thread{i}_s"))).collect()
    }
}

/// Free space (KiB) of the file system holding `path`, from `df` (std has no statvfs).
fn free_kib(path: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(path).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// CPU nanoseconds per byte of reading `path` (1 MiB reads) and of writing
/// `bytes` to a new file beside `scratch` (deleted again), on this thread.
fn file_io_cost(path: &Path, scratch: &Path, bytes: u64) -> BenchResult<(f64, f64)> {
    let mut buf = vec![0x77u8; RECORD];
    let mut spent = Spent::new();
    let mut f = std::fs::File::open(path).map_err(err("open"))?;
    let mut read = 0u64;
    spent.time(|| -> BenchResult<()> {
        loop {
            match f.read(&mut buf).map_err(err("read"))? {
                0 => return Ok(()),
                n => read += n as u64,
            }
        }
    })?;
    let read_ns = spent.cpu.map_or(f64::NAN, |c| c.as_secs_f64() * 1e9 / read.max(1) as f64);
    let mut spent = Spent::new();
    let mut w = std::fs::File::create(scratch).map_err(err("create"))?;
    let mut written = 0u64;
    let result = spent.time(|| -> BenchResult<()> {
        while written < bytes {
            w.write_all(&buf).map_err(err("write"))?;
            written += RECORD as u64;
        }
        Ok(())
    });
    drop(w);
    let _ = std::fs::remove_file(scratch);
    result?;
    let write_ns = spent.cpu.map_or(f64::NAN, |c| c.as_secs_f64() * 1e9 / written as f64);
    Ok((read_ns, write_ns))
}

fn size_label(size: u64) -> String {
    if size >= 1 << 30 && size.is_multiple_of(1 << 30) {
        format!("{} GiB", size >> 30)
    } else {
        format!("{} MiB", size >> 20)
    }
}

/// A file of `size` random-looking bytes (from the system RNG, 1 MiB at a time).
fn make_random_file(path: &Path, size: u64) -> BenchResult<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(err("create"))?);
    let mut rng = Rng::system();
    let mut chunk = vec![0u8; RECORD];
    let mut left = size;
    while left > 0 {
        let n = left.min(RECORD as u64) as usize;
        rng.fill(&mut chunk[..n]).map_err(err("random"))?;
        f.write_all(&chunk[..n]).map_err(err("write"))?;
        left -= n as u64;
    }
    f.flush().map_err(err("flush"))
}

/// Where the file rows run and what they move.
struct Setup {
    _dir: TempDir,
    place: String,
    server_dir: PathBuf,
    client_dir: PathBuf,
    source: PathBuf,
    size: u64,
    origin: String,
    read_ns: f64,
    write_ns: f64,
}

pub fn bench_files(opts: &Opts, keys: &KeySet, r: &mut Report) -> BenchResult<()> {
    let s = setup(opts)?;
    let runs = if opts.quick { 1 } else { 3 };
    let (ups, downs) = transfers(opts, keys, &s, runs)?;

    let label = size_label(s.size);
    let seal = r.get("ceiling.seal.mbps");
    let bound = r.get("ceiling.transfer_bound.mbps");
    let bound_io = r.get("ceiling.cpu_ns_per_byte").map(|ns| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        cores * 1e3 / (ns + s.read_ns + s.write_ns)
    });
    r.value("file.size_bytes", s.size as f64);
    r.value("file.io.read_ns_per_byte", s.read_ns);
    r.value("file.io.write_ns_per_byte", s.write_ns);
    r.row_note(
        "files",
        "test file",
        format!("{label}, {}", s.origin),
        format!(
            "server files_dir and download target on {}; {runs} run(s) each way, each with a \
             new server process and a new client process; all copies deleted afterwards",
            s.place
        ),
    );
    let mut rates = Vec::new();
    for (dir_name, runs_of) in [("upload", &ups), ("download", &downs)] {
        rates.push(direction_rows(r, dir_name, runs_of, s.size, &label));
    }
    share_rows(r, (rates[0], rates[1]), seal, bound, bound_io, (s.read_ns, s.write_ns));
    Ok(())
}

/// On tmpfs (RAM) when there is one, so that disk speed does not dominate:
/// the temp dir, the source file (made unless `OVTP_BENCH_FILE` names one),
/// and the cost of reading and writing files there.
fn setup(opts: &Opts) -> BenchResult<Setup> {
    let shm = Path::new("/dev/shm");
    let (base, place) = if shm.is_dir() {
        (shm.to_path_buf(), "/dev/shm (tmpfs)".to_string())
    } else {
        let t = std::env::temp_dir();
        let place = format!("{} (no /dev/shm: disk speed may dominate)", t.display());
        (t, place)
    };
    let dir = temp_dir_in(&base, "files")?;
    let (server_dir, client_dir) = (dir.join("server"), dir.join("client"));
    for d in [&server_dir, &client_dir] {
        std::fs::create_dir_all(d).map_err(err("creating a files dir"))?;
    }
    let (source, size, origin) = match &opts.file {
        Some(p) => {
            let size = std::fs::metadata(p).map_err(err("OVTP_BENCH_FILE"))?.len();
            (p.clone(), size, format!("OVTP_BENCH_FILE {}", p.display()))
        }
        None => {
            let size = if opts.quick { QUICK_FILE_SIZE } else { FILE_SIZE };
            let p = dir.join("source.bin");
            (p, size, format!("random, made on {place}"))
        }
    };
    check_room(&base, size)?;
    if opts.file.is_none() {
        eprintln!("  (making a {} file on {place})", size_label(size));
        make_random_file(&source, size)?;
    }
    let (read_ns, write_ns) = file_io_cost(&source, &dir.join("scratch"), size.min(256 << 20))?;
    Ok(Setup { _dir: dir, place, server_dir, client_dir, source, size, origin, read_ns, write_ns })
}

/// Room for the source, the server's copy and the downloaded copy.
fn check_room(base: &Path, size: u64) -> BenchResult<()> {
    let need_kib = (3 * size) / 1024 + 64 * 1024;
    if let Some(free) = free_kib(base)
        && free < need_kib
    {
        return Err(format!(
            "files: {} has {} MiB free, {} MiB needed",
            base.display(),
            free / 1024,
            need_kib / 1024
        ));
    }
    Ok(())
}

/// `runs` uploads, then `runs` downloads; checks that all moved the same
/// contents and deletes the big files.
fn transfers(
    opts: &Opts,
    keys: &KeySet,
    s: &Setup,
    runs: usize,
) -> BenchResult<(Vec<TransferRun>, Vec<TransferRun>)> {
    let remote_copy = s.server_dir.join("big.bin");
    let local_copy = s.client_dir.join("big.bin");
    let (mut ups, mut downs) = (Vec::new(), Vec::new());
    for i in 0..runs {
        eprintln!("  (upload {}/{runs})", i + 1);
        let _ = std::fs::remove_file(&remote_copy);
        ups.push(transfer(keys, s, "upload", &s.source)?);
    }
    for i in 0..runs {
        eprintln!("  (download {}/{runs})", i + 1);
        let _ = std::fs::remove_file(&local_copy);
        downs.push(transfer(keys, s, "download", &local_copy)?);
    }
    let digests: BTreeSet<u64> = ups
        .iter()
        .chain(&downs)
        .filter_map(|t| lookup(&t.client, "sha256_prefix").map(|v| v as u64))
        .collect();
    // Delete the big files now (the temp dir goes with them on return).
    for p in [&remote_copy, &local_copy] {
        let _ = std::fs::remove_file(p);
    }
    if opts.file.is_none() {
        let _ = std::fs::remove_file(&s.source);
    }
    if digests.len() != 1 {
        return Err("files: uploads and downloads moved different contents".into());
    }
    Ok((ups, downs))
}

/// One transfer job `name` of the file `local`, with a new server process.
fn transfer(keys: &KeySet, s: &Setup, name: &str, local: &Path) -> BenchResult<TransferRun> {
    // Each transfer must keep at least 20 MB/s.
    let limit = Duration::from_secs(60 + s.size / 20_000_000);
    let server = ServerProcess::start_with(keys, limit, Some(&s.server_dir))?;
    let out = server.run_client_with(
        name,
        Budget { time: limit, max: 1 },
        &[
            (CHILD_LOCAL, local.to_string_lossy().into_owned()),
            (CHILD_REMOTE, "big.bin".to_string()),
        ],
    );
    let server = server.finish_report();
    let client = out?;
    let secs = lookup(&client, "secs").ok_or("no transfer time")?;
    if lookup(&client, "bytes") != Some(s.size as f64) {
        return Err(format!("{name}: wrong size"));
    }
    Ok(TransferRun { secs, client, server })
}

/// The rate, CPU and memory rows of one direction; returns its median MB/s.
fn direction_rows(
    r: &mut Report,
    dir_name: &str,
    runs_of: &[TransferRun],
    size: u64,
    label: &str,
) -> f64 {
    let mut v: Vec<&TransferRun> = runs_of.iter().collect();
    v.sort_by(|a, b| b.secs.total_cmp(&a.secs));
    let med = v[v.len() / 2];
    let rate = |t: &TransferRun| size as f64 / t.secs / 1e6;
    let (lo, hi) = (rate(v[0]), rate(v[v.len() - 1]));
    let m = rate(med);
    let key = format!("file.{dir_name}");
    r.value(format!("{key}.mbps"), m);
    r.row_note(
        "files",
        format!("{dir_name} {label} over 127.0.0.1 (server, client processes)"),
        format!("{} MB/s", thousands(m)),
        format!(
            "median of {} (range {}-{} MB/s); {:.2} s from request to verified end",
            v.len(),
            thousands(lo),
            thousands(hi),
            med.secs
        ),
    );
    cpu_rows(r, &key, dir_name, med);
    memory_rows(r, &key, dir_name, runs_of);
    m
}

/// CPU seconds of each side (and of the rest of the machine) during the
/// median run `med`.
fn cpu_rows(r: &mut Report, key: &str, dir_name: &str, med: &TransferRun) {
    let cpu = |side: &[(String, f64)]| lookup(side, "cpu_s").unwrap_or(f64::NAN);
    let list = |t: &[f64]| t.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" + ");
    let (ccpu, scpu) = (cpu(&med.client), cpu(&med.server));
    // What the rest of the machine used meanwhile (other sessions' work).
    let others = lookup(&med.client, "machine_busy_s").map(|b| (b - ccpu - scpu).max(0.0));
    let (cth, sth) = (TransferRun::threads(&med.client), TransferRun::threads(&med.server));
    r.value(format!("{key}.client.cpu_s"), ccpu);
    if let Some(o) = others {
        r.value(format!("{key}.others.cpu_s"), o);
        r.value(format!("{key}.machine_busy_s"), o + ccpu + scpu);
    }
    r.value(format!("{key}.server.cpu_s"), scpu);
    for (side, th) in [("client", &cth), ("server", &sth)] {
        for (i, t) in th.iter().enumerate() {
            r.value(format!("{key}.{side}.thread{i}_s"), *t);
        }
    }
    r.row_note(
        "files",
        format!("  CPU seconds during the {dir_name} (median run)"),
        format!("client {ccpu:.2}, server {scpu:.2} in {:.2} s", med.secs),
        format!(
            "{:.2} cores busy on average; busiest threads: client {}, server {} s; \
             other processes meanwhile: {}",
            (ccpu + scpu) / med.secs,
            list(&cth),
            list(&sth),
            others.map_or("n/a".into(), |o| format!("{o:.2} CPU-s ({:.2} cores)", o / med.secs))
        ),
    );
}

/// Peak RSS of each side, the highest of the runs `runs_of`.
fn memory_rows(r: &mut Report, key: &str, dir_name: &str, runs_of: &[TransferRun]) {
    let max_of = |side: fn(&TransferRun) -> &Vec<(String, f64)>, k: &str| {
        runs_of.iter().filter_map(|t| lookup(side(t), k)).fold(0.0f64, f64::max)
    };
    let (skib, ckib, cbase) = (
        max_of(|t| &t.server, "vmhwm_kib"),
        max_of(|t| &t.client, "vmhwm_kib"),
        max_of(|t| &t.client, "vmhwm_connected_kib"),
    );
    r.value(format!("{key}.server.kib"), skib);
    r.value(format!("{key}.client.kib"), ckib);
    r.value(format!("{key}.client_connected.kib"), cbase);
    r.row_note(
        "files",
        format!("  peak RSS during the {dir_name}, server / client process"),
        format!("{} / {}", mib(skib as u64), mib(ckib as u64)),
        format!(
            "VmHWM of each process over its whole life (one transfer each), highest of the runs; \
             client after connecting, before the transfer: {}; tmpfs file pages are not counted; \
             issue 6 target: <= 16 MiB per side",
            mib(cbase as u64)
        ),
    );
}

/// Upload and download rates as shares of the seal ceiling and of the
/// transfer bound (`bound_io` also counts the file reads and writes).
fn share_rows(
    r: &mut Report,
    (up, down): (f64, f64),
    seal: Option<f64>,
    bound: Option<f64>,
    bound_io: Option<f64>,
    (read_ns, write_ns): (f64, f64),
) {
    let pct = |x: f64, of: Option<f64>| of.map(|o| 100.0 * x / o);
    let show = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{a:.0}% / {b:.0}%"),
        _ => "n/a (run the ceiling section too)".to_string(),
    };
    for (k, p) in [
        ("file.upload.pct_seal", pct(up, seal)),
        ("file.download.pct_seal", pct(down, seal)),
        ("file.upload.pct_bound", pct(up, bound)),
        ("file.download.pct_bound", pct(down, bound)),
    ] {
        if let Some(p) = p {
            r.value(k, p);
        }
    }
    r.row_note(
        "files",
        "upload / download as % of the encrypt-then-MAC ceiling",
        show(pct(up, seal), pct(down, seal)),
        seal.map_or(String::new(), |c| {
            format!("file data sealed on one core (io::sealing, one thread): {} MB/s", thousands(c))
        }),
    );
    r.row_note(
        "files",
        "upload / download as % of the 2-core file transfer bound",
        show(pct(up, bound), pct(down, bound)),
        match (bound, bound_io) {
            (Some(b), Some(bio)) => format!(
                "bound {} MB/s (ceiling section); counting also the tmpfs read ({read_ns:.2} ns/B) and write \
                 ({write_ns:.2} ns/B) measured here: {} MB/s; issue 6 target: >= 80%",
                thousands(b),
                thousands(bio)
            ),
            _ => String::new(),
        },
    );
}

/// The client job `upload` or `download` (in the client process): one file
/// transfer, timed from the request to the verified end.
pub fn transfer_job(client: &mut Client, job: &str) -> BenchResult<()> {
    let local = PathBuf::from(child_env(CHILD_LOCAL)?);
    let remote = child_env(CHILD_REMOTE)?;
    let opts = || ovtp::TransferOptions { resume: false, ..Default::default() };
    println!("vmhwm_connected_kib {}", peak_memory_kib().unwrap_or(0));
    let monitor = ThreadMonitor::start();
    let (cpu0, busy0) = (process_cpu(), machine_busy());
    let t0 = Instant::now();
    let report = if job == "upload" {
        client.send_file_with(&local, &remote, opts())
    } else {
        client.get_file_with(&remote, &local, opts())
    }
    .map_err(|e| format!("{job}: {e}"))?;
    let secs = t0.elapsed().as_secs_f64();
    if let Some(b) = machine_busy().zip(busy0).map(|(a, b)| a.saturating_sub(b)) {
        println!("machine_busy_s {}", b.as_secs_f64());
    }
    print_cpu(cpu0, monitor.finish());
    println!("secs {secs}");
    println!("bytes {}", report.size);
    // The first 4 bytes of the verified SHA-256, so the parent can
    // check that both directions moved the same file.
    println!(
        "sha256_prefix {}",
        u32::from_be_bytes(report.sha256[..4].try_into().unwrap_or_default())
    );
    Ok(())
}
