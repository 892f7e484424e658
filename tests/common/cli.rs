//! The harness of the end-to-end tests of the `ovtp` binary (`tests/cli.rs`,
//! `tests/trees.rs`): temporary homes, servers on 127.0.0.1:0, every wait
//! bounded, every child killed at the end.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ovtp");
/// Longest any single command may take before the test fails.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// A fresh ovtp home under the system temp dir, removed on drop.
pub struct Home(pub PathBuf);

impl Home {
    pub fn new(tag: &str) -> Home {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ovtp-cli-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut builder = std::fs::DirBuilder::new();
        // 0755 whatever the umask: `serve --dir` refuses a group-writable directory.
        std::os::unix::fs::DirBuilderExt::mode(builder.recursive(true), 0o755);
        builder.create(&dir).unwrap();
        Home(dir)
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    pub fn s(&self, name: &str) -> String {
        self.join(name).display().to_string()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills and reaps a child process when dropped.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Collect a pipe's output on a thread.
pub fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut pipe = pipe;
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut chunk) {
            b.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

/// Read a pipe to its end on a thread; the whole output arrives at end of file.
pub fn read_all(mut pipe: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(bytes);
    });
    rx
}

/// Run `ovtp ARGS` with `home` as OVTP_HOME and `input` on stdin; bounded in time.
pub fn ovtp(home: &Home, args: &[&str], input: &[u8]) -> Out {
    let mut command = Command::new(BIN);
    command.args(args);
    run(command, home, &format!("ovtp {args:?}"), input)
}

/// Run a command with `home` as OVTP_HOME and `input` on stdin; bounded in time.
pub fn run(mut command: Command, home: &Home, what: &str, input: &[u8]) -> Out {
    let mut child = command
        .env("OVTP_HOME", &home.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    std::thread::spawn(move || stdin.write_all(&input));
    let (out, err) =
        (read_all(child.stdout.take().unwrap()), read_all(child.stderr.take().unwrap()));
    let mut child = Kill(child);
    let until = Instant::now() + COMMAND_LIMIT;
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "{what} did not finish");
        std::thread::sleep(Duration::from_millis(5));
    };
    // Wait for each pipe's end of file (the pipes close with the process),
    // not for a guessed moment: the reader threads may run late.
    let text = |pipe: std::sync::mpsc::Receiver<Vec<u8>>| {
        let left = until.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
        let bytes = pipe.recv_timeout(left).unwrap_or_else(|_| panic!("{what}: output not closed"));
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Out { code: status.code().unwrap_or(-1), stdout: text(out), stderr: text(err) }
}

pub fn ok(home: &Home, args: &[&str]) -> Out {
    let out = ovtp(home, args, b"");
    assert_eq!(out.code, 0, "ovtp {args:?}: {}", out.stderr);
    out
}

/// A running `ovtp serve`, its output lines collected; killed on drop.
pub struct Server {
    pub child: Kill,
    pub stdin: Option<ChildStdin>,
    pub addr: String,
    pub fingerprint: String,
    pub stdout: Arc<Mutex<Vec<u8>>>,
    pub stderr: Arc<Mutex<Vec<u8>>>,
}

impl Server {
    pub fn start(home: &Home, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--stdin-close-stops"])
            .args(extra)
            .env("OVTP_HOME", &home.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let mut server = Server {
            child: Kill(child),
            stdin,
            addr: String::new(),
            fingerprint: String::new(),
            stdout,
            stderr,
        };
        let line = server.wait_line(false, "listening on ");
        let rest = line.split("listening on ").nth(1).unwrap();
        let (addr, fp) = rest.split_once(", server key ").unwrap();
        server.addr = addr.to_string();
        server.fingerprint = fp.trim().to_string();
        assert!(server.addr.starts_with("127.0.0.1:"), "{line}");
        server
    }

    /// Wait (bounded) for a line of the server's stdout or stderr containing `needle`.
    pub fn wait_line(&self, stdout: bool, needle: &str) -> String {
        let until = Instant::now() + COMMAND_LIMIT;
        loop {
            let buf = if stdout { &self.stdout } else { &self.stderr };
            let text = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
            if let Some(line) = BufReader::new(text.as_bytes())
                .lines()
                .map_while(Result::ok)
                .find(|l| l.contains(needle))
            {
                return line;
            }
            assert!(Instant::now() < until, "no line with {needle:?} in:\n{text}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A client home and a server home, the client authorized; both keys 2048-bit for speed.
pub fn pair(tag: &str) -> (Home, Home) {
    let (server, client) = (Home::new(&format!("{tag}-s")), Home::new(&format!("{tag}-c")));
    ok(&server, &["keygen", "--bits", "2048"]);
    ok(&client, &["keygen", "--bits", "2048"]);
    ok(&server, &["authorize", &client.s("id_rsa.pub")]);
    (server, client)
}

/// `len` bytes of a reproducible pseudo-random pattern.
pub fn content(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A client, and a server with a files directory (its home's `files`).
pub fn file_pair(tag: &str) -> (Home, Home, Server) {
    let (server_home, client) = pair(tag);
    let dir = server_home.s("files");
    let server = Server::start(&server_home, &["--dir", &dir]);
    assert_eq!(ok(&client, &["send", &server.addr, "hi", "--accept-new"]).stdout, "ok");
    (server_home, client, server)
}
