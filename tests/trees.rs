//! End-to-end tests of `put -r`, `get -r` and `--limit-rate` through the
//! `ovtp` binary, and of a hostile server's listings against `get -r`.

#[path = "common/cli.rs"]
mod harness;

use harness::*;
use ovtp::KeyPair;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// 2001-09-09: the old modification time of the tree's executable.
const OLD: i64 = 1_000_000_000;

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn mtime(path: &Path) -> i64 {
    let t = fs::symlink_metadata(path).unwrap().modified().unwrap();
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The test tree: nested and empty directories, names with spaces and
/// non-ASCII characters, a symbolic link and an old executable.
fn make_tree(root: &Path) {
    write(&root.join("a.txt"), b"hello\n");
    write(&root.join("with space.txt"), &content(1000, 2));
    write(&root.join("ünï cødé ñ.txt"), &content(70_000, 3));
    write(&root.join("sub/deeper/big.bin"), &content(1_500_000, 4));
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::create_dir_all(root.join("sub/empty too")).unwrap();
    let run = root.join("run.sh");
    write(&run, b"#!/bin/sh\necho hi\n");
    fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).unwrap();
    let old = UNIX_EPOCH + Duration::from_secs(OLD as u64);
    fs::File::options().write(true).open(&run).unwrap().set_modified(old).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
}

/// Whether `diff -r` finds the trees alike (the link left out: it is not
/// copied); `None`, with the reason printed, when there is no `diff`.
fn same_trees(a: &Path, b: &Path) -> Option<bool> {
    let out = match Command::new("diff").args(["-r", "-x", "link"]).arg(a).arg(b).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("no `diff` program ({e}): the tree comparison is skipped");
            return None;
        }
    };
    if !out.status.success() {
        eprintln!(
            "diff -r:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some(out.status.success())
}

fn assert_same(a: &Path, b: &Path) {
    assert_ne!(same_trees(a, b), Some(false), "{} and {} differ", a.display(), b.display());
    // Without diff, at least the big file and the empty directories.
    let big = "sub/deeper/big.bin";
    assert!(fs::read(a.join(big)).unwrap() == fs::read(b.join(big)).unwrap());
    assert!(b.join("empty").is_dir() && b.join("sub/empty too").is_dir());
    assert!(fs::symlink_metadata(b.join("link")).is_err(), "the link was copied");
}

#[test]
fn trees_go_both_ways_and_a_second_run_skips_everything() {
    let (server_home, client, server) = file_pair("tree");
    let addr = server.addr.as_str();
    let tree = client.join("tree");
    make_tree(&tree);

    let out = ok(&client, &["put", "-r", addr, &client.s("tree")]);
    assert!(out.stderr.contains("tree/link: a symbolic link; skipped"), "{}", out.stderr);
    assert!(out.stdout.contains("tree/sub/deeper/big.bin  1500000  "), "{}", out.stdout);
    assert!(
        out.stderr.contains("5 files sent (1571024 bytes), 0 identical skipped"),
        "{}",
        out.stderr
    );
    let stored = server_home.join("files/tree");
    assert_same(&tree, &stored);

    // Into an existing directory: under the tree's name, as get does for a file.
    let down = Home::new("tree-down");
    let out = ok(&client, &["get", "--recursive", addr, "tree", &down.s("")]);
    assert!(out.stderr.contains("5 files received (1571024 bytes)"), "{}", out.stderr);
    assert_same(&tree, &down.join("tree"));

    // Again, both ways: nothing moves.
    let out = ok(&client, &["put", "-r", addr, &client.s("tree")]);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("0 files sent (0 bytes), 5 identical skipped"), "{}", out.stderr);
    let out = ok(&client, &["get", "-r", addr, "tree", &down.s("")]);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("0 files received (0 bytes), 5 identical skipped"),
        "{}",
        out.stderr
    );

    // --to: under REMOTE/NAME; a LOCAL that does not exist is created.
    ok(&client, &["put", "-r", addr, &client.s("tree"), "--to", "x/y"]);
    assert_same(&tree, &server_home.join("files/x/y/tree"));
    ok(&client, &["get", "-r", addr, "x/y/tree", &down.s("copy")]);
    assert_same(&tree, &down.join("copy"));

    // A link on the server is skipped too, with a line saying so.
    std::os::unix::fs::symlink("a.txt", stored.join("link")).unwrap();
    let out = ok(&client, &["get", "-r", addr, "tree", &down.s("again")]);
    assert!(out.stderr.contains("again/link: a symbolic link; skipped"), "{}", out.stderr);
    assert_same(&tree, &down.join("again"));
}

#[test]
fn a_changed_file_is_refused_without_force_and_replaced_with_it() {
    let (server_home, client, server) = file_pair("tree-force");
    let addr = server.addr.as_str();
    let tree = client.join("tree");
    make_tree(&tree);
    ok(&client, &["put", "-r", addr, &client.s("tree")]);
    let stored = server_home.join("files/tree");

    // Same size, other bytes: found by its SHA-256.
    write(&tree.join("with space.txt"), &content(1000, 99));
    let out = ovtp(&client, &["put", "-r", addr, &client.s("tree")], b"");
    assert_eq!(out.code, 73, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "tree/with space.txt differs from the one on the server; not replaced (use --force"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("1 refused"), "{}", out.stderr);
    assert_eq!(fs::read(stored.join("with space.txt")).unwrap(), content(1000, 2));
    let out = ok(&client, &["put", "-r", addr, &client.s("tree"), "--force"]);
    assert!(
        out.stderr.contains("1 files sent (1000 bytes), 4 identical skipped"),
        "{}",
        out.stderr
    );
    assert_same(&tree, &stored);

    // The other way: a local copy that differs (in size) is kept without --force.
    let down = Home::new("tree-force-down");
    ok(&client, &["get", "-r", addr, "tree", &down.s("")]);
    let mine = down.join("tree/a.txt");
    write(&mine, b"mine");
    let out = ovtp(&client, &["get", "-r", addr, "tree", &down.s("")], b"");
    assert_eq!(out.code, 73, "{}", out.stderr);
    assert!(out.stderr.contains("a.txt differs from the one here; not replaced"), "{}", out.stderr);
    assert_eq!(fs::read(&mine).unwrap(), b"mine");
    ok(&client, &["get", "-r", addr, "tree", &down.s(""), "--force"]);
    assert_same(&tree, &down.join("tree"));
}

#[test]
fn tree_usage_errors() {
    let (_server_home, client, server) = file_pair("tree-usage");
    let addr = server.addr.as_str();
    make_tree(&client.join("tree"));
    let out = ovtp(&client, &["put", addr, &client.s("tree")], b"");
    assert_eq!(out.code, 74, "{}", out.stderr);
    assert!(out.stderr.contains("is a directory; use -r"), "{}", out.stderr);
    let out = ovtp(&client, &["put", "-r", addr, &client.s("tree/a.txt")], b"");
    assert_eq!(out.code, 64, "{}", out.stderr);
    assert!(out.stderr.contains("a.txt is not a directory; put it without -r"), "{}", out.stderr);
    ok(&client, &["put", addr, &client.s("tree/a.txt")]);
    let out = ovtp(&client, &["get", "-r", addr, "a.txt", &client.s("got")], b"");
    assert_eq!(out.code, 67, "{}", out.stderr);
    assert!(
        out.stderr.contains("a.txt is a file on the server, not a directory"),
        "{}",
        out.stderr
    );
    assert!(!client.join("got").exists());
    let out = ovtp(&client, &["get", "-r", addr, "../up", &client.s("got")], b"");
    assert_eq!(out.code, 64, "{}", out.stderr);
}

/// `(seconds, output)` of `ovtp ARGS`.
fn timed(home: &Home, args: &[&str]) -> (f64, Out) {
    let started = Instant::now();
    let out = ovtp(home, args, b"");
    (started.elapsed().as_secs_f64(), out)
}

#[test]
fn limit_rate_holds_roughly_its_rate() {
    let (server_home, client, server) = file_pair("rate");
    let addr = server.addr.as_str();
    let data = content(2 * 1024 * 1024, 7);
    write(&client.join("r.bin"), &data);
    // 2 MiB at 512 KiB/s: about 4 s. Only a lower bound, with room: a busy
    // machine is slower, never faster.
    let (secs, out) = timed(&client, &["put", addr, &client.s("r.bin"), "--limit-rate", "512K"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(secs >= 0.7 * 4.0, "put took {secs:.2} s");
    assert!(fs::read(server_home.join("files/r.bin")).unwrap() == data);
    let (secs, out) =
        timed(&client, &["get", addr, "r.bin", &client.s("r-copy.bin"), "--limit-rate=512K"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(secs >= 0.7 * 4.0, "get took {secs:.2} s");
    assert!(fs::read(client.join("r-copy.bin")).unwrap() == data);
    // Unlimited, the same moves at once (so the bound above measures the limit).
    let (secs, out) = timed(&client, &["get", addr, "r.bin", &client.s("r-fast.bin")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    eprintln!("unlimited get: {secs:.2} s");

    for bad in ["10x", "1K", "0", "-5", ""] {
        let out = ovtp(&client, &["put", addr, &client.s("r.bin"), "--limit-rate", bad], b"");
        assert_eq!(out.code, 64, "{bad}: {}", out.stderr);
        assert!(out.stderr.contains(&format!("\"{bad}\"")), "{bad}: {}", out.stderr);
    }
    let out = ovtp(&client, &["get", addr, "r.bin", "x", "--limit-rate", "50Q"], b"");
    assert_eq!(out.code, 64, "{}", out.stderr);
}

/// Every partial file under `dir` that holds bytes.
fn partial_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".ovtp-part")
                && fs::metadata(&p).is_ok_and(|m| m.len() > 0)
            {
                found.push(p);
            }
        }
    }
    found
}

/// Start `ovtp ARGS` (slowed with --limit-rate), wait until a partial file
/// with bytes shows under `watch`, then kill it.
fn kill_halfway(home: &Home, args: &[&str], watch: &Path) {
    let child = Command::new(BIN)
        .args(args)
        .env("OVTP_HOME", &home.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Kill(child);
    let until = Instant::now() + COMMAND_LIMIT;
    while partial_files(watch).is_empty() {
        assert!(child.0.try_wait().unwrap().is_none(), "ovtp {args:?} ended before it was killed");
        assert!(Instant::now() < until, "no partial file under {}", watch.display());
        std::thread::sleep(Duration::from_millis(10));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
}

/// Lines of the server's log that contain `needle`.
fn count(server: &Server, needle: &str) -> usize {
    String::from_utf8_lossy(&server.stderr.lock().unwrap()).matches(needle).count()
}

/// Wait (bounded) until the server logged `n` disconnections.
fn wait_disconnects(server: &Server, n: usize) {
    let until = Instant::now() + COMMAND_LIMIT;
    while count(server, "disconnected after") < n {
        assert!(Instant::now() < until, "the server did not see the client go");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_killed_tree_transfer_resumes() {
    let (server_home, client, server) = file_pair("tree-kill");
    let addr = server.addr.as_str();
    let tree = client.join("tree");
    make_tree(&tree);
    let files = server_home.join("files");
    let gone = count(&server, "disconnected after");
    let slow = ["put", "-r", addr, &client.s("tree"), "--limit-rate", "256K"];
    // Watch the big file's directory: a small file's partial lives too briefly.
    kill_halfway(&client, &slow, &files.join("tree/sub/deeper"));
    // The server must have let go of the name before the second run.
    wait_disconnects(&server, gone + 1);
    assert!(!files.join("tree/sub/deeper/big.bin").exists());
    let out = ok(&client, &["put", "-r", addr, &client.s("tree")]);
    assert!(out.stderr.contains("resumed an interrupted transfer at byte"), "{}", out.stderr);
    assert_same(&tree, &files.join("tree"));
    assert!(partial_files(&files).is_empty());

    let down = Home::new("tree-kill-down");
    let slow = ["get", "-r", addr, "tree", &down.s(""), "--limit-rate", "256K"];
    kill_halfway(&client, &slow, &down.join("tree/sub/deeper"));
    assert!(!down.join("tree/sub/deeper/big.bin").exists());
    let out = ok(&client, &["get", "-r", addr, "tree", &down.s("")]);
    assert!(out.stderr.contains("resumed an interrupted transfer at byte"), "{}", out.stderr);
    assert_same(&tree, &down.join("tree"));
    assert!(partial_files(&down.0).is_empty());
}

#[test]
fn get_r_never_follows_a_local_symlink_under_local() {
    let (_server_home, client, server) = file_pair("tree-link");
    let addr = server.addr.as_str();
    make_tree(&client.join("tree"));
    ok(&client, &["put", "-r", addr, &client.s("tree")]);
    // LOCAL/tree/sub is a link to a directory outside: nothing may land there.
    let down = Home::new("tree-link-down");
    let outside = Home::new("tree-link-outside");
    fs::create_dir_all(down.join("tree")).unwrap();
    std::os::unix::fs::symlink(&outside.0, down.join("tree/sub")).unwrap();
    let out = ovtp(&client, &["get", "-r", addr, "tree", &down.s("")], b"");
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("a symbolic link (not followed)"), "{}", out.stderr);
    assert_eq!(fs::read_dir(&outside.0).unwrap().count(), 0, "written through the link");
    // The rest arrived.
    assert_eq!(fs::read(down.join("tree/a.txt")).unwrap(), b"hello\n");
}

#[test]
fn preserve_carries_modes_and_times_of_a_tree() {
    let (server_home, client, server) = file_pair("tree-p");
    let addr = server.addr.as_str();
    let tree = client.join("tree");
    make_tree(&tree);
    ok(&client, &["put", "-r", "-p", addr, &client.s("tree")]);
    let stored = server_home.join("files/tree/run.sh");
    assert_eq!((mode(&stored), mtime(&stored)), (0o755, OLD));
    let down = Home::new("tree-p-down");
    ok(&client, &["get", "-r", "--preserve", addr, "tree", &down.s("")]);
    let got = down.join("tree/run.sh");
    assert_eq!((mode(&got), mtime(&got)), (0o755, OLD));
    // Directories get their times too, after their files arrived.
    let dir = server_home.join("files/tree/sub/empty too");
    let old = UNIX_EPOCH + Duration::from_secs(OLD as u64 + 7);
    fs::File::open(&dir).unwrap().set_modified(old).unwrap();
    let down = Home::new("tree-p-down2");
    ok(&client, &["get", "-r", "-p", addr, "tree", &down.s("")]);
    assert_eq!(mtime(&down.join("tree/sub/empty too")), OLD + 7);
    // Without -p: the receiver's own mode and time.
    let down = Home::new("tree-p-down3");
    ok(&client, &["get", "-r", addr, "tree", &down.s("")]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(mtime(&down.join("tree/run.sh")) > now - 3600);
}

// ---- A hostile server. ----

/// What the hostile server lists for a directory.
type Lister = fn(&str) -> Vec<ovtp::DirEntry>;

fn entry(name: &str, kind: ovtp::EntryKind) -> ovtp::DirEntry {
    ovtp::DirEntry { name: name.into(), kind, size: 5, mode: 0o644, mtime: OLD }
}

fn frame(s: &mut TcpStream) -> Vec<u8> {
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    assert!(body.len() <= 2 << 20);
    s.read_exact(&mut body).unwrap();
    body
}

/// One connection of a server built from the library's handshake and record
/// states (test hooks) that answers every LIST with `list(dir)`, every
/// DIGEST and GET with "no such file", and stops when the client goes.
fn hostile_session(mut s: TcpStream, keys: &KeyPair, list: Lister) -> Option<()> {
    use ovtp::hooks::msg::{FLAG_FIN, ListPage, Op, REC_REQUEST, REC_RESPONSE, Request, Response};
    use ovtp::hooks::{Body, ServerAwaitAuth};
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rng = ovtp::Rng::system();
    let hello = frame(&mut s);
    let (state, reply) =
        ServerAwaitAuth::read_client_hello(keys, &hello, &mut rng, |_| Ok(true)).ok()?;
    s.write_all(&reply).ok()?;
    let auth = frame(&mut s);
    let (mut session, reply) = state.read_client_auth(&auth, &mut rng).ok()?;
    s.write_all(&reply).ok()?;
    loop {
        let mut prefix = [0u8; 4];
        s.read_exact(&mut prefix).ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
        s.read_exact(&mut body).ok()?;
        let rec = session.opener().open(&mut body).ok()?;
        assert_eq!(rec.rtype, REC_REQUEST);
        let plain = rec.plaintext.to_vec();
        let request = Request::decode(&plain).ok()?;
        let (status, answer) = match request.op {
            // A directory this server cannot read.
            Op::List(l) if l.dir.ends_with("/unreadable") => {
                (ovtp::status::IO_ERROR, b"Permission denied".to_vec())
            }
            Op::List(l) => (0, ListPage { entries: list(l.dir), more: false }.to_vec()),
            _ => (ovtp::status::NOT_FOUND, b"no such file".to_vec()),
        };
        let response = Response { id: request.id, status, body: &answer }.to_vec();
        let mut out = Vec::new();
        session.sealer().seal(&mut rng, REC_RESPONSE, FLAG_FIN, &response, &mut out).ok()?;
        s.write_all(&out).ok()?;
    }
}

/// A hostile server on 127.0.0.1:0 for `conns` connections, one at a time.
fn hostile_server(keys: KeyPair, list: Lister, conns: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().take(conns).flatten() {
            let _ = hostile_session(s, &keys, list);
        }
    });
    addr
}

#[test]
fn a_hostile_listing_cannot_make_get_r_write_outside_local() {
    use ovtp::EntryKind::{Dir, File};
    let client = Home::new("hostile-c");
    ok(&client, &["keygen", "--bits", "2048"]);
    let keys = KeyPair::generate(2048).unwrap();
    let fp = keys.fingerprint().to_string();
    let listers: [(&str, Lister); 6] = [
        ("dot-dot", |_| vec![entry("../x", File)]),
        ("dot-dot dir", |_| vec![entry("..", Dir)]),
        ("absolute", |_| vec![entry("/tmp/ovtp-hostile-x", File)]),
        ("slash", |_| vec![entry("a/../../x", File)]),
        ("backslash", |_| vec![entry("..\\x", File)]),
        // A directory inside every directory, without end: stopped by depth.
        ("endless", |_| vec![entry("d", Dir)]),
    ];
    for (what, lister) in listers {
        let addr = hostile_server(keys.clone(), lister, 4).to_string();
        let place = Home::new("hostile-place");
        let local = place.join("in/down");
        fs::create_dir_all(place.join("in")).unwrap();
        let args = ["get", "-r", &addr, "top", &local.display().to_string(), "--fingerprint", &fp];
        let out = ovtp(&client, &args, b"");
        assert_ne!(out.code, 0, "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains("name") || out.stderr.contains("deeper"),
            "{what}: {}",
            out.stderr
        );
        // Nothing written, inside LOCAL or beside it.
        let written: Vec<_> =
            fs::read_dir(&place.0).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(written, ["in"], "{what}");
        assert_eq!(
            fs::read_dir(place.join("in")).unwrap().count(),
            0,
            "{what}: wrote into LOCAL's parent"
        );
        assert!(!Path::new("/tmp/ovtp-hostile-x").exists());
    }
}

#[test]
fn one_progress_line_covers_the_tree_on_a_terminal() {
    let (_server_home, client, server) = file_pair("tree-progress");
    make_tree(&client.join("tree"));
    let out = ok(&client, &["put", "-r", &server.addr, &client.s("tree")]);
    assert!(!out.stderr.contains('\r'), "no progress into a pipe: {:?}", out.stderr);
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("no `script` command: the pseudo-terminal check is skipped");
        return;
    }
    let down = client.s("down");
    let line = format!("{BIN} get -r {} tree {down}", server.addr);
    let mut command = Command::new("script");
    command.args(["-q", "-e", "-c", &line, "/dev/null"]);
    let out = run(command, &client, "script", b"");
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let shown = out.stdout;
    assert!(shown.contains("tree  5/5 files  1.57 MB / 1.57 MB  100%"), "{shown:?}");
    assert!(shown.contains("tree  0/5 files"), "{shown:?}");
}

#[test]
fn get_r_p_never_sets_a_time_through_a_local_symlink() {
    use ovtp::EntryKind::Dir;
    let client = Home::new("hostile-time-c");
    ok(&client, &["keygen", "--bits", "2048"]);
    let keys = KeyPair::generate(2048).unwrap();
    let fp = keys.fingerprint().to_string();
    // The server lists top/d (an empty directory, with an old time) ...
    let lister: Lister = |dir| if dir == "top" { vec![entry("d", Dir)] } else { vec![] };
    let addr = hostile_server(keys, lister, 4).to_string();
    // ... and LOCAL/top/d is already a link to a directory outside.
    let place = Home::new("hostile-time-place");
    let outside = Home::new("hostile-time-outside");
    fs::create_dir_all(place.join("down/top")).unwrap();
    std::os::unix::fs::symlink(&outside.0, place.join("down/top/d")).unwrap();
    let before = mtime(&outside.0);
    let args = ["get", "-r", "-p", &addr, "top", &place.s("down"), "--fingerprint", &fp];
    let out = ovtp(&client, &args, b"");
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("a symbolic link (not followed)"), "{}", out.stderr);
    assert_eq!(mtime(&outside.0), before, "a time set through the link, outside LOCAL");
    assert_ne!(mtime(&outside.0), OLD);
}

#[test]
fn a_hostile_listing_of_deep_long_names_is_bounded_in_bytes() {
    use ovtp::EntryKind::{Dir, File};
    let client = Home::new("hostile-bytes-c");
    ok(&client, &["keygen", "--bits", "2048"]);
    let keys = KeyPair::generate(2048).unwrap();
    let fp = keys.fingerprint().to_string();
    // 255-byte names 15 directories deep, then 140 × 256 files: 35,840
    // entries (far below MAX_TREE_ENTRIES) whose paths are 4 kB each, 146 MB
    // of names for 10 MB on the wire.
    let lister: Lister = |dir| match dir.matches('/').count() {
        ..14 => vec![entry(&"d".repeat(255), Dir)],
        14 => (0..140).map(|i| entry(&format!("{i:0>255}"), Dir)).collect(),
        _ => (0..256).map(|i| entry(&format!("{i:0>240}"), File)).collect(),
    };
    let addr = hostile_server(keys, lister, 4).to_string();
    let place = Home::new("hostile-bytes-place");
    let args = ["get", "-r", &addr, "top", &place.s("down"), "--fingerprint", &fp];
    let out = ovtp(&client, &args, b"");
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("MAX_TREE_NAME_BYTES"), "{}", out.stderr);
    assert!(!place.join("down").exists(), "written before the whole listing was checked");
}

#[test]
fn a_hostile_listing_of_huge_sizes_does_not_overflow_the_progress() {
    use ovtp::EntryKind::File;
    let client = Home::new("hostile-size-c");
    ok(&client, &["keygen", "--bits", "2048"]);
    let keys = KeyPair::generate(2048).unwrap();
    let fp = keys.fingerprint().to_string();
    let lister: Lister = |_| {
        let huge = |name| ovtp::DirEntry { size: u64::MAX, ..entry(name, File) };
        vec![huge("a"), huge("b")]
    };
    let addr = hostile_server(keys, lister, 4).to_string();
    let place = Home::new("hostile-size-place");
    let args = ["get", "-r", &addr, "top", &place.s("down"), "--fingerprint", &fp];
    let out = ovtp(&client, &args, b"");
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    // Both files were asked for, and refused (this server has none).
    assert!(out.stderr.contains("0 files received"), "{}", out.stderr);
    assert!(out.stderr.contains("2 refused"), "{}", out.stderr);
}

#[test]
fn ls_l_shows_a_hostile_servers_extreme_times_and_sizes() {
    use ovtp::EntryKind::File;
    let client = Home::new("hostile-ls-c");
    ok(&client, &["keygen", "--bits", "2048"]);
    let keys = KeyPair::generate(2048).unwrap();
    let fp = keys.fingerprint().to_string();
    let lister: Lister = |_| {
        let at = |name, mtime| ovtp::DirEntry { mtime, size: u64::MAX, ..entry(name, File) };
        vec![at("max", i64::MAX), at("min", i64::MIN)]
    };
    let addr = hostile_server(keys, lister, 1).to_string();
    let out = ovtp(&client, &["ls", "-l", &addr, "top", "--fingerprint", &fp], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(lines[0].starts_with("f 0644 18446744073709551615 ") && lines[0].ends_with(" max"));
    assert!(lines[1].ends_with(" min"), "{}", out.stdout);
}

#[test]
fn get_r_refuses_names_too_long_for_their_partial_file_on_one_connection() {
    let (server_home, client, server) = file_pair("tree-long");
    let dir = server_home.join("files/t");
    fs::create_dir_all(&dir).unwrap();
    // Names the server holds (placed there, not uploaded) but the client
    // cannot write beside `.NAME.ovtp-part` (255 bytes at most).
    for i in 0..3 {
        write(&dir.join(format!("{i}{}", "x".repeat(249))), b"a");
    }
    write(&dir.join("short"), b"a");
    wait_disconnects(&server, 1); // file_pair's first contact
    let place = Home::new("tree-long-down");
    let out = ovtp(&client, &["get", "-r", &server.addr, "t", &place.s("")], b"");
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("3 refused"), "{}", out.stderr);
    assert_eq!(fs::read(place.join("t/short")).unwrap(), b"a");
    wait_disconnects(&server, 2);
    // One connection for the whole tree: a local refusal is no lost connection.
    assert_eq!(count(&server, " connected"), 2, "{}", out.stderr);
}

#[test]
fn a_subdirectory_the_server_cannot_list_fails_alone() {
    use ovtp::EntryKind::Dir;
    let client = Home::new("unreadable-c");
    ok(&client, &["keygen", "--bits", "2048"]);
    let keys = KeyPair::generate(2048).unwrap();
    let fp = keys.fingerprint().to_string();
    let lister: Lister = |dir| match dir {
        "top" => vec![entry("empty", Dir), entry("unreadable", Dir)],
        _ => vec![],
    };
    let addr = hostile_server(keys, lister, 4).to_string();
    let place = Home::new("unreadable-place");
    let args = ["get", "-r", &addr, "top", &place.s("down"), "--fingerprint", &fp];
    let out = ovtp(&client, &args, b"");
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("unreadable") && out.stderr.contains("1 refused"),
        "{}",
        out.stderr
    );
    assert!(place.join("down/empty").is_dir(), "the rest of the tree is still fetched");
}
