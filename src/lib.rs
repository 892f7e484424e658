#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! ovtp: Over Transfer Protocol.

mod channel;
pub mod client;
pub mod constants;
pub mod error;
pub mod files;
pub mod handshake;
pub mod keys;
pub mod message;
pub mod rand;
pub mod record;
pub mod server;
pub mod transfer;
pub mod trust;
pub mod wire;

pub use client::{Client, ClientConfig, HostTrust};
pub use error::{AlertCode, Error, Result};
pub use keys::{Fingerprint, KeyPair, PublicKey};
pub use message::{Payload, Reply, Request, status};
pub use rand::Rng;
pub use server::{Server, ServerConfig, Stopper};
pub use transfer::{FileDigest, FileReport, TransferOptions};
pub use trust::{AuthorizedKeys, HostCheck, KnownHosts};
