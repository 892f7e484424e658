//! One error type for the whole crate.
//!
//! Errors that come from a peer are deliberately coarse: a record that fails
//! authentication is [`Error::BadRecord`] whatever went wrong inside it, so a
//! peer cannot learn which check failed. Do not send `Debug` output of an error
//! to a peer; send the fixed alert codes of [`AlertCode`] instead.

use crate::status::{self, AlertCode};
use std::fmt;
use std::io;

/// Everything that can go wrong in ovtp.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The operating system reported an I/O error (socket or file).
    Io(io::Error),
    /// A network operation did not finish in time; the string names the stage.
    Timeout(&'static str),
    /// The peer closed the connection where more data was expected.
    Closed(&'static str),
    /// The peer speaks a different protocol version (or is not ovtp at all).
    Version {
        /// The version this build speaks.
        ours: u16,
        /// The version the peer announced (0 when the magic did not match).
        theirs: u16,
    },
    /// The peer sent bytes that do not form a valid frame or message.
    Malformed(&'static str),
    /// A record failed authentication (MAC, sequence, padding). Opaque on purpose.
    BadRecord,
    /// A signature in the handshake did not verify.
    BadSignature,
    /// The peer's Diffie-Hellman share is outside `1 < Y < p-1`.
    BadKeyShare,
    /// A length in a frame exceeds the limit for it.
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The size announced or reached.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The peer refused the connection or request with an alert.
    Refused {
        /// The alert code the peer sent.
        code: AlertCode,
        /// The peer's human-readable explanation (control characters escaped when shown).
        message: String,
    },
    /// The server's key is not in `known_hosts` and the policy is strict.
    UnknownHost {
        /// `host:port` as looked up.
        host: String,
        /// The fingerprint the server presented.
        fingerprint: String,
    },
    /// The server presented a different key from the one recorded or pinned.
    HostKeyChanged {
        /// `host:port` as looked up.
        host: String,
        /// The fingerprint recorded in `known_hosts` or pinned.
        expected: String,
        /// The fingerprint the server presented.
        actual: String,
    },
    /// A key file or key could not be used; the message says why and how to fix it.
    Key(String),
    /// A trust file (`authorized_keys`, `known_hosts`) could not be used.
    TrustFile(String),
    /// A caller-supplied argument is invalid.
    InvalidInput(String),
    /// A sequence number would wrap; the connection must be re-established.
    SequenceExhausted,
    /// The server is shutting down.
    ShuttingDown,
    /// The server refused or failed a file operation; `status` is one of
    /// [`crate::status`]'s codes or the handler's own.
    Remote {
        /// The status the server answered with.
        status: u16,
        /// The server's explanation.
        message: String,
    },
    /// Reading or writing a local file failed (not the network).
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The local destination exists and overwriting was not requested.
    Exists(std::path::PathBuf),
    /// A received file did not match its announced length or SHA-256; nothing was kept.
    DigestMismatch(String),
    /// A server's listing broke the rules (PROTOCOL.md 7.9): a name that is
    /// not one plain path component (`../x`, `/abs`, `a/b`, `.`, control
    /// characters), names out of order, or no progress; the message names
    /// the entry. Nothing of the listing is used.
    BadListing(String),
    /// (Server side) the client's key is not in `authorized_keys`.
    NotAuthorized {
        /// Fingerprint of the key the client presented.
        fingerprint: String,
    },
}

/// Whether `c` changes how the text around it is shown while staying
/// invisible itself: control characters (Cc), bidirectional embeddings,
/// overrides, isolates and marks (`invoice\u{202e}fdp.exe` shows as
/// "invoiceexe.pdf"), zero-width and other invisible format characters, the
/// line and paragraph separators, the byte order mark, Hangul fillers,
/// interlinear annotations and tag characters.
pub(crate) fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{ad}' | '\u{61c}' | '\u{115f}' | '\u{1160}' | '\u{180e}' | '\u{3164}'
            | '\u{feff}' | '\u{ffa0}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}' | '\u{fff9}'..='\u{fffb}' | '\u{e0000}'..='\u{e007f}')
}

/// Escape control characters and other deceptive ones (bidirectional
/// overrides, zero-width characters, U+2028...: `is_deceptive`) so that
/// peer-supplied text cannot move the cursor, hide output or reorder what a
/// terminal or log shows (compare scp's CVE-2019-6109).
pub fn escape_control(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    s.chars()
        .for_each(|c| if is_deceptive(c) { out.extend(c.escape_default()) } else { out.push(c) });
    out
}

impl Error {
    /// Whether a transfer of several files (a tree, `put` of many) may go on
    /// with the next file after this error: a refusal or a local problem,
    /// not a lost or refused connection.
    pub fn is_per_file(&self) -> bool {
        matches!(
            self,
            Error::Remote { .. }
                | Error::File { .. }
                | Error::InvalidInput(_)
                | Error::Exists(_)
                | Error::DigestMismatch(_)
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Timeout(stage) => write!(f, "timed out during {stage}"),
            Error::Closed(stage) => write!(f, "connection closed by peer during {stage}"),
            Error::Version { ours, theirs: 0 } => write!(
                f,
                "peer is not speaking ovtp (bad magic); this build speaks ovtp protocol version {ours}"
            ),
            Error::Version { ours, theirs } => write!(
                f,
                "protocol version mismatch: we speak version {ours}, the peer speaks version {theirs}; upgrade the older side"
            ),
            Error::Malformed(what) => write!(f, "malformed data from peer: {what}"),
            Error::BadRecord => f.write_str(
                "a record failed authentication (tampered, replayed or corrupted); connection closed",
            ),
            Error::BadSignature => f.write_str("handshake signature did not verify; connection closed"),
            Error::BadKeyShare => f.write_str(
                "the peer's Diffie-Hellman share is out of range (1 < Y < p-1 is required); connection closed",
            ),
            Error::TooLarge { what, size, limit } => {
                write!(f, "{what} too large: {size} bytes, the limit is {limit}")
            }
            Error::Refused { code, message } => {
                let colon = if message.is_empty() { "" } else { ": " };
                write!(f, "refused by peer: {code}{colon}{}", escape_control(message))
            }
            Error::UnknownHost { host, fingerprint } => write!(
                f,
                "the server {host} is not in known_hosts; its key fingerprint is {fingerprint}. \
                 If you trust it, connect once with accept-new (CLI: --accept-new) \
                 or record it with `ovtp trust {host} {fingerprint}`"
            ),
            Error::HostKeyChanged { host, expected, actual } => write!(
                f,
                "THE SERVER KEY OF {host} HAS CHANGED: known_hosts has {expected}, the server presented {actual}. \
                 This can be an attack (man in the middle). Refusing to connect. If the change is legitimate, \
                 remove the old line from known_hosts deliberately"
            ),
            Error::Key(msg) => write!(f, "key error: {msg}"),
            Error::TrustFile(msg) => write!(f, "trust file error: {msg}"),
            Error::InvalidInput(msg) => write!(f, "invalid input: {msg}"),
            Error::SequenceExhausted => {
                f.write_str("record sequence number exhausted; reconnect to continue")
            }
            Error::ShuttingDown => f.write_str("server is shutting down"),
            Error::Remote { status, message } => {
                let name =
                    status::reserved_name(*status).map_or(format!("status {status}"), str::to_string);
                write!(f, "server answered {name}: {}", escape_control(message))
            }
            Error::File { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Exists(path) => write!(
                f,
                "{} exists; not replaced (ask to overwrite, CLI: --force)",
                path.display()
            ),
            Error::DigestMismatch(what) => write!(
                f,
                "received file failed verification ({what}); the partial file was removed, try again"
            ),
            Error::BadListing(what) => {
                write!(f, "the server's listing was refused: {what}; nothing of it was used")
            }
            Error::NotAuthorized { fingerprint } => write!(
                f,
                "client key {fingerprint} is not in authorized_keys; add it with `ovtp authorize <key.pub>`"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::File { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout("I/O"),
            io::ErrorKind::UnexpectedEof => Error::Closed("I/O"),
            _ => Error::Io(e),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_zero_width_and_separator_characters_are_escaped_in_output() {
        assert_eq!(escape_control("invoice\u{202e}fdp.exe"), "invoice\\u{202e}fdp.exe");
        for c in
            ['\u{200b}', '\u{200d}', '\u{200f}', '\u{2028}', '\u{2029}', '\u{2066}', '\u{feff}']
        {
            let shown = escape_control(&format!("a{c}b"));
            assert!(!shown.contains(c) && shown.starts_with("a\\u{"), "{shown:?}");
        }
        assert_eq!(escape_control("a\u{1b}[2J"), "a\\u{1b}[2J");
        assert_eq!(escape_control("ünïcode, 日本語 ok"), "ünïcode, 日本語 ok");
    }
}
