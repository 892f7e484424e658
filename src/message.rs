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
    /// The operation is not supported by this server.
    pub const UNSUPPORTED: u16 = 0xFF03;

    /// A short name for a reserved status, if it is one.
    pub fn reserved_name(code: u16) -> Option<&'static str> {
        match code {
            BAD_REQUEST => Some("bad request"),
            HANDLER_PANICKED => Some("handler panicked"),
            REPLY_LOST => Some("already handled; reply no longer available"),
            UNSUPPORTED => Some("unsupported operation"),
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
