#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! ovtp: Over Transfer Protocol.

mod channel;
pub mod client;
pub mod constants;
pub mod error;
pub mod handshake;
pub mod keys;
pub mod message;
pub mod rand;
pub mod record;
pub mod server;
pub mod trust;
pub mod wire;

pub use client::{Client, ClientConfig, HostTrust};
pub use error::{AlertCode, Error, Result};
pub use keys::{Fingerprint, KeyPair, PublicKey};
pub use message::{Payload, Reply, Request, status};
pub use rand::Rng;
pub use server::{Server, ServerConfig, Stopper};
pub use trust::{AuthorizedKeys, HostCheck, KnownHosts};

/// Record sealers and openers of both sides, derived from fixed secrets, for the
/// benchmarks in `benches/` only. Not part of the API: the library itself builds
/// them only from a verified handshake, and fixed secrets give no security.
/// Returns `((client sealer, client opener), (server sealer, server opener))`.
#[doc(hidden)]
pub fn bench_record_halves(
    client_secret: &[u8; constants::SECRET_LEN],
    server_secret: &[u8; constants::SECRET_LEN],
    transcript: &[u8; 32],
) -> (
    (record::Sealer, record::Opener),
    (record::Sealer, record::Opener),
) {
    let keys = record::SessionKeys::derive(client_secret, server_secret, transcript);
    (keys.client_halves(), keys.server_halves())
}
