//! An established session over a connection: messages split into records
//! and sealed on the way out, records opened and assembled on the way in.

use super::conn::Conn;
use super::sealing::SealPool;
use crate::constants::*;
use crate::error::{Error, Result};
use crate::keys::PublicKey;
use crate::proto::codec::Body;
use crate::proto::handshake::Session;
use crate::proto::msg::{self, Alert, Assembler, FLAG_FIN, REC_ALERT};
use crate::proto::record::{Opener, Plain, Sealer};
use crate::rand::Rng;
use crate::status::AlertCode;
use std::sync::Arc;
use std::time::Instant;

/// Queued output is written once it reaches this size (bounds memory for
/// big messages and for long runs of pipelined replies).
const QUEUE_FLUSH: usize = 4 * 1024 * 1024;

/// An established, authenticated connection: messages in, messages out.
pub(crate) struct Channel {
    pub(crate) conn: Conn,
    sealer: Sealer,
    opener: Opener,
    pub(crate) peer: PublicKey,
    pub(crate) rng: Rng,
    pub(crate) max_message: usize,
    out: Vec<u8>,
    /// Record buffers handed back by [`Channel::recycle`] (at most
    /// [`SPARE_BUFFERS`]), reused by the next receives: a new buffer costs an
    /// allocation and its zeroing, a reused one is still in cache.
    spare: Vec<Vec<u8>>,
}

/// Record buffers a channel keeps for reuse (a file receive has one in use at a time).
const SPARE_BUFFERS: usize = 2;

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
    pub(crate) fn new(conn: Conn, session: Session, rng: Rng, max_message: usize) -> Self {
        let (sealer, opener, peer) = session.into_parts();
        Channel { conn, sealer, opener, peer, rng, max_message, out: Vec::new(), spare: Vec::new() }
    }

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
        // The header opens the first record.
        let (mut header, mut rest, mut fin) = (header, body, 0);
        while fin == 0 {
            let n = rest.len().min(MAX_RECORD_PLAINTEXT - header.len());
            fin = if n == rest.len() { FLAG_FIN } else { 0 };
            let record = Plain { rtype, flags: fin, parts: &[header, &rest[..n]] };
            self.sealer.seal_batch(&mut self.rng, &[record], &mut self.out)?;
            (header, rest) = (&[], &rest[n..]);
            // Keep memory flat: however many messages are queued, at most a few MiB wait.
            if self.out.len() >= QUEUE_FLUSH {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Write everything queued.
    pub(crate) fn flush(&mut self) -> Result<()> {
        // Nothing queued is no write at all (`write_all` of nothing returns at once).
        let res = self.conn.write_all(&self.out);
        self.out.clear();
        res
    }

    /// Send one record made of `parts` (at most MAX_RECORD_PLAINTEXT bytes).
    pub(crate) fn send_record(&mut self, rtype: u8, flags: u8, parts: &[&[u8]]) -> Result<()> {
        self.sealer.seal_batch(&mut self.rng, &[Plain { rtype, flags, parts }], &mut self.out)?;
        self.flush()
    }

    /// Send `data[..n]`, read at `offset`, as FILE_DATA records sealed by `pool`.
    pub(crate) fn send_file_data(
        &mut self,
        pool: &mut SealPool,
        offset: u64,
        data: &Arc<Vec<u8>>,
        n: usize,
    ) -> Result<()> {
        self.flush()?;
        let conn = &mut self.conn;
        pool.seal(&mut self.sealer, &mut self.rng, offset, data, n, &mut |f| conn.write_all(f))
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
        let mut buf = self.spare.pop().unwrap_or_default();
        let len =
            self.conn.read_frame_into(&mut buf, MAX_RECORD_FRAME, deadline, "reading a record")?;
        let rec = self.opener.open(&mut buf[..len])?;
        let (rtype, flags, len) = (rec.rtype, rec.flags, rec.plaintext.len());
        msg::check_flags(flags)?;
        if len > MAX_RECORD_PLAINTEXT {
            return Err(Error::Malformed("record plaintext over the limit"));
        }
        // Records decrypt in place: the plaintext starts where the ciphertext did.
        let start = RECORD_HEADER + IV_LEN;
        let range = start..start + len;
        if rtype == REC_ALERT {
            return Err(Alert::decode(&buf[range]).map_or_else(|e| e, Alert::into_error));
        }
        Ok(OwnedRecord { rtype, flags, buf, range })
    }

    /// Give a record's buffer back for the next receive.
    pub(crate) fn recycle(&mut self, rec: OwnedRecord) {
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(rec.buf);
        }
    }

    /// Whether the peer has sent something we have not read yet (never blocks).
    pub(crate) fn peer_has_data(&mut self) -> bool {
        self.conn.peek_ready()
    }

    /// Send an encrypted alert (then the caller closes).
    pub(crate) fn send_alert(&mut self, code: AlertCode, message: &str) -> Result<()> {
        self.send(REC_ALERT, &Alert::new(code, message).to_vec(), &[])
    }

    /// Receive one whole message (records until FIN), at most `max_message`
    /// bytes of payload plus `allowance` (for a header). `deadline` bounds the wait for
    /// its first byte; an encrypted alert becomes [`Error::Refused`].
    /// `Ok(None)` means the peer closed cleanly before the message began.
    pub(crate) fn recv(&mut self, deadline: Instant, allowance: usize) -> Result<Option<Message>> {
        if !self.out.is_empty() && !self.conn.has_buffered_frame() {
            self.flush()?;
        }
        if !self.conn.wait_readable(deadline, "waiting for a message")? {
            return Ok(None);
        }
        let mut message = Assembler::new(self.max_message + allowance);
        let started = Instant::now();
        loop {
            // A message must keep moving: each MiB received earns another I/O
            // timeout, so a peer trickling tiny records cannot hold the slot.
            let earned = 1 + u32::try_from(message.received() / FILE_CHUNK).unwrap_or(u32::MAX - 1);
            let rec = self.recv_record(started + self.conn.io_timeout.saturating_mul(earned))?;
            let done = message.push(rec.rtype, rec.flags, rec.plaintext())?;
            self.recycle(rec);
            if let Some((rtype, payload)) = done {
                return Ok(Some(Message { rtype, payload }));
            }
        }
    }
}
