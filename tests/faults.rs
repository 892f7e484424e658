//! Fault injection over real sockets on 127.0.0.1: peers that disconnect at
//! every stage, peers that stall (slowloris), peers that hold connections up
//! to the cap, and strangers and garbage that must cost the server nothing.
//! In every case the server keeps serving others, nothing is corrupted, and
//! the error (the server's event, the client's error) says what happened.
//! The full-disk case is in tests/files.rs
//! (`a_full_disk_on_the_server_is_reported_and_nothing_is_left_behind`).

mod common;

use common::*;
use ovtp::Event;
use ovtp::constants::MAX_HANDSHAKE_FRAME;
use ovtp::hooks::msg::FLAG_FIN;
use ovtp::hooks::msg::{OP_GET, OP_PUT, OP_TEXT};
use ovtp::hooks::{ClientStart, Session};
use ovtp::{
    AlertCode, Client, ClientConfig, Error, FailureBudget, KeyPair, Payload, Reply, Request, Rng,
    ServerConfig,
};
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Record types and offsets of PROTOCOL.md section 7 (`src/channel.rs`).
const REC_REQUEST: u8 = 0x10;
const REC_FILE_READY: u8 = 0x12;
const REC_FILE_DATA: u8 = 0x13;

/// Server events, as text, in order.
type Log = Arc<Mutex<Vec<String>>>;

fn logging(config: ServerConfig) -> (ServerConfig, Log) {
    let log: Log = Arc::default();
    let sink = log.clone();
    let config = ServerConfig {
        events: Some(Arc::new(move |e: &Event<'_>| {
            let line = match e {
                Event::HandshakeFailed { error, .. } => format!("handshake failed: {error}"),
                Event::Disconnected { error: Some(e), .. } => format!("disconnected: {e}"),
                Event::Disconnected { error: None, .. } => "disconnected cleanly".into(),
                Event::Connected { .. } => "connected".into(),
                Event::Busy { .. } => "busy".into(),
                _ => return,
            };
            sink.lock().unwrap().push(line);
        })),
        ..config
    };
    (config, log)
}

fn is_end(line: &str) -> bool {
    line.starts_with("handshake failed") || line.starts_with("disconnected")
}

/// Wait (bounded) until `n` lines of the log satisfy `pred`; return those lines.
fn wait_for(log: &Log, n: usize, pred: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<String> = log.lock().unwrap().iter().filter(|l| pred(l)).cloned().collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Connections ended so far, read one at a time: `next()` waits for the end
/// of the next connection (in the order the server reported them).
struct Ends<'a> {
    log: &'a Log,
    seen: usize,
}

impl Ends<'_> {
    fn next(&mut self) -> String {
        self.seen += 1;
        let lines = wait_for(self.log, self.seen, is_end);
        assert!(lines.len() >= self.seen, "no connection ended: {lines:?}");
        lines[self.seen - 1].clone()
    }
}

fn no_retry() -> ClientConfig {
    ClientConfig { retries: 0, ..quick_client() }
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i * 37 + seed as usize * 11) % 251) as u8).collect()
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix)?;
    let len = u32::from_be_bytes(prefix) as usize;
    assert!(len <= 2 << 20, "frame of {len} bytes");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(body)
}

/// A client driven by hand over a raw socket with the library's socket-free
/// handshake and record layer, so that it can stop or stall anywhere.
struct RawPeer {
    s: TcpStream,
    session: Session,
    rng: Rng,
}

impl RawPeer {
    fn connect(addr: SocketAddr, server: &KeyPair) -> RawPeer {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rng = Rng::system();
        let (start, hello) = ClientStart::new(&client_keys(), &mut rng).unwrap();
        s.write_all(&hello).unwrap();
        let body = read_frame(&mut s).unwrap();
        let pin = |k: &ovtp::PublicKey| {
            assert!(k == server.public());
            Ok(())
        };
        let (state, auth) = start.read_server_hello(&body, &mut rng, pin).unwrap();
        s.write_all(&auth).unwrap();
        let body = read_frame(&mut s).unwrap();
        let session = state.read_server_auth(&body, &mut rng).unwrap();
        RawPeer { s, session, rng }
    }

    fn record(&mut self, rtype: u8, pt: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.session.sealer().seal(&mut self.rng, rtype, FLAG_FIN, pt, &mut out).unwrap();
        out
    }

    fn send(&mut self, rtype: u8, pt: &[u8]) -> std::io::Result<()> {
        let frame = self.record(rtype, pt);
        self.s.write_all(&frame)
    }

    /// Receive one record: (type, plaintext).
    fn recv(&mut self) -> (u8, Vec<u8>) {
        let mut body = read_frame(&mut self.s).unwrap();
        let rec = self.session.opener().open(&mut body).unwrap();
        (rec.rtype, rec.plaintext.to_vec())
    }

    fn request(&mut self, op: u8, body: &[u8]) -> std::io::Result<()> {
        self.request_id(Rng::system().array::<16>().unwrap(), op, body)
    }

    fn request_id(&mut self, id: [u8; 16], op: u8, body: &[u8]) -> std::io::Result<()> {
        let mut pt = id.to_vec();
        pt.push(op);
        pt.extend_from_slice(body);
        self.send(REC_REQUEST, &pt)
    }
}

fn put_body(name: &str, size: u64) -> Vec<u8> {
    let mut b = (name.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&size.to_be_bytes());
    b.push(0);
    b
}

fn final_names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".ovtp-part"))
        .collect();
    out.sort();
    out
}

/// An authorized client connects, is served, and leaves; returns how long it took.
fn served(srv: &TestServer) -> Duration {
    let t = Instant::now();
    let mut c = srv.client();
    assert_eq!(c.send_message("still here").unwrap().text(), "ok: still here");
    t.elapsed()
}

/// `served`, then wait for the server to report that client's clean end.
fn served_in_turn(srv: &TestServer, ends: &mut Ends<'_>) -> Duration {
    let took = served(srv);
    assert_eq!(ends.next(), "disconnected cleanly");
    took
}

#[test]
fn a_peer_that_disconnects_at_every_stage_of_the_handshake_is_reported_and_costs_nothing() {
    let (config, log) = logging(quick_server());
    let srv = TestServer::start(config);
    let mut ends = Ends { log: &log, seen: 0 };
    let server = srv.keys.clone();
    let mut rng = Rng::system();
    let stages = [
        "nothing sent",
        "2 bytes of the length prefix",
        "the length prefix only",
        "half the ClientHello",
        "the ClientHello, not waiting for the answer",
        "the ClientHello, then the ServerHello read",
        "half the ClientAuth",
    ];
    for (i, stage) in stages.iter().enumerate() {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (start, hello) = ClientStart::new(&client_keys(), &mut rng).unwrap();
        match i {
            0 => {}
            1 => s.write_all(&hello[..2]).unwrap(),
            2 => s.write_all(&hello[..4]).unwrap(),
            3 => s.write_all(&hello[..hello.len() / 2]).unwrap(),
            4 => s.write_all(&hello).unwrap(),
            _ => {
                s.write_all(&hello).unwrap();
                let body = read_frame(&mut s).unwrap();
                if i == 6 {
                    let (_, auth) = start.read_server_hello(&body, &mut rng, |_| Ok(())).unwrap();
                    s.write_all(&auth[..auth.len() / 2]).unwrap();
                }
            }
        }
        drop(s);
        assert_eq!(
            ends.next(),
            "handshake failed: connection closed by peer during handshake",
            "stage {i} ({stage})"
        );
        assert!(served_in_turn(&srv, &mut ends) < Duration::from_secs(2));
    }
    // None of it cost a private-key operation; the honest clients cost two each.
    assert_eq!(server.private_operations(), 2 * stages.len() as u64);

    // Closing right after the whole ClientAuth: the handshake completed, so
    // the server sees an authenticated client leave without a word.
    drop(RawPeer::connect(srv.addr, &server));
    assert_eq!(ends.next(), "disconnected cleanly");
    served_in_turn(&srv, &mut ends);
}

/// An upload through a proxy that cuts the connection at client frame `cut_c`
/// or server frame `cut_s`.
fn cutting_proxy(upstream: SocketAddr, cut: (Dir, usize)) -> SocketAddr {
    proxy(
        upstream,
        1,
        Arc::new(
            move |_, dir, n, f: &[u8]| {
                if (dir, n) == cut { Action::Close } else { Action::Forward(f.to_vec()) }
            },
        ),
    )
}

/// A server with a files directory (removed by the caller) whose handler accepts everything.
fn file_server(tag: &str, config: ServerConfig) -> (TestServer, PathBuf, Log) {
    let dir = TempDir::new(tag);
    let files = dir.0.clone();
    std::mem::forget(dir);
    let (config, log) = logging(ServerConfig { files_dir: Some(files.clone()), ..config });
    let calls = Arc::new(AtomicUsize::new(0));
    let srv = TestServer::start_with(config, calls, |req: Request<'_>| match req.payload {
        Payload::Text(t) => Reply::ok(format!("ok: {t}")),
        _ => Reply::ok(""),
    });
    (srv, files, log)
}

#[test]
fn a_peer_that_disconnects_at_every_stage_of_a_transfer_leaves_nothing_corrupt() {
    let (srv, files, log) = file_server("cut-files", quick_server());
    let mut ends = Ends { log: &log, seen: 0 };
    let local = TempDir::new("cut-local");
    // Three full chunks and a short one: client frames are hello, auth, PUT,
    // four FILE_DATA, FILE_END; server frames are hello, auth, FILE_READY, response.
    let data = content((3 << 20) + 1000, 7);
    let digest: [u8; 32] = Sha256::digest(&data).into();
    let src = local.join("src");
    std::fs::write(&src, &data).unwrap();
    let mut cuts: Vec<(Dir, usize)> = (2..=7).map(|n| (Dir::ToServer, n)).collect();
    cuts.extend([(Dir::ToClient, 2), (Dir::ToClient, 3)]);
    for (i, cut) in cuts.iter().enumerate() {
        let name = format!("up{i}.bin");
        let addr = cutting_proxy(srv.addr, *cut);
        let mut c =
            Client::connect_with(&addr.to_string(), client_keys(), srv.pin(), no_retry()).unwrap();
        let err = c.send_file(&src, &name).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Closed(_) | Error::Io(_)), "cut {cut:?}: {text}");
        assert!(
            text.contains("closed") || text.contains("reset") || text.contains("pipe"),
            "cut {cut:?}: the client's error does not say the connection was lost: {text}"
        );
        drop(c);
        let end = ends.next();
        let partial = ovtp::upload_partial_path(&files.join(&name), &client_keys().fingerprint());
        if *cut == (Dir::ToServer, 2) {
            // The request never arrived: a client that left between requests.
            assert_eq!(end, "disconnected cleanly");
            assert!(!partial.exists() && !files.join(&name).exists());
            continue;
        }
        let complete = *cut == (Dir::ToClient, 3);
        if complete {
            // Only the final answer was lost: the file was verified and committed.
            assert_eq!(end, "disconnected cleanly", "cut {cut:?}");
            assert_eq!(std::fs::read(files.join(&name)).unwrap(), data);
        } else {
            assert!(
                end.starts_with("disconnected: connection closed by peer during"),
                "cut {cut:?}: {end}"
            );
            assert!(!files.join(&name).exists(), "cut {cut:?}: final name exists");
            let partial =
                ovtp::upload_partial_path(&files.join(&name), &client_keys().fingerprint());
            // What was kept for resuming is a true prefix of the file.
            let kept = std::fs::read(&partial).unwrap_or_default();
            assert!(
                data.starts_with(&kept),
                "cut {cut:?}: partial file of {} bytes is not a prefix",
                kept.len()
            );
            // Resuming on a new connection finishes it, intact.
            let report = srv.client().send_file(&src, &name).unwrap();
            assert_eq!(ends.next(), "disconnected cleanly");
            assert_eq!(report.sha256, digest);
            assert_eq!(std::fs::read(files.join(&name)).unwrap(), data);
            assert!(!partial.exists());
        }
    }

    // Downloads: server frames are hello, auth, FILE_READY, four FILE_DATA, FILE_END.
    std::fs::write(files.join("remote.bin"), &data).unwrap();
    for n in 2..=7 {
        let addr = cutting_proxy(srv.addr, (Dir::ToClient, n));
        let mut c =
            Client::connect_with(&addr.to_string(), client_keys(), srv.pin(), no_retry()).unwrap();
        let dst = local.join(&format!("down{n}.bin"));
        let err = c.get_file("remote.bin", &dst).unwrap_err();
        assert!(matches!(err, Error::Closed(_) | Error::Io(_)), "cut at server frame {n}: {err}");
        assert!(!dst.exists(), "cut at server frame {n}: final name exists");
        drop(c);
        let end = ends.next();
        assert!(end == "disconnected cleanly" || end.starts_with("disconnected: "), "{end}");
        let report = srv.client().get_file("remote.bin", &dst).unwrap();
        assert_eq!(ends.next(), "disconnected cleanly");
        assert_eq!(report.sha256, digest);
        assert_eq!(std::fs::read(&dst).unwrap(), data);
    }
    assert_eq!(std::fs::read(files.join("remote.bin")).unwrap(), data);
    served_in_turn(&srv, &mut ends);
    drop(srv);
    let _ = std::fs::remove_dir_all(&files);
}

#[test]
fn slowloris_peers_during_the_handshake_are_cut_off_while_others_are_served() {
    let (config, log) =
        logging(ServerConfig { handshake_timeout: Duration::from_millis(1000), ..quick_server() });
    let srv = TestServer::start(config);
    let (_, hello) = ClientStart::new(&client_keys(), &mut Rng::system()).unwrap();
    let addr = srv.addr;
    let slow: Vec<_> = (0..6)
        .map(|_| {
            let hello = hello.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let started = Instant::now();
                // One byte every 100 ms, for at most 4 seconds.
                for b in hello.iter().take(40) {
                    if s.write_all(&[*b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
                (started.elapsed(), rest)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..3 {
        assert!(served(&srv) < Duration::from_secs(1));
    }
    for t in slow {
        let (took, answer) = t.join().unwrap();
        // Cut off at the deadline (the writes fail or the alert arrives), long before 4 s.
        assert!(took < Duration::from_millis(3000), "{took:?}");
        if !answer.is_empty() {
            assert_eq!(answer[10], 0x15, "a plaintext alert");
            assert_eq!(answer[11], AlertCode::HandshakeFailed.to_u8());
        }
    }
    let timed_out = wait_for(&log, 6, |l| l == "handshake failed: timed out during handshake");
    assert_eq!(timed_out.len(), 6, "{:?}", log.lock().unwrap());
}

#[test]
fn slowloris_peers_mid_transfer_are_cut_off_and_leave_no_file() {
    let config = ServerConfig { io_timeout: Duration::from_millis(1000), ..quick_server() };
    let (srv, files, log) = file_server("slow-files", config);
    let server = srv.keys.clone();

    // 1. One record trickled a byte at a time.
    let mut a = RawPeer::connect(srv.addr, &server);
    a.request(OP_PUT, &put_body("trickle.bin", 1 << 20)).unwrap();
    assert_eq!(a.recv().0, REC_FILE_READY);
    let mut chunk = 0u64.to_be_bytes().to_vec();
    chunk.extend_from_slice(&[7u8; 4096]);
    let frame = a.record(REC_FILE_DATA, &chunk);
    // 2. Valid tiny records, one every 100 ms (each one on time, the upload not).
    let mut b = RawPeer::connect(srv.addr, &server);
    b.request(OP_PUT, &put_body("tiny.bin", 1 << 20)).unwrap();
    assert_eq!(b.recv().0, REC_FILE_READY);

    // For at most 3 s (three I/O timeouts), until both writes fail.
    let (mut a_open, mut b_open) = (true, true);
    for i in 0..30 {
        a_open = a_open && a.s.write_all(&frame[i..i + 1]).is_ok();
        let mut tiny = (i as u64).to_be_bytes().to_vec();
        tiny.push(1);
        b_open = b_open && b.send(REC_FILE_DATA, &tiny).is_ok();
        // Meanwhile, others are served.
        if i % 10 == 5 {
            assert!(served(&srv) < Duration::from_secs(1));
        }
        if !a_open && !b_open {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The two connections end concurrently: compare what they report as a set.
    let mut cut = wait_for(&log, 2, |l| l.starts_with("disconnected: timed out"));
    cut.sort();
    assert_eq!(
        cut,
        [
            "disconnected: timed out during reading a record",
            "disconnected: timed out during waiting for a record"
        ],
        "{:?}",
        log.lock().unwrap()
    );
    assert!(final_names(&files).is_empty(), "{:?}", final_names(&files));

    // 3. A reader that stops reading a download: the server's writes time out.
    std::fs::write(files.join("big.bin"), content(32 << 20, 3)).unwrap();
    let mut c = RawPeer::connect(srv.addr, &server);
    let mut get = (7u16).to_be_bytes().to_vec();
    get.extend_from_slice(b"big.bin");
    get.extend_from_slice(&0u64.to_be_bytes());
    get.extend_from_slice(&[0u8; 32]);
    get.push(0);
    c.request(OP_GET, &get).unwrap();
    let stalled = wait_for(&log, 1, |l| l == "disconnected: timed out during write");
    assert_eq!(stalled.len(), 1, "{:?}", log.lock().unwrap());
    assert!(served(&srv) < Duration::from_secs(1));
    drop(c);
    drop(srv);
    let _ = std::fs::remove_dir_all(&files);
}

/// Silent sockets up to the cap: how many does the server keep, and can an
/// authorized client still get in?
fn hold_the_cap(max_unauthenticated: usize) -> (usize, ovtp::Result<Duration>) {
    let (config, _log) =
        logging(ServerConfig { max_connections: 8, max_unauthenticated, ..quick_server() });
    let srv = TestServer::start(config);
    let held: Vec<TcpStream> = (0..8)
        .map(|_| {
            let s = TcpStream::connect(srv.addr).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            s
        })
        .collect();
    // Held past the gate's grace period for new connections (a silent socket
    // becomes evictable once it has had time to say hello and did not).
    std::thread::sleep(ovtp::MIN_STRANGER_AGE + Duration::from_millis(100));
    let mut open = 0;
    for mut s in &held {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        match s.read(&mut [0u8; 64]) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => open += 1,
            _ => {}
        }
    }
    let t = Instant::now();
    let result = Client::connect_with(&srv.addr.to_string(), client_keys(), srv.pin(), no_retry())
        .and_then(|mut c| c.send_message("in"))
        .map(|_| t.elapsed());
    for s in &held {
        let _ = s.shutdown(Shutdown::Both);
    }
    (open, result)
}

#[test]
fn a_peer_holding_connections_up_to_the_cap_cannot_keep_clients_out() {
    // With a stranger pool of 2 below a cap of 8, the silent sockets evict each
    // other: at most 2 stay, and an authorized client gets in at once.
    let (open, result) = hold_the_cap(2);
    assert!(open <= 2, "{open} silent sockets kept");
    let took = result.expect("the authorized client was kept out");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Without a separate pool (the "before" of the gate), the same 8 sockets
    // hold every place and the client is told the server is busy.
    let (open, result) = hold_the_cap(8);
    assert_eq!(open, 8);
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Refused { code: AlertCode::Busy, .. }), "{err}");
    assert!(err.to_string().contains("busy"), "{err}");
}

#[test]
fn strangers_and_garbage_cost_no_private_key_operation_and_no_file_access() {
    let dir = TempDir::new("strangers");
    let files = dir.join("files");
    make_dir(&files).unwrap();
    let (config, log) = logging(ServerConfig {
        files_dir: Some(files.clone()),
        // Not rate-limited here: every attempt must reach the handshake code.
        failure_budget: FailureBudget { burst: 0, window: Duration::from_secs(60) },
        ..quick_server()
    });
    let srv = TestServer::start(config);
    let mtime = std::fs::metadata(&files).unwrap().modified().unwrap();
    let server = srv.keys.clone();
    let mut attempts = 0;

    // Unknown keys, through the real client: refused as unauthorized.
    for _ in 0..10 {
        let err =
            Client::connect_with(&srv.addr.to_string(), stranger_keys(), srv.pin(), no_retry())
                .unwrap_err();
        assert!(matches!(err, Error::Refused { code: AlertCode::Unauthorized, .. }), "{err}");
        attempts += 1;
    }
    // Garbage: random bytes, bad magic, another version, oversized and empty
    // frames, a hello whose key is not a key.
    let mut rng = Rng::system();
    let mut inputs: Vec<Vec<u8>> = (0..20)
        .map(|i| {
            let mut b = vec![0u8; 1 + i * 37];
            rng.fill(&mut b).unwrap();
            b
        })
        .collect();
    let (_, hello) = ClientStart::new(&stranger_keys(), &mut rng).unwrap();
    let mut bad_magic = hello.clone();
    bad_magic[4] ^= 0xff;
    let mut bad_version = hello.clone();
    bad_version[9] = 9;
    let mut bad_key = hello.clone();
    let n = bad_key.len();
    bad_key[n - 40] ^= 0xff;
    inputs.extend([
        bad_magic,
        bad_version,
        bad_key,
        vec![0xff; 4],
        vec![0; 4],
        [&(MAX_HANDSHAKE_FRAME as u32 + 1).to_be_bytes()[..], b"x"].concat(),
    ]);
    for input in &inputs {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(input);
        let _ = s.shutdown(Shutdown::Write);
        let _ = s.read_to_end(&mut Vec::new());
        attempts += 1;
    }
    // The authorized client's public key (not secret) with a forged ClientAuth.
    for _ in 0..5 {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (_, hello) = ClientStart::new(&client_keys(), &mut rng).unwrap();
        s.write_all(&hello).unwrap();
        read_frame(&mut s).unwrap();
        // Header, wrapped secret, key share (below p: its top byte 7f), signature.
        let mut forged = vec![0u8; 4 + 7 + 2 + 256 + 384 + 2 + 256];
        rng.fill(&mut forged).unwrap();
        let body_len = forged.len() as u32 - 4;
        forged[..4].copy_from_slice(&body_len.to_be_bytes());
        forged[4..11].copy_from_slice(b"OVTP\x00\x02\x03");
        forged[11..13].copy_from_slice(&256u16.to_be_bytes());
        forged[269] = 0x7f;
        forged[653..655].copy_from_slice(&256u16.to_be_bytes());
        s.write_all(&forged).unwrap();
        let _ = s.read_to_end(&mut Vec::new());
        attempts += 1;
    }
    let lines = wait_for(&log, attempts, is_end);
    assert_eq!(lines.len(), attempts, "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("handshake failed")));
    assert!(lines.iter().any(|l| l.contains("signature did not verify")));
    assert_eq!(server.private_operations(), 0, "a stranger made the server use its private key");
    assert!(std::fs::read_dir(&files).unwrap().next().is_none());
    assert_eq!(std::fs::metadata(&files).unwrap().modified().unwrap(), mtime);
    // The counter does count: one authorized client costs two operations.
    served(&srv);
    assert_eq!(server.private_operations(), 2);
}

#[test]
fn an_authorized_hello_takes_a_fresh_silent_strangers_place_and_an_unknown_one_does_not() {
    let srv = TestServer::start(ServerConfig { max_unauthenticated: 2, ..quick_server() });
    // Two silent sockets, too young to be evicted, fill the stranger pool.
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(srv.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    let mut c = Client::connect_with(&srv.addr.to_string(), client_keys(), srv.pin(), no_retry())
        .expect("an authorized client was kept out by a full stranger pool");
    assert!(c.send_message("in").unwrap().is_ok());
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let err = Client::connect_with(&srv.addr.to_string(), stranger_keys(), srv.pin(), no_retry())
        .unwrap_err();
    assert!(matches!(err, Error::Refused { code: AlertCode::Unauthorized, .. }), "{err}");
    drop(held);
}

#[test]
fn silent_sockets_naming_an_authorized_key_cannot_lock_another_client_out() {
    // Issue 12, finding 1, scaled down: every place of the connection cap is
    // asked for by a socket that sends an authorized client's ClientHello (its
    // public key is public) and then stays silent. Another authorized client
    // must still be served: a hello proves nothing until its ClientAuth verifies.
    let srv = TestServer::start(ServerConfig {
        max_connections: 8,
        max_unauthenticated: 2,
        ..quick_server()
    });
    let other = other_server_keys();
    ovtp::AuthorizedKeys::new(&srv.authorized).add(other.public(), "another client").unwrap();
    let mut rng = Rng::system();
    let held: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(srv.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let (_, hello) = ClientStart::new(&client_keys(), &mut rng).unwrap();
            s.write_all(&hello).unwrap();
            let _ = read_frame(&mut s); // the ServerHello, or an alert and a close
            s
        })
        .collect();
    // Past the grace period: the strangers kept are old enough to be evicted.
    std::thread::sleep(ovtp::MIN_STRANGER_AGE + Duration::from_millis(100));
    let result = Client::connect_with(&srv.addr.to_string(), other, srv.pin(), no_retry())
        .and_then(|mut c| c.send_message("in"));
    assert!(result.is_ok(), "another authorized client was kept out: {}", result.unwrap_err());
    let open = held
        .iter()
        .filter(|s| {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let silent = |e: &std::io::Error| {
                matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
            };
            matches!((&mut &**s).read(&mut [0u8; 64]), Err(e) if silent(&e))
        })
        .count();
    assert!(open <= 2, "{open} silent sockets hold places; the stranger pool is 2");
}

#[test]
fn one_clients_flood_of_requests_cannot_make_another_clients_retry_run_twice() {
    // Issue 12, finding 4: one authorized client sends more requests than the
    // reply cache has entries; another client's retry of a request whose reply
    // it lost must still be answered from the cache, not handled again.
    let srv = TestServer::start(quick_server());
    let flooder = other_server_keys();
    ovtp::AuthorizedKeys::new(&srv.authorized).add(flooder.public(), "flooder").unwrap();
    let id = [7u8; 16];
    let mut victim = RawPeer::connect(srv.addr, &srv.keys);
    victim.request_id(id, OP_TEXT, b"pay 100").unwrap();
    let first = victim.recv();
    drop(victim); // the reply is lost: the client retries on a new connection
    let mut c =
        Client::connect_with(&srv.addr.to_string(), flooder, srv.pin(), quick_client()).unwrap();
    let items = vec![ovtp::Outgoing::Text("x"); ovtp::constants::REPLY_CACHE_ENTRIES + 16];
    assert_eq!(c.send_batch(&items).unwrap().len(), items.len());
    let calls = srv.calls();
    let mut retry = RawPeer::connect(srv.addr, &srv.keys);
    retry.request_id(id, OP_TEXT, b"pay 100").unwrap();
    assert_eq!(retry.recv(), first);
    assert_eq!(srv.calls(), calls, "the retried request was handled again");
}
