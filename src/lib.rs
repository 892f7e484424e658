#![forbid(unsafe_code)]
#![warn(missing_docs)]

//! # ovtp: Over Transfer Protocol
//!
//! Messages and files between servers, encrypted end to end, with clients
//! authorized by key. A [`Server`] calls your handler for each request and
//! sends back its `(status, response)`; a [`Client`] sends messages, raw data
//! and files, fetches files and asks for remote digests, all over one
//! authenticated connection.
//!
//! Both sides prove possession of their RSA keys by signing (RSA-PSS-SHA256)
//! the whole handshake transcript; each wraps a fresh secret to the other with
//! RSA-OAEP-SHA256 and adds an ephemeral ffdhe3072 share (RFC 7919), so that a
//! recorded session stays closed even to whoever later steals both private
//! keys; session keys come from both secrets and the Diffie-Hellman secret
//! through HKDF-SHA256;
//! records are AES-256-CBC + HMAC-SHA256, encrypt-then-MAC, with sequence
//! numbers. The server only talks to keys in its `authorized_keys`; the client
//! only to a server whose key it has pinned (`known_hosts` or a fingerprint).
//! `PROTOCOL.md` in the repository specifies every byte.
//!
//! ```
//! use ovtp::{AuthorizedKeys, Client, HostTrust, KeyPair, Payload, Reply, Request, Server};
//!
//! # fn main() -> ovtp::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("ovtp-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! // Keys: the server's, and a client's that the server authorizes.
//! let server_keys = KeyPair::generate(2048)?;
//! let client_keys = KeyPair::generate(2048)?;
//! let authorized = AuthorizedKeys::new(dir.join("authorized_keys"));
//! authorized.add(client_keys.public(), "alice@laptop")?;
//!
//! // A server with a handler that returns a status and a response.
//! let server = Server::bind("127.0.0.1:0", server_keys.clone(), authorized, |req: Request<'_>| {
//!     match req.payload {
//!         Payload::Text(text) => Reply::ok(format!("hello, {text}")),
//!         _ => Reply::new(1, "only text here"),
//!     }
//! })?;
//! let addr = server.local_addr()?;
//! let stopper = server.stopper()?;
//! let running = std::thread::spawn(move || server.run());
//!
//! // A client that pins the server's key by fingerprint.
//! let trust = HostTrust::Fingerprint(server_keys.fingerprint());
//! let mut client = Client::connect(&addr.to_string(), client_keys, trust)?;
//! let reply = client.send_message("world")?;
//! assert_eq!((reply.status, reply.text().as_str()), (0, "hello, world"));
//!
//! stopper.stop();
//! running.join().expect("server thread")?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Layers
//!
//! The rule: `proto/` reads and writes every protocol byte and makes every
//! decision on peer input, and has no sockets, files or threads
//! (`tests/layers.rs` fails if it gains any). Everything above only drives
//! it and moves bytes.
//!
//! | layer | what | properties it holds (PROTOCOL.md 13) |
//! |---|---|---|
//! | `proto/codec.rs` | frames, bounds-checked reader, `Body` | lengths checked before allocation; no trailing bytes |
//! | `proto/handshake.rs` | handshake states | versioned; mutual authentication; no private-key work and no exponentiation before the client's signature verifies; pinning before signing |
//! | `proto/dh.rs` | ffdhe3072 shares and secret | forward secrecy; peer shares checked `1 < Y < p-1` |
//! | `proto/schedule.rs` | HKDF, session keys | four independent keys |
//! | `proto/record.rs` | `Sealer`, `Opener` | encrypt-then-MAC, tag checked before decryption; replay, reorder, reflection fail; sequence numbers never wrap |
//! | `proto/msg.rs` | wire codes, typed bodies, message assembly | unknown flags refused; one message type per message; message size bounded |
//! | `proto/transfer.rs` | file `Sender`, `Receiver` | contiguous chunks inside the announced size; resume only on a matching prefix; FILE_END verdict |
//! | `io/` | connection with deadlines, channel, file pipes, the sealing pool | every read and write bounded in time; helper threads bounded |
//! | `server/` | admission, session loop, reply cache, file operations, [`Handler`] | connection cap, stranger pool; at-most-once; files refused unless the handler allows them |
//! | `client/` | [`Client`], retries | server key pinned; retries reuse the request id |
//! | `store/` | name confinement, partial files, commit, name locks | names confined; nothing partial under a final name |
//! | `keys.rs`, `trust.rs` | keys, `authorized_keys`, `known_hosts` | private keys 0600; keys re-read on change |

mod client;
pub mod constants;
mod error;
mod io;
mod keys;
mod message;
mod proto;
mod rand;
mod server;
pub mod status;
mod store;
mod trust;

pub use client::{
    Client, ClientConfig, HostTrust, Outgoing, PIPELINE_WINDOW_BYTES, normalize_host,
};
pub use error::{Error, Result, escape_control};
pub use keys::{Fingerprint, KeyPair, PublicKey};
pub use message::{
    DirEntry, EntryKind, FileDigest, FileReport, Payload, Progress, Reply, Request, TransferOptions,
};
pub use rand::Rng;
pub use server::admission::{FailureBudget, MIN_STRANGER_AGE};
pub use server::{Event, EventSink, Handler, ServeFiles, Server, ServerConfig, Stopper};
pub use status::AlertCode;
pub use store::{
    PARTIAL_SUFFIX, check_name, check_name_for_write, hex, partial_path, upload_partial_path,
};
pub use trust::{
    AuthorizedKeys, HostCheck, KnownHosts, authorized_key_line, parse_authorized_keys,
    parse_known_hosts,
};

/// Internals for tests, fuzz targets and benchmarks (cargo feature
/// `test-hooks`): the protocol core's states and codecs. Not a stable API.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod hooks {
    pub use crate::io::sealing::SealPool;
    pub use crate::proto::codec::{Body, split_frame};
    pub use crate::proto::dh;
    pub use crate::proto::handshake::{
        ClientAwaitAuth, ClientSecrets, ClientStart, ClientVerified, ServerAwaitAuth, ServerHalf,
        ServerVerified, Session, alert_frame, client_hello_key,
    };
    pub use crate::proto::msg;
    pub use crate::proto::record::{Opener, Plain, Record, Sealer};
    pub use crate::proto::schedule::{DIR_CLIENT_TO_SERVER, DIR_SERVER_TO_CLIENT, SessionKeys};
    pub use crate::proto::transfer::{Receiver, Refusal, Sender, Start, Verdict, resume_point};
}

/// The README's code examples, compiled as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
