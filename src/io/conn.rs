//! A `TcpStream` with deadlines: frames read against a deadline for the whole
//! frame, bounded writes, and the plaintext refusal before a session exists.

use super::channel::Channel;
use crate::constants::*;
use crate::error::{Error, Result};
use crate::proto::codec::check_frame_len;
use crate::proto::handshake::{Session, alert_frame};
use crate::rand::Rng;
use crate::status::AlertCode;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Read buffer of a connection. Small frames (handshake, messages) are read
/// many at a time through it; large records mostly bypass it, so it stays small
/// to avoid copying their first bytes twice.
const READ_BUFFER: usize = 32 * 1024;

/// How far past a deadline a blocking read may end.
const TIMEOUT_SLACK: Duration = Duration::from_millis(100);

/// A TCP connection with deadline-aware frame reads.
pub(crate) struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    pub(crate) io_timeout: Duration,
    /// The read timeout currently set on the socket.
    timeout: Option<Duration>,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, io_timeout: Duration) -> Result<Self> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(io_timeout))?;
        let reader = BufReader::with_capacity(READ_BUFFER, stream.try_clone()?);
        Ok(Conn { stream, reader, io_timeout, timeout: None })
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
        if self.timeout.is_none_or(|t| t > left + TIMEOUT_SLACK || t < left / 2) {
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
        // An empty buffer grows to exactly the body.
        let mut body = Vec::new();
        self.read_frame_into(&mut body, max, deadline, stage)?;
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
        Channel::new(self, session, rng, max_message)
    }
}
