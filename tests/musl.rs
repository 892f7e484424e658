//! The static musl build, checked as part of `cargo test` (which is what CI
//! runs): build `ovtp` for x86_64-unknown-linux-musl with the release
//! profile, check that it is static and within the size budget, then run the
//! command line end to end against that binary on 127.0.0.1.
//!
//! Set `OVTP_SKIP_MUSL=1` to skip it. Without network access and without the
//! target installed it skips too, saying why. The build goes to its own
//! target directory, `target/musl-ci`, so that it does not wait for the lock
//! the outer `cargo test` holds on `target/`; the first run costs one release
//! build of the crate and its dependencies, later runs are incremental.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const TARGET: &str = "x86_64-unknown-linux-musl";
/// The footprint budget of issue 7: 1.5 MiB, stripped.
const SIZE_BUDGET: u64 = 1536 * 1024;
/// Longest the release build may take (a cold build of the crate and its
/// dependencies takes one to two minutes on two cores).
const BUILD_LIMIT: Duration = Duration::from_secs(600);
/// Longest any single command of the end-to-end run may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

#[test]
fn static_musl_binary_is_small_and_serves_end_to_end() {
    if let Some(v) = std::env::var_os("OVTP_SKIP_MUSL") {
        println!("skipped: OVTP_SKIP_MUSL is set ({v:?})");
        return;
    }
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        println!("skipped: the {TARGET} binary only runs on x86_64 Linux");
        return;
    }
    if let Err(why) = ensure_target() {
        println!("skipped: the {TARGET} target is not installed and cannot be added: {why}");
        return;
    }
    let bin = build();
    check_static(&bin);
    check_size(&bin);
    end_to_end(&bin);
}

/// Make sure rustup has the musl target, adding it if needed.
fn ensure_target() -> Result<(), String> {
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    if String::from_utf8_lossy(&listed.stdout).lines().any(|l| l.trim() == TARGET) {
        return Ok(());
    }
    println!("adding the {TARGET} target with rustup");
    let added = run_bounded(Command::new("rustup").args(["target", "add", TARGET]), BUILD_LIMIT)?;
    if added.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`rustup target add {TARGET}` failed (offline?): {}",
            String::from_utf8_lossy(&added.stderr).trim()
        ))
    }
}

/// `cargo build --release --target musl --bin ovtp` into target/musl-ci.
fn build() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = root.join("target").join("musl-ci");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let out = run_bounded(
        Command::new(cargo)
            .current_dir(root)
            .env("CARGO_TARGET_DIR", &target_dir)
            .args(["build", "--release", "--locked", "--target", TARGET])
            .args(["--bin", "ovtp"]),
        BUILD_LIMIT,
    )
    .unwrap_or_else(|e| panic!("musl build: {e}"));
    assert!(
        out.status.success(),
        "cargo build --release --target {TARGET} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "musl release build: {:.1} s into {}",
        started.elapsed().as_secs_f64(),
        target_dir.display()
    );
    target_dir.join(TARGET).join("release").join("ovtp")
}

/// Static: no ELF interpreter (dynamic loader) requested. Checked from the
/// ELF program headers, so it does not depend on `file` or `ldd`; their
/// verdicts are printed and, when they run, must agree.
fn check_static(bin: &Path) {
    let elf = std::fs::read(bin).expect("read the musl binary");
    assert!(
        !has_interpreter(&elf),
        "{} asks for a dynamic loader (PT_INTERP): not static",
        bin.display()
    );
    if let Ok(out) = Command::new("file").arg(bin).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        println!("file: {}", text.trim());
        assert!(
            text.contains("statically linked") || text.contains("static-pie linked"),
            "file does not call it static: {text}"
        );
    }
    if let Ok(out) = Command::new("ldd").arg(bin).output() {
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        println!("ldd: {}", text.trim());
        assert!(
            text.contains("not a dynamic executable") || text.contains("statically linked"),
            "ldd lists libraries: {text}"
        );
    }
}

/// Whether a 64-bit little-endian ELF file has a PT_INTERP program header.
fn has_interpreter(elf: &[u8]) -> bool {
    assert!(
        elf.len() > 64 && elf.starts_with(b"\x7fELF\x02\x01"),
        "not a 64-bit little-endian ELF file"
    );
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3 // PT_INTERP
    })
}

/// The stripped size within the budget. The release profile strips already;
/// `strip` runs on a copy in case the binary was built some other way.
fn check_size(bin: &Path) {
    let copy = std::env::temp_dir().join(format!("ovtp-musl-size-{}", std::process::id()));
    std::fs::copy(bin, &copy).expect("copy the binary");
    let stripped = Command::new("strip").arg(&copy).status().is_ok_and(|s| s.success());
    let size = std::fs::metadata(&copy).expect("stat").len();
    let _ = std::fs::remove_file(&copy);
    println!(
        "static ovtp: {size} bytes ({:.2} MiB){}; budget {SIZE_BUDGET} bytes (1.5 MiB)",
        size as f64 / 1048576.0,
        if stripped { ", stripped" } else { " as built (no strip command)" }
    );
    assert!(
        size <= SIZE_BUDGET,
        "the static binary is {size} bytes, over the 1.5 MiB budget by {}",
        size - SIZE_BUDGET
    );
}

/// keygen for a server and a client, serve on 127.0.0.1:0, authorize the
/// client while the server runs, send with --accept-new, send again pinned.
fn end_to_end(bin: &Path) {
    let server_home = TempHome::new("server");
    let client_home = TempHome::new("client");
    ok(bin, &server_home, &["keygen", "--bits", "2048"]);
    ok(bin, &client_home, &["keygen", "--bits", "2048"]);

    let mut server = Serve::start(bin, &server_home);
    let client_pub = client_home.0.join("id_rsa.pub");
    let out = ok(bin, &server_home, &["authorize", &client_pub.to_string_lossy()]);
    assert!(out.contains("added"), "authorize: {out}");

    let reply = ok(bin, &client_home, &["send", &server.addr, "hello from musl", "--accept-new"]);
    assert_eq!(reply.trim(), "ok", "first reply");
    server.wait_for("hello from musl");
    // Now pinned in known_hosts: strict mode (the default) accepts it.
    let reply = ok(bin, &client_home, &["send", &server.addr, "second"]);
    assert_eq!(reply.trim(), "ok", "second reply");
    server.wait_for("second");
    server.stop();
}

/// A temporary ovtp home, removed on drop.
struct TempHome(PathBuf);

impl TempHome {
    fn new(tag: &str) -> TempHome {
        let dir = std::env::temp_dir().join(format!("ovtp-musl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temp home");
        TempHome(dir)
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run `ovtp ARGS` in `home`, bounded in time; its stdout, or a panic with stderr.
fn ok(bin: &Path, home: &TempHome, args: &[&str]) -> String {
    let out = run_bounded(Command::new(bin).args(args).env("OVTP_HOME", &home.0), COMMAND_LIMIT)
        .unwrap_or_else(|e| panic!("ovtp {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ovtp {args:?} exited with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a command with stdin closed, killing it if it outlives `limit`.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let mut child = KillOnDrop(Some(child));
    let c = child.0.as_mut().expect("just spawned");
    let (out, err) =
        (drain(c.stdout.take().expect("piped")), drain(c.stderr.take().expect("piped")));
    let until = Instant::now() + limit;
    let status = loop {
        match c.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => return Err(format!("{:?} did not finish in {limit:?}", cmd)),
            Err(e) => return Err(format!("waiting for {:?}: {e}", cmd.get_program())),
        }
    };
    child.0 = None; // reaped
    // The pipes close when the process exits; the readers finish promptly.
    let wait = |rx: Receiver<Vec<u8>>| rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    Ok(Output { status, stdout: wait(out), stderr: wait(err) })
}

/// Read a pipe to its end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Kills and reaps the child, if still there, when dropped.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running `ovtp serve --listen 127.0.0.1:0`, its output lines on channels.
struct Serve {
    child: KillOnDrop,
    stdin: Option<ChildStdin>,
    addr: String,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Serve {
    fn start(bin: &Path, home: &TempHome) -> Serve {
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--stdin-close-stops"])
            .env("OVTP_HOME", &home.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ovtp serve");
        let (tx, lines) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        let mut serve = Serve {
            child: KillOnDrop(Some(child)),
            stdin,
            addr: String::new(),
            lines,
            seen: Vec::new(),
        };
        let line = serve.wait_for("listening on ");
        let rest = &line[line.find("listening on ").expect("found") + "listening on ".len()..];
        serve.addr = rest.split([',', ' ']).next().expect("an address").to_string();
        assert!(serve.addr.starts_with("127.0.0.1:"), "{line}");
        serve
    }

    /// The first output line (stdout or stderr) containing `needle`, waiting
    /// at most COMMAND_LIMIT.
    fn wait_for(&mut self, needle: &str) -> String {
        let until = Instant::now() + COMMAND_LIMIT;
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "ovtp serve printed no line with {needle:?} in {COMMAND_LIMIT:?}:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Clean stop: close stdin (--stdin-close-stops), expect exit 0 in time.
    fn stop(&mut self) {
        drop(self.stdin.take());
        let child = self.child.0.as_mut().expect("running");
        let until = Instant::now() + COMMAND_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for ovtp serve") {
                break status;
            }
            assert!(Instant::now() < until, "ovtp serve did not stop after stdin closed");
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child.0 = None;
        assert!(status.success(), "ovtp serve exited with {status}");
    }
}
