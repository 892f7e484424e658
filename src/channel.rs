//! The layer that owns a `TcpStream`: frames read against deadlines, the
//! handshake driven over the socket, and messages split into records.

use crate::constants::*;
use crate::error::{AlertCode, Error, Result};
use crate::handshake::{MAX_ALERT_MESSAGE, Session, alert_frame, truncate_utf8};
use crate::keys::PublicKey;
use crate::rand::Rng;
use crate::record::{FLAG_FIN, Opener, Sealer};
use crate::wire::{Reader, check_frame_len, put_vec16};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Record type: a request, client to server.
pub const REC_REQUEST: u8 = 0x10;
/// Record type: a response, server to client.
pub const REC_RESPONSE: u8 = 0x11;
/// Record type: the receiver of a file is ready (server to client, after a PUT
/// or GET request): where the transfer starts.
pub const REC_FILE_READY: u8 = 0x12;
/// Record type: a chunk of file data, `offset u64 || bytes`.
pub const REC_FILE_DATA: u8 = 0x13;
/// Record type: the end of a file, `total u64 || sha256 [32]`.
pub const REC_FILE_END: u8 = 0x14;
/// Record type: an alert inside the session (then the sender closes).
pub const REC_ALERT: u8 = 0x15;
/// FILE_END flag: the sender abandoned the transfer.
pub const FLAG_ABORT: u8 = 0x02;

/// Read buffer of a connection. Small frames (handshake, messages) are read
/// many at a time through it; large records mostly bypass it, so it stays small
/// to avoid copying their first bytes twice.
const READ_BUFFER: usize = 32 * 1024;

/// Queued output is written once it reaches this size (bounds memory for
/// big messages and for long runs of pipelined replies).
const QUEUE_FLUSH: usize = 4 * 1024 * 1024;

/// How far past a deadline a blocking read may end.
const TIMEOUT_SLACK: Duration = Duration::from_millis(100);

/// A TCP connection with deadline-aware frame reads.
pub(crate) struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    io_timeout: Duration,
    /// The read timeout currently set on the socket.
    timeout: Option<Duration>,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, io_timeout: Duration) -> Result<Self> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(io_timeout))?;
        let reader = BufReader::with_capacity(READ_BUFFER, stream.try_clone()?);
        Ok(Conn {
            stream,
            reader,
            io_timeout,
            timeout: None,
        })
    }

    /// Make the next blocking read return by `deadline` (within
    /// [`TIMEOUT_SLACK`]), or fail if it has passed. The socket option is only
    /// changed when the one in force would overshoot the deadline or wake us
    /// far too early: setting it takes the socket lock, which under a stream of
    /// large records costs as much as the read itself.
    fn arm_timeout(&mut self, deadline: Instant, stage: &'static str) -> Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout(stage));
        }
        let stale = match self.timeout {
            Some(t) => t > left + TIMEOUT_SLACK || t < left / 2,
            None => true,
        };
        if stale {
            self.stream.set_read_timeout(Some(left))?;
            self.timeout = Some(left);
        }
        Ok(())
    }

    /// Read exactly `buf.len()` bytes before `deadline`. A peer that trickles
    /// bytes cannot stretch this: the deadline is for the whole read.
    fn read_exact_by(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
        stage: &'static str,
    ) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            if self.reader.buffer().is_empty() {
                self.arm_timeout(deadline, stage)?;
            }
            match self.reader.read(&mut buf[done..]) {
                Ok(0) => return Err(Error::Closed(stage)),
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The socket timeout may be shorter than the deadline: look again.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
        Ok(())
    }

    /// Wait until the first byte of a frame is available or `deadline` passes.
    /// `Ok(false)` means the peer closed cleanly between frames.
    pub(crate) fn wait_readable(&mut self, deadline: Instant, stage: &'static str) -> Result<bool> {
        loop {
            if !self.reader.buffer().is_empty() {
                return Ok(true);
            }
            self.arm_timeout(deadline, stage)?;
            match self.reader.fill_buf() {
                Ok([]) => return Ok(false),
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// Read one frame body of at most `max` bytes. The length is checked before
    /// the body buffer is allocated. The whole frame must arrive before
    /// `deadline` (or within the I/O timeout when that is sooner).
    pub(crate) fn read_frame(
        &mut self,
        max: usize,
        deadline: Instant,
        stage: &'static str,
    ) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        let len = self.read_frame_into(&mut body, max, deadline, stage)?;
        body.truncate(len);
        Ok(body)
    }

    /// Like [`Conn::read_frame`], into a reusable buffer: the body is
    /// `buf[..len]`. The buffer only grows (zero-filled once), so a stream of
    /// 1 MiB records costs no allocation and no clearing per record.
    pub(crate) fn read_frame_into(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
        deadline: Instant,
        stage: &'static str,
    ) -> Result<usize> {
        let deadline = deadline.min(Instant::now() + self.io_timeout);
        let mut prefix = [0u8; LEN_PREFIX];
        self.read_exact_by(&mut prefix, deadline, stage)?;
        let len = check_frame_len(prefix, max)?;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        self.read_exact_by(&mut buf[..len], deadline, stage)?;
        Ok(len)
    }

    /// Whether a whole frame from the peer sits in our read buffer already.
    pub(crate) fn has_buffered_frame(&self) -> bool {
        let b = self.reader.buffer();
        b.len() >= LEN_PREFIX
            && b.len() - LEN_PREFIX >= u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
    }

    /// Whether unread bytes are waiting (buffered or in the socket), without blocking.
    pub(crate) fn peek_ready(&mut self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut b = [0u8; 1];
        let ready = matches!(self.stream.peek(&mut b), Ok(n) if n > 0);
        let _ = self.stream.set_nonblocking(false);
        ready
    }

    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Error::Timeout("write"),
            _ => Error::Io(e),
        })
    }

    /// After refusing a message that is too large, read and discard what the
    /// peer is still sending (bounded in time and bytes) so that it reads our
    /// alert instead of a connection reset.
    pub(crate) fn linger(&mut self, max_time: Duration, max_bytes: u64) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let until = Instant::now() + max_time;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        while total < max_bytes {
            let left = until.saturating_duration_since(Instant::now());
            self.timeout = Some(left);
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match self.reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n as u64,
            }
        }
    }

    /// Send a plaintext alert and close (best effort: the peer may be gone).
    pub(crate) fn refuse(mut self, code: AlertCode, message: &str) {
        let _ = self.write_all(&alert_frame(code, message));
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    pub(crate) fn into_channel(self, session: Session, rng: Rng, max_message: usize) -> Channel {
        let Session {
            sealer,
            opener,
            peer,
            ..
        } = session;
        Channel {
            conn: self,
            sealer,
            opener,
            peer,
            rng,
            max_message,
            out: Vec::new(),
            spare: Vec::new(),
        }
    }
}

/// The alert code a peer is told for an error, and a short message that
/// reveals nothing the peer does not already know.
pub(crate) fn alert_for(err: &Error) -> (AlertCode, String) {
    let (code, text) = match err {
        Error::NotAuthorized { .. } => (
            AlertCode::Unauthorized,
            "client key is not in authorized_keys",
        ),
        Error::Version { .. } => {
            return (
                AlertCode::Version,
                format!("this server speaks ovtp protocol version {PROTOCOL_VERSION}"),
            );
        }
        Error::TooLarge { .. } => (AlertCode::TooLarge, "size limit exceeded"),
        Error::ShuttingDown => (AlertCode::ShuttingDown, "server is shutting down"),
        Error::Timeout(_) => (AlertCode::HandshakeFailed, "timed out"),
        _ => (AlertCode::HandshakeFailed, "handshake failed"),
    };
    (code, text.to_string())
}

/// An established, authenticated connection: messages in, messages out.
pub(crate) struct Channel {
    pub(crate) conn: Conn,
    sealer: Sealer,
    opener: Opener,
    pub(crate) peer: PublicKey,
    pub(crate) rng: Rng,
    max_message: usize,
    out: Vec<u8>,
    /// A record buffer handed back by [`Channel::recycle`], reused by the next receive.
    spare: Vec<u8>,
}

/// One record as received, decrypted in place in its frame buffer.
pub(crate) struct OwnedRecord {
    pub(crate) rtype: u8,
    pub(crate) flags: u8,
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
}

impl OwnedRecord {
    pub(crate) fn plaintext(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

/// A message as received: its record type and assembled payload.
pub(crate) struct Message {
    pub(crate) rtype: u8,
    pub(crate) payload: Vec<u8>,
}

impl Channel {
    /// Send `header || body` as one message of type `rtype`, in as many records
    /// as needed; the last carries FLAG_FIN.
    pub(crate) fn send(&mut self, rtype: u8, header: &[u8], body: &[u8]) -> Result<()> {
        self.queue(rtype, header, body)?;
        self.flush()
    }

    /// Like [`Channel::send`] but leave the records in the output buffer until
    /// [`Channel::flush`] (or until the buffer holds a few MiB), so that many
    /// small messages cost one system call.
    pub(crate) fn queue(&mut self, rtype: u8, header: &[u8], body: &[u8]) -> Result<()> {
        let first = body.len().min(MAX_RECORD_PLAINTEXT - header.len());
        let mut rest = &body[first..];
        let fin = if rest.is_empty() { FLAG_FIN } else { 0 };
        self.sealer.seal_parts(
            &mut self.rng,
            rtype,
            fin,
            &[header, &body[..first]],
            &mut self.out,
        )?;
        while !rest.is_empty() {
            let n = rest.len().min(MAX_RECORD_PLAINTEXT);
            let fin = if n == rest.len() { FLAG_FIN } else { 0 };
            self.sealer
                .seal(&mut self.rng, rtype, fin, &rest[..n], &mut self.out)?;
            rest = &rest[n..];
            if self.out.len() >= QUEUE_FLUSH {
                self.flush()?;
            }
        }
        // Keep memory flat: however many messages are queued, at most a few MiB wait.
        if self.out.len() >= QUEUE_FLUSH {
            self.flush()?;
        }
        Ok(())
    }

    /// Write everything queued.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let res = self.conn.write_all(&self.out);
        self.out.clear();
        res
    }

    /// Send one record made of `parts` (at most MAX_RECORD_PLAINTEXT bytes).
    pub(crate) fn send_record(&mut self, rtype: u8, flags: u8, parts: &[&[u8]]) -> Result<()> {
        self.sealer
            .seal_parts(&mut self.rng, rtype, flags, parts, &mut self.out)?;
        self.flush()
    }

    /// Whether a whole frame from the peer is already buffered (the next
    /// receive will not block).
    pub(crate) fn has_buffered_input(&self) -> bool {
        self.conn.has_buffered_frame()
    }

    /// Receive one record (waiting at most until `deadline` for it to begin).
    /// An encrypted alert becomes [`Error::Refused`].
    pub(crate) fn recv_record(&mut self, deadline: Instant) -> Result<OwnedRecord> {
        // A record must begin within the I/O timeout, whatever the caller's
        // (longer) progress deadline; keeping deadlines alike also keeps the
        // socket's timeout option from being reset on every record.
        let deadline = deadline.min(Instant::now() + self.conn.io_timeout);
        self.recv_record_by(deadline)
    }

    /// Like [`Channel::recv_record`], but wait until `deadline` however far it
    /// is: for answers that need the peer to read a large file first.
    pub(crate) fn recv_record_by(&mut self, deadline: Instant) -> Result<OwnedRecord> {
        // Never wait for the peer while our own queued records sit unsent.
        if !self.out.is_empty() && !self.conn.has_buffered_frame() {
            self.flush()?;
        }
        if !self.conn.wait_readable(deadline, "waiting for a record")? {
            return Err(Error::Closed("waiting for a record"));
        }
        let mut buf = std::mem::take(&mut self.spare);
        let len =
            self.conn
                .read_frame_into(&mut buf, MAX_RECORD_FRAME, deadline, "reading a record")?;
        let rec = self.opener.open(&mut buf[..len])?;
        let (rtype, flags, len) = (rec.rtype, rec.flags, rec.plaintext.len());
        if flags & !(FLAG_FIN | FLAG_ABORT) != 0 {
            return Err(Error::Malformed("unknown record flags"));
        }
        if len > MAX_RECORD_PLAINTEXT {
            return Err(Error::Malformed("record plaintext over the limit"));
        }
        // Records decrypt in place: the plaintext starts where the ciphertext did.
        let start = RECORD_HEADER + IV_LEN;
        let range = start..start + len;
        if rtype == REC_ALERT {
            return Err(alert_error(&buf[range]));
        }
        Ok(OwnedRecord {
            rtype,
            flags,
            buf,
            range,
        })
    }

    /// Give a record's buffer back for the next receive.
    pub(crate) fn recycle(&mut self, rec: OwnedRecord) {
        if rec.buf.capacity() > self.spare.capacity() {
            self.spare = rec.buf;
        }
    }

    /// Whether the peer has sent something we have not read yet (never blocks).
    pub(crate) fn peer_has_data(&mut self) -> bool {
        self.conn.peek_ready()
    }

    /// Send an encrypted alert (then the caller closes).
    pub(crate) fn send_alert(&mut self, code: AlertCode, message: &str) -> Result<()> {
        let mut pt = vec![code.to_u8()];
        put_vec16(
            &mut pt,
            truncate_utf8(message, MAX_ALERT_MESSAGE).as_bytes(),
        );
        self.send(REC_ALERT, &pt, &[])
    }

    /// Receive one whole message (records until FIN), at most `max_message`
    /// bytes of payload plus `header_allowance`. `deadline` bounds the wait for
    /// its first byte; an encrypted alert becomes [`Error::Refused`].
    /// `Ok(None)` means the peer closed cleanly before the message began.
    pub(crate) fn recv(
        &mut self,
        deadline: Instant,
        header_allowance: usize,
    ) -> Result<Option<Message>> {
        if !self.out.is_empty() && !self.conn.has_buffered_frame() {
            self.flush()?;
        }
        if !self.conn.wait_readable(deadline, "waiting for a message")? {
            return Ok(None);
        }
        let limit = self.max_message + header_allowance;
        let started = Instant::now();
        let mut payload = Vec::new();
        let mut rtype = None;
        loop {
            // A message must keep moving: each MiB received earns another I/O
            // timeout, so a peer trickling tiny records cannot hold the slot.
            let earned = 1 + u32::try_from(payload.len() / FILE_CHUNK).unwrap_or(u32::MAX - 1);
            let rec = self.recv_record(started + self.conn.io_timeout.saturating_mul(earned))?;
            if *rtype.get_or_insert(rec.rtype) != rec.rtype {
                return Err(Error::Malformed("record type changed inside a message"));
            }
            if payload.len() + rec.plaintext().len() > limit {
                return Err(Error::TooLarge {
                    what: "message",
                    size: (payload.len() + rec.plaintext().len()) as u64,
                    limit: limit as u64,
                });
            }
            payload.extend_from_slice(rec.plaintext());
            let (rtype, fin) = (rec.rtype, rec.flags & FLAG_FIN != 0);
            self.recycle(rec);
            if fin {
                return Ok(Some(Message { rtype, payload }));
            }
        }
    }
}

/// Decode an encrypted alert record into the error it reports.
fn alert_error(plaintext: &[u8]) -> Error {
    let parsed = (|| {
        let mut r = Reader::new(plaintext);
        let code = AlertCode::from_u8(r.u8("alert code")?);
        let msg =
            String::from_utf8_lossy(r.vec16(MAX_ALERT_MESSAGE, "alert message")?).into_owned();
        r.finish("alert")?;
        Ok(Error::Refused { code, message: msg })
    })();
    parsed.unwrap_or_else(|e| e)
}
