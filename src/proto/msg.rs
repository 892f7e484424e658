//! Every wire code of the protocol, declared once, and the typed bodies of
//! the messages that travel inside records (PROTOCOL.md 7), each with its
//! `encode` beside its `read`. Decoding goes through [`Body::decode`], which
//! refuses trailing bytes.

use super::codec::{Body, Reader, put_vec16};
use crate::constants::{LIST_PAGE_ENTRIES, MAX_ENTRY_NAME, MAX_NAME_LEN, REQUEST_ID_LEN};
use crate::error::{Error, Result};
use crate::message::{DirEntry, EntryKind};
use crate::status::AlertCode;

/// Handshake frame type: the client's first frame.
pub const CLIENT_HELLO: u8 = 1;
/// Handshake frame type: the server's hello.
pub const SERVER_HELLO: u8 = 2;
/// Handshake frame type: the client's key transport and signature.
pub const CLIENT_AUTH: u8 = 3;
/// Handshake frame type: the server's key transport and signature.
pub const SERVER_AUTH: u8 = 4;
/// Plaintext alert frame type (before a session), and the record type of an
/// encrypted alert (inside one).
pub const ALERT: u8 = 0x15;

/// Record type: a request, client to server.
pub const REC_REQUEST: u8 = 0x10;
/// Record type: a response, server to client.
pub const REC_RESPONSE: u8 = 0x11;
/// Record type: the receiver of a file says where the transfer starts.
pub const REC_FILE_READY: u8 = 0x12;
/// Record type: a chunk of file data.
pub const REC_FILE_DATA: u8 = 0x13;
/// Record type: the end of a file.
pub const REC_FILE_END: u8 = 0x14;
/// Record type: an alert inside the session (then the sender closes).
pub const REC_ALERT: u8 = ALERT;
/// Record type: the client, resuming an upload, proves it holds the bytes the
/// server's partial file holds: the SHA-256 of its own prefix.
pub const REC_FILE_PREFIX: u8 = 0x16;

/// Record flag: this record ends its message.
pub const FLAG_FIN: u8 = 0x01;
/// Record flag, on FILE_END only: the sender abandoned the transfer.
pub const FLAG_ABORT: u8 = 0x02;

/// Request operation: a UTF-8 text message.
pub const OP_TEXT: u8 = 1;
/// Request operation: raw bytes.
pub const OP_DATA: u8 = 2;
/// Request operation: upload a file.
pub const OP_PUT: u8 = 3;
/// Request operation: download a file.
pub const OP_GET: u8 = 4;
/// Request operation: size and SHA-256 of a remote file.
pub const OP_DIGEST: u8 = 5;
/// Request operation: one page of a directory listing.
pub const OP_LIST: u8 = 6;
/// Request operation: create a directory and its parents.
pub const OP_MKDIR: u8 = 7;

/// PUT flag: replace an existing file.
pub const PUT_OVERWRITE: u8 = 0x01;
/// PUT/GET flag: keep a partial file from an earlier attempt if its prefix matches.
pub const XFER_RESUME: u8 = 0x02;
/// PUT/GET flag: carry mode bits and modification time ([`FileMeta`]): after
/// the PUT's flags, or in the FILE_READY that answers the GET.
pub const XFER_PRESERVE: u8 = 0x04;

/// Listing entry kind: a regular file.
pub const KIND_FILE: u8 = 1;
/// Listing entry kind: a directory.
pub const KIND_DIR: u8 = 2;
/// Listing entry kind: a symbolic link.
pub const KIND_SYMLINK: u8 = 3;
/// Listing entry kind: anything else.
pub const KIND_OTHER: u8 = 4;

/// Longest alert message, in bytes.
pub const MAX_ALERT_MESSAGE: usize = 512;
/// Bytes in front of a request body: request id and operation.
pub const REQUEST_HEADER: usize = REQUEST_ID_LEN + 1;
/// Bytes in front of a response body: request id and status.
pub const RESPONSE_HEADER: usize = REQUEST_ID_LEN + 2;

/// A request id: random, so that a retry on a new connection is recognized.
pub type RequestId = [u8; REQUEST_ID_LEN];

/// Refuse record flags this version does not define (PROTOCOL.md 6.1).
pub fn check_flags(flags: u8) -> Result<()> {
    if flags & !(FLAG_FIN | FLAG_ABORT) != 0 {
        return Err(Error::Malformed("unknown record flags"));
    }
    Ok(())
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn name<'a>(r: &mut Reader<'a>) -> Result<&'a str> {
    std::str::from_utf8(r.vec16(MAX_NAME_LEN, "file name")?)
        .map_err(|_| Error::Malformed("file name is not UTF-8"))
}

/// An alert: `code u8 || message vec16`, in a plaintext alert frame after the
/// common header, or as the whole plaintext of an encrypted alert record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert<'a> {
    /// Why.
    pub code: AlertCode,
    /// A short human-readable explanation (at most [`MAX_ALERT_MESSAGE`] bytes).
    pub message: &'a [u8],
}

impl<'a> Body<'a> for Alert<'a> {
    const WHAT: &'static str = "alert";
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.code.to_u8());
        put_vec16(out, &self.message[..self.message.len().min(MAX_ALERT_MESSAGE)]);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        let code = AlertCode::from_u8(r.u8("alert code")?);
        let message = r.vec16(MAX_ALERT_MESSAGE, "alert message")?;
        Ok(Alert { code, message })
    }
}

impl Alert<'_> {
    /// An alert with `message` cut to the limit on a character boundary.
    pub fn new(code: AlertCode, message: &str) -> Alert<'_> {
        Alert { code, message: truncate_utf8(message, MAX_ALERT_MESSAGE).as_bytes() }
    }

    /// What the peer's alert means to us: [`Error::Refused`].
    pub fn into_error(self) -> Error {
        Error::Refused { code: self.code, message: String::from_utf8_lossy(self.message).into() }
    }
}

/// The operation of a request and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    /// A text message (UTF-8 is checked by the server, which answers BAD_REQUEST).
    Text(&'a [u8]),
    /// Raw bytes.
    Data(&'a [u8]),
    /// Upload a file.
    Put(Put<'a>),
    /// Download a file.
    Get(Get<'a>),
    /// Size and SHA-256 of a remote file: its name.
    Digest(&'a str),
    /// One page of a directory listing.
    List(List<'a>),
    /// Create a directory (and its parents): its name.
    MkDir(&'a str),
    /// An operation this version does not know (answered UNSUPPORTED).
    Unknown(u8),
}

impl Op<'_> {
    /// The operation's wire code, and its name in events.
    pub(crate) fn code(&self) -> (u8, &'static str) {
        match self {
            Op::Text(_) => (OP_TEXT, "text"),
            Op::Data(_) => (OP_DATA, "data"),
            Op::Put(_) => (OP_PUT, "put"),
            Op::Get(_) => (OP_GET, "get"),
            Op::Digest(_) => (OP_DIGEST, "digest"),
            Op::List(_) => (OP_LIST, "list"),
            Op::MkDir(_) => (OP_MKDIR, "mkdir"),
            Op::Unknown(code) => (*code, "unknown"),
        }
    }
}

/// A REQUEST message: `id [16] || op u8 || body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Chosen by the client; a retry reuses it.
    pub id: RequestId,
    /// What is asked.
    pub op: Op<'a>,
}

impl<'a> Body<'a> for Request<'a> {
    const WHAT: &'static str = "request";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&Request::header(&self.id, self.op.code().0));
        match &self.op {
            Op::Text(body) | Op::Data(body) => out.extend_from_slice(body),
            Op::Put(put) => put.encode(out),
            Op::Get(get) => get.encode(out),
            Op::Digest(name) | Op::MkDir(name) => put_vec16(out, name.as_bytes()),
            Op::List(list) => list.encode(out),
            Op::Unknown(_) => {}
        }
    }
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        let id = r.array("request id")?;
        let op = match r.u8("operation")? {
            OP_TEXT => Op::Text(r.rest()),
            OP_DATA => Op::Data(r.rest()),
            OP_PUT => Op::Put(Put::read(r)?),
            OP_GET => Op::Get(Get::read(r)?),
            OP_DIGEST => Op::Digest(name(r)?),
            OP_LIST => Op::List(List::read(r)?),
            OP_MKDIR => Op::MkDir(name(r)?),
            other => {
                r.rest(); // an unknown operation's body is not ours to parse
                Op::Unknown(other)
            }
        };
        Ok(Request { id, op })
    }
}

impl Request<'_> {
    /// The header of a text or data request, sent in front of its body
    /// without copying the body.
    pub fn header(id: &RequestId, op: u8) -> [u8; REQUEST_HEADER] {
        let mut h = [0u8; REQUEST_HEADER];
        h[..REQUEST_ID_LEN].copy_from_slice(id);
        h[REQUEST_ID_LEN] = op;
        h
    }
}

/// Mode bits and modification time of a file, carried with [`XFER_PRESERVE`]:
/// `mode u16 || mtime i64`. The mode holds permission bits only: a value
/// above 0o777 (setuid, setgid, sticky or more) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    /// Permission bits, at most 0o777.
    pub mode: u32,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
}

impl Body<'_> for FileMeta {
    const WHAT: &'static str = "file mode and time";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&((self.mode & 0o777) as u16).to_be_bytes());
        out.extend_from_slice(&self.mtime.to_be_bytes());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let mode = u32::from(r.u16("file mode")?);
        if mode > 0o777 {
            return Err(Error::Malformed("file mode beyond 0777"));
        }
        Ok(FileMeta { mode, mtime: i64::from_be_bytes(r.array("file mtime")?) })
    }
}

/// PUT body: `name vec16 || size u64 || flags u8`, then `FileMeta` when
/// the flags hold [`XFER_PRESERVE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put<'a> {
    /// Remote name, relative to the server's files directory.
    pub name: &'a str,
    /// Bytes the client will send in all.
    pub size: u64,
    /// Replace an existing file.
    pub overwrite: bool,
    /// Continue from a partial file whose prefix matches.
    pub resume: bool,
    /// Mode and time for the stored file (flag [`XFER_PRESERVE`]).
    pub meta: Option<FileMeta>,
}

impl<'a> Body<'a> for Put<'a> {
    const WHAT: &'static str = "put request";
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec16(out, self.name.as_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        let flags = if self.overwrite { PUT_OVERWRITE } else { 0 };
        let flags = flags | if self.meta.is_some() { XFER_PRESERVE } else { 0 };
        out.push(flags | if self.resume { XFER_RESUME } else { 0 });
        self.meta.iter().for_each(|meta| meta.encode(out));
    }
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        let (name, size, flags) = (name(r)?, r.u64("file size")?, r.u8("flags")?);
        // Other flag bits are ignored (PROTOCOL.md 7.7.1).
        let (overwrite, resume) = (flags & PUT_OVERWRITE != 0, flags & XFER_RESUME != 0);
        let meta = if flags & XFER_PRESERVE != 0 { Some(FileMeta::read(r)?) } else { None };
        Ok(Put { name, size, overwrite, resume, meta })
    }
}

/// GET body: `name vec16 || offset u64 || prefix_sha256 [32] || flags u8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get<'a> {
    /// Remote name, relative to the server's files directory.
    pub name: &'a str,
    /// Bytes the client already holds in a partial file.
    pub offset: u64,
    /// SHA-256 of those bytes.
    pub prefix: [u8; 32],
    /// Whether the server may continue from `offset`.
    pub resume: bool,
    /// Ask for the file's mode and time in FILE_READY (flag [`XFER_PRESERVE`]).
    pub preserve: bool,
}

impl<'a> Body<'a> for Get<'a> {
    const WHAT: &'static str = "get request";
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec16(out, self.name.as_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.prefix);
        let flags = if self.preserve { XFER_PRESERVE } else { 0 };
        out.push(flags | if self.resume { XFER_RESUME } else { 0 });
    }
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        let (name, offset) = (name(r)?, r.u64("offset")?);
        let (prefix, flags) = (r.array("prefix sha256")?, r.u8("flags")?);
        let (resume, preserve) = (flags & XFER_RESUME != 0, flags & XFER_PRESERVE != 0);
        Ok(Get { name, offset, prefix, resume, preserve })
    }
}

/// LIST body: `dir vec16 || after vec16`: the entries of `dir` (empty: the
/// top of the files directory) whose names sort bytewise after `after`
/// (empty: from the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List<'a> {
    /// The directory, relative to the files directory.
    pub dir: &'a str,
    /// The last name of the previous page, or empty.
    pub after: &'a str,
}

impl<'a> Body<'a> for List<'a> {
    const WHAT: &'static str = "list request";
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec16(out, self.dir.as_bytes());
        put_vec16(out, self.after.as_bytes());
    }
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        Ok(List { dir: name(r)?, after: name(r)? })
    }
}

/// The body of an OK answer to LIST: `more u8 || count u16 || entries`,
/// each entry `kind u8 || mode u16 || size u64 || mtime i64 || name vec16`.
/// At most [`LIST_PAGE_ENTRIES`] entries; `more` is 1 when entries after the
/// last follow (ask again with it as `after`), else 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// The entries, sorted by name.
    pub entries: Vec<DirEntry>,
    /// Entries after the last follow.
    pub more: bool,
}

fn read_entry(r: &mut Reader<'_>) -> Result<DirEntry> {
    let kind =
        EntryKind::from_code(r.u8("entry kind")?).ok_or(Error::Malformed("unknown entry kind"))?;
    let mode = u32::from(r.u16("entry mode")?);
    if mode > 0o777 {
        return Err(Error::Malformed("entry mode beyond 0777"));
    }
    let (size, mtime) = (r.u64("entry size")?, i64::from_be_bytes(r.array("entry mtime")?));
    let name = std::str::from_utf8(r.vec16(MAX_ENTRY_NAME, "entry name")?)
        .map_err(|_| Error::Malformed("entry name is not UTF-8"))?;
    Ok(DirEntry { name: name.to_string(), kind, size, mode, mtime })
}

impl Body<'_> for ListPage {
    const WHAT: &'static str = "listing";
    fn encode(&self, out: &mut Vec<u8>) {
        let count = self.entries.len().min(LIST_PAGE_ENTRIES);
        out.push(u8::from(self.more));
        out.extend_from_slice(&(count as u16).to_be_bytes());
        for e in &self.entries[..count] {
            out.push(e.kind.code());
            out.extend_from_slice(&((e.mode & 0o777) as u16).to_be_bytes());
            out.extend_from_slice(&e.size.to_be_bytes());
            out.extend_from_slice(&e.mtime.to_be_bytes());
            put_vec16(out, truncate_utf8(&e.name, MAX_ENTRY_NAME).as_bytes());
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let more = match r.u8("more")? {
            0 => false,
            1 => true,
            _ => return Err(Error::Malformed("listing 'more' is neither 0 nor 1")),
        };
        let count = usize::from(r.u16("entry count")?);
        if count > LIST_PAGE_ENTRIES {
            let (size, limit) = (count as u64, LIST_PAGE_ENTRIES as u64);
            return Err(Error::TooLarge { what: "listing page", size, limit });
        }
        let entries = (0..count).map(|_| read_entry(r)).collect::<Result<_>>()?;
        Ok(ListPage { entries, more })
    }
}

impl ListPage {
    /// Check a page a server sent in answer to `after` (PROTOCOL.md 7.9):
    /// every name one path component that [`crate::check_name`] accepts,
    /// names strictly ascending bytewise and after `after`, and a page that
    /// says more follow is not empty (each page makes progress). The error
    /// names the first offending entry.
    pub fn check(&self, after: &str) -> std::result::Result<(), String> {
        let mut last = after;
        for e in &self.entries {
            let shown = crate::error::escape_control(&e.name);
            if let Err(why) = crate::store::check_name(&e.name) {
                return Err(format!("entry \"{shown}\": {why}"));
            }
            if e.name.contains('/') {
                return Err(format!("entry \"{shown}\": a listed name may not contain '/'"));
            }
            if e.name.as_bytes() <= last.as_bytes() {
                let last = crate::error::escape_control(last);
                return Err(format!("entry \"{shown}\": out of order (not after \"{last}\")"));
            }
            last = &e.name;
        }
        if self.more && self.entries.is_empty() {
            return Err("an empty page that says more entries follow".into());
        }
        Ok(())
    }
}

/// A RESPONSE message: `id [16] || status u16 || body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    /// The request this answers.
    pub id: RequestId,
    /// The handler's or ovtp's status.
    pub status: u16,
    /// The response body.
    pub body: &'a [u8],
}

impl<'a> Body<'a> for Response<'a> {
    const WHAT: &'static str = "response";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&Response::header(&self.id, self.status));
        out.extend_from_slice(self.body);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        let (id, status) = (r.array("request id")?, r.u16("status")?);
        Ok(Response { id, status, body: r.rest() })
    }
}

impl Response<'_> {
    /// The header sent in front of a response body without copying the body.
    pub fn header(id: &RequestId, status: u16) -> [u8; RESPONSE_HEADER] {
        let mut h = [0u8; RESPONSE_HEADER];
        h[..REQUEST_ID_LEN].copy_from_slice(id);
        h[REQUEST_ID_LEN..].copy_from_slice(&status.to_be_bytes());
        h
    }
}

/// The body of an OK answer to DIGEST: `size u64 || sha256 [32]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestReply {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the contents.
    pub sha256: [u8; 32],
}

impl Body<'_> for DigestReply {
    const WHAT: &'static str = "digest";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.sha256);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(DigestReply { size: r.u64("size")?, sha256: r.array("sha256")? })
    }
}

/// FILE_READY after a PUT (the server receives): `offset u64`, how many bytes
/// of this client key's partial file it holds (never their digest). After a
/// FILE_PREFIX, the same layout says where the data starts: `offset` or 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyToReceive {
    /// Bytes already held (or, answering FILE_PREFIX, where the data starts).
    pub offset: u64,
}

impl Body<'_> for ReadyToReceive {
    const WHAT: &'static str = "file ready";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_be_bytes());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(ReadyToReceive { offset: r.u64("offset")? })
    }
}

/// FILE_PREFIX (the client resuming an upload): `sha256 [32]`, the SHA-256 of
/// its own first `offset` bytes, for the server to compare with its partial file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilePrefix {
    /// SHA-256 of the sender's first `offset` bytes.
    pub sha256: [u8; 32],
}

impl Body<'_> for FilePrefix {
    const WHAT: &'static str = "file prefix";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sha256);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(FilePrefix { sha256: r.array("prefix sha256")? })
    }
}

/// FILE_READY after a GET (the server sends): `size u64 || start u64`,
/// then `FileMeta` when the GET asked with [`XFER_PRESERVE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyToSend {
    /// The whole file's size.
    pub size: u64,
    /// The offset of the first FILE_DATA: the client's offer, or 0.
    pub start: u64,
    /// The file's mode and time, when asked for.
    pub meta: Option<FileMeta>,
}

impl Body<'_> for ReadyToSend {
    const WHAT: &'static str = "file ready";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.start.to_be_bytes());
        self.meta.iter().for_each(|meta| meta.encode(out));
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let (size, start) = (r.u64("size")?, r.u64("start")?);
        let meta = if r.at_end() { None } else { Some(FileMeta::read(r)?) };
        Ok(ReadyToSend { size, start, meta })
    }
}

/// FILE_DATA: `offset u64 || bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileData<'a> {
    /// Where `bytes` go in the file.
    pub offset: u64,
    /// At most a chunk of the file.
    pub bytes: &'a [u8],
}

impl<'a> Body<'a> for FileData<'a> {
    const WHAT: &'static str = "file data";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(self.bytes);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        Ok(FileData { offset: r.u64("chunk offset")?, bytes: r.rest() })
    }
}

/// FILE_END: `total u64 || sha256 [32]`, and the record's ABORT flag. An
/// aborted end carries where the sender stopped and 32 zero bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileEnd {
    /// The file's length (or, aborted, where the sender stopped).
    pub total: u64,
    /// SHA-256 of the whole file (zero when aborted).
    pub sha256: [u8; 32],
    /// The sender abandoned the transfer (record flag ABORT).
    pub abort: bool,
}

impl FileEnd {
    /// The record flags FILE_END travels with.
    pub fn flags(&self) -> u8 {
        FLAG_FIN | if self.abort { FLAG_ABORT } else { 0 }
    }

    /// Decode from a record's flags and plaintext.
    pub fn from_record(flags: u8, plaintext: &[u8]) -> Result<Self> {
        let mut r = Reader::new(plaintext);
        let (total, sha256) = (r.u64("total length")?, r.array("sha256")?);
        r.finish("file end")?;
        Ok(FileEnd { total, sha256, abort: flags & FLAG_ABORT != 0 })
    }

    /// The body: `total || sha256` (the ABORT bit travels in the flags).
    pub fn to_vec(&self) -> Vec<u8> {
        [&self.total.to_be_bytes()[..], &self.sha256].concat()
    }
}

/// Records of one message, assembled: records until FIN, all of one type,
/// at most `limit` bytes of plaintext in all.
#[derive(Debug)]
pub struct Assembler {
    rtype: Option<u8>,
    payload: Vec<u8>,
    limit: usize,
}

impl Assembler {
    /// A message of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Assembler { rtype: None, payload: Vec::new(), limit }
    }

    /// Bytes so far.
    pub fn received(&self) -> usize {
        self.payload.len()
    }

    /// Add one opened record; returns the message's type and payload once FIN arrives.
    pub fn push(&mut self, rtype: u8, flags: u8, bytes: &[u8]) -> Result<Option<(u8, Vec<u8>)>> {
        if *self.rtype.get_or_insert(rtype) != rtype {
            return Err(Error::Malformed("record type changed inside a message"));
        }
        let size = self.payload.len() + bytes.len();
        if size > self.limit {
            let limit = self.limit as u64;
            return Err(Error::TooLarge { what: "message", size: size as u64, limit });
        }
        self.payload.extend_from_slice(bytes);
        if flags & FLAG_FIN == 0 {
            return Ok(None);
        }
        self.rtype = None;
        Ok(Some((rtype, std::mem::take(&mut self.payload))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<'a, T: Body<'a> + PartialEq + std::fmt::Debug>(value: &T, buf: &'a mut Vec<u8>) {
        value.encode(buf);
        assert_eq!(&T::decode(buf).unwrap(), value);
    }

    #[test]
    fn every_body_round_trips_and_refuses_a_trailing_byte() {
        let put = Put { name: "a/b.txt", size: 7, overwrite: true, resume: false, meta: None };
        let get = Get { name: "c", offset: 3, prefix: [9; 32], resume: true, preserve: false };
        for op in [Op::Text(b"hi"), Op::Put(put), Op::Get(get), Op::Digest("d"), Op::Unknown(9)] {
            let req = Request { id: [1; 16], op };
            round_trip(&req, &mut Vec::new());
        }
        let mut bytes = ReadyToSend { size: 5, start: 0, meta: None }.to_vec();
        assert!(ReadyToSend::decode(&bytes).is_ok());
        bytes.push(0);
        assert!(matches!(ReadyToSend::decode(&bytes), Err(Error::Malformed(_))));
        round_trip(&ReadyToReceive { offset: 7 }, &mut Vec::new());
        round_trip(&FilePrefix { sha256: [3; 32] }, &mut Vec::new());
        assert!(ReadyToReceive::decode(&[0; 40]).is_err(), "version 1's FILE_READY");
        let mut bytes = Request { id: [0; 16], op: Op::Digest("x") }.to_vec();
        bytes.push(0);
        assert!(matches!(Request::decode(&bytes), Err(Error::Malformed(_))));
        let end = FileEnd { total: 9, sha256: [0; 32], abort: true };
        assert_eq!(FileEnd::from_record(end.flags(), &end.to_vec()).unwrap(), end);
    }

    #[test]
    fn unknown_record_flag_bits_are_refused() {
        for flags in 0..=255u8 {
            assert_eq!(check_flags(flags).is_ok(), flags & !0x03 == 0, "flags {flags:#x}");
        }
    }

    #[test]
    fn assembler_refuses_a_type_change_and_an_oversized_message() {
        let mut a = Assembler::new(4);
        assert_eq!(a.push(REC_REQUEST, 0, b"ab").unwrap(), None);
        assert!(matches!(a.push(REC_RESPONSE, FLAG_FIN, b""), Err(Error::Malformed(_))));
        let mut a = Assembler::new(4);
        assert_eq!(a.push(REC_REQUEST, 0, b"ab").unwrap(), None);
        assert!(matches!(a.push(REC_REQUEST, FLAG_FIN, b"abc"), Err(Error::TooLarge { .. })));
        let mut a = Assembler::new(4);
        a.push(REC_REQUEST, 0, b"ab").unwrap();
        let done = a.push(REC_REQUEST, FLAG_FIN, b"cd").unwrap();
        assert_eq!(done, Some((REC_REQUEST, b"abcd".to_vec())));
    }
}
