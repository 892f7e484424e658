//! The blocking server: one thread per connection under a hard cap, a
//! deadline on every read, and the user's handler called for each request.

use crate::channel::{Channel, Conn, REC_REQUEST, REC_RESPONSE, alert_for};
use crate::constants::*;
use crate::error::{AlertCode, Error, Result};
use crate::files;
use crate::gate::{Admit, FailureBudget, Gate};
use crate::handshake::ServerAwaitAuth;
use crate::keys::{Fingerprint, KeyPair};
use crate::message::{Payload, Reply, Request, status};
use crate::rand::Rng;
use crate::transfer::{self, FileContext, OP_DIGEST, OP_GET, OP_PUT};
use crate::trust::AuthorizedKeys;
use crate::wire::Reader;
use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Request operation: a UTF-8 text message.
pub const OP_TEXT: u8 = 1;
/// Request operation: raw bytes.
pub const OP_DATA: u8 = 2;
/// Bytes in front of a request body: request id and operation.
pub const REQUEST_HEADER: usize = REQUEST_ID_LEN + 1;
/// Bytes in front of a response body: request id and status.
pub const RESPONSE_HEADER: usize = REQUEST_ID_LEN + 2;

/// The handler a server calls for each request.
pub type Handler = dyn Fn(Request<'_>) -> Reply + Send + Sync;

/// What the server reports to an optional observer (the CLI logs these).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A connection was refused before the handshake (cap reached).
    Busy {
        /// Peer address.
        peer: SocketAddr,
    },
    /// A handshake failed or the client was not authorized.
    HandshakeFailed {
        /// Peer address.
        peer: SocketAddr,
        /// What went wrong.
        error: &'a Error,
    },
    /// A client authenticated.
    Connected {
        /// Peer address.
        peer: SocketAddr,
        /// Client key fingerprint.
        client: &'a Fingerprint,
    },
    /// A request was answered.
    Request {
        /// Peer address.
        peer: SocketAddr,
        /// Client key fingerprint.
        client: &'a Fingerprint,
        /// Operation name ("text", "data").
        op: &'static str,
        /// Request body size.
        bytes: usize,
        /// Reply status.
        status: u16,
        /// Time spent.
        elapsed: Duration,
        /// Whether the reply came from the retry cache (handler not called again).
        replayed: bool,
    },
    /// An authenticated connection ended.
    Disconnected {
        /// Peer address.
        peer: SocketAddr,
        /// Client key fingerprint.
        client: &'a Fingerprint,
        /// The error that ended it, if any.
        error: Option<&'a Error>,
    },
}

/// Observer of server events.
pub type EventSink = dyn Fn(&Event<'_>) + Send + Sync;

/// Server limits and timeouts. `Default` gives the documented defaults.
#[derive(Clone)]
pub struct ServerConfig {
    /// Simultaneous connections (threads). Over it, new clients get a "busy" alert.
    pub max_connections: usize,
    /// Connections that have not yet presented an authorized key. Kept below
    /// `max_connections` so strangers cannot take every place; when full, the
    /// oldest stranger is evicted (see the `gate` module).
    pub max_unauthenticated: usize,
    /// Failed handshakes tolerated per source address before its strangers
    /// lose priority; `burst: 0` disables this.
    pub failure_budget: FailureBudget,
    /// Deadline for the whole handshake.
    pub handshake_timeout: Duration,
    /// Idle time between requests before the server closes the connection.
    pub idle_timeout: Duration,
    /// Deadline for one frame once it started, and for each write.
    pub io_timeout: Duration,
    /// Largest message held in memory.
    pub max_message_size: usize,
    /// Directory for uploads and downloads; `None` refuses file transfers.
    pub files_dir: Option<std::path::PathBuf>,
    /// Largest file accepted for upload; `None` means no limit.
    pub max_file_size: Option<u64>,
    /// Optional observer of connections and requests.
    pub events: Option<Arc<EventSink>>,
    /// Test hook, never for production: when set, every connection draws its
    /// randomness (nonce, secret, RSA padding and blinding, record IVs) from
    /// `Rng::from_seed(seed)` instead of the system generator, so that a
    /// recorded client byte stream can be replayed against the server and
    /// verify (`tests/mutation.rs`). It makes every connection's secrets equal
    /// and predictable.
    #[doc(hidden)]
    pub test_rng_seed: Option<[u8; 32]>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_unauthenticated: DEFAULT_MAX_UNAUTHENTICATED,
            failure_budget: FailureBudget {
                burst: DEFAULT_FAILURE_BURST,
                window: DEFAULT_FAILURE_WINDOW,
            },
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE,
            files_dir: None,
            max_file_size: None,
            events: None,
            test_rng_seed: None,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("max_connections", &self.max_connections)
            .field("max_unauthenticated", &self.max_unauthenticated)
            .field("failure_budget", &self.failure_budget)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("max_message_size", &self.max_message_size)
            .field("files_dir", &self.files_dir)
            .field("max_file_size", &self.max_file_size)
            .finish_non_exhaustive()
    }
}

type CacheKey = (Fingerprint, [u8; REQUEST_ID_LEN]);

enum CacheEntry {
    InProgress,
    Done(Arc<Reply>),
}

/// Replies of handled requests, by (client, request id), so that a retried
/// request is answered from here instead of running the handler again.
#[derive(Default)]
struct ReplyCache {
    map: HashMap<CacheKey, CacheEntry>,
    order: VecDeque<CacheKey>,
    bytes: usize,
    /// Entries at the front of `order` already looked at for bodies to drop:
    /// the next drop starts after them instead of rescanning (which made each
    /// request cost a scan of the whole cache once it was over budget).
    scanned: usize,
}

impl ReplyCache {
    /// Over the byte budget, the oldest replies lose their bodies but keep
    /// their ids (a retry then gets REPLY_LOST, never a second handler run);
    /// over the entry budget, the oldest ids are forgotten.
    fn evict(&mut self) {
        while self.bytes > REPLY_CACHE_BYTES && self.scanned < self.order.len() {
            let key = &self.order[self.scanned];
            if let Some(CacheEntry::Done(r)) = self.map.get_mut(key)
                && !r.body.is_empty()
            {
                self.bytes -= r.body.len();
                *r = Arc::new(Reply::new(status::REPLY_LOST, ""));
            }
            self.scanned += 1;
        }
        let mut budget = self.order.len();
        while self.map.len() > REPLY_CACHE_ENTRIES && budget > 0 {
            budget -= 1;
            self.scanned = self.scanned.saturating_sub(1);
            let Some(key) = self.order.pop_front() else {
                break;
            };
            match self.map.get(&key) {
                Some(CacheEntry::InProgress) => self.order.push_back(key),
                Some(CacheEntry::Done(r)) => {
                    self.bytes -= r.body.len();
                    self.map.remove(&key);
                }
                None => {}
            }
        }
    }
}

struct Shared {
    keys: KeyPair,
    authorized: AuthorizedKeys,
    handler: Box<Handler>,
    config: ServerConfig,
    stop: AtomicBool,
    active: AtomicUsize,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, TcpStream>>,
    replies: Mutex<ReplyCache>,
    reply_ready: Condvar,
    names: files::NameLocks,
    gate: Mutex<Gate>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data
    // inconsistent (each critical section is a single insert/remove), so
    // recover from poisoning instead of taking the server down.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn emit(&self, event: Event<'_>) {
        if let Some(sink) = &self.config.events {
            sink(&event);
        }
    }
}

/// A handle that stops a running server from another thread.
#[derive(Clone)]
pub struct Stopper {
    shared: Arc<Shared>,
    wake: SocketAddr,
}

impl std::fmt::Debug for Stopper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stopper").field("addr", &self.wake).finish()
    }
}

impl Stopper {
    /// Stop accepting, let requests in progress finish, close idle connections;
    /// `Server::run` then returns.
    pub fn stop(&self) {
        if self.shared.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the accept loop with a throwaway connection.
        let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
        // Reads in connection threads return end-of-file; a request being
        // handled still gets its reply written.
        for s in lock(&self.shared.conns).values() {
            let _ = s.shutdown(Shutdown::Read);
        }
    }
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Bind with the default [`ServerConfig`].
    pub fn bind<H>(
        addr: impl ToSocketAddrs,
        keys: KeyPair,
        authorized: AuthorizedKeys,
        handler: H,
    ) -> Result<Self>
    where
        H: Fn(Request<'_>) -> Reply + Send + Sync + 'static,
    {
        Self::bind_with(addr, keys, authorized, ServerConfig::default(), handler)
    }

    /// Bind with an explicit configuration.
    pub fn bind_with<H>(
        addr: impl ToSocketAddrs,
        keys: KeyPair,
        authorized: AuthorizedKeys,
        config: ServerConfig,
        handler: H,
    ) -> Result<Self>
    where
        H: Fn(Request<'_>) -> Reply + Send + Sync + 'static,
    {
        if config.max_connections == 0 {
            return Err(Error::InvalidInput(
                "max_connections must be at least 1".into(),
            ));
        }
        let listener = TcpListener::bind(addr)?;
        let (config_unauth, config_budget) = (config.max_unauthenticated, config.failure_budget);
        let shared = Arc::new(Shared {
            keys,
            authorized,
            handler: Box::new(handler),
            config,
            stop: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            replies: Mutex::new(ReplyCache::default()),
            reply_ready: Condvar::new(),
            names: files::NameLocks::default(),
            gate: Mutex::new(Gate::new(config_unauth, config_budget)),
        });
        Ok(Server { listener, shared })
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The server key's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.shared.keys.fingerprint()
    }

    /// A handle to stop the server from another thread.
    pub fn stopper(&self) -> Result<Stopper> {
        let mut wake = self.local_addr()?;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        Ok(Stopper {
            shared: self.shared.clone(),
            wake,
        })
    }

    /// Connections that have not yet presented an authorized key.
    pub fn unauthenticated_connections(&self) -> usize {
        lock(&self.shared.gate).strangers()
    }

    /// Number of connection threads currently running.
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Accept and serve until stopped. Returns after the accept loop ends and
    /// connection threads have finished (or `io_timeout` passed).
    pub fn run(self) -> Result<()> {
        let shared = self.shared;
        for incoming in self.listener.incoming() {
            if shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let stream = match incoming {
                Ok(s) => s,
                // Out of file descriptors and similar: back off briefly, keep serving.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let Ok(peer) = stream.peer_addr() else {
                continue;
            };
            // Reserve a slot; over the cap, answer "busy" at once and close.
            if shared.active.fetch_add(1, Ordering::SeqCst) >= shared.config.max_connections {
                shared.active.fetch_sub(1, Ordering::SeqCst);
                shared.emit(Event::Busy { peer });
                let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
                if let Ok(conn) = Conn::new(stream, Duration::from_millis(500)) {
                    conn.refuse(AlertCode::Busy, "too many connections; try again later");
                }
                continue;
            }
            let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
            // With the stranger pool full, look at what the newcomer has already
            // sent: a client sends its hello right after connecting, so it is
            // usually here by now. An authorized key goes straight past the
            // pool; an unknown one is refused without taking a place.
            let full = lock(&shared.gate).is_full();
            let peeked = if full {
                peek_hello(&shared, &stream)
            } else {
                Peeked::Nothing
            };
            let admitted = match peeked {
                Peeked::Authorized => Admit::Yes { evict: None },
                Peeked::Unauthorized => {
                    shared.active.fetch_sub(1, Ordering::SeqCst);
                    lock(&shared.gate).leave(id, peer.ip(), true, Instant::now());
                    shared.emit(Event::Busy { peer });
                    if let Ok(conn) = Conn::new(stream, Duration::from_millis(500)) {
                        conn.refuse(
                            AlertCode::Unauthorized,
                            "client key is not in authorized_keys",
                        );
                    }
                    continue;
                }
                Peeked::Nothing => lock(&shared.gate).admit(id, peer.ip(), Instant::now()),
            };
            match admitted {
                Admit::No { quiet } => {
                    shared.active.fetch_sub(1, Ordering::SeqCst);
                    shared.emit(Event::Busy { peer });
                    // A penalized address gets not even an alert; others learn to retry.
                    if !quiet {
                        let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
                        if let Ok(conn) = Conn::new(stream, Duration::from_millis(500)) {
                            conn.refuse(
                                AlertCode::Busy,
                                "too many connections being set up; try again",
                            );
                        }
                    }
                    continue;
                }
                Admit::Yes {
                    evict: Some(victim),
                } => {
                    if let Some(s) = lock(&shared.conns).get(&victim) {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                }
                Admit::Yes { evict: None } => {}
            }
            if let Ok(clone) = stream.try_clone() {
                lock(&shared.conns).insert(id, clone);
            }
            let worker = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ovtp-conn-{id}"))
                .spawn(move || {
                    let _slot = Slot {
                        shared: &worker,
                        id,
                    };
                    serve_connection(&worker, stream, peer, id);
                });
            if spawned.is_err() {
                lock(&shared.conns).remove(&id);
                lock(&shared.gate).leave(id, peer.ip(), false, Instant::now());
                shared.active.fetch_sub(1, Ordering::SeqCst);
            }
        }
        // Wait for connection threads to wind down (bounded).
        let until = Instant::now() + shared.config.io_timeout;
        while shared.active.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

/// What a newcomer has sent before it was given a thread.
enum Peeked {
    /// A complete hello naming a key in `authorized_keys`.
    Authorized,
    /// A complete hello naming any other key.
    Unauthorized,
    /// Nothing usable yet (silence, a partial frame, garbage).
    Nothing,
}

/// How long the accept loop looks for a newcomer's hello when the stranger
/// pool is full. Short: the accept loop serves everyone.
const HELLO_PEEK: Duration = Duration::from_millis(2);

/// Peek (without consuming) at a newcomer's first frame, for at most HELLO_PEEK.
fn peek_hello(shared: &Shared, stream: &TcpStream) -> Peeked {
    let deadline = Instant::now() + HELLO_PEEK;
    let mut buf = vec![0u8; LEN_PREFIX + MAX_HANDSHAKE_FRAME];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Peeked::Nothing;
        }
        let n = match stream.peek(&mut buf) {
            Ok(n) if n > 0 => n,
            _ => return Peeked::Nothing,
        };
        if n >= LEN_PREFIX {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if len == 0 || len > MAX_HANDSHAKE_FRAME {
                return Peeked::Nothing;
            }
            if n >= LEN_PREFIX + len {
                return match crate::handshake::client_hello_key(&buf[LEN_PREFIX..LEN_PREFIX + len])
                {
                    Ok(key) if shared.authorized.contains(&key).unwrap_or(false) => {
                        Peeked::Authorized
                    }
                    Ok(_) => Peeked::Unauthorized,
                    Err(_) => Peeked::Nothing,
                };
            }
        }
        // A partial frame: give the rest a moment.
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Releases a connection slot when the thread ends, even by panic.
struct Slot<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        // Also on a panic before the handshake ended: never leave a stale stranger.
        lock(&self.shared.gate).promote(self.id);
        lock(&self.shared.conns).remove(&self.id);
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve_connection(shared: &Shared, stream: TcpStream, peer: SocketAddr, id: u64) {
    let config = &shared.config;
    let Ok(mut conn) = Conn::new(stream, config.io_timeout) else {
        return;
    };
    let mut rng = match config.test_rng_seed {
        Some(seed) => Rng::from_seed(seed),
        None => Rng::system(),
    };
    let outcome = handshake(shared, &mut conn, &mut rng, id);
    lock(&shared.gate).leave(id, peer.ip(), outcome.is_err(), Instant::now());
    let channel = match outcome {
        Ok(session) => conn.into_channel(session, rng, config.max_message_size),
        Err(error) => {
            shared.emit(Event::HandshakeFailed {
                peer,
                error: &error,
            });
            let (code, message) = alert_for(&error);
            conn.refuse(code, &message);
            return;
        }
    };
    let client = channel.peer.fingerprint();
    shared.emit(Event::Connected {
        peer,
        client: &client,
    });
    let result = serve_requests(shared, id, channel, peer, &client);
    shared.emit(Event::Disconnected {
        peer,
        client: &client,
        error: result.as_ref().err(),
    });
}

fn handshake(
    shared: &Shared,
    conn: &mut Conn,
    rng: &mut Rng,
    id: u64,
) -> Result<crate::handshake::Session> {
    let deadline = Instant::now() + shared.config.handshake_timeout;
    let hello = conn.read_frame(MAX_HANDSHAKE_FRAME, deadline, "handshake")?;
    if shared.stop.load(Ordering::SeqCst) {
        return Err(Error::ShuttingDown);
    }
    let (state, reply) = ServerAwaitAuth::read_client_hello(&shared.keys, &hello, rng, |key| {
        let authorized = shared.authorized.contains(key)?;
        if authorized {
            lock(&shared.gate).promote(id);
        }
        Ok(authorized)
    })?;
    conn.write_all(&reply)?;
    let auth = conn.read_frame(MAX_HANDSHAKE_FRAME, deadline, "handshake")?;
    let (session, reply) = state.read_client_auth(&auth, rng)?;
    conn.write_all(&reply)?;
    Ok(session)
}

fn serve_requests(
    shared: &Shared,
    conn_id: u64,
    mut ch: Channel,
    peer: SocketAddr,
    client: &Fingerprint,
) -> Result<()> {
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            let _ = ch.send_alert(AlertCode::ShuttingDown, "server is shutting down");
            return Ok(());
        }
        let deadline = Instant::now() + shared.config.idle_timeout;
        let msg = match ch.recv(deadline, REQUEST_HEADER) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(e) => {
                if let Error::TooLarge { .. } = e {
                    let _ = ch.send_alert(
                        AlertCode::TooLarge,
                        "message larger than the server accepts",
                    );
                    ch.conn.linger(
                        Duration::from_secs(2),
                        2 * shared.config.max_message_size as u64,
                    );
                }
                return Err(e);
            }
        };
        if msg.rtype != REC_REQUEST {
            let _ = ch.send_alert(AlertCode::Protocol, "expected a request");
            return Err(Error::Malformed("expected a request record"));
        }
        let started = Instant::now();
        let mut r = Reader::new(&msg.payload);
        let id: [u8; REQUEST_ID_LEN] = r.array("request id")?;
        let op = r.u8("operation")?;
        let body = r.rest();
        let (status, replayed) = match op {
            OP_PUT | OP_GET | OP_DIGEST => (
                serve_file_op(shared, conn_id, &mut ch, client, peer, id, op, body)?,
                false,
            ),
            _ => {
                let (reply, replayed) = answer(shared, client, peer, id, op, body);
                // Pipelined requests already waiting: answer them all, then write once.
                ch.queue(
                    REC_RESPONSE,
                    &transfer::response_header(&id, reply.status),
                    &reply.body,
                )?;
                if !ch.has_buffered_input() {
                    ch.flush()?;
                }
                (reply.status, replayed)
            }
        };
        shared.emit(Event::Request {
            peer,
            client,
            op: op_name(op),
            bytes: body.len(),
            status,
            elapsed: started.elapsed(),
            replayed,
        });
    }
}

/// File operations stream their own records; an upload's final reply is
/// remembered so that a retry after a lost reply is answered, not repeated.
#[allow(clippy::too_many_arguments)]
fn serve_file_op(
    shared: &Shared,
    conn_id: u64,
    ch: &mut Channel,
    client: &Fingerprint,
    peer: SocketAddr,
    id: [u8; REQUEST_ID_LEN],
    op: u8,
    body: &[u8],
) -> Result<u16> {
    let key = (client.clone(), id);
    if op == OP_PUT
        && let Some(CacheEntry::Done(reply)) = lock(&shared.replies).map.get(&key)
    {
        let reply = reply.clone();
        ch.send(
            REC_RESPONSE,
            &transfer::response_header(&id, reply.status),
            &reply.body,
        )?;
        return Ok(reply.status);
    }
    let handler = |payload: Payload| call_handler(shared, client, peer, payload);
    let remember = |reply: &Reply| {
        let reply = Arc::new(reply.clone());
        let mut cache = lock(&shared.replies);
        cache.bytes += reply.body.len();
        cache.order.push_back(key.clone());
        cache.map.insert(key.clone(), CacheEntry::Done(reply));
        cache.evict();
    };
    let supersede = |conn: u64| {
        if let Some(s) = lock(&shared.conns).get(&conn) {
            let _ = s.shutdown(Shutdown::Both);
        }
    };
    let ctx = FileContext {
        root: shared.config.files_dir.as_deref(),
        max_file_size: shared.config.max_file_size,
        io_timeout: shared.config.io_timeout,
        locks: &shared.names,
        handler: &handler,
        owner: files::Owner {
            request: key.clone(),
            conn: conn_id,
        },
        supersede: &supersede,
        remember: &remember,
    };
    let reply = match op {
        OP_PUT => transfer::serve_put(&ctx, ch, &id, body)?,
        OP_GET => transfer::serve_get(&ctx, ch, &id, body)?,
        _ => transfer::serve_digest(&ctx, ch, &id, body)?,
    };
    Ok(reply.status)
}

fn op_name(op: u8) -> &'static str {
    match op {
        OP_TEXT => "text",
        OP_DATA => "data",
        OP_PUT => "put",
        OP_GET => "get",
        OP_DIGEST => "digest",
        _ => "unknown",
    }
}

/// Answer a request at most once: a retry with the same id gets the first reply.
fn answer(
    shared: &Shared,
    client: &Fingerprint,
    peer: SocketAddr,
    id: [u8; REQUEST_ID_LEN],
    op: u8,
    body: &[u8],
) -> (Arc<Reply>, bool) {
    let key = (client.clone(), id);
    {
        let mut cache = lock(&shared.replies);
        let wait_until = Instant::now() + shared.config.io_timeout;
        loop {
            match cache.map.get(&key) {
                Some(CacheEntry::Done(reply)) => return (reply.clone(), true),
                Some(CacheEntry::InProgress) => {
                    // The same request is running on another connection (the
                    // client retried while it was being handled): wait for it.
                    let left = wait_until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return (
                            Arc::new(Reply::new(status::REPLY_LOST, "request still in progress")),
                            true,
                        );
                    }
                    cache = shared
                        .reply_ready
                        .wait_timeout(cache, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                None => {
                    cache.map.insert(key.clone(), CacheEntry::InProgress);
                    cache.order.push_back(key.clone());
                    break;
                }
            }
        }
    }
    let reply = Arc::new(match message_payload(op, body) {
        Ok(payload) => call_handler(shared, client, peer, payload),
        Err(reply) => reply,
    });
    let mut cache = lock(&shared.replies);
    cache.bytes += reply.body.len();
    cache.map.insert(key, CacheEntry::Done(reply.clone()));
    cache.evict();
    shared.reply_ready.notify_all();
    (reply, false)
}

fn call_handler(
    shared: &Shared,
    client: &Fingerprint,
    peer_addr: SocketAddr,
    payload: Payload,
) -> Reply {
    let request = Request {
        client,
        peer_addr,
        payload,
    };
    match catch_unwind(AssertUnwindSafe(|| (shared.handler)(request))) {
        Ok(reply) => reply,
        Err(_) => Reply::new(
            status::HANDLER_PANICKED,
            "the server's handler failed on this request",
        ),
    }
}

fn message_payload(op: u8, body: &[u8]) -> std::result::Result<Payload, Reply> {
    match op {
        OP_TEXT => match std::str::from_utf8(body) {
            Ok(s) => Ok(Payload::Text(s.to_owned())),
            Err(e) => Err(Reply::new(
                status::BAD_REQUEST,
                format!("text message is not valid UTF-8: {e}"),
            )),
        },
        OP_DATA => Ok(Payload::Data(body.to_vec())),
        other => Err(Reply::new(
            status::UNSUPPORTED,
            format!("unknown operation {other}"),
        )),
    }
}
