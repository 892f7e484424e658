//! Status codes a server answers with, and the alert codes that refuse a
//! connection. Both are wire values (PROTOCOL.md 7.3, 9); this file imports
//! nothing, so every other module can use it without a cycle.
//!
//! Status `OK` (0) is success; 1..=0xFEFF belong to applications; the range
//! from 0xFF00 is reserved for ovtp itself.

use std::fmt;

/// Success.
pub const OK: u16 = 0;
/// A generic application error.
pub const ERROR: u16 = 1;
/// The request was malformed (for example a text message that is not UTF-8).
pub const BAD_REQUEST: u16 = 0xFF00;
/// The handler panicked; the connection and the server keep running.
pub const HANDLER_PANICKED: u16 = 0xFF01;
/// The request was handled before, but its reply is no longer remembered.
pub const REPLY_LOST: u16 = 0xFF02;
/// The operation is not supported by this server (for example file
/// transfer on a server without a files directory).
pub const UNSUPPORTED: u16 = 0xFF03;
/// The remote file name is invalid or leads outside the files directory.
pub const BAD_NAME: u16 = 0xFF10;
/// The remote file exists and overwriting was not requested.
pub const FILE_EXISTS: u16 = 0xFF11;
/// The remote file does not exist.
pub const NOT_FOUND: u16 = 0xFF12;
/// The server could not read or write the file (disk full, permissions...).
pub const IO_ERROR: u16 = 0xFF13;
/// The received file's length or SHA-256 did not match; nothing was kept.
pub const DIGEST_MISMATCH: u16 = 0xFF14;
/// Another transfer to the same name is in progress.
pub const NAME_BUSY: u16 = 0xFF15;
/// The file is larger than the server accepts.
pub const TOO_LARGE: u16 = 0xFF16;
/// The sender abandoned the transfer; the partial file is kept for resuming.
pub const ABORTED: u16 = 0xFF17;

/// A short name for a reserved status, if it is one.
pub fn reserved_name(code: u16) -> Option<&'static str> {
    match code {
        BAD_REQUEST => Some("bad request"),
        HANDLER_PANICKED => Some("handler panicked"),
        REPLY_LOST => Some("already handled; reply no longer available"),
        UNSUPPORTED => Some("unsupported operation"),
        BAD_NAME => Some("bad file name"),
        FILE_EXISTS => Some("file exists"),
        NOT_FOUND => Some("no such file"),
        IO_ERROR => Some("server I/O error"),
        DIGEST_MISMATCH => Some("length or digest mismatch"),
        NAME_BUSY => Some("another transfer to this name is in progress"),
        TOO_LARGE => Some("file too large"),
        ABORTED => Some("transfer aborted"),
        _ => None,
    }
}

/// Codes carried in a plaintext alert frame (before or instead of a session) or
/// in an encrypted close record. They are part of the protocol; see PROTOCOL.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlertCode {
    /// The server has reached its connection cap; try again later.
    Busy,
    /// The client key is not in the server's `authorized_keys`.
    Unauthorized,
    /// The peer speaks another protocol version.
    Version,
    /// The handshake failed (bad frame, bad signature, timeout).
    HandshakeFailed,
    /// The server is shutting down.
    ShuttingDown,
    /// A limit was exceeded.
    TooLarge,
    /// Any other protocol error.
    Protocol,
    /// The peer's Diffie-Hellman share is out of range.
    KeyShare,
    /// A code this build does not know.
    Unknown(u8),
}

impl AlertCode {
    /// The wire value, and what the code says (`None`: [`AlertCode::Unknown`]).
    fn parts(self) -> (u8, Option<&'static str>) {
        match self {
            AlertCode::Busy => (1, Some("server busy")),
            AlertCode::Unauthorized => (2, Some("key not authorized")),
            AlertCode::Version => (3, Some("protocol version mismatch")),
            AlertCode::HandshakeFailed => (4, Some("handshake failed")),
            AlertCode::ShuttingDown => (5, Some("server shutting down")),
            AlertCode::TooLarge => (6, Some("limit exceeded")),
            AlertCode::Protocol => (7, Some("protocol error")),
            AlertCode::KeyShare => (8, Some("Diffie-Hellman share out of range")),
            AlertCode::Unknown(v) => (v, None),
        }
    }

    /// The wire value.
    pub fn to_u8(self) -> u8 {
        self.parts().0
    }

    /// Parse a wire value; unknown values are kept.
    pub fn from_u8(v: u8) -> Self {
        use AlertCode::*;
        [Busy, Unauthorized, Version, HandshakeFailed, ShuttingDown, TooLarge, Protocol, KeyShare]
            .into_iter()
            .find(|code| code.to_u8() == v)
            .unwrap_or(Unknown(v))
    }
}

impl fmt::Display for AlertCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parts() {
            (_, Some(text)) => f.write_str(text),
            (v, None) => write!(f, "unknown alert {v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AlertCode;

    #[test]
    fn every_alert_wire_value_round_trips_and_only_1_to_8_are_known() {
        for v in 0..=255u8 {
            let code = AlertCode::from_u8(v);
            assert_eq!(code.to_u8(), v);
            assert_eq!(matches!(code, AlertCode::Unknown(_)), !(1..=8).contains(&v), "{v}");
        }
        assert_eq!(AlertCode::from_u8(8), AlertCode::KeyShare);
        assert_eq!(AlertCode::from_u8(2), AlertCode::Unauthorized);
    }
}
