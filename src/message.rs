//! What a handler sees and returns (requests and replies), and what a
//! client's file transfers take and report.

use crate::keys::Fingerprint;
use crate::proto::msg;
use crate::status;
use std::net::SocketAddr;

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
        /// Its SHA-256 as the client computed it and sent it in FILE_END: every
        /// byte arrived authenticated and in order, but the server does not hash
        /// them again (PROTOCOL.md 7.7.6); hash `path` if you need certainty.
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
    /// A client asks for a listing of a directory (`list`), one page per
    /// request: the handler is asked for each page. A reply other than OK
    /// refuses it. Routed to [`crate::Handler::file_request`].
    Listing {
        /// The directory, relative to the files directory (`""`: its top).
        dir: String,
    },
    /// A client asks to create a directory and its parents (`make_dir`). A
    /// reply other than OK refuses it. Routed to [`crate::Handler::file_offer`].
    MakeDir {
        /// The directory, relative to the files directory.
        name: String,
    },
}

/// What a directory entry is (not following symbolic links). The
/// discriminants are the wire codes (PROTOCOL.md 7.9).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryKind {
    /// A regular file.
    File = msg::KIND_FILE,
    /// A directory.
    Dir = msg::KIND_DIR,
    /// A symbolic link (never followed by a listing).
    Symlink = msg::KIND_SYMLINK,
    /// Anything else (a socket, a device, a pipe).
    Other = msg::KIND_OTHER,
}

impl EntryKind {
    /// The wire code (PROTOCOL.md 7.9).
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    /// The kind of a wire code, if it is one.
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        let all = [EntryKind::File, EntryKind::Dir, EntryKind::Symlink, EntryKind::Other];
        all.into_iter().find(|k| k.code() == code)
    }
}

/// One entry of a remote directory listing (`Client::list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name: one path component, checked like every remote name.
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
    /// Its size in bytes for a regular file, 0 for anything else.
    pub size: u64,
    /// Its permission bits (`& 0o777`: never setuid, setgid or sticky).
    pub mode: u32,
    /// Its modification time, in seconds since the Unix epoch.
    pub mtime: i64,
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
        Reply { status, body: body.into() }
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

/// Options of an upload or download.
pub struct TransferOptions<'a> {
    /// Replace the destination if it exists (default: refuse).
    pub overwrite: bool,
    /// Continue from a partial file left by an interrupted transfer (default: yes).
    pub resume: bool,
    /// Called with `(bytes done, total)` at most every 100 ms and at the end (default: none).
    pub progress: Progress<'a>,
    /// Read the stored file back and compare its SHA-256 with the sender's,
    /// as rsync's checksum does (default: no). A download reads its partial
    /// file back before it gets its name; an upload asks the server for the
    /// stored file's digest afterwards (one DIGEST request). It costs one more
    /// read of the file; what travels is already authenticated record by record.
    pub verify: bool,
    /// Carry the file's permission bits (`& 0o777`: never setuid, setgid or
    /// sticky) and modification time to the received copy, set on the partial
    /// file before it gets its name (default: no; the receiver's defaults).
    pub preserve: bool,
    /// Hold the transfer to this many bytes per second (default: none; at
    /// least [`MIN_LIMIT_RATE`](crate::constants::MIN_LIMIT_RATE)). An upload
    /// paces what it sends; a download paces its reads, and TCP's flow
    /// control slows the server down to match (as `curl --limit-rate` does).
    pub limit_rate: Option<u64>,
}

impl Default for TransferOptions<'_> {
    fn default() -> Self {
        TransferOptions {
            overwrite: false,
            resume: true,
            progress: None,
            verify: false,
            preserve: false,
            limit_rate: None,
        }
    }
}

impl std::fmt::Debug for TransferOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferOptions")
            .field("overwrite", &self.overwrite)
            .field("resume", &self.resume)
            .field("progress", &self.progress.is_some())
            .field("verify", &self.verify)
            .field("preserve", &self.preserve)
            .field("limit_rate", &self.limit_rate)
            .finish()
    }
}

/// What a finished transfer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// Size of the file in bytes.
    pub size: u64,
    /// SHA-256 of the whole file as its sender computed it while reading it
    /// (ours for an upload; the server's, from FILE_END, for a download).
    pub sha256: [u8; 32],
    /// Bytes that were already present from an interrupted transfer and not sent again.
    pub resumed_from: u64,
    /// For uploads, the server handler's final reply; for downloads, `Reply::ok("")`.
    pub reply: Reply,
}

/// Size and SHA-256 of a remote file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the contents.
    pub sha256: [u8; 32],
}

/// A progress callback: `(bytes done, total)`, called at most every 100 ms and at the end.
pub type Progress<'a> = Option<&'a mut dyn FnMut(u64, u64)>;
