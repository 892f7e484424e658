//! What a handler sees and returns: requests and replies.

use crate::keys::Fingerprint;
use std::net::SocketAddr;

/// Status codes. `OK` (0) is success; 1..=0xFEFF belong to applications; the
/// range from 0xFF00 is reserved for ovtp itself.
pub mod status {
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
}

/// The body of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Payload {
    /// A UTF-8 text message (`send_message`).
    Text(String),
    /// Raw bytes (`send_data`).
    Data(Vec<u8>),
    /// A client offers a file (`send_file`), before any data flows. A reply
    /// other than OK refuses it (for example over a quota).
    FileOffer {
        /// The remote name, relative to the files directory.
        name: String,
        /// The announced size in bytes.
        size: u64,
    },
    /// A file arrived whole and verified, and now has its final name. The
    /// reply is the upload's final answer to the client.
    FileReceived {
        /// The remote name, relative to the files directory.
        name: String,
        /// Where it is on disk.
        path: std::path::PathBuf,
        /// Its size in bytes.
        size: u64,
        /// Its SHA-256.
        sha256: [u8; 32],
    },
    /// A client asks for a file (`get_file`) or its digest (`file_digest`).
    /// A reply other than OK refuses it.
    FileRequest {
        /// The remote name, relative to the files directory.
        name: String,
        /// The file's size in bytes.
        size: u64,
        /// True when only the digest was asked for.
        digest_only: bool,
    },
}

/// One request, as the server's handler receives it.
#[derive(Debug)]
pub struct Request<'a> {
    /// Fingerprint of the authenticated client key.
    pub client: &'a Fingerprint,
    /// The client's network address.
    pub peer_addr: SocketAddr,
    /// What was sent.
    pub payload: Payload,
}

/// A handler's answer: a status and a response body, like the original's
/// `(status, response)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// [`status::OK`] or an application code.
    pub status: u16,
    /// The response body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply with status and body.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status,
            body: body.into(),
        }
    }

    /// A successful reply.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Reply::new(status::OK, body)
    }

    /// Whether the status is [`status::OK`].
    pub fn is_ok(&self) -> bool {
        self.status == status::OK
    }

    /// The body as text, replacing invalid UTF-8 sequences visibly (U+FFFD).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl<B: Into<Vec<u8>>> From<(u16, B)> for Reply {
    fn from((status, body): (u16, B)) -> Self {
        Reply::new(status, body)
    }
}
