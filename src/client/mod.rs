//! The blocking client: connects, pins the server's key, and sends requests
//! over one connection, reconnecting and retrying when a connection is lost.

pub mod transfer;
pub mod tree;

use crate::constants::*;
use crate::error::{Error, Result};
use crate::io::channel::Channel;
use crate::io::conn::Conn;
use crate::keys::{Fingerprint, KeyPair, PublicKey};
use crate::message::{DirEntry, FileDigest, FileReport, Reply, TransferOptions};
use crate::proto::handshake::{ClientStart, Session};
use crate::proto::msg::{
    OP_DATA, OP_TEXT, REC_REQUEST, REC_RESPONSE, RESPONSE_HEADER, Request, RequestId,
};
use crate::rand::Rng;
use crate::status::AlertCode;
use crate::store;
use crate::trust::{HostCheck, KnownHosts};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

/// How the client decides whether to trust the server's key.
#[derive(Debug, Clone)]
pub enum HostTrust {
    /// Only keys recorded in `known_hosts` (strict, the default).
    KnownHosts(KnownHosts),
    /// Record a server's key the first time it is seen; refuse a changed key.
    AcceptNew(KnownHosts),
    /// Only the server with this key fingerprint.
    Fingerprint(Fingerprint),
}

/// Client timeouts and limits. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Deadline for TCP connect plus the whole handshake.
    pub handshake_timeout: Duration,
    /// Deadline for one frame and each write; also how long to wait for a reply.
    pub io_timeout: Duration,
    /// Largest message sent or received in memory.
    pub max_message_size: usize,
    /// How many times a request is re-sent on a new connection after the
    /// connection was lost. The server answers a retry from its reply cache,
    /// so the handler runs at most once.
    pub retries: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE,
            retries: DEFAULT_RETRIES,
        }
    }
}

/// Split `host[:port]` (or `[v6]:port`) and add the default port.
pub fn normalize_host(addr: &str) -> Result<String> {
    let addr = addr.trim();
    if addr.is_empty() || addr.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidInput(format!("bad server address {:?}", addr)));
    }
    let with_port = if let Some(rest) = addr.strip_prefix('[') {
        match rest.split_once(']') {
            Some((_, "")) => format!("{addr}:{DEFAULT_PORT}"),
            Some((_, p)) if p.starts_with(':') => addr.to_string(),
            _ => return Err(Error::InvalidInput(format!("bad server address {addr:?}"))),
        }
    } else if addr.matches(':').count() > 1 {
        format!("[{addr}]:{DEFAULT_PORT}") // bare IPv6 address
    } else if addr.contains(':') {
        addr.to_string()
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    };
    Ok(with_port.to_ascii_lowercase())
}

/// A connection to an ovtp server.
pub struct Client {
    host: String,
    keys: KeyPair,
    trust: HostTrust,
    config: ClientConfig,
    channel: Option<Channel>,
    server_key: Option<PublicKey>,
    rng: Rng,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let connected = self.channel.is_some();
        f.debug_struct("Client").field("host", &self.host).field("connected", &connected).finish()
    }
}

impl Client {
    /// Connect with the default [`ClientConfig`].
    pub fn connect(addr: &str, keys: KeyPair, trust: HostTrust) -> Result<Client> {
        Self::connect_with(addr, keys, trust, ClientConfig::default())
    }

    /// Connect with an explicit configuration.
    pub fn connect_with(
        addr: &str,
        keys: KeyPair,
        trust: HostTrust,
        config: ClientConfig,
    ) -> Result<Client> {
        let (host, rng) = (normalize_host(addr)?, Rng::system());
        let mut client = Client { host, keys, trust, config, channel: None, server_key: None, rng };
        // A busy server or a connection cut while it was being set up is worth
        // another try, as for requests.
        retrying(client.config.retries, |_| client.reconnect())?;
        Ok(client)
    }

    /// Fingerprint of the server's (verified) key.
    pub fn server_fingerprint(&self) -> Option<Fingerprint> {
        self.server_key.as_ref().map(PublicKey::fingerprint)
    }

    /// The error for a server whose key is not the one expected.
    fn changed(&self, expected: impl ToString, actual: &Fingerprint) -> Error {
        let (expected, actual) = (expected.to_string(), actual.to_string());
        Error::HostKeyChanged { host: self.host.clone(), expected, actual }
    }

    /// Whether `known_hosts` has the server's key `actual`; an error if it
    /// has another one.
    fn known(&self, file: &KnownHosts, actual: &Fingerprint) -> Result<bool> {
        match file.check(&self.host, actual)? {
            HostCheck::Match => Ok(true),
            HostCheck::Unknown => Ok(false),
            HostCheck::Changed { expected } => Err(self.changed(expected, actual)),
        }
    }

    fn check_server_key(&self, key: &PublicKey) -> Result<()> {
        let actual = key.fingerprint();
        // Within one Client, the server key may never change across reconnects.
        if let Some(known) = self.server_key.as_ref().filter(|known| *known != key) {
            return Err(self.changed(known.fingerprint(), &actual));
        }
        match &self.trust {
            HostTrust::Fingerprint(pinned) if *pinned == actual => Ok(()),
            HostTrust::Fingerprint(pinned) => Err(self.changed(pinned, &actual)),
            // An unknown key is recorded only after the server proved it holds it.
            HostTrust::AcceptNew(file) => self.known(file, &actual).map(drop),
            HostTrust::KnownHosts(file) if self.known(file, &actual)? => Ok(()),
            HostTrust::KnownHosts(_) => {
                let (host, fingerprint) = (self.host.clone(), actual.to_string());
                Err(Error::UnknownHost { host, fingerprint })
            }
        }
    }

    fn open_connection(&mut self) -> Result<Channel> {
        let deadline = Instant::now() + self.config.handshake_timeout;
        let mut stream = Err(Error::InvalidInput(format!("{} resolves to no address", self.host)));
        for a in self.host.to_socket_addrs()? {
            let left =
                deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            stream =
                TcpStream::connect_timeout(&a, left).map_err(|e| connect_error(&self.host, a, e));
            if stream.is_ok() {
                break;
            }
        }
        let mut conn = Conn::new(stream?, self.config.io_timeout)?;
        let session = self.handshake(&mut conn, deadline)?;
        if let HostTrust::AcceptNew(file) = &self.trust {
            // Record the key now that the server has proven it holds it; re-check,
            // since another process may have recorded a key meanwhile.
            let actual = session.peer().fingerprint();
            if !self.known(file, &actual)? {
                file.add(&self.host, &actual)?;
            }
        }
        self.server_key = Some(session.peer().clone());
        Ok(conn.into_channel(session, Rng::system(), self.config.max_message_size))
    }

    fn handshake(&mut self, conn: &mut Conn, deadline: Instant) -> Result<Session> {
        let (state, hello) = ClientStart::new(&self.keys, &mut self.rng)?;
        conn.write_all(&hello)?;
        let body = conn.read_frame(MAX_HANDSHAKE_FRAME, deadline, "handshake")?;
        let mut rng = Rng::system();
        let (state, auth) =
            state.read_server_hello(&body, &mut rng, |key| self.check_server_key(key))?;
        conn.write_all(&auth)?;
        let body = conn.read_frame(MAX_HANDSHAKE_FRAME, deadline, "handshake")?;
        let verified = state.verify_server_auth(&body)?;
        // Unwrapping the server's secret and the Diffie-Hellman secret are
        // independent: two threads, one exponentiation off the critical path.
        let (server_secret, dh_secret) = std::thread::scope(|scope| {
            let dh = scope.spawn(|| verified.dh_secret());
            (verified.unwrap_server_secret(&mut rng), dh.join())
        });
        let dh_secret = dh_secret.map_err(|_| Error::Malformed("key exchange"))?;
        Ok(verified.finish(&server_secret?, &dh_secret))
    }

    /// Drop the current connection (if any) and establish a new one.
    pub fn reconnect(&mut self) -> Result<()> {
        self.channel = None;
        self.channel = Some(self.open_connection()?);
        Ok(())
    }

    /// Send a UTF-8 text message; returns the server's status and response.
    pub fn send_message(&mut self, message: &str) -> Result<Reply> {
        self.request(OP_TEXT, message.as_bytes())
    }

    /// Send raw bytes; returns the server's status and response.
    pub fn send_data(&mut self, data: &[u8]) -> Result<Reply> {
        self.request(OP_DATA, data)
    }

    /// A message of `len` bytes, refused if over `max_message_size`.
    fn check_size(&self, len: usize) -> Result<()> {
        let limit = self.config.max_message_size;
        if len > limit {
            return Err(Error::TooLarge { what: "message", size: len as u64, limit: limit as u64 });
        }
        Ok(())
    }

    fn request(&mut self, op: u8, body: &[u8]) -> Result<Reply> {
        self.check_size(body.len())?;
        self.with_retries(|ch, id, _, wait| {
            ch.send(REC_REQUEST, &Request::header(id, op), body)?;
            read_reply(ch, id, wait)
        })
    }

    /// The open connection, or a new one.
    fn take_channel(&mut self) -> Result<Channel> {
        self.channel.take().map_or_else(|| self.open_connection(), Ok)
    }

    /// Run `attempt` with one request id, reconnecting and retrying it (with the
    /// same id, so the server can recognize it) while the failure is retryable.
    /// Each attempt is given the connection, the id, how many tries came
    /// before it and how long to wait for a reply (`io_timeout`).
    fn with_retries<T>(
        &mut self,
        mut attempt: impl FnMut(&mut Channel, &RequestId, u32, Duration) -> Result<T>,
    ) -> Result<T> {
        let id: RequestId = self.rng.array()?;
        let wait = self.config.io_timeout;
        retrying(self.config.retries, |tries| {
            let mut ch = self.take_channel()?;
            let r = attempt(&mut ch, &id, tries, wait);
            // Keep the connection unless it failed underneath us.
            if !matches!(r, Err(ref e) if is_connection_error(e)) {
                self.channel = Some(ch);
            }
            r
        })
    }

    /// Send many messages without waiting a round trip for each: requests are
    /// pipelined (up to [`PIPELINE_WINDOW_BYTES`] in flight) and the replies come
    /// back in order. On a lost connection the unanswered ones are re-sent with
    /// their original ids, so no handler runs twice.
    pub fn send_batch(&mut self, items: &[Outgoing<'_>]) -> Result<Vec<Reply>> {
        items.iter().try_for_each(|item| self.check_size(item.bytes().len()))?;
        let ids: Vec<RequestId> = items.iter().map(|_| self.rng.array()).collect::<Result<_>>()?;
        let mut replies: Vec<Option<Reply>> = vec![None; items.len()];
        // The items carry their own ids: the attempt's one is not used.
        self.with_retries(|ch, _, _, wait| pipeline(ch, items, &ids, &mut replies, wait))?;
        // `pipeline` returns Ok only after it stored a reply for every
        // unanswered item.
        Ok(replies.into_iter().flatten().collect())
    }

    /// Upload `local` to the server's files directory as `remote`, refusing
    /// to replace an existing file and resuming an interrupted upload.
    pub fn send_file(&mut self, local: impl AsRef<Path>, remote: &str) -> Result<FileReport> {
        self.send_file_with(local, remote, TransferOptions::default())
    }

    /// Upload with options (overwrite, resume, a progress callback, read-back verify).
    pub fn send_file_with(
        &mut self,
        local: impl AsRef<Path>,
        remote: &str,
        opts: TransferOptions<'_>,
    ) -> Result<FileReport> {
        self.put_path(local.as_ref(), remote, opts)
    }

    /// `send_file_with`, not generic: one copy of the upload in the binary.
    pub(crate) fn put_path(
        &mut self,
        local: &Path,
        remote: &str,
        opts: TransferOptions<'_>,
    ) -> Result<FileReport> {
        let TransferOptions { overwrite, resume, mut progress, verify, preserve, limit_rate } =
            opts;
        let local = transfer::local_file(local)?;
        store::check_name(remote).map_err(Error::InvalidInput)?;
        let rate = transfer::check_rate(limit_rate)?;
        let report = self.with_retries(|ch, id, tries, wait| {
            // A retry continues what the failed attempt left on the server.
            let flags = (overwrite, resume || tries > 0, preserve);
            transfer::put_once(ch, id, (&local, remote), flags, wait, (&mut progress, rate))
        })?;
        if verify {
            // The server reads back what it stored.
            let stored = self.file_digest(remote)?;
            if (stored.size, stored.sha256) != (report.size, report.sha256) {
                let (size, got) = (stored.size, store::hex(&stored.sha256));
                let msg = format!("the server's {remote} reads back as {size} bytes, {got}");
                return Err(Error::DigestMismatch(msg));
            }
        }
        Ok(report)
    }

    /// Download `remote` from the server's files directory to `local`,
    /// refusing to replace an existing file and resuming an interrupted download.
    pub fn get_file(&mut self, remote: &str, local: impl AsRef<Path>) -> Result<FileReport> {
        self.get_file_with(remote, local, TransferOptions::default())
    }

    /// Download with options (overwrite, resume, a progress callback, read-back verify).
    pub fn get_file_with(
        &mut self,
        remote: &str,
        local: impl AsRef<Path>,
        opts: TransferOptions<'_>,
    ) -> Result<FileReport> {
        self.get_path(remote, local.as_ref(), opts)
    }

    /// `get_file_with`, not generic: one copy of the download in the binary.
    pub(crate) fn get_path(
        &mut self,
        remote: &str,
        local: &Path,
        opts: TransferOptions<'_>,
    ) -> Result<FileReport> {
        let TransferOptions { overwrite, resume, mut progress, verify, preserve, limit_rate } =
            opts;
        store::check_name(remote).map_err(Error::InvalidInput)?;
        let rate = transfer::check_rate(limit_rate)?;
        self.with_retries(|ch, id, tries, wait| {
            let flags = (overwrite, resume || tries > 0, verify, preserve);
            transfer::get_once(ch, id, (remote, local), flags, wait, (&mut progress, rate))
        })
    }

    /// List a directory of the server's files directory (`""`: its top),
    /// sorted by name (bytewise). The server sends pages of at most
    /// [`LIST_PAGE_ENTRIES`] entries; every name is checked to be one path
    /// component a remote name may be (a hostile server's `../x`, `/abs`,
    /// `a/b` or `.` fail the whole listing with [`Error::BadListing`] naming
    /// it), and more than [`MAX_LIST_ENTRIES`] entries in all are refused.
    pub fn list(&mut self, dir: &str) -> Result<Vec<DirEntry>> {
        if !dir.is_empty() {
            store::check_name(dir).map_err(Error::InvalidInput)?;
        }
        let mut entries: Vec<DirEntry> = Vec::new();
        loop {
            let after = entries.last().map_or("", |e| e.name.as_str());
            let page = self
                .with_retries(|ch, id, _, wait| transfer::list_once(ch, id, (dir, after), wait))?;
            let size = (entries.len() + page.entries.len()) as u64;
            if size > MAX_LIST_ENTRIES as u64 {
                let limit = MAX_LIST_ENTRIES as u64;
                return Err(Error::TooLarge { what: "listing (entries)", size, limit });
            }
            entries.extend(page.entries);
            if !page.more {
                return Ok(entries);
            }
        }
    }

    /// Create a directory (and its parents) in the server's files directory;
    /// Ok if it already is a directory.
    pub fn make_dir(&mut self, name: &str) -> Result<()> {
        store::check_name(name).map_err(Error::InvalidInput)?;
        self.with_retries(|ch, id, _, wait| transfer::mkdir_once(ch, id, name, wait))
    }

    /// Size and SHA-256 of a file in the server's files directory.
    pub fn file_digest(&mut self, remote: &str) -> Result<FileDigest> {
        store::check_name(remote).map_err(Error::InvalidInput)?;
        self.with_retries(|ch, id, _, wait| transfer::digest_once(ch, id, remote, wait))
    }
}

/// A failed TCP connect, naming the address and what the failure means.
fn connect_error(host: &str, addr: SocketAddr, e: std::io::Error) -> Error {
    let why = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            "connection refused: nothing is listening there (is the server running, on this port?)"
                .to_string()
        }
        std::io::ErrorKind::TimedOut => "no answer within the handshake timeout".to_string(),
        _ => e.to_string(),
    };
    let shown =
        if host == addr.to_string() { host.to_string() } else { format!("{host} ({addr})") };
    Error::Io(std::io::Error::new(e.kind(), format!("cannot connect to {shown}: {why}")))
}

/// Run `attempt` until it succeeds or fails for good: a lost connection or a
/// busy server is tried again, up to `retries` times, after a growing pause.
fn retrying<T>(retries: u32, mut attempt: impl FnMut(u32) -> Result<T>) -> Result<T> {
    let mut tries = 0;
    loop {
        match attempt(tries) {
            Err(e) if tries < retries && retryable(&e) => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50 << tries.min(5)));
            }
            other => return other,
        }
    }
}

/// Errors after which the connection is unusable: those that end a transfer
/// of several files, and a local file's I/O error, which can come in the
/// middle of a stream. A local file in the way ([`Error::Exists`]) is found
/// before a download's request or after its FILE_END, with nothing left to read.
fn is_connection_error(e: &Error) -> bool {
    !e.is_per_file() || matches!(e, Error::File { .. })
}

/// Lost connections and busy servers are worth another try; everything that
/// says "you are not welcome" or "something is being tampered with" is not.
fn retryable(e: &Error) -> bool {
    match e {
        Error::Io(_) | Error::Timeout(_) | Error::Closed(_) => true,
        Error::Refused { code, .. } => matches!(code, AlertCode::Busy | AlertCode::ShuttingDown),
        _ => false,
    }
}

/// Bytes of requests in flight in [`Client::send_batch`]. Kept well below the
/// smallest default socket buffers, so that writing a request can never block
/// while the server is blocked writing a reply we are not reading yet.
pub const PIPELINE_WINDOW_BYTES: usize = 64 * 1024;

/// One message of a [`Client::send_batch`].
#[derive(Debug, Clone, Copy)]
pub enum Outgoing<'a> {
    /// A UTF-8 text message.
    Text(&'a str),
    /// Raw bytes.
    Data(&'a [u8]),
}

impl Outgoing<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Outgoing::Text(t) => t.as_bytes(),
            Outgoing::Data(d) => d,
        }
    }

    fn op(&self) -> u8 {
        if matches!(self, Outgoing::Text(_)) { OP_TEXT } else { OP_DATA }
    }
}

/// Send the unanswered items with a sliding window and collect replies in order.
fn pipeline(
    ch: &mut Channel,
    items: &[Outgoing<'_>],
    ids: &[RequestId],
    replies: &mut [Option<Reply>],
    wait: Duration,
) -> Result<()> {
    let todo: Vec<usize> = (0..items.len()).filter(|&i| replies[i].is_none()).collect();
    let size = |i: usize| items[i].bytes().len() + REQUEST_ID_LEN + 64;
    // The requests todo[k..sent] are in flight, `in_flight` bytes of them.
    let (mut sent, mut in_flight) = (0, 0);
    for (k, &i) in todo.iter().enumerate() {
        // Fill the window, which always takes the one whose reply comes next.
        while sent < todo.len()
            && (sent == k || in_flight + size(todo[sent]) <= PIPELINE_WINDOW_BYTES)
        {
            let next = todo[sent];
            let header = Request::header(&ids[next], items[next].op());
            ch.queue(REC_REQUEST, &header, items[next].bytes())?;
            in_flight += size(next);
            sent += 1;
        }
        // Receiving flushes what was queued before it waits.
        replies[i] = Some(read_reply(ch, &ids[i], wait)?);
        in_flight -= size(i);
    }
    Ok(())
}

fn read_reply(ch: &mut Channel, id: &RequestId, wait: Duration) -> Result<Reply> {
    let deadline = Instant::now() + wait;
    let msg = ch.recv(deadline, RESPONSE_HEADER)?.ok_or(Error::Closed("waiting for a reply"))?;
    if msg.rtype != REC_RESPONSE {
        return Err(Error::Malformed("expected a response record"));
    }
    transfer::parse_response(id, &msg.payload)
}
