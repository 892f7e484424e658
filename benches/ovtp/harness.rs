//! The harness: budgets and timed loops, statistics and units, the report
//! (table and TSV), machine facts and CPU / memory figures from /proc, and the
//! bench's temp dirs.

use crate::tempdir::TempDir;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Size of one record / one crypto buffer in the ceiling rows.
pub const RECORD: usize = 1024 * 1024;

/// Ticks per second of utime/stime in /proc/self/stat (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

pub type BenchResult<T> = Result<T, String>;

pub fn err<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

// ---------------------------------------------------------------------------
// Budgets, samples, statistics, units
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
pub struct Budget {
    pub time: Duration,
    pub max: usize,
}

/// Call `f` until `b.max` calls or `b.time` elapsed (at least once); returns
/// the duration of each call.
pub fn sample(b: Budget, mut f: impl FnMut() -> BenchResult<()>) -> BenchResult<Vec<Duration>> {
    let start = Instant::now();
    let mut out = Vec::with_capacity(b.max.min(1 << 20));
    while out.len() < b.max && (out.is_empty() || start.elapsed() < b.time) {
        let t = Instant::now();
        f()?;
        out.push(t.elapsed());
    }
    Ok(out)
}

pub struct Stats {
    pub n: usize,
    pub total: Duration,
    pub median: Duration,
    pub p90: Duration,
}

impl Stats {
    pub fn of(mut v: Vec<Duration>) -> Stats {
        assert!(!v.is_empty());
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Stats { n: v.len(), total: v.iter().sum(), median: at(0.5), p90: at(0.9) }
    }

    pub fn per_second(&self) -> f64 {
        self.n as f64 / self.total.as_secs_f64()
    }
}

pub fn mbps(bytes: f64, time: Duration) -> f64 {
    bytes / time.as_secs_f64() / 1e6
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Thousands separators for whole numbers.
pub fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

struct Row {
    section: &'static str,
    what: String,
    value: String,
    note: String,
}

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
    values: Vec<(String, f64)>,
}

impl Report {
    pub fn row_note(
        &mut self,
        section: &'static str,
        what: impl Into<String>,
        value: impl Into<String>,
        note: impl Into<String>,
    ) {
        let row = Row { section, what: what.into(), value: value.into(), note: note.into() };
        eprintln!("  {:<9} {:<52} {}", row.section, row.what, row.value);
        self.rows.push(row);
    }

    pub fn value(&mut self, key: impl Into<String>, v: f64) {
        self.values.push((key.into(), v));
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The machine, the `mode` line and the load, then the table.
    pub fn print_all(&self, mode: &str) {
        println!();
        println!("ovtp benchmarks, {}", machine());
        println!("mode: {mode}");
        println!(
            "1-minute load average: {:.2} at start, {:.2} at end (other work on the machine skews the figures)",
            self.get("machine.load_start").unwrap_or(0.0),
            self.get("machine.load_end").unwrap_or(0.0)
        );
        println!();
        self.print();
    }

    /// The table, as Markdown (so it can be pasted into BENCHMARKS.md).
    fn print(&self) {
        let w =
            |f: &dyn Fn(&Row) -> usize, min: usize| self.rows.iter().map(f).fold(min, usize::max);
        let (w0, w1, w2) = (
            w(&|r| r.section.len(), 7),
            w(&|r| r.what.chars().count(), 11),
            w(&|r| r.value.chars().count(), 5),
        );
        let pad =
            |s: &str, n: usize| format!("{s}{}", " ".repeat(n.saturating_sub(s.chars().count())));
        println!(
            "| {} | {} | {} | note |",
            pad("section", w0),
            pad("measurement", w1),
            pad("value", w2)
        );
        println!("|{}|{}|{}|------|", "-".repeat(w0 + 2), "-".repeat(w1 + 2), "-".repeat(w2 + 2));
        for r in &self.rows {
            println!(
                "| {} | {} | {} | {} |",
                pad(r.section, w0),
                pad(&r.what, w1),
                pad(&r.value, w2),
                r.note
            );
        }
    }

    pub fn write_tsv(&self, path: &Path) -> BenchResult<()> {
        let mut text = String::new();
        for (k, v) in &self.values {
            text.push_str(&format!("{k}\t{v}\n"));
        }
        std::fs::write(path, text).map_err(err("writing OVTP_BENCH_TSV"))
    }
}

// ---------------------------------------------------------------------------
// Machine facts: CPU time and peak memory from /proc
// ---------------------------------------------------------------------------

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown kernel".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}, Linux {kernel}")
}

/// The 1-minute load average (other work on the machine skews every figure).
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// CPU time (user + system) of this whole process so far, 10 ms resolution.
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command name: field 3 (state) is f[0]; utime is field 14, stime 15.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / USER_HZ))
}

/// CPU time the whole machine spent busy (all cores, all processes: user,
/// nice, system, irq, softirq, and steal, i.e. time taken by the hypervisor),
/// from /proc/stat; 10 ms resolution.
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> =
        stat.lines().next()?.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?;
    Some(Duration::from_secs_f64(busy as f64 / USER_HZ))
}

/// Peak resident set size (VmHWM) of this process, KiB.
pub fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Time spent on a CPU by the calling thread (ns resolution), from
/// /proc/thread-self/schedstat. Unlike wall time, it does not grow while other
/// work on the machine holds the core.
pub fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(s.split_whitespace().next()?.parse().ok()?))
}

/// Wall-clock and CPU time of some work (`cpu` is `None` when /proc does not tell).
#[derive(Clone, Copy)]
pub struct Spent {
    pub wall: Duration,
    pub cpu: Option<Duration>,
}

impl Spent {
    pub fn new() -> Spent {
        Spent { wall: Duration::ZERO, cpu: Some(Duration::ZERO) }
    }

    /// Run `f`, adding its wall and thread CPU time.
    pub fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let (c0, t0) = (thread_cpu(), Instant::now());
        let out = f();
        self.wall += t0.elapsed();
        let used = thread_cpu().zip(c0).map(|(a, b)| a.saturating_sub(b));
        self.cpu = self.cpu.zip(used).map(|(total, u)| total + u);
        out
    }
}

/// Samples the CPU time of every thread of this process every 10 ms (from
/// /proc/self/task/*/schedstat), so that threads which have exited are still
/// counted (up to the last 10 ms of their life). Its own thread is left out.
pub struct ThreadMonitor {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Duration>>,
}

impl ThreadMonitor {
    pub fn start() -> ThreadMonitor {
        fn sample(
            me: &str,
            base: &std::collections::HashMap<String, u64>,
            seen: &mut std::collections::HashMap<String, u64>,
        ) {
            let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
                return;
            };
            for e in dir.flatten() {
                let tid = e.file_name().to_string_lossy().into_owned();
                if tid == me {
                    continue;
                }
                let ns = std::fs::read_to_string(e.path().join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
                if let Some(ns) = ns {
                    let used = ns.saturating_sub(base.get(&tid).copied().unwrap_or(0));
                    let v = seen.entry(tid).or_insert(0);
                    *v = (*v).max(used);
                }
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // CPU already spent by the threads that exist now is not counted.
        let mut base = std::collections::HashMap::new();
        sample("", &std::collections::HashMap::new(), &mut base);
        let thread = std::thread::spawn(move || {
            let me = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
                .unwrap_or_default();
            let mut seen = std::collections::HashMap::new();
            while !flag.load(Ordering::SeqCst) {
                sample(&me, &base, &mut seen);
                std::thread::sleep(Duration::from_millis(10));
            }
            sample(&me, &base, &mut seen);
            let mut v: Vec<Duration> = seen
                .into_values()
                .filter(|&ns| ns >= 5_000_000)
                .map(Duration::from_nanos)
                .collect();
            v.sort_unstable_by(|a, b| b.cmp(a));
            v
        });
        ThreadMonitor { stop, thread }
    }

    /// CPU time of each thread that used at least 5 ms since `start`, busiest first.
    pub fn finish(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// Temp dirs (tests/common/tempdir.rs): `ovtp-bench-{tag}-{pid}-{n}`
// ---------------------------------------------------------------------------

/// A temp dir under the system temp dir.
pub fn temp_dir(tag: &str) -> BenchResult<TempDir> {
    temp_dir_in(&std::env::temp_dir(), tag)
}

/// A temp dir under `base`.
pub fn temp_dir_in(base: &Path, tag: &str) -> BenchResult<TempDir> {
    TempDir::try_new_in(base, &format!("bench-{tag}")).map_err(err("creating a temp dir"))
}
