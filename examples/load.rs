//! A bounded load and admission-control test, run as
//! `cargo run --release --example load` (under a minute on 2 cores).
//!
//! The server runs in a child process (this program with `--server`), so that
//! its thread count and memory (`/proc/<pid>/status`: Threads, VmRSS, VmHWM)
//! are its own; they are sampled every 5 ms.
//!
//! 1. Load: 64 concurrent clients on 127.0.0.1 (the default connection cap),
//!    each sending 300 messages and 3 files. Afterwards every message must
//!    have been handled exactly once (the server counts by unique content and
//!    reports a digest of the set), every file must be intact by SHA-256, the
//!    server's threads must never exceed two per connection slot plus a small
//!    constant (a connection's helper thread streams file data), and
//!    its peak memory must stay under a stated bound.
//! 2. Admission control: an attacker holds silent sockets open (re-opening
//!    each one as soon as it is closed) and floods handshakes with an unknown
//!    key, while an authorized client tries to connect and send one message.
//!    "before": `max_unauthenticated = max_connections`, no failure budget;
//!    "after": the defaults. Everything runs on 127.0.0.1 (tests bind no other
//!    address), so the attacker shares the client's address: the harder case,
//!    where no per-address rule can tell them apart.
//!
//! Exits non-zero if a check fails.

use ovtp::Event;
use ovtp::{
    AuthorizedKeys, Client, ClientConfig, FailureBudget, HostTrust, KeyPair, Payload, Reply,
    Request, Rng, Server, ServerConfig, TransferOptions,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 64;
const MESSAGES: usize = 300;
const FILE_SIZES: [usize; 3] = [8 << 10, 200 << 10, 1536 << 10];
const CLIENT_KEYS: usize = 8;
/// Threads of the server process besides connection threads: main (accept
/// loop), the stdin watcher, and one spare for a connection being refused.
const THREAD_SLACK: usize = 3;
/// Threads one connection may use at once: its own, plus one helper while it
/// streams a file (reading or writing beside the crypto) or finishes a
/// handshake (its two private-key operations run side by side).
const THREADS_PER_CONNECTION: usize = 2;
/// Peak memory allowed for the server process under this load: per connection
/// a 256 KiB read buffer, one record frame (about 1 MiB) and one 1 MiB file
/// buffer, so 64 x 2.3 MiB, plus the 32 MiB reply cache and the process itself.
const MEMORY_BOUND_MIB: u64 = 256;
/// How long the authorized client may take to be served while under attack, "after".
const ADMISSION_BOUND: Duration = Duration::from_secs(2);
/// How long it is given at most, in any mode.
const ADMISSION_GIVE_UP: Duration = Duration::from_secs(12);

type Failures = Mutex<Vec<String>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--server") {
        serve(Path::new(&args[2]), &args[3]);
        return;
    }
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("ovtp-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("files")).unwrap();
    let server_keys = KeyPair::generate(2048).unwrap();
    server_keys.save(dir.join("server.pem"), false).unwrap();
    let authorized = AuthorizedKeys::new(dir.join("authorized_keys"));
    let keys: Vec<KeyPair> = (0..CLIENT_KEYS)
        .map(|i| {
            let k = KeyPair::generate(2048).unwrap();
            authorized.add(k.public(), &format!("load-{i}")).unwrap();
            k
        })
        .collect();
    let pin = HostTrust::Fingerprint(server_keys.fingerprint());
    let failures: Failures = Mutex::default();

    load(&dir, &keys, &pin, &failures);
    println!();
    println!("admission control: an attacker holds silent sockets and floods handshakes");
    println!("with an unknown key; an authorized client connects and sends one message");
    for mode in ["before", "after"] {
        admission(&dir, mode, &keys[0], &pin, &failures);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let failures = failures.into_inner().unwrap();
    println!();
    println!("total {:.1?}", started.elapsed());
    if failures.is_empty() {
        println!("all checks passed");
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        std::process::exit(1);
    }
}

// ------------------------------------------------------------- the server

/// The server process: serves until its standard input closes, then prints a
/// summary line of what the handler saw.
fn serve(dir: &Path, mode: &str) {
    let keys = KeyPair::load(dir.join("server.pem")).unwrap();
    let counts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let events: Arc<[AtomicU64; 4]> = Arc::default();
    let ev = events.clone();
    let mut config = ServerConfig {
        files_dir: Some(dir.join("files")),
        events: Some(Arc::new(move |e: &Event<'_>| {
            let i = match e {
                Event::Connected { .. } => 0,
                Event::HandshakeFailed { .. } => 1,
                Event::Busy { .. } => 2,
                Event::Disconnected { error: Some(_), .. } => 3,
                _ => return,
            };
            ev[i].fetch_add(1, Ordering::Relaxed);
        })),
        ..ServerConfig::default()
    };
    if mode == "before" {
        config.max_unauthenticated = config.max_connections;
        config.failure_budget = FailureBudget { burst: 0, window: config.failure_budget.window };
    }
    let seen = counts.clone();
    let server = Server::bind_with(
        "127.0.0.1:0",
        keys.clone(),
        AuthorizedKeys::new(dir.join("authorized_keys")),
        config,
        ovtp::ServeFiles(move |req: Request<'_>| match req.payload {
            Payload::Text(t) => {
                let len = t.len();
                *seen.lock().unwrap().entry(t).or_insert(0) += 1;
                Reply::ok(format!("ack {len}"))
            }
            _ => Reply::ok(""),
        }),
    )
    .unwrap();
    println!("listening {}", server.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    let stopper = server.stopper().unwrap();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        stopper.stop();
    });
    server.run().unwrap();
    let counts = counts.lock().unwrap();
    let handled: u64 = counts.values().map(|&n| u64::from(n)).sum();
    let max = counts.values().copied().max().unwrap_or(0);
    let [connected, failed, busy, errors] = events.each_ref().map(|a| a.load(Ordering::Relaxed));
    println!(
        "handled {handled} unique {} max {max} digest {} connected {connected} failed {failed} \
         busy {busy} errors {errors} private_ops {}",
        counts.len(),
        set_digest(counts.keys()),
        keys.private_operations()
    );
}

/// An order-independent digest of a set of strings: XOR of their SHA-256.
fn set_digest<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let mut acc = [0u8; 32];
    for s in items {
        for (a, b) in acc.iter_mut().zip(Sha256::digest(s.as_bytes())) {
            *a ^= b;
        }
    }
    acc.iter().map(|b| format!("{b:02x}")).collect()
}

/// The server child, its address, and the peak figures sampled from /proc.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    peak_threads: Arc<AtomicUsize>,
    peak_rss_kib: Arc<AtomicU64>,
    monitor: Option<std::thread::JoinHandle<()>>,
}

fn status_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
}

impl ServerProcess {
    fn start(dir: &Path, mode: &str) -> ServerProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--server")
            .arg(dir)
            .arg(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening ").unwrap().parse().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let peak_threads = Arc::new(AtomicUsize::new(0));
        let peak_rss_kib = Arc::new(AtomicU64::new(0));
        let status = PathBuf::from(format!("/proc/{}/status", child.id()));
        let (s, t, r) = (stop.clone(), peak_threads.clone(), peak_rss_kib.clone());
        let monitor = std::thread::spawn(move || {
            // Bounded: stops when asked or after five minutes.
            let until = Instant::now() + Duration::from_secs(300);
            while !s.load(Ordering::Relaxed) && Instant::now() < until {
                if let Ok(text) = std::fs::read_to_string(&status) {
                    if let Some(n) = status_field(&text, "Threads:") {
                        t.fetch_max(n as usize, Ordering::Relaxed);
                    }
                    if let Some(kib) = status_field(&text, "VmRSS:") {
                        r.fetch_max(kib, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        ServerProcess { child, addr, stop, peak_threads, peak_rss_kib, monitor: Some(monitor) }
    }

    /// VmHWM (peak resident memory, KiB) as the kernel reports it now.
    fn hwm_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|t| status_field(&t, "VmHWM:"))
            .unwrap_or(0)
    }

    /// Close its standard input and read its summary as `name -> value`.
    fn finish(mut self) -> HashMap<String, String> {
        drop(self.child.stdin.take());
        let mut out = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        self.child.wait().unwrap();
        self.stop.store(true, Ordering::Relaxed);
        self.monitor.take().unwrap().join().unwrap();
        let words: Vec<&str> = out.split_whitespace().collect();
        words
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].to_string(), c[1].to_string()))
            .collect()
    }
}

// ------------------------------------------------------------- 1. load

fn file_content(client: usize, file: usize, len: usize) -> Vec<u8> {
    let mut rng =
        Rng::from_seed([client as u8, file as u8, 7, 7, 7, 7, 7, 7].repeat(4).try_into().unwrap());
    let mut out = vec![0u8; len];
    rng.fill(&mut out).unwrap();
    out
}

fn load(dir: &Path, keys: &[KeyPair], pin: &HostTrust, failures: &Failures) {
    let local = dir.join("local");
    std::fs::create_dir_all(&local).unwrap();
    let mut expected: Vec<(PathBuf, [u8; 32])> = Vec::new();
    for c in 0..CLIENTS {
        for (f, &len) in FILE_SIZES.iter().enumerate() {
            let bytes = file_content(c, f, len);
            let path = local.join(format!("c{c}-f{f}"));
            std::fs::write(&path, &bytes).unwrap();
            expected.push((PathBuf::from(format!("c{c}/f{f}.bin")), Sha256::digest(&bytes).into()));
        }
    }
    let server = ServerProcess::start(dir, "load");
    let addr = server.addr.to_string();
    let tag: u64 = u64::from_be_bytes(Rng::system().array().unwrap());
    let retried = AtomicU64::new(0);
    let retried = &retried;
    let started = Instant::now();
    let sent: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (addr, local, key) = (&addr, &local, keys[c % keys.len()].clone());
                s.spawn(move || -> Result<Vec<String>, String> {
                    // The connection burst can overflow the stranger pool (see the
                    // printed figures): a handshake cut or refused before
                    // authentication is retried, and counted.
                    let mut attempt = 0;
                    let mut client = loop {
                        let config = ClientConfig::default();
                        match Client::connect_with(addr, key.clone(), pin.clone(), config) {
                            Ok(client) => break client,
                            Err(
                                ovtp::Error::Closed(_)
                                | ovtp::Error::Io(_)
                                | ovtp::Error::Refused { .. },
                            ) if attempt < 20 => {
                                attempt += 1;
                                retried.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(20 * attempt));
                            }
                            Err(e) => return Err(format!("client {c}: connect: {e}")),
                        }
                    };
                    let mut sent = Vec::with_capacity(MESSAGES);
                    for m in 0..MESSAGES {
                        let text = format!("load {tag:016x} client {c} message {m}");
                        let reply = client
                            .send_message(&text)
                            .map_err(|e| format!("client {c} message {m}: {e}"))?;
                        if reply.text() != format!("ack {}", text.len()) {
                            return Err(format!(
                                "client {c} message {m}: reply {:?}",
                                reply.text()
                            ));
                        }
                        sent.push(text);
                        if m % 100 == 50 {
                            let f = m / 100;
                            let report = client
                                .send_file_with(
                                    local.join(format!("c{c}-f{f}")),
                                    &format!("c{c}/f{f}.bin"),
                                    TransferOptions { resume: false, ..TransferOptions::default() },
                                )
                                .map_err(|e| format!("client {c} file {f}: {e}"))?;
                            if report.size != FILE_SIZES[f] as u64 {
                                return Err(format!("client {c} file {f}: size {}", report.size));
                            }
                        }
                    }
                    Ok(sent)
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join().unwrap() {
                Ok(v) => Some(v),
                Err(e) => {
                    failures.lock().unwrap().push(e);
                    None
                }
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let hwm = server.hwm_kib();
    let (threads, rss) =
        (server.peak_threads.load(Ordering::Relaxed), server.peak_rss_kib.load(Ordering::Relaxed));
    let summary = server.finish();

    let all: Vec<String> = sent.into_iter().flatten().collect();
    let total = CLIENTS * MESSAGES;
    let files_intact = expected
        .iter()
        .filter(|(name, digest)| {
            std::fs::read(dir.join("files").join(name))
                .map(|b| <[u8; 32]>::from(Sha256::digest(&b)) == *digest)
                .unwrap_or(false)
        })
        .count();
    let bytes: usize = FILE_SIZES.iter().sum::<usize>() * CLIENTS;
    println!(
        "load: {CLIENTS} clients x ({MESSAGES} messages + {} files) in {elapsed:.1?}",
        FILE_SIZES.len()
    );
    println!(
        "  messages: {} sent and acknowledged, {} handled by the server, {} unique, at most {} per content ({:.0} messages/s)",
        all.len(),
        summary["handled"],
        summary["unique"],
        summary["max"],
        all.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  connection burst: {} handshakes cut or refused before authentication, then retried \
         (stranger pool of {} for {CLIENTS} simultaneous connects)",
        retried.load(Ordering::Relaxed),
        ovtp::constants::DEFAULT_MAX_UNAUTHENTICATED
    );
    println!(
        "  files: {files_intact} of {} intact by SHA-256 ({:.1} MiB)",
        expected.len(),
        bytes as f64 / (1 << 20) as f64
    );
    println!(
        "  server process: peak {threads} threads (bound {THREADS_PER_CONNECTION} x cap {} + {THREAD_SLACK}), peak VmRSS {:.1} MiB, VmHWM {:.1} MiB (bound {MEMORY_BOUND_MIB} MiB)",
        ovtp::constants::DEFAULT_MAX_CONNECTIONS,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "  server private-key operations: {} for {} authenticated connections",
        summary["private_ops"], summary["connected"]
    );
    let check = |ok: bool, what: String| {
        if !ok {
            failures.lock().unwrap().push(what);
        }
    };
    check(all.len() == total, format!("{} of {total} messages acknowledged", all.len()));
    check(
        summary["handled"] == total.to_string(),
        format!("handled {} of {total}", summary["handled"]),
    );
    check(
        summary["unique"] == total.to_string(),
        format!("{} unique of {total}", summary["unique"]),
    );
    check(summary["max"] == "1", format!("a message was handled {} times", summary["max"]));
    check(
        summary["digest"] == set_digest(all.iter()),
        "the server handled a different set of messages than was sent".into(),
    );
    check(
        files_intact == expected.len(),
        format!("{files_intact} of {} files intact", expected.len()),
    );
    check(
        threads <= THREADS_PER_CONNECTION * ovtp::constants::DEFAULT_MAX_CONNECTIONS + THREAD_SLACK,
        format!("{threads} server threads"),
    );
    check(hwm <= MEMORY_BOUND_MIB * 1024, format!("server VmHWM {hwm} KiB"));
    check(
        summary["private_ops"] == (2 * summary["connected"].parse::<u64>().unwrap()).to_string(),
        "private-key operations other than two per authenticated connection".into(),
    );
}

// ------------------------------------------------------------- 2. admission control

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
}

/// Whether the server has closed (or answered) a silent socket.
fn closed(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let r = s.peek(&mut [0u8; 1]);
    let _ = s.set_nonblocking(false);
    !matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn admission(dir: &Path, mode: &str, key: &KeyPair, pin: &HostTrust, failures: &Failures) {
    let server = ServerProcess::start(dir, mode);
    let addr = server.addr;
    let stop = AtomicBool::new(false);
    let (reopened, floods) = (AtomicU64::new(0), AtomicU64::new(0));
    let stranger = KeyPair::generate(2048).unwrap();
    let (_, hello) = ovtp::hooks::ClientStart::new(&stranger, &mut Rng::system()).unwrap();
    let outcome = std::thread::scope(|s| {
        // Holders: 64 silent sockets, each re-opened as soon as it is closed.
        s.spawn(|| {
            let mut held: Vec<Option<TcpStream>> =
                (0..ovtp::constants::DEFAULT_MAX_CONNECTIONS).map(|_| None).collect();
            let until = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                for slot in held.iter_mut() {
                    if slot.as_ref().is_none_or(closed) {
                        *slot = connect(addr).ok();
                        reopened.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        // Flooders: handshakes with an unknown key, back to back.
        for _ in 0..2 {
            s.spawn(|| {
                let until = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    if let Ok(mut c) = connect(addr) {
                        let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
                        let _ = c.write_all(&hello);
                        let _ = c.read_to_end(&mut Vec::new());
                        floods.fetch_add(1, Ordering::Relaxed);
                    } else {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            });
        }
        // Let the attack settle, then the authorized client.
        std::thread::sleep(Duration::from_millis(1500));
        let config = ClientConfig {
            retries: 0,
            handshake_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        };
        let started = Instant::now();
        let mut attempts = 0;
        let mut last_error = String::new();
        let served = loop {
            attempts += 1;
            match Client::connect_with(&addr.to_string(), key.clone(), pin.clone(), config.clone())
                .and_then(|mut c| c.send_message("authorized"))
            {
                Ok(_) => break Some(started.elapsed()),
                Err(e) => last_error = e.to_string(),
            }
            if started.elapsed() > ADMISSION_GIVE_UP {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        stop.store(true, Ordering::Relaxed);
        (served, attempts, last_error)
    });
    let summary = server.finish();
    let (served, attempts, last_error) = outcome;
    let who = "attacker on 127.0.0.1, the client's own address";
    let result = match served {
        Some(t) => format!("served after {t:.2?} ({attempts} attempts)"),
        None => format!(
            "NOT served within {ADMISSION_GIVE_UP:?} ({attempts} attempts; last: {last_error})"
        ),
    };
    println!("  {mode:6} {who}: {result}");
    println!(
        "         attack: {} silent sockets opened, {} unknown-key handshakes; server: {} handshakes failed, {} refused busy, {} private-key operations for {} authenticated connections",
        reopened.load(Ordering::Relaxed),
        floods.load(Ordering::Relaxed),
        summary["failed"],
        summary["busy"],
        summary["private_ops"],
        summary["connected"],
    );
    if summary["private_ops"] != (2 * summary["connected"].parse::<u64>().unwrap()).to_string() {
        failures
            .lock()
            .unwrap()
            .push(format!("{mode}/{who}: strangers caused private-key operations"));
    }
    if mode == "after" && served.is_none_or(|t| t > ADMISSION_BOUND) {
        failures.lock().unwrap().push(format!(
            "after, {who}: the authorized client was not served within {ADMISSION_BOUND:?}: {result}"
        ));
    }
}
