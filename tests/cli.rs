//! End-to-end tests of the `ovtp` binary: temporary homes, servers on
//! 127.0.0.1:0, every wait bounded, every child killed at the end.

mod common;

use ovtp::{KeyPair, PublicKey};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ovtp");
/// Longest any single command may take before the test fails.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// A fresh ovtp home under the system temp dir, removed on drop.
struct Home(PathBuf);

impl Home {
    fn new(tag: &str) -> Home {
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
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn s(&self, name: &str) -> String {
        self.join(name).display().to_string()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills and reaps a child process when dropped.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Collect a pipe's output on a thread.
fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
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
fn read_all(mut pipe: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(bytes);
    });
    rx
}

/// Run `ovtp ARGS` with `home` as OVTP_HOME and `input` on stdin; bounded in time.
fn ovtp(home: &Home, args: &[&str], input: &[u8]) -> Out {
    let mut command = Command::new(BIN);
    command.args(args);
    run(command, home, &format!("ovtp {args:?}"), input)
}

/// Run a command with `home` as OVTP_HOME and `input` on stdin; bounded in time.
fn run(mut command: Command, home: &Home, what: &str, input: &[u8]) -> Out {
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

fn ok(home: &Home, args: &[&str]) -> Out {
    let out = ovtp(home, args, b"");
    assert_eq!(out.code, 0, "ovtp {args:?}: {}", out.stderr);
    out
}

/// A running `ovtp serve`, its output lines collected; killed on drop.
struct Server {
    child: Kill,
    stdin: Option<ChildStdin>,
    addr: String,
    fingerprint: String,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Server {
    fn start(home: &Home, extra: &[&str]) -> Server {
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
    fn wait_line(&self, stdout: bool, needle: &str) -> String {
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
fn pair(tag: &str) -> (Home, Home) {
    let (server, client) = (Home::new(&format!("{tag}-s")), Home::new(&format!("{tag}-c")));
    ok(&server, &["keygen", "--bits", "2048"]);
    ok(&client, &["keygen", "--bits", "2048"]);
    ok(&server, &["authorize", &client.s("id_rsa.pub")]);
    (server, client)
}

#[test]
fn keygen_refuses_to_overwrite_and_fingerprint_matches_the_library() {
    let home = Home::new("keygen");
    let out = ok(&home, &["keygen", "--bits", "2048"]);
    let fp = KeyPair::load(home.join("id_rsa")).unwrap().fingerprint().to_string();
    assert!(out.stdout.contains(&format!("fingerprint: {fp}")), "{}", out.stdout);
    assert!(out.stdout.contains(&home.s("id_rsa.pub")));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.join("id_rsa")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let public = PublicKey::load(home.join("id_rsa.pub")).unwrap().fingerprint().to_string();
    assert_eq!(public, fp);
    assert_eq!(ok(&home, &["fingerprint"]).stdout.trim(), fp);
    assert_eq!(ok(&home, &["fingerprint", &home.s("id_rsa")]).stdout.trim(), fp);

    let again = ovtp(&home, &["keygen", "--bits", "2048"], b"");
    assert_eq!(again.code, 73, "{}", again.stderr);
    assert!(again.stderr.contains("already exists") && again.stderr.contains("--force"));
    assert_eq!(ok(&home, &["fingerprint"]).stdout.trim(), fp, "the key was kept");
    ok(&home, &["keygen", "--bits", "2048", "--force"]);
    assert_ne!(ok(&home, &["fingerprint"]).stdout.trim(), fp, "--force replaced it");

    let missing = ovtp(&home, &["fingerprint", &home.s("nope.pub")], b"");
    assert_eq!(missing.code, 74);
}

#[test]
fn send_text_data_and_stdin_with_host_key_pinning() {
    let (server_home, client) = pair("send");
    let server = Server::start(&server_home, &[]);
    let addr = &server.addr.clone();

    // Unknown server: refused with the exact command to accept it.
    let out = ovtp(&client, &["send", addr, "hello"], b"");
    assert_eq!(out.code, 65, "{}", out.stderr);
    let command = format!("ovtp trust {addr} {}", server.fingerprint);
    assert!(out.stderr.contains(&command), "{}", out.stderr);
    assert!(out.stderr.contains("--accept-new"));

    // Accepted once with --accept-new, then strict mode works.
    let out = ok(&client, &["send", addr, "hello", "--accept-new"]);
    assert_eq!(out.stdout, "ok");
    server.wait_line(true, "hello");
    let known = std::fs::read_to_string(client.join("known_hosts")).unwrap();
    assert!(known.contains(&format!("{addr} {}", server.fingerprint)));
    assert_eq!(ok(&client, &["send", addr, "strict\u{1b}[2J"]).stdout, "ok");
    server.wait_line(true, "strict\\u{1b}[2J");
    server.wait_line(false, "request text");

    // From standard input, as text and as data.
    let out = ovtp(&client, &["send", addr, "-"], b"from stdin\n");
    assert_eq!((out.code, out.stdout.as_str()), (0, "ok"), "{}", out.stderr);
    server.wait_line(true, "from stdin\\n");
    let out = ovtp(&client, &["send", addr, "--data"], &[0, 1, 2, 0xff]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    server.wait_line(true, "<4 bytes>");
    let out = ovtp(&client, &["send", addr], &[0xff, 0xfe]);
    assert_eq!(out.code, 64, "not UTF-8 without --data");
    assert!(out.stderr.contains("--data"));

    // Pinning a fingerprint on the command line.
    let pin = ["send", addr, "x", "--fingerprint", &server.fingerprint];
    ok(&client, &pin);
    let other = KeyPair::load(client.join("id_rsa")).unwrap().fingerprint().to_string();
    let out = ovtp(&client, &["send", addr, "x", "--fingerprint", &other], b"");
    assert_eq!(out.code, 65, "{}", out.stderr);

    // A changed server key recorded in known_hosts is refused.
    std::fs::write(client.join("known_hosts"), format!("{addr} {other}\n")).unwrap();
    let out = ovtp(&client, &["send", addr, "x", "--accept-new"], b"");
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains(&other) && out.stderr.contains(&server.fingerprint));

    // Nothing listening: a network error.
    drop(server);
    let out = ovtp(&client, &["send", addr, "x", "--accept-new"], b"");
    assert_eq!(out.code, 69, "{}", out.stderr);
}

fn exec_server(home: &Home, cmd: &str) -> Server {
    Server::start(home, &["--exec", cmd, "--exec-timeout", "1", "-v"])
}

#[test]
fn exec_answers_with_the_programs_status_and_output() {
    let (server_home, client) = pair("exec");
    let cat = exec_server(&server_home, "cat");
    let out = ok(&client, &["send", &cat.addr, "echo me\n", "--accept-new"]);
    assert_eq!(out.stdout, "echo me\n");
    drop(cat);

    let script = r#"read m; case "$m" in
        fail) echo failing; exit 3;;
        hang) sleep 10;;
        *) printf '%s %s' "$m" "$OVTP_CLIENT_FINGERPRINT";;
    esac"#;
    let server = exec_server(&server_home, script);
    let addr = server.addr.as_str();
    let fp = ok(&client, &["fingerprint"]).stdout.trim().to_string();
    let out = ok(&client, &["send", addr, "hi", "--accept-new"]);
    assert_eq!(out.stdout, format!("hi {fp}"));

    let out = ovtp(&client, &["send", addr, "fail"], b"");
    assert_eq!((out.code, out.stdout.as_str()), (3, "failing\n"));
    assert!(out.stderr.contains("status 3"), "{}", out.stderr);

    let started = Instant::now();
    let out = ovtp(&client, &["send", addr, "hang"], b"");
    assert_eq!((out.code, out.stdout.as_str()), (1, "timed out"));
    assert!(started.elapsed() < Duration::from_secs(5), "killed after --exec-timeout");
    server.wait_line(false, "did not finish within 1 s");
    // The server still serves.
    assert_eq!(ok(&client, &["send", addr, "again"]).stdout, format!("again {fp}"));
    drop(server);

    // --exec is for messages: files are accepted without running the program.
    let dir = server_home.s("files");
    let server = Server::start(&server_home, &["--exec", "exit 5", "--dir", &dir]);
    std::fs::write(client.join("f"), b"file").unwrap();
    let out = ovtp(&client, &["put", &server.addr, &client.s("f"), "--accept-new"], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read(server_home.join("files/f")).unwrap(), b"file");
    assert_eq!(ovtp(&client, &["send", &server.addr, "m"], b"").code, 5);
}

#[test]
fn authorize_and_deauthorize_take_effect_without_restart() {
    let (server_home, client) = pair("auth");
    let stranger = Home::new("auth-x");
    ok(&stranger, &["keygen", "--bits", "2048"]);
    let keydir = Home::new("auth-dir");
    std::fs::copy(stranger.join("id_rsa.pub"), keydir.join("stranger.pub")).unwrap();
    std::fs::copy(client.join("id_rsa.pub"), keydir.join("client.pub")).unwrap();
    std::fs::write(keydir.join("notes.txt"), "skipped").unwrap();

    let server = Server::start(&server_home, &[]);
    let addr = server.addr.as_str();
    let out = ovtp(&stranger, &["send", addr, "x", "--accept-new"], b"");
    assert_eq!(out.code, 66, "unauthorized client: {}", out.stderr);
    server.wait_line(false, "not in authorized_keys");

    let sfp = ok(&stranger, &["fingerprint"]).stdout.trim().to_string();
    let out = ok(&server_home, &["authorize", &keydir.0.display().to_string()]);
    assert!(out.stdout.contains(&format!("added {sfp}")), "{}", out.stdout);
    assert!(out.stdout.contains("already present"), "{}", out.stdout);
    let out = ovtp(&server_home, &["authorize", &stranger.s("id_rsa")], b"");
    assert_eq!(out.code, 74, "a private key is refused: {}", out.stderr);

    assert_eq!(ok(&stranger, &["send", addr, "in", "--accept-new"]).stdout, "ok");
    let out = ok(&server_home, &["deauthorize", &sfp]);
    assert!(out.stdout.contains(&format!("removed {sfp}")));
    let out = ovtp(&stranger, &["send", addr, "out"], b"");
    assert_eq!(out.code, 66, "{}", out.stderr);
    assert_eq!(ovtp(&server_home, &["deauthorize", &sfp], b"").code, 1);
    assert_eq!(ok(&client, &["send", addr, "still", "--accept-new"]).stdout, "ok");

    // serve --add-keys --no-serve only adds.
    let fresh = Home::new("auth-fresh");
    let out = ok(&fresh, &["serve", "--add-keys", &client.s("id_rsa.pub"), "--no-serve"]);
    assert!(out.stdout.starts_with("added SHA256:"), "{}", out.stdout);
    assert!(!fresh.join("id_rsa").exists(), "--no-serve made no server key");
}

#[test]
fn trust_records_and_refuses_a_changed_key() {
    let home = Home::new("trust");
    let fp1 = "SHA256:".to_string() + &"A".repeat(43);
    let fp2 = "SHA256:".to_string() + &"B".repeat(42) + "A";
    let out = ok(&home, &["trust", "Example.org", &fp1]);
    assert!(out.stdout.contains("added example.org:888"), "{}", out.stdout);
    ok(&home, &["trust", "example.org:888", &fp1]);
    let out = ovtp(&home, &["trust", "example.org", &fp2], b"");
    assert_eq!(out.code, 65, "{}", out.stderr);
    for needle in [&fp1, &fp2, &home.s("known_hosts"), &"line 1".to_string()] {
        assert!(out.stderr.contains(needle.as_str()), "{needle} in {}", out.stderr);
    }
    let out = ovtp(&home, &["trust", "example.org", "SHA256:short"], b"");
    assert_eq!(out.code, 64);
}

#[test]
fn stdin_close_stops_the_server_cleanly() {
    let (server_home, client) = pair("stop");
    let mut server = Server::start(&server_home, &["-q"]);
    ok(&client, &["send", &server.addr, "before", "--accept-new"]);
    drop(server.stdin.take());
    let until = Instant::now() + COMMAND_LIMIT;
    let status = loop {
        if let Some(s) = server.child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "the server did not stop");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    let log = String::from_utf8_lossy(&server.stderr.lock().unwrap()).into_owned();
    assert!(!log.contains("request"), "-q logs only errors: {log}");
}

#[test]
fn a_first_serve_generates_the_server_key() {
    let home = Home::new("firstkey");
    let server = Server::start(&home, &[]);
    server.wait_line(false, "generated a new server key");
    let fp = PublicKey::load(home.join("id_rsa.pub")).unwrap().fingerprint();
    assert_eq!(server.fingerprint, fp.to_string());
}

#[test]
fn usage_errors_and_help() {
    let home = Home::new("usage");
    for args in [
        &["send"][..],
        &["frobnicate"],
        &["keygen", "--bits", "1000"],
        &["keygen", "--nope"],
        &["send", "h", "m", "extra"],
        &["serve", "--max-message"],
        &["serve", "--max-unauthenticated", "0"],
        &["put", "h"],
        &["put", "h", "a", "b", "--to", "x", "--to"],
        &["get", "h"],
        &["get", "h", "r", "l", "extra"],
        &["digest", "h"],
        &["digest", "h", "r", "--force"],
        &[],
    ] {
        let out = ovtp(&home, args, b"");
        assert_eq!(out.code, 64, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("--help"), "{args:?}: {}", out.stderr);
    }
    for cmd in [
        "keygen",
        "fingerprint",
        "serve",
        "authorize",
        "deauthorize",
        "send",
        "trust",
        "put",
        "get",
        "digest",
    ] {
        assert!(ok(&home, &[cmd, "--help"]).stdout.starts_with("Usage: ovtp"), "{cmd}");
        assert!(ok(&home, &["help", cmd]).stdout.starts_with("Usage: ovtp"), "{cmd}");
    }
    let main = ok(&home, &["--help"]).stdout;
    assert!(main.contains("Exit codes") && main.contains("65"));
    for code in ["67", "73", "75"] {
        assert!(main.contains(&format!("\n  {code} ")), "{code} in the table");
    }
    assert!(ok(&home, &["--version"]).stdout.starts_with("ovtp "));
    let serve = ok(&home, &["serve", "--help"]).stdout;
    assert!(serve.contains("CAP_NET_BIND_SERVICE") && serve.contains("--stdin-close-stops"));
    assert!(serve.contains("WITHOUT --dir"));
    for cmd in ["put", "get"] {
        assert!(ok(&home, &[cmd, "--help"]).stdout.contains("Resuming is the default"));
    }
}

// ---- File transfer. ----

/// `len` bytes of a reproducible pseudo-random pattern.
fn content(len: usize, seed: u32) -> Vec<u8> {
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

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A client, and a server with a files directory (its home's `files`).
fn file_pair(tag: &str) -> (Home, Home, Server) {
    let (server_home, client) = pair(tag);
    let dir = server_home.s("files");
    let server = Server::start(&server_home, &["--dir", &dir]);
    assert_eq!(ok(&client, &["send", &server.addr, "hi", "--accept-new"]).stdout, "ok");
    (server_home, client, server)
}

#[test]
fn put_get_and_digest_round_trip_a_file() {
    let (server_home, client, server) = file_pair("files");
    let addr = server.addr.as_str();
    let data = content(3 * 1000 * 1000 + 17, 1);
    let sum = sha_hex(&data);
    let local = client.join("upload.bin");
    std::fs::write(&local, &data).unwrap();

    let out = ok(&client, &["put", addr, &client.s("upload.bin")]);
    assert_eq!(out.stdout, format!("upload.bin  {}  {sum}\n", data.len()));
    assert!(!out.stderr.contains('\r'), "no progress into a pipe: {:?}", out.stderr);
    assert_eq!(std::fs::read(server_home.join("files/upload.bin")).unwrap(), data);
    server
        .wait_line(false, &format!("file received upload.bin: {} bytes, sha256 {sum}", data.len()));

    let out = ok(&client, &["digest", addr, "upload.bin"]);
    assert_eq!(out.stdout, format!("{sum}  {}  upload.bin\n", data.len()));

    // Into a directory, under the remote name's last component.
    let out = ok(&client, &["put", addr, &client.s("upload.bin"), "--to", "a/b/c.bin"]);
    assert_eq!(out.stdout, format!("a/b/c.bin  {}  {sum}\n", data.len()));
    let down = Home::new("files-down");
    let out = ok(&client, &["get", addr, "a/b/c.bin", &down.s("")]);
    assert!(!out.stderr.contains('\r'), "{:?}", out.stderr);
    let got = std::fs::read(down.join("c.bin")).unwrap();
    assert!(got == data, "downloaded bytes differ");
    assert_eq!(out.stdout, format!("{}  {}  {sum}\n", down.join("c.bin").display(), data.len()));
    // Nothing but the file: no partial file left behind.
    let names: Vec<_> =
        std::fs::read_dir(&down.0).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["c.bin"]);

    // Several files into a remote directory.
    std::fs::write(client.join("second.txt"), b"second").unwrap();
    let out = ok(
        &client,
        &["put", addr, &client.s("upload.bin"), &client.s("second.txt"), "--to", "many"],
    );
    let second = sha_hex(b"second");
    assert_eq!(
        out.stdout,
        format!("many/upload.bin  {}  {sum}\nmany/second.txt  6  {second}\n", data.len())
    );
}

#[test]
fn existing_files_are_kept_unless_forced() {
    let (server_home, client, server) = file_pair("exists");
    let addr = server.addr.as_str();
    let (old, new) = (content(1000, 2), content(2000, 3));
    std::fs::write(client.join("f.bin"), &old).unwrap();
    ok(&client, &["put", addr, &client.s("f.bin")]);

    // put: the remote file exists.
    std::fs::write(client.join("f.bin"), &new).unwrap();
    let out = ovtp(&client, &["put", addr, &client.s("f.bin")], b"");
    assert_eq!(out.code, 73, "{}", out.stderr);
    assert!(
        out.stderr.contains("exists on the server") && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
    assert_eq!(std::fs::read(server_home.join("files/f.bin")).unwrap(), old);
    let out = ok(&client, &["put", addr, &client.s("f.bin"), "--force"]);
    assert_eq!(out.stdout, format!("f.bin  2000  {}\n", sha_hex(&new)));
    assert_eq!(std::fs::read(server_home.join("files/f.bin")).unwrap(), new);

    // get: the local file exists.
    let target = client.join("local.bin");
    std::fs::write(&target, b"mine").unwrap();
    let out = ovtp(&client, &["get", addr, "f.bin", &client.s("local.bin")], b"");
    assert_eq!(out.code, 73, "{}", out.stderr);
    assert!(out.stderr.contains("exists") && out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(std::fs::read(&target).unwrap(), b"mine");
    ok(&client, &["get", addr, "f.bin", &client.s("local.bin"), "--force"]);
    assert_eq!(std::fs::read(&target).unwrap(), new);

    // A missing remote file: refused by the server, no partial file left here.
    let out = ovtp(&client, &["get", addr, "nope.bin", &client.s("nope.bin")], b"");
    assert_eq!(out.code, 67, "{}", out.stderr);
    assert!(out.stderr.contains("no such file"), "{}", out.stderr);
    assert!(!client.join(".nope.bin.ovtp-part").exists());
    let out = ovtp(&client, &["digest", addr, "nope.bin"], b"");
    assert_eq!(out.code, 67, "{}", out.stderr);
    // A missing local file to put.
    let out = ovtp(&client, &["put", addr, &client.s("absent.bin")], b"");
    assert_eq!(out.code, 74, "{}", out.stderr);
    assert!(out.stderr.contains("absent.bin"), "{}", out.stderr);
}

#[test]
fn names_with_dot_dot_are_refused_before_connecting() {
    let home = Home::new("dotdot");
    std::fs::write(home.join("f"), b"x").unwrap();
    // Port 9 on 127.0.0.1: nothing is contacted, the name is refused first.
    for args in [
        &["put", "127.0.0.1:9", &home.s("f"), "--to", "../f"][..],
        &["put", "127.0.0.1:9", &home.s("f"), "--to", "a/../../f"],
        &["get", "127.0.0.1:9", "../etc/passwd"],
        &["digest", "127.0.0.1:9", "a/../b"],
    ] {
        let out = ovtp(&home, args, b"");
        assert_eq!(out.code, 64, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("bad remote name") && out.stderr.contains("'..'"),
            "{}",
            out.stderr
        );
    }
    let out = ovtp(&home, &["put", "127.0.0.1:9", &home.s("f"), "--to", "/etc/f"], b"");
    assert_eq!(out.code, 64, "{}", out.stderr);
    assert!(out.stderr.contains("absolute"), "{}", out.stderr);
}

#[test]
fn a_server_without_dir_refuses_file_transfers() {
    let (server_home, client) = pair("nodir");
    let server = Server::start(&server_home, &[]);
    let addr = server.addr.as_str();
    std::fs::write(client.join("f"), b"x").unwrap();
    let out = ovtp(&client, &["put", addr, &client.s("f"), "--accept-new"], b"");
    assert_eq!(out.code, 67, "{}", out.stderr);
    assert!(
        out.stderr.contains("does not accept file transfers") && out.stderr.contains("--dir"),
        "{}",
        out.stderr
    );
    for args in [&["get", addr, "f", &client.s("g")][..], &["digest", addr, "f"]] {
        let out = ovtp(&client, args, b"");
        assert_eq!(out.code, 67, "{args:?}: {}", out.stderr);
    }
    assert!(!client.join("g").exists() && !client.join(".g.ovtp-part").exists());
}

fn set_mode_and_mtime(path: &std::path::Path, mode: u32, secs: u64) {
    use std::os::unix::fs::PermissionsExt;
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs)).unwrap();
    f.set_permissions(std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_and_mtime(path: &std::path::Path) -> (u32, u64) {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).unwrap();
    let t = meta.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap();
    (meta.permissions().mode() & 0o7777, t.as_secs())
}

/// 2001-09-09T01:46:40Z.
const Y2001: u64 = 1_000_000_000;

#[test]
fn ls_prints_names_and_long_lines_and_refuses_what_lies_outside() {
    let (server_home, client, server) = file_pair("ls");
    let addr = server.addr.as_str();
    let files = server_home.join("files");
    std::fs::write(files.join("a.txt"), b"hello").unwrap();
    set_mode_and_mtime(&files.join("a.txt"), 0o640, Y2001);
    std::fs::create_dir(files.join("sub dir")).unwrap();
    std::fs::write(files.join("sub dir/x"), b"").unwrap();
    let outside = server_home.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"").unwrap();
    std::os::unix::fs::symlink(&outside, files.join("out")).unwrap();

    assert_eq!(ok(&client, &["ls", addr]).stdout, "a.txt\nout\nsub dir/\n");
    let long = ok(&client, &["ls", "-l", addr]).stdout;
    let lines: Vec<&str> = long.lines().collect();
    assert_eq!(lines.len(), 3, "{long}");
    assert_eq!(lines[0], "f 0640 5 2001-09-09T01:46:40Z a.txt");
    assert!(lines[1].starts_with("l 0777 0 ") && lines[1].ends_with("Z out"), "{long}");
    assert!(lines[2].starts_with("d 0") && lines[2].ends_with("Z sub dir"), "{long}");
    assert_eq!(ok(&client, &["ls", addr, "sub dir/", "--long"]).stdout.matches(" x\n").count(), 1);
    assert_eq!(ok(&client, &["ls", addr, "sub dir"]).stdout, "x\n");

    // Outside: by name (before connecting), through a link, or not there.
    for bad in ["..", "../outside", "/etc"] {
        let out = ovtp(&client, &["ls", addr, bad], b"");
        assert_eq!((out.code, out.stdout.as_str()), (64, ""), "{bad}: {}", out.stderr);
    }
    let out = ovtp(&client, &["ls", addr, "out"], b"");
    assert_eq!((out.code, out.stdout.as_str()), (67, ""), "{}", out.stderr);
    assert!(out.stderr.contains("outside the files directory"), "{}", out.stderr);
    let out = ovtp(&client, &["ls", addr, "missing"], b"");
    assert_eq!(out.code, 67, "{}", out.stderr);
    assert!(out.stderr.contains("no such directory"), "{}", out.stderr);
    server.wait_line(false, "listing of sub dir");
}

#[test]
fn ls_refuses_a_hostile_servers_listing_and_names_the_entry() {
    let client = Home::new("hostile");
    ok(&client, &["keygen", "--bits", "2048"]);
    let fp = common::server_keys().fingerprint().to_string();
    let entry = |name: &str| ovtp::DirEntry {
        name: name.into(),
        kind: ovtp::EntryKind::File,
        size: 1,
        mode: 0o644,
        mtime: 0,
    };
    for name in ["../x", "/abs", "a/b", "."] {
        let entries = vec![entry("fine"), entry(name)];
        let page = ovtp::hooks::msg::ListPage { entries, more: false };
        let (addr, _, _) = common::hostile_list_server(move |_| page.clone());
        let out = ovtp(&client, &["ls", &addr, "--fingerprint", &fp], b"");
        assert_eq!((out.code, out.stdout.as_str()), (76, ""), "{name}: {}", out.stderr);
        assert!(out.stderr.contains(&format!("entry \"{name}\"")), "{name}: {}", out.stderr);
    }
}

#[test]
fn preserve_keeps_mode_and_mtime_both_ways_and_never_setuid() {
    let (server_home, client, server) = file_pair("preserve");
    let addr = server.addr.as_str();
    let files = server_home.join("files");
    let local = client.join("tool");
    std::fs::write(&local, b"#!/bin/sh\necho hi\n").unwrap();
    set_mode_and_mtime(&local, 0o4751, Y2001);
    ok(&client, &["put", "-p", addr, &client.s("tool")]);
    assert_eq!(mode_and_mtime(&files.join("tool")), (0o751, Y2001), "setuid stripped");
    let long = ok(&client, &["ls", "-l", addr]).stdout;
    assert_eq!(long, "f 0751 18 2001-09-09T01:46:40Z tool\n");
    ok(&client, &["put", addr, &client.s("tool"), "--to", "plain"]);
    assert_ne!(mode_and_mtime(&files.join("plain")), (0o751, Y2001), "without -p");

    set_mode_and_mtime(&files.join("plain"), 0o6705, Y2001 + 1);
    ok(&client, &["get", "--preserve", addr, "plain", &client.s("back")]);
    assert_eq!(mode_and_mtime(&client.join("back")), (0o705, Y2001 + 1), "setgid stripped");
    ok(&client, &["get", addr, "plain", &client.s("again")]);
    assert_ne!(mode_and_mtime(&client.join("again")).1, Y2001 + 1, "without -p");
}

#[test]
fn progress_is_shown_on_a_terminal_only() {
    let (_server_home, client, server) = file_pair("progress");
    std::fs::write(client.join("p.bin"), content(2_000_000, 4)).unwrap();
    // Into a pipe: nothing of it.
    let out = ok(&client, &["put", &server.addr, &client.s("p.bin")]);
    assert!(!out.stderr.contains('\r') && !out.stderr.contains('%'), "{:?}", out.stderr);
    // Under a pseudo-terminal (util-linux `script`), if this machine has one.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("no `script` command: the pseudo-terminal check is skipped");
        return;
    }
    let line = format!("{BIN} get {} p.bin {} --force", server.addr, client.s("p-copy.bin"));
    let mut command = Command::new("script");
    command.args(["-q", "-e", "-c", &line, "/dev/null"]);
    let out = run(command, &client, "script", b"");
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let shown = out.stdout;
    assert!(shown.contains('\r') && shown.contains("100%") && shown.contains("MB/s"), "{shown:?}");
    assert!(shown.contains("2.00 MB / 2.00 MB"), "{shown:?}");
}

#[test]
fn first_contact_errors_say_what_to_do() {
    let (server_home, client) = pair("first");
    let stranger = Home::new("first-x");
    ok(&stranger, &["keygen", "--bits", "2048"]);
    // Nothing listening: the address is named, and so is the likely cause.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = ovtp(&client, &["send", &closed.to_string(), "hi", "--accept-new"], b"");
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(out.stderr.contains(&format!("cannot connect to {closed}")), "{}", out.stderr);
    assert!(out.stderr.contains("nothing is listening"), "{}", out.stderr);

    // An unknown key: told its own fingerprint, where its public key is, and
    // the exact command the server's operator runs.
    let server = Server::start(&server_home, &[]);
    let out = ovtp(&stranger, &["send", &server.addr, "hi", "--accept-new"], b"");
    assert_eq!(out.code, 66, "{}", out.stderr);
    let fingerprint = ok(&stranger, &["fingerprint"]).stdout.trim().to_string();
    assert!(out.stderr.contains(&fingerprint), "{}", out.stderr);
    assert!(out.stderr.contains(&stranger.s("id_rsa.pub")), "{}", out.stderr);
    assert!(out.stderr.contains("ovtp authorize id_rsa.pub"), "{}", out.stderr);
}

#[test]
fn a_files_directory_holding_the_servers_home_or_key_files_is_refused() {
    let (base, trust) = (Home::new("dirkeys"), Home::new("dirkeys-trust"));
    let ak = trust.s("authorized_keys");
    // Every case would serve until standard input closes (at once), were it not refused.
    let serve = |args: &[&str]| {
        let common = ["serve", "--listen", "127.0.0.1:0", "--stdin-close-stops"];
        ovtp(&base, &[&common[..], args].concat(), b"")
    };
    let home = base.s("");
    for (args, named) in [
        // The home itself: it holds the key made on first use, and authorized_keys.
        (vec!["--dir", &home, "--authorized-keys", &ak], "id_rsa"),
        (vec!["--dir", &home], "authorized_keys"),
    ] {
        let out = serve(&args);
        assert!(out.code != 0 && out.stderr.contains("contains"), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(named), "{args:?}: {}", out.stderr);
    }
    // A directory that holds the home, with the key and trust files elsewhere.
    ok(&trust, &["keygen", "--bits", "2048"]);
    let (dir, inner) = (base.s("files"), base.s("files/home"));
    let key = trust.s("id_rsa");
    let args = ["--home", &inner, "serve", "--listen", "127.0.0.1:0", "--stdin-close-stops"];
    let out = ovtp(
        &base,
        &[&args[..], &["--dir", &dir, "--key", &key, "--authorized-keys", &ak]].concat(),
        b"",
    );
    assert!(out.code != 0 && out.stderr.contains(&format!("contains {inner}")), "{}", out.stderr);
    // Files inside the home are fine (tests/cli.rs serves from HOME/files throughout).
}

#[test]
fn an_ipv6_server_is_reached_by_bracketed_address_and_pinned_so() {
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        eprintln!("skipped: no IPv6 loopback here ([::1]: {e})");
        return;
    }
    let (server_home, client) = pair("v6");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "[::1]:0", "--stdin-close-stops"])
        .env("OVTP_HOME", &server_home.0)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _stdin = child.stdin.take();
    let stderr = collect(child.stderr.take().unwrap());
    let _kill = Kill(child);
    let until = Instant::now() + COMMAND_LIMIT;
    let addr = loop {
        let text = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
        if let Some(rest) = text.split("listening on ").nth(1) {
            break rest.split(", server key").next().unwrap().to_string();
        }
        assert!(Instant::now() < until, "no listening line: {text}");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(addr.starts_with("[::1]:"), "{addr}");
    assert_eq!(ok(&client, &["send", &addr, "hi", "--accept-new"]).stdout, "ok");
    let known = std::fs::read_to_string(client.join("known_hosts")).unwrap();
    assert!(known.contains(&format!("{addr} SHA256:")), "{known}");
    // Pinned now: a second send needs no --accept-new.
    assert_eq!(ok(&client, &["send", &addr, "again"]).stdout, "ok");
}
