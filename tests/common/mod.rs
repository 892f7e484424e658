//! Shared test scaffolding: cached keys, temp dirs (tempdir.rs, shared with
//! the benchmarks), a server on 127.0.0.1:0, and a frame-aware
//! man-in-the-middle proxy.
#![allow(dead_code)]

use ovtp::{
    AuthorizedKeys, Client, ClientConfig, Handler, HostTrust, KeyPair, Reply, Request, ServeFiles,
    Server, ServerConfig, Stopper,
};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

mod tempdir;
#[allow(unused_imports)] // not every test binary makes directories
pub use tempdir::{TempDir, make_dir};

/// Three 2048-bit key pairs, generated once per test binary: server, client, stranger.
pub fn keys() -> &'static [KeyPair; 4] {
    static KEYS: OnceLock<[KeyPair; 4]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let make = || KeyPair::generate(2048).expect("keygen");
        [make(), make(), make(), make()]
    })
}

pub fn server_keys() -> KeyPair {
    keys()[0].clone()
}
pub fn client_keys() -> KeyPair {
    keys()[1].clone()
}
pub fn stranger_keys() -> KeyPair {
    keys()[2].clone()
}
pub fn other_server_keys() -> KeyPair {
    keys()[3].clone()
}

/// A running test server. Stops (and joins) on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stopper: Stopper,
    pub authorized: PathBuf,
    pub keys: KeyPair,
    pub calls: Arc<AtomicUsize>,
    pub dir: TempDir,
    thread: Option<JoinHandle<ovtp::Result<()>>>,
}

impl TestServer {
    /// The default handler: counts calls and answers "ok: <text>" or the data length.
    pub fn start(config: ServerConfig) -> TestServer {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        Self::start_with(config, calls, move |req: Request<'_>| {
            c.fetch_add(1, Ordering::SeqCst);
            match req.payload {
                ovtp::Payload::Text(t) => Reply::ok(format!("ok: {t}")),
                ovtp::Payload::Data(d) => {
                    Reply::new(7, d.iter().rev().copied().collect::<Vec<u8>>())
                }
                _ => Reply::new(1, "unexpected"),
            }
        })
    }

    pub fn start_with<H>(config: ServerConfig, calls: Arc<AtomicUsize>, handler: H) -> TestServer
    where
        H: Fn(Request<'_>) -> Reply + Send + Sync + 'static,
    {
        // Test servers let their closure decide file operations too.
        Self::start_handler(config, calls, ServeFiles(handler))
    }

    /// A server with any [`Handler`], as given.
    pub fn start_handler(
        config: ServerConfig,
        calls: Arc<AtomicUsize>,
        handler: impl Handler,
    ) -> TestServer {
        let dir = TempDir::new("srv");
        let authorized = dir.join("authorized_keys");
        let ak = AuthorizedKeys::new(&authorized);
        ak.add(client_keys().public(), "test client").unwrap();
        // A fresh copy of the server key, so its private-operation counter is this server's alone.
        let keys = KeyPair::from_pem(&server_keys().to_pem()).unwrap();
        let server = Server::bind_with("127.0.0.1:0", keys.clone(), ak, config, handler).unwrap();
        let addr = server.local_addr().unwrap();
        let stopper = server.stopper().unwrap();
        let thread = Some(std::thread::spawn(move || server.run()));
        TestServer { addr, stopper, authorized, keys, calls, dir, thread }
    }

    pub fn pin(&self) -> HostTrust {
        HostTrust::Fingerprint(self.keys.fingerprint())
    }

    pub fn client(&self) -> Client {
        Client::connect_with(&self.addr.to_string(), client_keys(), self.pin(), quick_client())
            .unwrap()
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Stop and wait for `run` to return; returns its result.
    pub fn stop(mut self) -> ovtp::Result<()> {
        self.stopper.stop();
        self.thread.take().unwrap().join().expect("server thread panicked")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stopper.stop();
            let _ = t.join();
        }
    }
}

/// Client settings for tests: short timeouts, few retries.
pub fn quick_client() -> ClientConfig {
    ClientConfig {
        handshake_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(5),
        retries: 2,
        ..ClientConfig::default()
    }
}

pub fn quick_server() -> ServerConfig {
    ServerConfig {
        handshake_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    }
}

/// What the proxy does with one frame.
pub enum Action {
    Forward(Vec<u8>),
    /// Forward this frame, then the same frame again.
    Duplicate,
    /// Swallow the frame.
    Drop,
    /// Close both directions instead of forwarding.
    Close,
    /// Go silent: forward nothing more in this direction and keep the sockets
    /// open (for up to 20 s), like a network that drops everything.
    Freeze,
}

/// Direction of a frame through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    ToServer,
    ToClient,
}

pub type Mutator = dyn Fn(usize, Dir, usize, &[u8]) -> Action + Send + Sync;

/// A man-in-the-middle on 127.0.0.1:0 that forwards frames (length prefix +
/// body) and lets `mutate(connection_index, direction, frame_index, frame)` tamper.
/// Serves at most `max_conns` connections, then stops by itself.
pub fn proxy(upstream: SocketAddr, max_conns: usize, mutate: Arc<Mutator>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (index, down) in listener.incoming().take(max_conns).enumerate() {
            let Ok(down) = down else { return };
            let Ok(up) = TcpStream::connect(upstream) else {
                return;
            };
            for s in [&down, &up] {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            }
            let pairs = [
                (down.try_clone().unwrap(), up.try_clone().unwrap(), Dir::ToServer),
                (up, down, Dir::ToClient),
            ];
            for (mut from, mut to, dir) in pairs {
                let m = mutate.clone();
                std::thread::spawn(move || {
                    let mut n = 0;
                    loop {
                        let mut prefix = [0u8; 4];
                        if from.read_exact(&mut prefix).is_err() {
                            break;
                        }
                        let len = u32::from_be_bytes(prefix) as usize;
                        if len > 4 << 20 {
                            break;
                        }
                        let mut frame = prefix.to_vec();
                        frame.resize(4 + len, 0);
                        if from.read_exact(&mut frame[4..]).is_err() {
                            break;
                        }
                        let ok = match m(index, dir, n, &frame) {
                            Action::Forward(f) => to.write_all(&f).is_ok(),
                            Action::Duplicate => {
                                to.write_all(&frame).is_ok() && to.write_all(&frame).is_ok()
                            }
                            Action::Drop => true,
                            Action::Close => false,
                            Action::Freeze => {
                                std::thread::sleep(Duration::from_secs(20));
                                false
                            }
                        };
                        n += 1;
                        if !ok {
                            break;
                        }
                    }
                    let _ = from.shutdown(Shutdown::Both);
                    let _ = to.shutdown(Shutdown::Both);
                });
            }
        }
    });
    addr
}

/// Record of what a handler was called with, for assertions.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// A client driven by hand over a raw socket, with the library's socket-free
/// handshake states and record layer (test hooks): it speaks any key's part
/// and sends whatever records a test (or an attacker) wants.
pub struct RawClient {
    pub s: TcpStream,
    pub session: ovtp::hooks::Session,
    pub rng: ovtp::Rng,
}

impl RawClient {
    /// Connect and complete the handshake as `keys`, pinning `server`.
    pub fn connect(addr: SocketAddr, keys: &KeyPair, server: &ovtp::PublicKey) -> RawClient {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rng = ovtp::Rng::system();
        let (start, hello) = ovtp::hooks::ClientStart::new(keys, &mut rng).unwrap();
        s.write_all(&hello).unwrap();
        let body = read_frame(&mut s);
        let pin = |k: &ovtp::PublicKey| {
            assert!(k == server);
            Ok(())
        };
        let (state, auth) = start.read_server_hello(&body, &mut rng, pin).unwrap();
        s.write_all(&auth).unwrap();
        let body = read_frame(&mut s);
        let session = state.read_server_auth(&body, &mut rng).unwrap();
        RawClient { s, session, rng }
    }

    /// Seal and send one record.
    pub fn send(&mut self, rtype: u8, flags: u8, plaintext: &[u8]) {
        let mut out = Vec::new();
        self.session.sealer().seal(&mut self.rng, rtype, flags, plaintext, &mut out).unwrap();
        self.s.write_all(&out).unwrap();
    }

    /// Receive and open one record: (type, flags, plaintext).
    pub fn recv(&mut self) -> (u8, u8, Vec<u8>) {
        let mut body = read_frame(&mut self.s);
        let rec = self.session.opener().open(&mut body).unwrap();
        (rec.rtype, rec.flags, rec.plaintext.to_vec())
    }

    /// Send a request (a fresh random id) with operation `op`; returns the id.
    pub fn request(&mut self, op: ovtp::hooks::msg::Op<'_>) -> [u8; 16] {
        use ovtp::hooks::Body;
        let id = ovtp::Rng::system().array::<16>().unwrap();
        let request = ovtp::hooks::msg::Request { id, op }.to_vec();
        self.send(ovtp::hooks::msg::REC_REQUEST, ovtp::hooks::msg::FLAG_FIN, &request);
        id
    }
}

/// One frame body from a socket (at most 2 MiB).
pub fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).unwrap();
    let len = u32::from_be_bytes(prefix) as usize;
    assert!(len <= 2 << 20, "frame of {len} bytes");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    body
}

/// A hostile server on 127.0.0.1:0 for one connection: it completes the
/// handshake with any client key, then answers each LIST with the page
/// `answer(after)` (whatever names it holds) and counts the pages asked
/// for. Returns its address, the pin of its key (`server_keys()`) and the count.
pub fn hostile_list_server(
    answer: impl Fn(&str) -> ovtp::hooks::msg::ListPage + Send + 'static,
) -> (String, HostTrust, Arc<AtomicUsize>) {
    use ovtp::hooks::{Body, msg};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let pages = Arc::new(AtomicUsize::new(0));
    let counted = pages.clone();
    let keys = server_keys();
    let trust = HostTrust::Fingerprint(keys.fingerprint());
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rng = ovtp::Rng::system();
        let hello = read_frame(&mut s);
        let (state, reply) =
            ovtp::hooks::ServerAwaitAuth::read_client_hello(&keys, &hello, &mut rng, |_| Ok(true))
                .unwrap();
        s.write_all(&reply).unwrap();
        let auth = read_frame(&mut s);
        let (mut session, reply) = state.read_client_auth(&auth, &mut rng).unwrap();
        s.write_all(&reply).unwrap();
        // Until the client hangs up (bounded: it asks at most its cap's pages).
        while let Some(mut body) = try_read_frame(&mut s) {
            let rec = session.opener().open(&mut body).unwrap();
            assert_eq!(rec.rtype, msg::REC_REQUEST);
            let request = ovtp::hooks::msg::Request::decode(rec.plaintext).unwrap();
            let ovtp::hooks::msg::Op::List(list) = request.op else {
                panic!("not a listing: {:?}", request.op)
            };
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let page = answer(list.after).to_vec();
            let response =
                msg::Response { id: request.id, status: ovtp::status::OK, body: &page }.to_vec();
            let mut out = Vec::new();
            session
                .sealer()
                .seal(&mut rng, msg::REC_RESPONSE, msg::FLAG_FIN, &response, &mut out)
                .unwrap();
            if s.write_all(&out).is_err() {
                return;
            }
        }
    });
    (addr, trust, pages)
}

pub fn try_read_frame(s: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}
