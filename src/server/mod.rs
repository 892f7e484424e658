//! The blocking server: one thread per connection under a hard cap, a
//! deadline on every read, and the user's handler called for each request.
//!
//! - [`config`]: limits, timeouts and the event observer;
//! - [`admission`]: the connection cap and the stranger pool, before any thread;
//! - [`session`]: the handshake and request loop of one connection;
//! - [`reply_cache`]: at-most-once replies;
//! - [`files`]: PUT, GET and DIGEST against the store;
//! - [`handler`]: what the embedding program answers.

pub mod admission;
pub mod config;
pub mod files;
pub mod handler;
pub mod reply_cache;
pub mod session;

pub use config::{Event, EventSink, ServerConfig};
pub use handler::{Handler, ServeFiles};

use crate::error::{Error, Result};
use crate::keys::{Fingerprint, KeyPair};
use crate::store::locks::NameLocks;
pub(crate) use crate::store::locks::lock;
use crate::store::names;
use crate::trust::AuthorizedKeys;
use admission::Gate;
use reply_cache::ReplyCache;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// State shared by the accept loop and every connection thread.
pub(crate) struct Shared {
    pub(crate) keys: KeyPair,
    pub(crate) authorized: AuthorizedKeys,
    pub(crate) handler: Box<dyn Handler>,
    pub(crate) config: ServerConfig,
    pub(crate) stop: AtomicBool,
    pub(crate) active: AtomicUsize,
    pub(crate) next_id: AtomicU64,
    pub(crate) conns: Mutex<HashMap<u64, TcpStream>>,
    pub(crate) replies: ReplyCache,
    pub(crate) names: NameLocks,
    pub(crate) gate: Mutex<Gate>,
}

impl Shared {
    pub(crate) fn emit(&self, event: Event<'_>) {
        if let Some(sink) = &self.config.events {
            sink(&event);
        }
    }

    /// Close connection `id` at once: an evicted stranger, or the connection
    /// a resumed transfer supersedes.
    pub(crate) fn close(&self, id: u64) {
        if let Some(s) = lock(&self.conns).get(&id) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A handle that stops a running server from another thread.
#[derive(Clone)]
pub struct Stopper {
    shared: Arc<Shared>,
    wake: Vec<SocketAddr>,
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
        // Wake each accept loop with a throwaway connection.
        for addr in &self.wake {
            let _ = TcpStream::connect_timeout(addr, Duration::from_secs(1));
        }
        // Reads in connection threads return end-of-file; a request being
        // handled still gets its reply written.
        for s in lock(&self.shared.conns).values() {
            let _ = s.shutdown(Shutdown::Read);
        }
    }
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    listeners: Vec<TcpListener>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addrs", &self.local_addrs().ok()).finish_non_exhaustive()
    }
}

impl Server {
    /// Bind with the default [`ServerConfig`]. `handler` is a [`Handler`]:
    /// a closure `Fn(Request) -> Reply` serves messages and refuses files.
    pub fn bind(
        addr: impl ToSocketAddrs,
        keys: KeyPair,
        authorized: AuthorizedKeys,
        handler: impl Handler,
    ) -> Result<Self> {
        Self::bind_with(addr, keys, authorized, ServerConfig::default(), handler)
    }

    /// Bind with an explicit configuration.
    pub fn bind_with(
        addr: impl ToSocketAddrs,
        keys: KeyPair,
        authorized: AuthorizedKeys,
        config: ServerConfig,
        handler: impl Handler,
    ) -> Result<Self> {
        let listener = TcpListener::bind(addr)?;
        Self::from_listener(listener, keys, authorized, config, handler)
    }

    /// Serve on a listener the caller bound (and perhaps configured) itself.
    pub fn from_listener(
        listener: TcpListener,
        keys: KeyPair,
        authorized: AuthorizedKeys,
        config: ServerConfig,
        handler: impl Handler,
    ) -> Result<Self> {
        Self::from_listeners(vec![listener], keys, authorized, config, handler)
    }

    /// Serve on several listeners at once (say an IPv4 and an IPv6 one),
    /// with one connection cap and one admission gate for all of them.
    pub fn from_listeners(
        listeners: Vec<TcpListener>,
        keys: KeyPair,
        authorized: AuthorizedKeys,
        config: ServerConfig,
        handler: impl Handler,
    ) -> Result<Self> {
        if listeners.is_empty() {
            return Err(Error::InvalidInput("a server needs a listener".into()));
        }
        if config.max_connections == 0 {
            return Err(Error::InvalidInput("max_connections must be at least 1".into()));
        }
        if let Some(dir) = &config.files_dir {
            let mut protected = vec![authorized.path()];
            protected.extend(keys.path());
            protected.extend(config.protected_paths.iter().map(|p| p.as_path()));
            names::check_files_dir(dir, &protected).map_err(Error::InvalidInput)?;
        }
        let shared = Arc::new(Shared {
            keys,
            authorized,
            handler: Box::new(handler),
            gate: Mutex::new(Gate::new(config.max_unauthenticated, config.failure_budget)),
            config,
            stop: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            replies: ReplyCache::default(),
            names: NameLocks::default(),
        });
        Ok(Server { listeners, shared })
    }

    /// The address the server listens on (the first, with several listeners;
    /// useful after binding port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listeners[0].local_addr()?)
    }

    /// Every address the server listens on.
    pub fn local_addrs(&self) -> Result<Vec<SocketAddr>> {
        Ok(self.listeners.iter().map(TcpListener::local_addr).collect::<std::io::Result<_>>()?)
    }

    /// The server key's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.shared.keys.fingerprint()
    }

    /// A handle to stop the server from another thread.
    pub fn stopper(&self) -> Result<Stopper> {
        let mut wake = self.local_addrs()?;
        for addr in wake.iter_mut().filter(|a| a.ip().is_unspecified()) {
            let v4 = addr.is_ipv4();
            addr.set_ip(if v4 { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() });
        }
        Ok(Stopper { shared: self.shared.clone(), wake })
    }

    /// Accept and serve until stopped. Returns after the accept loop ends and
    /// connection threads have finished (or `io_timeout` passed).
    pub fn run(self) -> Result<()> {
        let (shared, listeners) = (&self.shared, &self.listeners);
        // One accept loop per further listener, on a thread of its own (there
        // is at least one listener: from_listeners refuses none).
        std::thread::scope(|scope| {
            for listener in &listeners[1..] {
                scope.spawn(|| accept(shared, listener));
            }
            accept(shared, &listeners[0]);
        });
        // Wait for connection threads to wind down (bounded).
        let until = Instant::now() + shared.config.io_timeout;
        while shared.active.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

/// Accept and admit connections until the server is stopped.
fn accept(shared: &Arc<Shared>, listener: &TcpListener) {
    for incoming in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = incoming else {
            // Out of file descriptors and similar: back off briefly, keep serving.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if let Some((stream, peer, id)) = admission::admit(shared, stream) {
            spawn_connection(shared, stream, peer, id);
        }
    }
}

/// Give an admitted connection its thread (it holds its slot until it ends).
fn spawn_connection(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr, id: u64) {
    if let Ok(clone) = stream.try_clone() {
        lock(&shared.conns).insert(id, clone);
    }
    let slot = Slot { shared: shared.clone(), id };
    // A thread that cannot be spawned drops its closure, and the slot with it.
    let _ = std::thread::Builder::new().name(format!("ovtp-conn-{id}")).spawn(move || {
        session::serve_connection(&slot.shared, stream, peer, id);
    });
}

/// Releases a connection slot when the thread ends (even by panic), or when
/// it could not be spawned.
struct Slot {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Also on a panic before the handshake ended: never leave a stale stranger.
        lock(&self.shared.gate).promote(self.id);
        lock(&self.shared.conns).remove(&self.id);
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}
