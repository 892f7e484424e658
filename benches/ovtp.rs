//! The ovtp benchmark suite (std only, no harness).
//!
//! Run:   `cargo bench --bench ovtp`                   (about 1 minute on 2 cores)
//! Smoke: `OVTP_BENCH_QUICK=1 cargo bench --bench ovtp` (about 15 seconds; CI).
//! Run without `--bench` (as `cargo test --all-targets` does), it is always quick.
//!
//! Environment:
//! - `OVTP_BENCH_QUICK=1`: short time budgets (smoke test, noisy figures).
//! - `OVTP_BENCH_ONLY=ceiling,messages,connect,memory,files`: run only these sections.
//! - `OVTP_BENCH_TSV=path`: also write every figure as `key<TAB>value` lines
//!   (used by `bench/compare-scp.sh`).
//! - `OVTP_BENCH_ECHO_CMD="cmd"`: also time 100 B / 16 KiB round trips through a
//!   command that echoes its standard input (for example `ssh host cat`), with the
//!   same method as the ovtp rows (run with `sh -c`; `OVTP_BENCH_ECHO_LABEL`
//!   names it in the table).
//! - `OVTP_BENCH_FILE=path`: the file rows move this file (left in place)
//!   instead of making a random one (1 GiB; 128 MiB in quick mode).
//!
//! Every server binds 127.0.0.1:0. Every measuring loop stops at a count or a
//! time budget, whichever comes first; child processes have a deadline after
//! which they are killed.
//!
//! Units: MB/s is 10^6 bytes per second; sizes are binary (KiB, MiB, GiB).

use aes::Aes256;
use cbc::cipher::consts::U16;
use cbc::cipher::{Array, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use ovtp::hooks::msg::FLAG_FIN;
use ovtp::{
    AuthorizedKeys, Client, ClientConfig, HostTrust, KeyPair, Outgoing, Payload, Reply, Request,
    Rng, Server, ServerConfig, Stopper,
};
use sha2::Sha256;
use std::collections::BTreeSet;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Size of one record / one crypto buffer in the ceiling rows.
const RECORD: usize = 1024 * 1024;
/// Size of the file in the file rows.
const FILE_SIZE: u64 = 1 << 30;
/// ... in quick mode.
const QUICK_FILE_SIZE: u64 = 128 << 20;
/// Small message sizes of the round-trip rows.
const SMALL_SIZES: [usize; 2] = [100, 16 * 1024];
/// RSA sizes of the connection rows.
const KEY_BITS: [usize; 2] = [2048, 3072];
/// Ticks per second of utime/stime in /proc/self/stat (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

type BenchResult<T> = Result<T, String>;

fn err<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

// ---------------------------------------------------------------------------
// Options, budgets, samples, report
// ---------------------------------------------------------------------------

struct Opts {
    quick: bool,
    only: Option<BTreeSet<String>>,
    tsv: Option<PathBuf>,
    echo_cmd: Option<String>,
    echo_label: String,
    file: Option<PathBuf>,
}

impl Opts {
    fn from_env() -> Opts {
        let nonempty = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Opts {
            // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
            // binary without it: then only the quick smoke run.
            quick: nonempty("OVTP_BENCH_QUICK").is_some_and(|v| v != "0")
                || !std::env::args().any(|a| a == "--bench"),
            only: nonempty("OVTP_BENCH_ONLY").map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .collect()
            }),
            tsv: nonempty("OVTP_BENCH_TSV").map(PathBuf::from),
            echo_cmd: nonempty("OVTP_BENCH_ECHO_CMD"),
            echo_label: nonempty("OVTP_BENCH_ECHO_LABEL")
                .unwrap_or_else(|| "OVTP_BENCH_ECHO_CMD".into()),
            file: nonempty("OVTP_BENCH_FILE").map(PathBuf::from),
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.only.as_ref().is_none_or(|s| s.contains(section))
    }

    /// A loop budget: `full` seconds normally, `quick` seconds in quick mode,
    /// and never more than `max` iterations.
    fn budget(&self, full: f64, quick: f64, max: usize) -> Budget {
        Budget {
            time: Duration::from_secs_f64(if self.quick { quick } else { full }),
            max,
        }
    }
}

#[derive(Clone, Copy)]
struct Budget {
    time: Duration,
    max: usize,
}

/// Call `f` until `b.max` calls or `b.time` elapsed (at least once); returns
/// the duration of each call.
fn sample(b: Budget, mut f: impl FnMut() -> BenchResult<()>) -> BenchResult<Vec<Duration>> {
    let start = Instant::now();
    let mut out = Vec::with_capacity(b.max.min(1 << 20));
    while out.len() < b.max && (out.is_empty() || start.elapsed() < b.time) {
        let t = Instant::now();
        f()?;
        out.push(t.elapsed());
    }
    Ok(out)
}

struct Stats {
    n: usize,
    total: Duration,
    median: Duration,
    p90: Duration,
}

impl Stats {
    fn of(mut v: Vec<Duration>) -> Stats {
        assert!(!v.is_empty());
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Stats {
            n: v.len(),
            total: v.iter().sum(),
            median: at(0.5),
            p90: at(0.9),
        }
    }

    fn per_second(&self) -> f64 {
        self.n as f64 / self.total.as_secs_f64()
    }
}

fn mbps(bytes: f64, time: Duration) -> f64 {
    bytes / time.as_secs_f64() / 1e6
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Thousands separators for whole numbers.
fn thousands(x: f64) -> String {
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

struct Row {
    section: &'static str,
    what: String,
    value: String,
    note: String,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    values: Vec<(String, f64)>,
}

impl Report {
    fn row_note(
        &mut self,
        section: &'static str,
        what: impl Into<String>,
        value: impl Into<String>,
        note: impl Into<String>,
    ) {
        let row = Row {
            section,
            what: what.into(),
            value: value.into(),
            note: note.into(),
        };
        eprintln!("  {:<9} {:<52} {}", row.section, row.what, row.value);
        self.rows.push(row);
    }

    fn value(&mut self, key: impl Into<String>, v: f64) {
        self.values.push((key.into(), v));
    }

    fn get(&self, key: &str) -> Option<f64> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
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
        println!(
            "|{}|{}|{}|------|",
            "-".repeat(w0 + 2),
            "-".repeat(w1 + 2),
            "-".repeat(w2 + 2)
        );
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

    fn write_tsv(&self, path: &Path) -> BenchResult<()> {
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

fn machine() -> String {
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
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time (user + system) of this whole process so far, 10 ms resolution.
fn process_cpu() -> Option<Duration> {
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
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?;
    Some(Duration::from_secs_f64(busy as f64 / USER_HZ))
}

/// Peak resident set size (VmHWM) of this process, KiB.
fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------------------
// Scaffolding: temp dirs, keys, an in-process server, a server in a child process
// ---------------------------------------------------------------------------

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> BenchResult<TempDir> {
        Self::new_in(&std::env::temp_dir(), tag)
    }

    fn new_in(base: &Path, tag: &str) -> BenchResult<TempDir> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = base.join(format!(
            "ovtp-bench-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(err("creating a temp dir"))?;
        Ok(TempDir(p))
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server key and a client key of one size.
struct KeySet {
    bits: usize,
    server: KeyPair,
    client: KeyPair,
}

impl KeySet {
    fn generate(bits: usize) -> BenchResult<KeySet> {
        eprintln!("  (generating two RSA-{bits} keys)");
        Ok(KeySet {
            bits,
            server: KeyPair::generate(bits).map_err(err("key generation"))?,
            client: KeyPair::generate(bits).map_err(err("key generation"))?,
        })
    }
}

/// Echo handler: data and text come back unchanged; file offers, requests and
/// arrivals are accepted (the file rows).
fn echo(req: Request<'_>) -> Reply {
    match req.payload {
        Payload::Data(d) => Reply::ok(d),
        Payload::Text(t) => Reply::ok(t),
        Payload::FileOffer { .. } | Payload::FileRequest { .. } | Payload::FileReceived { .. } => {
            Reply::ok("")
        }
        _ => Reply::new(1, "unexpected payload"),
    }
}

fn client_config() -> ClientConfig {
    ClientConfig {
        handshake_timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(30),
        retries: 0,
        ..ClientConfig::default()
    }
}

fn server_config() -> ServerConfig {
    ServerConfig {
        handshake_timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        ..ServerConfig::default()
    }
}

/// An in-process echo server on 127.0.0.1:0; stopped and joined on drop.
struct LocalServer {
    addr: SocketAddr,
    trust: HostTrust,
    stopper: Stopper,
    thread: Option<JoinHandle<ovtp::Result<()>>>,
    _dir: TempDir,
}

impl LocalServer {
    fn start(keys: &KeySet) -> BenchResult<LocalServer> {
        let dir = TempDir::new("srv")?;
        let ak = AuthorizedKeys::new(dir.join("authorized_keys"));
        ak.add(keys.client.public(), "bench client")
            .map_err(err("authorized_keys"))?;
        let server = Server::bind_with(
            "127.0.0.1:0",
            keys.server.clone(),
            ak,
            server_config(),
            echo,
        )
        .map_err(err("bind"))?;
        let addr = server.local_addr().map_err(err("local_addr"))?;
        let stopper = server.stopper().map_err(err("stopper"))?;
        let trust = HostTrust::Fingerprint(server.fingerprint());
        let thread = Some(std::thread::spawn(move || server.run()));
        Ok(LocalServer {
            addr,
            trust,
            stopper,
            thread,
            _dir: dir,
        })
    }

    fn connect(&self, keys: &KeySet) -> BenchResult<Client> {
        Client::connect_with(
            &self.addr.to_string(),
            keys.client.clone(),
            self.trust.clone(),
            client_config(),
        )
        .map_err(err("connect"))
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Kills a child process if it is still running at `deadline`.
struct Watchdog {
    child: Arc<Mutex<Child>>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn new(child: Child, deadline: Instant) -> Watchdog {
        let child = Arc::new(Mutex::new(child));
        let done = Arc::new(AtomicBool::new(false));
        let (c, d) = (child.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            while !d.load(Ordering::SeqCst) {
                if Instant::now() >= deadline {
                    eprintln!("  (child process overdue: killing it)");
                    let _ = c.lock().unwrap_or_else(|p| p.into_inner()).kill();
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Watchdog {
            child,
            done,
            thread: Some(thread),
        }
    }

    /// Wait up to `grace` for the child to exit by itself, then kill it.
    fn finish(mut self, grace: Duration) {
        let until = Instant::now() + grace;
        loop {
            let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= until => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                Ok(None) => {}
            }
            drop(c);
            std::thread::sleep(Duration::from_millis(10));
        }
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Environment variables that turn this binary into a child role.
const CHILD_ROLE: &str = "OVTP_BENCH_CHILD";
const CHILD_DIR: &str = "OVTP_BENCH_CHILD_DIR";
const CHILD_ADDR: &str = "OVTP_BENCH_CHILD_ADDR";
const CHILD_JOB: &str = "OVTP_BENCH_CHILD_JOB";
const CHILD_SECS: &str = "OVTP_BENCH_CHILD_SECS";
const CHILD_MAX: &str = "OVTP_BENCH_CHILD_MAX";
/// Server: its files directory. Client: the local file of an upload or download.
const CHILD_FILES: &str = "OVTP_BENCH_CHILD_FILES";
const CHILD_LOCAL: &str = "OVTP_BENCH_CHILD_LOCAL";
/// Client: the remote name of an upload or download.
const CHILD_REMOTE: &str = "OVTP_BENCH_CHILD_REMOTE";

/// This binary re-executed in a child role, so that its peak memory is its
/// own. It reports on stdout as `key value` lines; a watchdog kills it at its
/// deadline.
struct ChildProc {
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    watchdog: Option<Watchdog>,
}

impl ChildProc {
    fn spawn(role: &str, env: &[(&str, String)], limit: Duration) -> BenchResult<ChildProc> {
        let exe = std::env::current_exe().map_err(err("current_exe"))?;
        let mut cmd = Command::new(exe);
        cmd.env(CHILD_ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(err("spawning a child process"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or("no child stdout")?);
        Ok(ChildProc {
            stdin,
            stdout,
            watchdog: Some(Watchdog::new(child, Instant::now() + limit)),
        })
    }

    /// One line of output. If the child hangs, the watchdog kills it and this ends.
    fn read_line(&mut self) -> BenchResult<String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(err("reading from a child process"))?;
        Ok(line.trim().to_string())
    }

    /// Close its stdin, wait up to `grace` for it to exit, and return its
    /// remaining `key value` output.
    fn finish(mut self, grace: Duration) -> Vec<(String, f64)> {
        drop(self.stdin.take());
        if let Some(w) = self.watchdog.take() {
            w.finish(grace);
        }
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        rest.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(w) = self.watchdog.take() {
            w.finish(Duration::from_secs(5));
        }
    }
}

fn lookup(values: &[(String, f64)], key: &str) -> Option<f64> {
    values.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// An echo server in a child process; it serves until its stdin closes, then
/// reports `vmhwm_kib`. Clients in child processes (`run_client`) use the keys
/// left in its directory.
struct ServerProcess {
    addr: SocketAddr,
    proc: ChildProc,
    dir: TempDir,
}

impl ServerProcess {
    /// Start it; it is killed if still running after `limit`.
    fn start(keys: &KeySet, limit: Duration) -> BenchResult<ServerProcess> {
        Self::start_with(keys, limit, None)
    }

    /// Start it with `files` as its files directory (uploads and downloads).
    fn start_with(
        keys: &KeySet,
        limit: Duration,
        files: Option<&Path>,
    ) -> BenchResult<ServerProcess> {
        let dir = TempDir::new("child")?;
        keys.server
            .save(&dir.join("server.key"), true)
            .map_err(err("saving the server key"))?;
        keys.server
            .public()
            .save(&dir.join("server.pub"))
            .map_err(err("saving the server public key"))?;
        keys.client
            .save(&dir.join("client.key"), true)
            .map_err(err("saving the client key"))?;
        AuthorizedKeys::new(dir.join("authorized_keys"))
            .add(keys.client.public(), "bench client")
            .map_err(err("authorized_keys"))?;
        let dir_s = dir.0.to_string_lossy().into_owned();
        let mut env = vec![(CHILD_DIR, dir_s)];
        if let Some(f) = files {
            env.push((CHILD_FILES, f.to_string_lossy().into_owned()));
        }
        let mut proc = ChildProc::spawn("server", &env, limit)?;
        let line = proc.read_line()?;
        let addr: SocketAddr = line
            .parse()
            .map_err(|_| format!("server process said {line:?}"))?;
        Ok(ServerProcess { addr, proc, dir })
    }

    /// Run `job` in a client child process against this server; returns what
    /// it reported (always including `vmhwm_kib`).
    fn run_client(&self, job: &str, b: Budget) -> BenchResult<Vec<(String, f64)>> {
        self.run_client_with(job, b, &[])
    }

    /// `run_client` with more environment for the job.
    fn run_client_with(
        &self,
        job: &str,
        b: Budget,
        extra: &[(&str, String)],
    ) -> BenchResult<Vec<(String, f64)>> {
        let mut env = vec![
            (CHILD_DIR, self.dir.0.to_string_lossy().into_owned()),
            (CHILD_ADDR, self.addr.to_string()),
            (CHILD_JOB, job.to_string()),
            (CHILD_SECS, b.time.as_secs_f64().to_string()),
            (CHILD_MAX, b.max.to_string()),
        ];
        env.extend(extra.iter().cloned());
        let limit = b.time + Duration::from_secs(60);
        let out = ChildProc::spawn("client", &env, limit)?.finish(limit);
        match lookup(&out, "vmhwm_kib") {
            Some(_) => Ok(out),
            None => Err(format!("client job {job} failed (see its stderr above)")),
        }
    }

    /// Stop it; returns its peak resident memory (KiB).
    fn finish(self) -> Option<u64> {
        lookup(&self.finish_report(), "vmhwm_kib").map(|v| v as u64)
    }

    /// Stop it; returns everything it reported (`vmhwm_kib`, `cpu_s`,
    /// `thread0_s`.. for its busiest threads).
    fn finish_report(self) -> Vec<(String, f64)> {
        self.proc.finish(Duration::from_secs(40))
    }
}

fn child_env(key: &str) -> BenchResult<String> {
    std::env::var(key).map_err(err("child environment"))
}

/// The server side of [`ServerProcess`].
fn child_server() -> BenchResult<()> {
    let dir = PathBuf::from(child_env(CHILD_DIR)?);
    let keys = KeyPair::load(&dir.join("server.key")).map_err(err("server key"))?;
    let ak = AuthorizedKeys::new(dir.join("authorized_keys"));
    let config = ServerConfig {
        files_dir: std::env::var_os(CHILD_FILES).map(PathBuf::from),
        ..server_config()
    };
    let monitor = ThreadMonitor::start();
    let cpu0 = process_cpu();
    let server = Server::bind_with("127.0.0.1:0", keys, ak, config, ovtp::ServeFiles(echo))
        .map_err(err("bind"))?;
    let stopper = server.stopper().map_err(err("stopper"))?;
    println!("{}", server.local_addr().map_err(err("local_addr"))?);
    std::io::stdout().flush().map_err(err("stdout"))?;
    let thread = std::thread::spawn(move || server.run());
    // Serve until the parent closes our stdin (or dies). The parent's watchdog
    // bounds this from outside.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    stopper.stop();
    let _ = thread.join();
    print_cpu(cpu0, monitor.finish());
    println!("vmhwm_kib {}", peak_memory_kib().unwrap_or(0));
    Ok(())
}

/// Report this process's CPU time since `cpu0` and its busiest threads'.
fn print_cpu(cpu0: Option<Duration>, threads: Vec<Duration>) {
    if let Some(c) = process_cpu().zip(cpu0).map(|(a, b)| a.saturating_sub(b)) {
        println!("cpu_s {}", c.as_secs_f64());
    }
    for (i, t) in threads.iter().take(4).enumerate() {
        println!("thread{i}_s {}", t.as_secs_f64());
    }
}

/// Samples the CPU time of every thread of this process every 10 ms (from
/// /proc/self/task/*/schedstat), so that threads which have exited are still
/// counted (up to the last 10 ms of their life). Its own thread is left out.
struct ThreadMonitor {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Duration>>,
}

impl ThreadMonitor {
    fn start() -> ThreadMonitor {
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
    fn finish(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

/// The client side of [`ServerProcess::run_client`]: one job, then `vmhwm_kib`.
fn child_client() -> BenchResult<()> {
    let dir = PathBuf::from(child_env(CHILD_DIR)?);
    let keys = KeyPair::load(&dir.join("client.key")).map_err(err("client key"))?;
    let server = ovtp::PublicKey::load(&dir.join("server.pub")).map_err(err("server key"))?;
    let b = Budget {
        time: Duration::from_secs_f64(child_env(CHILD_SECS)?.parse().map_err(err("secs"))?),
        max: child_env(CHILD_MAX)?.parse().map_err(err("max"))?,
    };
    let mut client = Client::connect_with(
        &child_env(CHILD_ADDR)?,
        keys,
        HostTrust::Fingerprint(server.fingerprint()),
        client_config(),
    )
    .map_err(err("connect"))?;
    match child_env(CHILD_JOB)?.as_str() {
        // 1 MiB data messages, echoed.
        "echo1m" => {
            let msg = vec![0x33u8; RECORD];
            let st = Stats::of(sample(b, || {
                let reply = client.send_data(&msg).map_err(err("send_data"))?;
                if reply.body.len() != RECORD {
                    return Err("bad echo reply".into());
                }
                Ok(())
            })?);
            println!("n {}", st.n);
            println!("total_s {}", st.total.as_secs_f64());
            println!("median_s {}", st.median.as_secs_f64());
        }
        // One file transfer, timed from the request to the verified end.
        job @ ("upload" | "download") => {
            let local = PathBuf::from(child_env(CHILD_LOCAL)?);
            let remote = child_env(CHILD_REMOTE)?;
            let opts = ovtp::TransferOptions {
                overwrite: false,
                resume: false,
            };
            println!("vmhwm_connected_kib {}", peak_memory_kib().unwrap_or(0));
            let monitor = ThreadMonitor::start();
            let (cpu0, busy0) = (process_cpu(), machine_busy());
            let t0 = Instant::now();
            let report = if job == "upload" {
                client.send_file_with(&local, &remote, opts, None)
            } else {
                client.get_file_with(&remote, &local, opts, None)
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
        }
        other => return Err(format!("unknown job {other:?}")),
    }
    drop(client);
    println!("vmhwm_kib {}", peak_memory_kib().unwrap_or(0));
    Ok(())
}

// ---------------------------------------------------------------------------
// Section: the ceiling (crypto on one core, loopback TCP)
// ---------------------------------------------------------------------------

/// Time spent on a CPU by the calling thread (ns resolution), from
/// /proc/thread-self/schedstat. Unlike wall time, it does not grow while other
/// work on the machine holds the core.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        s.split_whitespace().next()?.parse().ok()?,
    ))
}

/// Wall-clock and CPU time of some work (`cpu` is `None` when /proc does not tell).
#[derive(Clone, Copy)]
struct Spent {
    wall: Duration,
    cpu: Option<Duration>,
}

impl Spent {
    fn new() -> Spent {
        Spent {
            wall: Duration::ZERO,
            cpu: Some(Duration::ZERO),
        }
    }

    /// Run `f`, adding its wall and thread CPU time.
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let (c0, t0) = (thread_cpu(), Instant::now());
        let out = f();
        self.wall += t0.elapsed();
        let used = thread_cpu().zip(c0).map(|(a, b)| a.saturating_sub(b));
        self.cpu = self.cpu.zip(used).map(|(total, u)| total + u);
        out
    }
}

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

fn bench_ceiling(opts: &Opts, r: &mut Report) -> BenchResult<()> {
    let b = opts.budget(2.0, 0.4, 100_000);
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
    ceiling_row(
        r,
        "hmac_sha256",
        "HMAC-SHA256, one core, 1 MiB",
        bytes,
        s,
        "DESIGN.md §6: ~1,530",
    );
    // Plain SHA-256: what each side of a file transfer spends on the file digest.
    let (bytes, s) = run(&mut || {
        black_box(<Sha256 as sha2::Digest>::digest(&buf[..]));
        Ok(())
    })?;
    let sha = ceiling_row(
        r,
        "sha256",
        "SHA-256 (file digest), one core, 1 MiB",
        bytes,
        s,
        "each side of a file transfer hashes the whole file once",
    );

    // The library's own record path: Sealer::seal and Opener::open, 1 MiB
    // records. Each figure comes from whole loops, with the thread's CPU time
    // read once before and once after a loop (the kernel brings a running
    // thread's /proc runtime up to date only at scheduler events, so reading
    // it around single 1-2 ms calls is noisy): loop A copies a frame, loop B
    // seals and copies, loop C seals, copies and opens; seal = B - A and
    // open = C - B, per record.
    let mut rng = Rng::system();
    let plaintext = vec![0x5au8; RECORD];
    let (mut frame, mut body) = (Vec::with_capacity(RECORD + 128), Vec::new());
    let keys = || ovtp::hooks::SessionKeys::from_secrets_for_testing(&[1; 32], &[2; 32], &[3; 32]);
    let mut loop_spent = |with_seal: bool, with_open: bool| -> BenchResult<(Spent, usize)> {
        let ((mut sealer, _), (_, mut opener)) = keys();
        // Loop A copies a sealed frame too, so that it moves the same bytes.
        if !with_seal {
            frame.clear();
            sealer
                .seal(&mut rng, 0x10, FLAG_FIN, &plaintext, &mut frame)
                .map_err(err("seal"))?;
        }
        let mut spent = Spent::new();
        let n = spent
            .time(|| {
                sample(b, || {
                    if with_seal {
                        frame.clear();
                        sealer
                            .seal(&mut rng, 0x10, FLAG_FIN, &plaintext, &mut frame)
                            .map_err(err("seal"))?;
                    }
                    body.clear();
                    body.extend_from_slice(&frame[4..]);
                    if with_open {
                        let len = opener
                            .open(&mut body)
                            .map(|rec| rec.plaintext.len())
                            .map_err(err("open"))?;
                        if len != RECORD {
                            return Err("opened record has the wrong length".into());
                        }
                    }
                    black_box(&body);
                    Ok(())
                })
            })?
            .len();
        Ok((spent, n))
    };
    let (a, b_, c) = (
        loop_spent(false, false)?,
        loop_spent(true, false)?,
        loop_spent(true, true)?,
    );
    // Per record: (wall, cpu) of each loop, and the differences.
    let per = |(s, n): (Spent, usize)| (s.wall / n as u32, s.cpu.map(|c| c / n as u32));
    let diff = |x: (Duration, Option<Duration>), y: (Duration, Option<Duration>)| Spent {
        wall: x.0.saturating_sub(y.0),
        cpu: x.1.zip(y.1).map(|(p, q)| p.saturating_sub(q)),
    };
    let (pa, pb, pc) = (per(a), per(b_), per(c));
    let etm = ceiling_row(
        r,
        "seal",
        "encrypt-then-MAC (record::Sealer::seal), 1 MiB records",
        RECORD as f64,
        diff(pb, pa),
        "DESIGN.md §6: ~500 (64 KiB chunks); includes the copy into the frame and a getrandom IV",
    );
    let vtd = ceiling_row(
        r,
        "open",
        "verify-then-decrypt (record::Opener::open), 1 MiB",
        RECORD as f64,
        diff(pc, pb),
        "DESIGN.md §6: ~1,230; in place",
    );

    // One TCP stream over loopback, and what it costs in CPU per byte (both ends).
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

    // The bound for a file transfer when sender and receiver share this machine:
    // every byte is hashed (SHA-256) and sealed by the sender, crosses loopback
    // once, and is opened and hashed by the receiver; with perfect overlap over
    // the cores, the total CPU per byte is the limit.
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
             without the file digests {} MB/s; the sealing thread alone caps one stream at {} MB/s; file I/O not counted",
            thousands(without_hash),
            thousands(etm)
        ),
    );
    Ok(())
}

/// Stream 1 MiB writes through one loopback connection; returns MB/s and CPU
/// nanoseconds per byte (both ends, from /proc/self/stat).
fn tcp_stream(b: Budget) -> BenchResult<(f64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(err("bind"))?;
    let addr = listener.local_addr().map_err(err("local_addr"))?;
    let received = Arc::new(AtomicU64::new(0));
    let rec = received.clone();
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = vec![0u8; RECORD];
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(()),
                n => rec.fetch_add(n as u64, Ordering::Relaxed),
            };
        }
    });
    let mut s = TcpStream::connect(addr).map_err(err("connect"))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(err("timeout"))?;
    let chunk = vec![0xa5u8; RECORD];
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    let mut sent = 0u64;
    sample(b, || {
        s.write_all(&chunk).map_err(err("write"))?;
        sent += RECORD as u64;
        Ok(())
    })?;
    s.shutdown(Shutdown::Write).map_err(err("shutdown"))?;
    reader
        .join()
        .map_err(|_| "reader thread panicked".to_string())?
        .map_err(err("reader"))?;
    let elapsed = t0.elapsed();
    let cpu = process_cpu()
        .zip(cpu0)
        .map(|(a, b)| a.saturating_sub(b))
        .unwrap_or_default();
    if received.load(Ordering::Relaxed) != sent {
        return Err("TCP stream lost bytes".into());
    }
    Ok((
        mbps(sent as f64, elapsed),
        cpu.as_secs_f64() * 1e9 / sent as f64,
    ))
}

// ---------------------------------------------------------------------------
// Section: small messages on one open connection
// ---------------------------------------------------------------------------

fn size_name(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn size_key(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("msg{}k", size / 1024)
    } else {
        format!("msg{size}")
    }
}

fn latency_value(s: &Stats) -> String {
    format!(
        "median {:.1} µs, p90 {:.1} µs, {} rt/s",
        us(s.median),
        us(s.p90),
        thousands(s.per_second())
    )
}

fn record_latency(r: &mut Report, key: &str, s: &Stats) {
    r.value(format!("{key}.median_us"), us(s.median));
    r.value(format!("{key}.p90_us"), us(s.p90));
    r.value(format!("{key}.per_s"), s.per_second());
    r.value(format!("{key}.n"), s.n as f64);
}

fn bench_messages(opts: &Opts, keys: &KeySet, r: &mut Report) -> BenchResult<()> {
    let server = LocalServer::start(keys)?;
    let mut client = server.connect(keys)?;
    // Raw TCP and ovtp are measured in alternating blocks, so that both see the
    // same state of the machine (on a VM, round trips vary several-fold with
    // where the scheduler puts the two threads).
    const BLOCKS: u32 = 6;
    let block = |full: f64, quick: f64, max: usize| {
        let b = opts.budget(full, quick, max);
        Budget {
            time: b.time / BLOCKS,
            max: b.max / BLOCKS as usize,
        }
    };
    for size in SMALL_SIZES {
        let (name, key) = (size_name(size), size_key(size));
        let mut tcp = TcpEcho::start(size)?;
        let msg = vec![0x42u8; size];
        let mut ovtp_round_trip = || -> BenchResult<()> {
            let reply = client.send_data(&msg).map_err(err("send_data"))?;
            if !reply.is_ok() || reply.body.len() != size {
                return Err("bad echo reply".into());
            }
            Ok(())
        };
        let warm_up = opts.budget(0.3, 0.1, 1_000);
        sample(warm_up, || tcp.round_trip())?;
        sample(warm_up, &mut ovtp_round_trip)?;
        let (mut tcp_t, mut ovtp_t) = (Vec::new(), Vec::new());
        // CPU time of the whole process (both ends) during each kind of block.
        let (mut tcp_cpu, mut ovtp_cpu) = (Duration::ZERO, Duration::ZERO);
        let cpu_since = |c0: Option<Duration>| {
            process_cpu()
                .zip(c0)
                .map_or(Duration::ZERO, |(a, b)| a.saturating_sub(b))
        };
        for _ in 0..BLOCKS {
            let c0 = process_cpu();
            tcp_t.extend(sample(block(3.0, 0.6, 300_000), || tcp.round_trip())?);
            tcp_cpu += cpu_since(c0);
            let c0 = process_cpu();
            ovtp_t.extend(sample(block(4.0, 0.8, 300_000), &mut ovtp_round_trip)?);
            ovtp_cpu += cpu_since(c0);
        }
        tcp.finish()?;
        let (tcp, ov) = (Stats::of(tcp_t), Stats::of(ovtp_t));
        let (tcp_cpu, ovtp_cpu) = (us(tcp_cpu) / tcp.n as f64, us(ovtp_cpu) / ov.n as f64);
        r.value(format!("{key}.tcp.cpu_us"), tcp_cpu);
        r.value(format!("{key}.ovtp.cpu_us"), ovtp_cpu);
        record_latency(r, &format!("{key}.tcp"), &tcp);
        r.row_note(
            "messages",
            format!("{name} round trip, raw TCP ping-pong"),
            latency_value(&tcp),
            format!(
                "std sockets, nodelay, n={}; CPU {tcp_cpu:.1} µs per round trip, both ends",
                tcp.n
            ),
        );
        record_latency(r, &format!("{key}.ovtp"), &ov);
        r.row_note(
            "messages",
            format!("{name} round trip, ovtp send_data (echo)"),
            latency_value(&ov),
            format!(
                "one open connection, n={}, interleaved with TCP; CPU {ovtp_cpu:.1} µs per round trip, both ends",
                ov.n
            ),
        );
        let ratio = us(ov.median) / us(tcp.median);
        r.value(format!("{key}.ratio"), ratio);
        r.row_note(
            "messages",
            format!("{name} ovtp / raw TCP, median"),
            format!("{ratio:.2}x"),
            format!(
                "p90 {:.2}x; issue 6 target: <= 1.3x",
                us(ov.p90) / us(tcp.p90)
            ),
        );

        if let Some(cmd) = &opts.echo_cmd {
            let e = Stats::of(command_echo(cmd, size, opts.budget(3.0, 0.6, 20_000))?);
            record_latency(r, &format!("{key}.echo"), &e);
            r.row_note(
                "messages",
                format!("{name} round trip through {}", opts.echo_label),
                latency_value(&e),
                format!("OVTP_BENCH_ECHO_CMD, n={}", e.n),
            );
        }
    }
    Ok(())
}

/// Messages of 100 B with `Client::send_batch` on one open connection (pipelined).
fn bench_batch(opts: &Opts, keys: &KeySet, r: &mut Report) -> BenchResult<()> {
    const SIZE: usize = 100;
    const PER_BATCH: usize = 1_000;
    let batches = if opts.quick { 5 } else { 20 };
    let server = LocalServer::start(keys)?;
    let mut client = server.connect(keys)?;
    let msg = vec![0x42u8; SIZE];
    let items = vec![Outgoing::Data(&msg); PER_BATCH];
    let mut batch = || -> BenchResult<()> {
        let replies = client.send_batch(&items).map_err(err("send_batch"))?;
        if replies.len() != PER_BATCH || replies.iter().any(|r| !r.is_ok() || r.body.len() != SIZE)
        {
            return Err("bad batch replies".into());
        }
        Ok(())
    };
    batch()?; // warm-up
    let cpu0 = process_cpu();
    let st = Stats::of(sample(
        Budget {
            time: Duration::from_secs(60),
            max: batches,
        },
        &mut batch,
    )?);
    let cpu = process_cpu()
        .zip(cpu0)
        .map_or(Duration::ZERO, |(a, b)| a.saturating_sub(b));
    let n = st.n * PER_BATCH;
    let rate = n as f64 / st.total.as_secs_f64();
    let cpu_us = us(cpu) / n as f64;
    r.value("batch100.per_s", rate);
    r.value("batch100.n", n as f64);
    r.value("batch100.cpu_us", cpu_us);
    r.row_note(
        "messages",
        format!("100 B messages, send_batch of {}, one connection", thousands(PER_BATCH as f64)),
        format!("{} msg/s", thousands(rate)),
        format!(
            "{} messages echoed in {} batches; median batch {:.1} ms; CPU {cpu_us:.1} µs per message, both ends; \
             issue 6 target: >= 30,000/s",
            thousands(n as f64),
            st.n,
            ms(st.median)
        ),
    );
    Ok(())
}

/// A raw TCP echo peer over loopback: `size` bytes each way per round trip.
struct TcpEcho {
    stream: TcpStream,
    thread: JoinHandle<std::io::Result<()>>,
    out: Vec<u8>,
    back: Vec<u8>,
}

impl TcpEcho {
    fn start(size: usize) -> BenchResult<TcpEcho> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(err("bind"))?;
        let addr = listener.local_addr().map_err(err("local_addr"))?;
        let thread = std::thread::spawn(move || -> std::io::Result<()> {
            let (mut s, _) = listener.accept()?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            let mut buf = vec![0u8; size];
            loop {
                match s.read_exact(&mut buf) {
                    Ok(()) => s.write_all(&buf)?,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        });
        let stream = TcpStream::connect(addr).map_err(err("connect"))?;
        stream.set_nodelay(true).map_err(err("nodelay"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(err("timeout"))?;
        Ok(TcpEcho {
            stream,
            thread,
            out: vec![0x42u8; size],
            back: vec![0u8; size],
        })
    }

    fn round_trip(&mut self) -> BenchResult<()> {
        self.stream.write_all(&self.out).map_err(err("write"))?;
        self.stream.read_exact(&mut self.back).map_err(err("read"))
    }

    fn finish(self) -> BenchResult<()> {
        drop(self.stream);
        self.thread
            .join()
            .map_err(|_| "echo thread panicked".to_string())?
            .map_err(err("echo"))
    }
}

/// Round trips through an external command that echoes its stdin (`ssh host cat`).
fn command_echo(cmd: &str, size: usize, b: Budget) -> BenchResult<Vec<Duration>> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {cmd}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(err("spawning OVTP_BENCH_ECHO_CMD"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    // The whole measurement, start-up included, is bounded by the watchdog.
    let watchdog = Watchdog::new(child, Instant::now() + b.time + Duration::from_secs(30));
    let out = vec![0x42u8; size];
    let mut back = vec![0u8; size];
    let mut round_trip = || -> BenchResult<()> {
        stdin.write_all(&out).map_err(err("echo command write"))?;
        stdin.flush().map_err(err("echo command flush"))?;
        stdout
            .read_exact(&mut back)
            .map_err(err("echo command read"))?;
        Ok(())
    };
    let result = sample(
        Budget {
            time: Duration::from_millis(300),
            max: 100,
        },
        &mut round_trip,
    )
    .and_then(|_| sample(b, &mut round_trip));
    drop(stdin);
    watchdog.finish(Duration::from_secs(10));
    result
}

// ---------------------------------------------------------------------------
// Section: new connections (handshake + one message)
// ---------------------------------------------------------------------------

fn bench_connect(opts: &Opts, keys: &KeySet, r: &mut Report) -> BenchResult<()> {
    let bits = keys.bits;
    let server = LocalServer::start(keys)?;
    let new_connection = || -> BenchResult<()> {
        let mut c = server.connect(keys)?;
        let reply = c.send_message("ping").map_err(err("send_message"))?;
        if reply.body != b"ping" {
            return Err("bad echo reply".into());
        }
        Ok(())
    };
    new_connection()?; // warm-up
    let (c0, s0) = (
        keys.client.private_operations(),
        keys.server.private_operations(),
    );
    let st = Stats::of(sample(opts.budget(5.0, 1.2, 200), new_connection)?);
    let per = |now: u64, before: u64| (now - before) as f64 / st.n as f64;
    let (cops, sops) = (
        per(keys.client.private_operations(), c0),
        per(keys.server.private_operations(), s0),
    );
    let key = format!("connect{bits}");
    r.value(format!("{key}.median_ms"), ms(st.median));
    r.value(format!("{key}.p90_ms"), ms(st.p90));
    r.value(format!("{key}.n"), st.n as f64);
    r.value(format!("{key}.client_private_ops"), cops);
    r.value(format!("{key}.server_private_ops"), sops);
    r.row_note(
        "connect",
        format!("new connection + handshake + 1 message, RSA-{bits}"),
        format!("median {:.1} ms, p90 {:.1} ms", ms(st.median), ms(st.p90)),
        format!(
            "n={}; RSA private-key ops per handshake: client {cops:.1}, server {sops:.1}",
            st.n
        ),
    );

    // Two client threads, each connecting + one message in a loop.
    let b = opts.budget(6.0, 1.2, 2_000);
    let done = AtomicUsize::new(0);
    let failures = AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let _ = sample(b, || {
                    match new_connection() {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failures.fetch_add(1, Ordering::Relaxed),
                    };
                    Ok(())
                });
            });
        }
    });
    let elapsed = t0.elapsed();
    let (n, failed) = (done.into_inner(), failures.into_inner());
    let rate = n as f64 / elapsed.as_secs_f64();
    r.value(format!("handshakes{bits}.per_s"), rate);
    r.row_note(
        "connect",
        format!("handshakes/s, 2 client threads, one server, RSA-{bits}"),
        format!("{rate:.1} /s"),
        format!(
            "{n} in {:.1} s, {failed} failed; clients and server share the cores",
            elapsed.as_secs_f64()
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Section: memory
// ---------------------------------------------------------------------------

fn bench_memory(opts: &Opts, keys: &KeySet, r: &mut Report) -> BenchResult<()> {
    // Peak RSS so far of this process (all sections run before, client and
    // in-process servers together).
    if let Some(k) = peak_memory_kib() {
        r.value("memory.bench_process_so_far.kib", k as f64);
        r.row_note(
            "memory",
            "peak RSS of this bench process so far (VmHWM)",
            mib(k),
            "client and in-process servers together",
        );
    }

    // Per side: server and client each in a child process, 1 MiB data messages echoed.
    let server = ServerProcess::start(keys, Duration::from_secs(120))?;
    let out = server.run_client("echo1m", opts.budget(4.0, 1.0, 2_000));
    let server_kib = server.finish();
    let out = out?;
    let get = |k: &str| lookup(&out, k).ok_or(format!("client job did not report {k}"));
    let (n, total, median) = (get("n")?, get("total_s")?, get("median_s")?);
    let rate = 2.0 * RECORD as f64 * n / total / 1e6;
    r.value("memory.msg1m.mbps_both_ways", rate);
    r.row_note(
        "memory",
        "1 MiB data messages echoed, server and client processes",
        format!("{} MB/s (up + down)", thousands(rate)),
        format!("n={n}; median round trip {:.2} ms", median * 1e3),
    );
    if let Some(k) = server_kib {
        r.value("memory.msg1m.server.kib", k as f64);
        r.row_note("memory", "  peak RSS, server process", mib(k), "VmHWM");
    }
    let k = get("vmhwm_kib")? as u64;
    r.value("memory.msg1m.client.kib", k as f64);
    r.row_note("memory", "  peak RSS, client process", mib(k), "VmHWM");
    Ok(())
}

// ---------------------------------------------------------------------------
// Section: files (upload / download of 1 GiB)
// ---------------------------------------------------------------------------

/// One file transfer job, as the client and server processes reported it.
struct TransferRun {
    secs: f64,
    client: Vec<(String, f64)>,
    server: Vec<(String, f64)>,
}

impl TransferRun {
    fn threads(side: &[(String, f64)]) -> Vec<f64> {
        (0..4)
            .filter_map(|i| lookup(side, &format!("thread{i}_s")))
            .collect()
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
    let read_ns = spent
        .cpu
        .map_or(f64::NAN, |c| c.as_secs_f64() * 1e9 / read.max(1) as f64);
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
    let write_ns = spent
        .cpu
        .map_or(f64::NAN, |c| c.as_secs_f64() * 1e9 / written as f64);
    Ok((read_ns, write_ns))
}

fn bench_files(opts: &Opts, keys: &KeySet, r: &mut Report) -> BenchResult<()> {
    // On tmpfs (RAM) when there is one, so that disk speed does not dominate.
    let shm = Path::new("/dev/shm");
    let (base, place) = if shm.is_dir() {
        (shm.to_path_buf(), "/dev/shm (tmpfs)".to_string())
    } else {
        let t = std::env::temp_dir();
        let place = format!("{} (no /dev/shm: disk speed may dominate)", t.display());
        (t, place)
    };
    let dir = TempDir::new_in(&base, "files")?;
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
            let size = if opts.quick {
                QUICK_FILE_SIZE
            } else {
                FILE_SIZE
            };
            let p = dir.join("source.bin");
            (p, size, format!("random, made on {place}"))
        }
    };
    // Room for the source, the server's copy and the downloaded copy.
    let need_kib = (3 * size) / 1024 + 64 * 1024;
    if let Some(free) = free_kib(&base)
        && free < need_kib
    {
        return Err(format!(
            "files: {} has {} MiB free, {} MiB needed",
            base.display(),
            free / 1024,
            need_kib / 1024
        ));
    }
    if opts.file.is_none() {
        eprintln!("  (making a {} file on {place})", size_label(size));
        make_random_file(&source, size)?;
    }
    let (read_ns, write_ns) = file_io_cost(&source, &dir.join("scratch"), size.min(256 << 20))?;

    let runs = if opts.quick { 1 } else { 3 };
    // Each transfer must keep at least 20 MB/s.
    let limit = Duration::from_secs(60 + size / 20_000_000);
    let job = |name: &str, local: &Path| -> BenchResult<TransferRun> {
        let server = ServerProcess::start_with(keys, limit, Some(&server_dir))?;
        let out = server.run_client_with(
            name,
            Budget {
                time: limit,
                max: 1,
            },
            &[
                (CHILD_LOCAL, local.to_string_lossy().into_owned()),
                (CHILD_REMOTE, "big.bin".to_string()),
            ],
        );
        let server = server.finish_report();
        let client = out?;
        let secs = lookup(&client, "secs").ok_or("no transfer time")?;
        if lookup(&client, "bytes") != Some(size as f64) {
            return Err(format!("{name}: wrong size"));
        }
        Ok(TransferRun {
            secs,
            client,
            server,
        })
    };
    let remote_copy = server_dir.join("big.bin");
    let local_copy = client_dir.join("big.bin");
    let (mut ups, mut downs) = (Vec::new(), Vec::new());
    for i in 0..runs {
        eprintln!("  (upload {}/{runs})", i + 1);
        let _ = std::fs::remove_file(&remote_copy);
        ups.push(job("upload", &source)?);
    }
    for i in 0..runs {
        eprintln!("  (download {}/{runs})", i + 1);
        let _ = std::fs::remove_file(&local_copy);
        downs.push(job("download", &local_copy)?);
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
        let _ = std::fs::remove_file(&source);
    }
    if digests.len() != 1 {
        return Err("files: uploads and downloads moved different contents".into());
    }

    let label = size_label(size);
    let seal = r.get("ceiling.seal.mbps");
    let bound = r.get("ceiling.transfer_bound.mbps");
    let bound_io = r.get("ceiling.cpu_ns_per_byte").map(|ns| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        cores * 1e3 / (ns + read_ns + write_ns)
    });
    r.value("file.size_bytes", size as f64);
    r.value("file.io.read_ns_per_byte", read_ns);
    r.value("file.io.write_ns_per_byte", write_ns);
    r.row_note(
        "files",
        "test file",
        format!("{label}, {origin}"),
        format!(
            "server files_dir and download target on {place}; {runs} run(s) each way, each with a \
             new server process and a new client process; all copies deleted afterwards"
        ),
    );
    let mut rates = Vec::new();
    for (dir_name, runs_of) in [("upload", &ups), ("download", &downs)] {
        let mut v: Vec<&TransferRun> = runs_of.iter().collect();
        v.sort_by(|a, b| b.secs.total_cmp(&a.secs));
        let med = v[v.len() / 2];
        let rate = |t: &TransferRun| size as f64 / t.secs / 1e6;
        let (lo, hi) = (rate(v[0]), rate(v[v.len() - 1]));
        let m = rate(med);
        rates.push(m);
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
        let cpu = |side: &[(String, f64)]| lookup(side, "cpu_s").unwrap_or(f64::NAN);
        let list = |t: &[f64]| {
            t.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(" + ")
        };
        let (ccpu, scpu) = (cpu(&med.client), cpu(&med.server));
        // What the rest of the machine used meanwhile (other sessions' work).
        let others = lookup(&med.client, "machine_busy_s").map(|b| (b - ccpu - scpu).max(0.0));
        let (cth, sth) = (
            TransferRun::threads(&med.client),
            TransferRun::threads(&med.server),
        );
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
                others.map_or("n/a".into(), |o| format!(
                    "{o:.2} CPU-s ({:.2} cores)",
                    o / med.secs
                ))
            ),
        );
        let max_of = |side: fn(&TransferRun) -> &Vec<(String, f64)>, k: &str| {
            runs_of
                .iter()
                .filter_map(|t| lookup(side(t), k))
                .fold(0.0f64, f64::max)
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
    let pct = |x: f64, of: Option<f64>| of.map(|o| 100.0 * x / o);
    let show = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{a:.0}% / {b:.0}%"),
        _ => "n/a (run the ceiling section too)".to_string(),
    };
    let (up, down) = (rates[0], rates[1]);
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
            format!("record::Sealer::seal on one core: {} MB/s", thousands(c))
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
    Ok(())
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

// ---------------------------------------------------------------------------

fn run(opts: &Opts) -> BenchResult<Report> {
    let mut r = Report::default();
    let started = Instant::now();
    eprintln!(
        "ovtp benchmarks ({} mode) on {}",
        if opts.quick { "quick" } else { "full" },
        machine()
    );
    let load = load_average().unwrap_or(0.0);
    r.value("machine.load_start", load);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    if load > 0.25 * cores {
        eprintln!("  WARNING: load average {load:.2} at start: other work will skew the figures");
    }
    if opts.wants("ceiling") {
        bench_ceiling(opts, &mut r)?;
    }
    let needs_keys = ["messages", "connect", "memory", "files"]
        .iter()
        .any(|s| opts.wants(s));
    let mut keysets = Vec::new();
    if needs_keys {
        for bits in KEY_BITS {
            if bits == KEY_BITS[0] || opts.wants("connect") {
                keysets.push(KeySet::generate(bits)?);
            }
        }
    }
    if opts.wants("messages") {
        // Key size does not matter once the session is up.
        bench_messages(opts, &keysets[0], &mut r)?;
        bench_batch(opts, &keysets[0], &mut r)?;
    }
    if opts.wants("connect") {
        for ks in &keysets {
            bench_connect(opts, ks, &mut r)?;
        }
    }
    if opts.wants("memory") {
        bench_memory(opts, &keysets[0], &mut r)?;
    }
    if opts.wants("files") {
        bench_files(opts, &keysets[0], &mut r)?;
    }
    eprintln!("  (done in {:.1} s)", started.elapsed().as_secs_f64());
    r.value("machine.load_end", load_average().unwrap_or(0.0));
    Ok(r)
}

fn main() {
    if let Ok(role) = std::env::var(CHILD_ROLE) {
        let res = match role.as_str() {
            "server" => child_server(),
            "client" => child_client(),
            other => Err(format!("unknown {CHILD_ROLE} {other:?}")),
        };
        if let Err(e) = res {
            eprintln!("bench child: {e}");
            std::process::exit(1);
        }
        return;
    }
    let opts = Opts::from_env();
    match run(&opts) {
        Ok(report) => {
            println!();
            println!("ovtp benchmarks, {}", machine());
            println!(
                "mode: {}{}",
                if opts.quick {
                    "quick (OVTP_BENCH_QUICK=1; noisy)"
                } else {
                    "full"
                },
                opts.only
                    .as_ref()
                    .map(|s| format!(
                        ", sections: {}",
                        s.iter().cloned().collect::<Vec<_>>().join(",")
                    ))
                    .unwrap_or_default()
            );
            println!(
                "1-minute load average: {:.2} at start, {:.2} at end (other work on the machine skews the figures)",
                report.get("machine.load_start").unwrap_or(0.0),
                report.get("machine.load_end").unwrap_or(0.0)
            );
            println!();
            report.print();
            if let Some(path) = &opts.tsv
                && let Err(e) = report.write_tsv(path)
            {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
