//! The protocol core: everything that reads or writes protocol bytes or
//! decides on peer input, and nothing that touches a socket, a file or a
//! thread (a test in `tests/layers.rs` keeps it so). The layers above drive it.
//!
//! - [`codec`]: frames and a bounds-checked reader that refuses trailing bytes;
//! - [`handshake`]: states that consume each other; a session only from a verified transcript;
//! - [`dh`]: the ffdhe3072 group, ephemeral exponents, shares and the shared secret;
//! - [`schedule`]: HKDF-SHA256 and the four session keys;
//! - [`record`]: sealing and opening encrypt-then-MAC records;
//! - [`msg`]: every wire code, and the typed message bodies;
//! - [`transfer`]: the file `Sender` and `Receiver`, shared by upload and download.

pub mod codec;
pub mod dh;
pub mod handshake;
pub mod msg;
pub mod record;
pub mod schedule;
pub mod transfer;
