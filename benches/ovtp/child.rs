//! Child processes: this binary re-executed as a server or a client (so that
//! each side's peak memory is its own), a watchdog that kills overdue
//! children, and the child side of both roles.

use crate::harness::{
    BenchResult, Budget, ThreadMonitor, err, peak_memory_kib, process_cpu, temp_dir,
};
use crate::servers::{KeySet, client_config, echo, server_config};
use crate::tempdir::TempDir;
use crate::{files, memory};
use ovtp::{AuthorizedKeys, Client, HostTrust, KeyPair, Server, ServerConfig};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Kills a child process if it is still running at `deadline`.
pub struct Watchdog {
    child: Arc<Mutex<Child>>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub fn new(child: Child, deadline: Instant) -> Watchdog {
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
        Watchdog { child, done, thread: Some(thread) }
    }

    /// Wait up to `grace` for the child to exit by itself, then kill it.
    pub fn finish(mut self, grace: Duration) {
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
pub const CHILD_ROLE: &str = "OVTP_BENCH_CHILD";
pub const CHILD_DIR: &str = "OVTP_BENCH_CHILD_DIR";
pub const CHILD_ADDR: &str = "OVTP_BENCH_CHILD_ADDR";
pub const CHILD_JOB: &str = "OVTP_BENCH_CHILD_JOB";
pub const CHILD_SECS: &str = "OVTP_BENCH_CHILD_SECS";
pub const CHILD_MAX: &str = "OVTP_BENCH_CHILD_MAX";
/// Server: its files directory. Client: the local file of an upload or download.
pub const CHILD_FILES: &str = "OVTP_BENCH_CHILD_FILES";
pub const CHILD_LOCAL: &str = "OVTP_BENCH_CHILD_LOCAL";
/// Client: the remote name of an upload or download.
pub const CHILD_REMOTE: &str = "OVTP_BENCH_CHILD_REMOTE";

/// This binary re-executed in a child role, so that its peak memory is its
/// own. It reports on stdout as `key value` lines; a watchdog kills it at its
/// deadline.
pub struct ChildProc {
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    watchdog: Option<Watchdog>,
}

impl ChildProc {
    pub fn spawn(role: &str, env: &[(&str, String)], limit: Duration) -> BenchResult<ChildProc> {
        let exe = std::env::current_exe().map_err(err("current_exe"))?;
        let mut cmd = Command::new(exe);
        cmd.env(CHILD_ROLE, role).stdin(Stdio::piped()).stdout(Stdio::piped());
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
    pub fn read_line(&mut self) -> BenchResult<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(err("reading from a child process"))?;
        Ok(line.trim().to_string())
    }

    /// Close its stdin, wait up to `grace` for it to exit, and return its
    /// remaining `key value` output.
    pub fn finish(mut self, grace: Duration) -> Vec<(String, f64)> {
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

pub fn lookup(values: &[(String, f64)], key: &str) -> Option<f64> {
    values.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// An echo server in a child process; it serves until its stdin closes, then
/// reports `vmhwm_kib`. Clients in child processes (`run_client`) use the keys
/// left in its directory.
pub struct ServerProcess {
    addr: SocketAddr,
    proc: ChildProc,
    dir: TempDir,
}

impl ServerProcess {
    /// Start it; it is killed if still running after `limit`.
    pub fn start(keys: &KeySet, limit: Duration) -> BenchResult<ServerProcess> {
        Self::start_with(keys, limit, None)
    }

    /// Start it with `files` as its files directory (uploads and downloads).
    pub fn start_with(
        keys: &KeySet,
        limit: Duration,
        files: Option<&Path>,
    ) -> BenchResult<ServerProcess> {
        let dir = temp_dir("child")?;
        keys.server.save(dir.join("server.key"), true).map_err(err("saving the server key"))?;
        keys.server
            .public()
            .save(dir.join("server.pub"))
            .map_err(err("saving the server public key"))?;
        keys.client.save(dir.join("client.key"), true).map_err(err("saving the client key"))?;
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
        let addr: SocketAddr = line.parse().map_err(|_| format!("server process said {line:?}"))?;
        Ok(ServerProcess { addr, proc, dir })
    }

    /// Run `job` in a client child process against this server; returns what
    /// it reported (always including `vmhwm_kib`).
    pub fn run_client(&self, job: &str, b: Budget) -> BenchResult<Vec<(String, f64)>> {
        self.run_client_with(job, b, &[])
    }

    /// `run_client` with more environment for the job.
    pub fn run_client_with(
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
    pub fn finish(self) -> Option<u64> {
        lookup(&self.finish_report(), "vmhwm_kib").map(|v| v as u64)
    }

    /// Stop it; returns everything it reported (`vmhwm_kib`, `cpu_s`,
    /// `thread0_s`.. for its busiest threads).
    pub fn finish_report(self) -> Vec<(String, f64)> {
        self.proc.finish(Duration::from_secs(40))
    }
}

/// Run this process in the child role `role` (the value of [`CHILD_ROLE`]).
pub fn run_role(role: &str) -> BenchResult<()> {
    match role {
        "server" => child_server(),
        "client" => child_client(),
        other => Err(format!("unknown {CHILD_ROLE} {other:?}")),
    }
}

pub fn child_env(key: &str) -> BenchResult<String> {
    std::env::var(key).map_err(err("child environment"))
}

/// The server side of [`ServerProcess`].
fn child_server() -> BenchResult<()> {
    let dir = PathBuf::from(child_env(CHILD_DIR)?);
    let keys = KeyPair::load(dir.join("server.key")).map_err(err("server key"))?;
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
pub fn print_cpu(cpu0: Option<Duration>, threads: Vec<Duration>) {
    if let Some(c) = process_cpu().zip(cpu0).map(|(a, b)| a.saturating_sub(b)) {
        println!("cpu_s {}", c.as_secs_f64());
    }
    for (i, t) in threads.iter().take(4).enumerate() {
        println!("thread{i}_s {}", t.as_secs_f64());
    }
}

/// The client side of [`ServerProcess::run_client`]: one job, then `vmhwm_kib`.
fn child_client() -> BenchResult<()> {
    let dir = PathBuf::from(child_env(CHILD_DIR)?);
    let keys = KeyPair::load(dir.join("client.key")).map_err(err("client key"))?;
    let server = ovtp::PublicKey::load(dir.join("server.pub")).map_err(err("server key"))?;
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
        "echo1m" => memory::echo_job(&mut client, b)?,
        // One file transfer, timed from the request to the verified end.
        job @ ("upload" | "download") => files::transfer_job(&mut client, job)?,
        other => return Err(format!("unknown job {other:?}")),
    }
    drop(client);
    println!("vmhwm_kib {}", peak_memory_kib().unwrap_or(0));
    Ok(())
}
