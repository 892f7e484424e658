//! Deterministic mutation suite: a recorded session's client byte stream,
//! replayed against a real server with every kind of damage.
//!
//! Two honest sessions, A and B, are recorded through a frame-aware proxy (the
//! real `Client` against a real `Server` on 127.0.0.1): handshake, messages,
//! raw data and a small file upload. The server draws its per-connection
//! randomness from a fixed seed (`ServerConfig::test_rng_seed`, a hidden test
//! hook), so it answers a replayed ClientHello exactly as it did the first
//! time, and the replayed ClientAuth and records verify.
//!
//! Then, for each case, a fresh server gets a mutated copy of A's client
//! stream, followed by B's honest stream. Cases:
//!
//! - one flipped bit (bit `position % 8`, so all eight bit positions are used)
//!   in every field of every frame of A's client stream: length prefixes,
//!   magic, version, type, nonce, key, wrapped secret, key share, signature, record type,
//!   flags, IV, ciphertext and tag. By default every byte of the small fields
//!   and a sample of the bulk ones (first and last 4 bytes, every 8th between:
//!   about 510 of the 2,340 positions); with `OVTP_MUTATION_EVERY_BYTE=1`,
//!   every byte position (about 2,430 cases instead of 600);
//! - truncation at every frame boundary, and inside every frame (after 1, 3, 4
//!   and 5 bytes, at the middle and one byte short of its end);
//! - every frame duplicated; every pair of adjacent frames swapped;
//! - every frame replaced by B's frame at the same position, and B's frame
//!   inserted before it (splices from another session).
//!
//! Each case must end in a clean error (the server's event names it; the kind
//! is checked per field), with no panic in a server thread; the handler must
//! have seen exactly the requests whose frames all arrived intact before the
//! damage (none for a tampered request); a tampered handshake must have cost
//! no RSA private-key operation; no file may exist under a final name except a
//! verified, intact upload; and the same server must then serve B byte for
//! byte as it did when B was recorded.

mod common;

use common::{Action, Dir, TempDir, make_dir, proxy, quick_client};
use ovtp::Event;
use ovtp::{
    AuthorizedKeys, Client, Error, HostTrust, KeyPair, Payload, Reply, Request, ServeFiles, Server,
    ServerConfig, TransferOptions,
};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SEED: [u8; 32] = *b"ovtp mutation suite: server seed";
const SERVER_PEM: &str = include_str!("vectors/server.pem");
const CLIENT_PEM: &str = include_str!("vectors/client.pem");

/// Record types, as PROTOCOL.md section 7 numbers them.
const REC_REQUEST: u8 = 0x10;
const REC_FILE_DATA: u8 = 0x13;
const REC_FILE_END: u8 = 0x14;

fn client_keys() -> KeyPair {
    KeyPair::from_pem(CLIENT_PEM).unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn describe(p: &Payload) -> String {
    match p {
        Payload::Text(t) => format!("text {t}"),
        Payload::Data(d) => format!("data {}", hex(&Sha256::digest(d))),
        Payload::FileOffer { name, size } => format!("offer {name} {size}"),
        Payload::FileReceived { name, size, sha256, .. } => {
            format!("received {name} {size} {}", hex(sha256))
        }
        other => format!("{other:?}"),
    }
}

/// The kind of an error, for the per-field expectations.
fn kind(e: &Error) -> &'static str {
    match e {
        Error::BadRecord => "bad-record",
        Error::BadSignature => "bad-signature",
        Error::BadKeyShare => "bad-key-share",
        Error::Closed(_) => "closed",
        Error::TooLarge { .. } => "too-large",
        Error::Malformed(_) => "malformed",
        Error::Version { .. } => "version",
        Error::Key(_) => "key",
        Error::NotAuthorized { .. } => "not-authorized",
        Error::Timeout(_) => "timeout",
        Error::Io(_) => "io",
        _ => "other",
    }
}

/// How one connection ended, as the server reported it.
#[derive(Debug, Clone)]
struct End {
    handshake: bool,
    kind: Option<&'static str>,
    message: String,
}

/// A server with a files directory, a recording handler and an event log.
struct Rig {
    addr: SocketAddr,
    stopper: ovtp::Stopper,
    thread: Option<std::thread::JoinHandle<ovtp::Result<()>>>,
    calls: Arc<Mutex<Vec<String>>>,
    ends: Arc<Mutex<Vec<End>>>,
    files: PathBuf,
    _dir: TempDir,
}

impl Rig {
    fn start(keys: &KeyPair) -> Rig {
        let dir = TempDir::new("mut");
        let files = dir.join("files");
        make_dir(&files).unwrap();
        let authorized = AuthorizedKeys::new(dir.join("authorized_keys"));
        authorized.add(client_keys().public(), "client").unwrap();
        let ends: Arc<Mutex<Vec<End>>> = Arc::default();
        let sink = ends.clone();
        let config = ServerConfig {
            handshake_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            files_dir: Some(files.clone()),
            test_rng_seed: Some(SEED),
            events: Some(Arc::new(move |e: &Event<'_>| {
                let end = match e {
                    Event::HandshakeFailed { error, .. } => {
                        End { handshake: true, kind: Some(kind(error)), message: error.to_string() }
                    }
                    Event::Disconnected { error, .. } => End {
                        handshake: false,
                        kind: error.map(kind),
                        message: error.map(|e| e.to_string()).unwrap_or_default(),
                    },
                    _ => return,
                };
                sink.lock().unwrap().push(end);
            })),
            ..ServerConfig::default()
        };
        let calls: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = calls.clone();
        let handler = move |req: Request<'_>| {
            log.lock().unwrap().push(describe(&req.payload));
            match req.payload {
                Payload::Text(t) => Reply::ok(format!("got {t}")),
                Payload::Data(d) => Reply::new(7, d.iter().rev().copied().collect::<Vec<_>>()),
                Payload::FileReceived { .. } => Reply::ok("stored"),
                _ => Reply::ok(""),
            }
        };
        let server =
            Server::bind_with("127.0.0.1:0", keys.clone(), authorized, config, ServeFiles(handler))
                .unwrap();
        let addr = server.local_addr().unwrap();
        let stopper = server.stopper().unwrap();
        let thread = Some(std::thread::spawn(move || server.run()));
        Rig { addr, stopper, thread, calls, ends, files, _dir: dir }
    }

    /// Send `bytes` as a client would, close our sending side, and return
    /// everything the server sent back, once the server has reported how the
    /// connection ended.
    fn replay(&self, bytes: &[u8]) -> (Vec<u8>, End) {
        let before = self.ends.lock().unwrap().len();
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The server may close early (that is the point); write errors are expected.
        let _ = s.write_all(bytes);
        let _ = s.shutdown(Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.ends.lock().unwrap().get(before) {
                return (out, end.clone());
            }
            assert!(Instant::now() < deadline, "the server never ended the connection");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn stop(mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread").unwrap();
        }
    }
}

/// Regular files under `dir` that do not end in the partial suffix, relative.
fn final_files(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            final_files(&p, base, out);
        } else if !p.to_string_lossy().ends_with(".ovtp-part") {
            out.push(p.strip_prefix(base).unwrap().to_path_buf());
        }
    }
}

/// A recorded session: the client's frames, the server's whole answer, and
/// the handler entries each client frame produces when it arrives intact.
struct Session {
    client: Vec<Vec<u8>>,
    server: Vec<u8>,
    calls: Vec<Vec<String>>,
    files: Vec<(PathBuf, Vec<u8>)>,
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i * 131 + seed as usize) as u8).collect()
}

/// Frames seen by the proxy, in order, with their direction.
type Frames = Vec<(Dir, Vec<u8>)>;

/// Run `script` through a recording proxy against a seeded server.
fn record(keys: &KeyPair, script: impl FnOnce(&mut Client, &Path)) -> (Vec<Vec<u8>>, Vec<u8>) {
    let rig = Rig::start(keys);
    let frames: Arc<Mutex<Frames>> = Arc::default();
    let rec = frames.clone();
    let addr = proxy(
        rig.addr,
        1,
        Arc::new(move |_, dir, _, frame: &[u8]| {
            rec.lock().unwrap().push((dir, frame.to_vec()));
            Action::Forward(frame.to_vec())
        }),
    );
    let local = TempDir::new("mut-local");
    let trust = HostTrust::Fingerprint(keys.fingerprint());
    let config = ovtp::ClientConfig { retries: 0, ..quick_client() };
    let mut client = Client::connect_with(&addr.to_string(), client_keys(), trust, config).unwrap();
    script(&mut client, local.path());
    drop(client);
    // The server reports the clean end once the proxy has passed the close on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rig.ends.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "recorded session never ended");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(rig.ends.lock().unwrap()[0].kind.is_none(), "recording failed");
    rig.stop();
    let frames = frames.lock().unwrap();
    let from = |d: Dir| -> Vec<Vec<u8>> {
        frames.iter().filter(|(dir, _)| *dir == d).map(|(_, f)| f.clone()).collect()
    };
    (from(Dir::ToServer), from(Dir::ToClient).concat())
}

fn session_a(keys: &KeyPair) -> Session {
    let data: Vec<u8> = (0..=255).collect();
    let file = content(300, 1);
    let (f, d) = (file.clone(), data.clone());
    let (client, server) = record(keys, move |c, local| {
        assert_eq!(c.send_message("alpha").unwrap().text(), "got alpha");
        assert_eq!(c.send_data(&d).unwrap().status, 7);
        c.send_message("gamma ünï").unwrap();
        let src = local.join("a.bin");
        std::fs::write(&src, &f).unwrap();
        let opts = TransferOptions { resume: false, ..TransferOptions::default() };
        c.send_file_with(&src, "up/a.bin", opts).unwrap();
    });
    let types: Vec<u8> = client[2..].iter().map(|f| f[4]).collect();
    assert_eq!(
        types,
        [REC_REQUEST, REC_REQUEST, REC_REQUEST, REC_REQUEST, REC_FILE_DATA, REC_FILE_END],
        "session A does not have the expected shape"
    );
    let sha = hex(&Sha256::digest(&file));
    let calls = vec![
        vec![],
        vec![],
        vec!["text alpha".into()],
        vec![format!("data {}", hex(&Sha256::digest(&data)))],
        vec!["text gamma ünï".into()],
        vec!["offer up/a.bin 300".into()],
        vec![],
        vec![format!("received up/a.bin 300 {sha}")],
    ];
    Session { client, server, calls, files: vec![(PathBuf::from("up/a.bin"), file)] }
}

fn session_b(keys: &KeyPair) -> Session {
    let file = content(200, 2);
    let f = file.clone();
    let (client, server) = record(keys, move |c, local| {
        c.send_message("bravo").unwrap();
        let src = local.join("b.bin");
        std::fs::write(&src, &f).unwrap();
        let opts = TransferOptions { resume: false, ..TransferOptions::default() };
        c.send_file_with(&src, "b.bin", opts).unwrap();
    });
    assert_eq!(client.len(), 6, "session B does not have the expected shape");
    let sha = hex(&Sha256::digest(&file));
    let calls = vec![
        vec![],
        vec![],
        vec!["text bravo".into()],
        vec!["offer b.bin 200".into()],
        vec![],
        vec![format!("received b.bin 200 {sha}")],
    ];
    Session { client, server, calls, files: vec![(PathBuf::from("b.bin"), file)] }
}

/// What a case expects of the server.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    bytes: Vec<u8>,
    /// Frames of A that arrive intact and in order before the damage.
    intact: usize,
    /// Allowed error kinds; `None` in the list means a clean close is allowed.
    kinds: Vec<Option<&'static str>>,
}

/// Error kinds by where the damage is.
fn kinds_for(frame: usize, in_prefix: bool) -> Vec<Option<&'static str>> {
    let hs = [
        "malformed",
        "version",
        "key",
        "not-authorized",
        "bad-signature",
        "bad-key-share",
        "too-large",
        "closed",
    ];
    match (frame, in_prefix) {
        (0 | 1, _) => hs.iter().map(|k| Some(*k)).collect(),
        (_, true) => vec![Some("bad-record"), Some("too-large"), Some("closed")],
        (_, false) => vec![Some("bad-record")],
    }
}

/// The fields of client frame `j` (a whole frame, length prefix included):
/// (name, byte range, bulk). Bulk fields are runs of random-looking bytes.
fn fields(j: usize, f: &[u8]) -> Vec<(&'static str, std::ops::Range<usize>, bool)> {
    let u16_at = |i: usize| usize::from(u16::from_be_bytes([f[i], f[i + 1]]));
    match j {
        0 => vec![
            ("length prefix", 0..4, false),
            ("magic, version, type", 4..11, false),
            ("nonce", 11..43, true),
            ("key length", 43..45, false),
            ("key DER", 45..f.len(), true),
        ],
        1 => {
            let w = 13 + u16_at(11);
            vec![
                ("length prefix", 0..4, false),
                ("magic, version, type", 4..11, false),
                ("wrapped secret length", 11..13, false),
                ("wrapped secret", 13..w, true),
                ("key share", w..w + 384, true),
                ("signature length", w + 384..w + 386, false),
                ("signature", w + 386..f.len(), true),
            ]
        }
        _ => vec![
            ("length prefix", 0..4, false),
            ("record type, flags", 4..6, false),
            ("IV", 6..22, true),
            ("ciphertext", 22..f.len() - 32, true),
            ("tag", f.len() - 32..f.len(), true),
        ],
    }
}

/// Byte offsets to flip in client frame `j`: every byte of every field when
/// `every_byte` (`OVTP_MUTATION_EVERY_BYTE=1`); otherwise every byte of the
/// small fields (prefixes, headers, lengths, record type and flags) and, of
/// the bulk fields (nonce, key, wrapped secret, signature, IV, ciphertext,
/// tag), the first 4 and last 4 bytes and every 8th byte between them. So
/// every field of every frame is hit, in CI in a third of the time.
fn flip_positions(j: usize, f: &[u8], every_byte: bool) -> Vec<(&'static str, usize)> {
    let mut out = Vec::new();
    for (name, range, bulk) in fields(j, f) {
        let (first, last) = (range.start, range.end);
        for off in range {
            if every_byte || !bulk || off < first + 4 || off + 4 >= last || (off - first) % 8 == 0 {
                out.push((name, off));
            }
        }
    }
    out
}

fn cases(a: &Session, b: &Session) -> Vec<Case> {
    let frames = &a.client;
    let joined = |fs: &[Vec<u8>]| fs.concat();
    let mut out = Vec::new();
    // One flipped bit per chosen byte position (see `flip_positions`).
    let every_byte = std::env::var_os("OVTP_MUTATION_EVERY_BYTE").is_some();
    let mut start = 0;
    for (j, f) in frames.iter().enumerate() {
        for (field, off) in flip_positions(j, f, every_byte) {
            let mut bytes = joined(frames);
            let pos = start + off;
            bytes[pos] ^= 1 << (pos % 8);
            out.push(Case {
                name: format!("flip byte {pos} (frame {j}, {field}, offset {off}) bit {}", pos % 8),
                bytes,
                intact: j,
                kinds: kinds_for(j, off < 4),
            });
        }
        start += f.len();
    }
    // Truncation at every frame boundary.
    for k in 0..frames.len() {
        let clean_close = k >= 2 && !(6..=7).contains(&k);
        out.push(Case {
            name: format!("truncated after {k} frames"),
            bytes: joined(&frames[..k]),
            intact: k,
            kinds: if clean_close { vec![None] } else { vec![Some("closed")] },
        });
    }
    // Truncation inside every frame.
    for (j, f) in frames.iter().enumerate() {
        for cut in [1, 3, 4, 5, f.len() / 2, f.len() - 1] {
            let mut bytes = joined(&frames[..j]);
            bytes.extend_from_slice(&f[..cut]);
            out.push(Case {
                name: format!("frame {j} cut after {cut} of {} bytes", f.len()),
                bytes,
                intact: j,
                kinds: vec![Some("closed")],
            });
        }
    }
    for j in 0..frames.len() {
        // Duplicated frame: everything up to it is intact.
        let mut dup = frames.clone();
        dup.insert(j, frames[j].clone());
        out.push(Case {
            name: format!("frame {j} duplicated"),
            bytes: joined(&dup),
            intact: j + 1,
            kinds: kinds_for(j + 1, false),
        });
        // Adjacent frames swapped.
        if j + 1 < frames.len() {
            let mut swapped = frames.clone();
            swapped.swap(j, j + 1);
            out.push(Case {
                name: format!("frames {j} and {} swapped", j + 1),
                bytes: joined(&swapped),
                intact: j,
                kinds: kinds_for(j, false),
            });
        }
        // Spliced from session B: replaced, and inserted before.
        let other = &b.client[j.min(b.client.len() - 1)];
        let mut replaced = frames.clone();
        replaced[j] = other.clone();
        out.push(Case {
            name: format!("frame {j} replaced by B's"),
            bytes: joined(&replaced),
            intact: j,
            kinds: kinds_for(j, false),
        });
        let mut inserted = frames.clone();
        inserted.insert(j, other.clone());
        out.push(Case {
            name: format!("B's frame inserted before frame {j}"),
            bytes: joined(&inserted),
            intact: j,
            kinds: kinds_for(j, false),
        });
    }
    out
}

/// Run one case on a fresh server; returns a description of what went wrong.
fn check(case: &Case, keys: &KeyPair, a: &Session, b: &Session) -> Result<(), String> {
    let rig = Rig::start(keys);
    let ops = keys.private_operations();
    let (_, end) = rig.replay(&case.bytes);
    let ops = keys.private_operations() - ops;
    let mut problems = Vec::new();
    if !case.kinds.contains(&end.kind) {
        problems.push(format!(
            "ended with {:?} ({}), expected one of {:?}",
            end.kind, end.message, case.kinds
        ));
    }
    if end.kind.is_some() && end.message.is_empty() {
        problems.push("error without a message".into());
    }
    // A damaged handshake costs no private-key operation.
    if case.intact < 2 && ops != 0 {
        problems.push(format!("{ops} private-key operations for a damaged handshake"));
    }
    if case.intact < 2 && !end.handshake {
        problems.push("the damaged handshake completed".into());
    }
    let expected: Vec<String> = a.calls[..case.intact].concat();
    let seen_a = rig.calls.lock().unwrap().clone();
    if seen_a != expected {
        problems.push(format!("handler saw {seen_a:?}, expected {expected:?}"));
    }
    // Only a verified upload may have a final name, and then it is intact.
    let upload_done = case.intact >= a.client.len();
    let mut found = Vec::new();
    final_files(&rig.files, &rig.files, &mut found);
    for f in &found {
        match a.files.iter().find(|(p, _)| p == f) {
            Some((p, bytes)) if upload_done => {
                if std::fs::read(rig.files.join(p)).unwrap() != *bytes {
                    problems.push(format!("{} is corrupt", p.display()));
                }
            }
            _ => problems.push(format!("{} exists under its final name", f.display())),
        }
    }
    // The same server then serves the next honest client, byte for byte.
    let (out, end_b) = rig.replay(&b.client.concat());
    if out != b.server || end_b.kind.is_some() {
        problems.push(format!(
            "honest session B afterwards: {} of {} bytes, end {:?}",
            out.len(),
            b.server.len(),
            end_b
        ));
    }
    let seen_b = rig.calls.lock().unwrap()[seen_a.len()..].to_vec();
    if seen_b != b.calls.concat() {
        problems.push(format!("handler saw {seen_b:?} for B"));
    }
    let (bname, bbytes) = &b.files[0];
    if std::fs::read(rig.files.join(bname)).ok().as_ref() != Some(bbytes) {
        problems.push("B's file is missing or corrupt".into());
    }
    rig.stop();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}", case.name, problems.join("; ")))
    }
}

#[test]
fn every_mutation_of_a_recorded_session_fails_cleanly_and_the_server_keeps_serving() {
    let panics = Arc::new(AtomicUsize::new(0));
    let counter = panics.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name().is_some_and(|n| n.starts_with("ovtp-conn")) {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        default_hook(info);
    }));

    let started = Instant::now();
    let keys = KeyPair::from_pem(SERVER_PEM).unwrap();
    let a = session_a(&keys);
    let b = session_b(&keys);
    // Replaying the honest streams reproduces the recorded answers exactly.
    let rig = Rig::start(&keys);
    assert!(rig.replay(&a.client.concat()).0 == a.server, "A does not replay");
    assert!(rig.replay(&b.client.concat()).0 == b.server, "B does not replay");
    rig.stop();

    let all = cases(&a, &b);
    let total = all.len();
    let next = AtomicUsize::new(0);
    let failures: Mutex<Vec<String>> = Mutex::default();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                // Each worker has its own key instance, so its private-operation
                // counter counts its own cases only.
                let keys = KeyPair::from_pem(SERVER_PEM).unwrap();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(case) = all.get(i) else { break };
                    if let Err(e) = check(case, &keys, &a, &b) {
                        failures.lock().unwrap().push(e);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    println!(
        "{total} cases ({} bytes of client stream in {} frames) in {:.1?}",
        a.client.concat().len(),
        a.client.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures[..failures.len().min(30)].join("\n")
    );
    assert_eq!(panics.load(Ordering::SeqCst), 0, "a server thread panicked");
}
