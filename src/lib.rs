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
//! RSA-OAEP-SHA256; session keys come from both secrets through HKDF-SHA256;
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
//! The layers, bottom up: [`wire`] (frames and a bounds-checked reader),
//! [`record`] (key derivation, sealing and opening records), [`handshake`]
//! (states that consume each other, no I/O), then the socket-owning server and
//! client, [`transfer`] (file streaming) and [`files`] (name confinement,
//! partial files). [`constants`] holds every limit with the reason for it.

mod channel;
pub mod client;
pub mod constants;
pub mod error;
pub mod files;
pub mod gate;
pub mod handshake;
pub mod keys;
pub mod message;
pub mod rand;
pub mod record;
pub mod server;
pub mod transfer;
pub mod trust;
pub mod wire;

pub use client::{Client, ClientConfig, HostTrust, Outgoing};
pub use error::{AlertCode, Error, Result};
pub use gate::FailureBudget;
pub use keys::{Fingerprint, KeyPair, PublicKey};
pub use message::{Payload, Reply, Request, status};
pub use rand::Rng;
pub use server::{Server, ServerConfig, Stopper};
pub use transfer::{FileDigest, FileReport, TransferOptions};
pub use trust::{AuthorizedKeys, HostCheck, KnownHosts};

/// The README's code examples, compiled as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
