//! What a server is configured with, and what it reports.

use super::admission::FailureBudget;
use crate::constants::*;
use crate::error::Error;
use crate::keys::Fingerprint;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    /// oldest stranger is evicted (PROTOCOL.md 5.3).
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
    /// Directory for uploads and downloads; `None` refuses file transfers. It
    /// must exist, be writable by its owner only, and not contain the server's
    /// `authorized_keys`, the key file it was loaded from, or `protected_paths`.
    pub files_dir: Option<std::path::PathBuf>,
    /// More files and directories that `files_dir` may not contain (the
    /// command line adds its home and key files).
    pub protected_paths: Vec<std::path::PathBuf>,
    /// Largest file accepted for upload; `None` means no limit.
    pub max_file_size: Option<u64>,
    /// Optional observer of connections and requests.
    pub events: Option<Arc<EventSink>>,
    /// Test hook (cargo feature `test-hooks`), never for production: when set, every connection draws its
    /// randomness (nonce, secret, RSA padding and blinding, record IVs) from
    /// `Rng::from_seed(seed)` instead of the system generator, so that a
    /// recorded client byte stream can be replayed against the server and
    /// verify (`tests/mutation.rs`). It makes every connection's secrets equal
    /// and predictable.
    #[cfg(feature = "test-hooks")]
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
            protected_paths: Vec::new(),
            max_file_size: None,
            events: None,
            #[cfg(feature = "test-hooks")]
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
            .field("protected_paths", &self.protected_paths)
            .field("max_file_size", &self.max_file_size)
            .finish_non_exhaustive()
    }
}
