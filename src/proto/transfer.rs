//! Transfers of files as two state machines with no I/O (PROTOCOL.md 7.7): one
//! [`Sender`] and one [`Receiver`], used alike by upload (the client sends)
//! and download (the server sends), and [`resume_point`], the one rule for
//! resuming. The layers above read and write the file, hash what must be
//! hashed, and move the records; these decide what the peer's offsets,
//! resume offers and FILE_END mean.
//!
//! Resuming: the side that holds a partial file tells only its length; the
//! client sends the SHA-256 of its own prefix of that length (its partial's
//! in a download, its file's in an upload) and the server compares. A digest
//! of a partial file never leaves the server, so no other party can extend it.
//! The receiver does not hash the data as it arrives: every FILE_DATA byte is
//! under a record MAC bound to its sequence number and offset, so it checks
//! contiguity and the total and keeps the sender's digest from FILE_END.

use super::msg::{FileData, FileEnd};
use crate::constants::FILE_CHUNK;

/// The sending side: where to start, which chunk comes next, how to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    size: u64,
    start: u64,
    pos: u64,
    sent_any: bool,
}

impl Sender {
    /// How many bytes of its own file a sender must hash to judge the
    /// receiver's offer to resume at `offer`; `None` when the offer cannot be
    /// taken (nothing held, or more than the file).
    pub fn prefix_to_check(size: u64, offer: u64) -> Option<u64> {
        (offer > 0 && offer <= size).then_some(offer)
    }

    /// A sender of a `size`-byte file whose data starts at `start` (0, or
    /// the [`resume_point`] agreed on).
    pub fn new(size: u64, start: u64) -> Self {
        let start = start.min(size);
        Sender { size, start, pos: start, sent_any: false }
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where the data starts.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Bytes sent so far, counted from the start of the file.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The length of the next chunk to read, or `None` when all is sent. An
    /// empty file still sends one empty chunk, so the receiver learns where
    /// the data starts.
    pub fn next_len(&self) -> Option<usize> {
        let left = self.size - self.pos;
        if left == 0 && self.sent_any {
            return None;
        }
        Some(left.min(FILE_CHUNK as u64) as usize)
    }

    /// The FILE_DATA for `bytes`, read at the current position; advances.
    /// Returns `None` if more bytes are offered than the file has left.
    pub fn chunk<'a>(&mut self, bytes: &'a [u8]) -> Option<FileData<'a>> {
        if bytes.len() as u64 > self.size - self.pos {
            return None;
        }
        let chunk = FileData { offset: self.pos, bytes };
        self.pos += bytes.len() as u64;
        self.sent_any = true;
        Some(chunk)
    }

    /// The FILE_END once everything was sent, with the SHA-256 of the whole file.
    pub fn end(&self, sha256: [u8; 32]) -> Option<FileEnd> {
        let done = self.pos == self.size && self.sent_any;
        done.then_some(FileEnd { total: self.size, sha256, abort: false })
    }

    /// The FILE_END that abandons the transfer where it stands.
    pub fn abort(&self) -> FileEnd {
        FileEnd { total: self.pos, sha256: [0; 32], abort: true }
    }
}

/// Where a resumed transfer starts: at `offer`, the bytes the receiver holds,
/// only when the offer is inside the `size`-byte file and the client's
/// SHA-256 of those bytes (`claimed`) equals the server's (`own`, `None` when
/// it could not read them all); otherwise at 0. The server decides, for
/// uploads and downloads alike (PROTOCOL.md 7.7.2, 7.7.3).
pub fn resume_point(size: u64, offer: u64, claimed: &[u8; 32], own: Option<&[u8; 32]>) -> u64 {
    match Sender::prefix_to_check(size, offer) {
        Some(offer) if own == Some(claimed) => offer,
        _ => 0,
    }
}

/// What the receiver does with its partial file when the data starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Keep the bytes held; the data continues after them.
    Continue,
    /// The sender starts over at 0: drop the bytes held.
    Restart,
}

/// Why a receiver refuses a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not where the data was expected (a gap, an overlap, an offer not made).
    Offset,
    /// Past the size the sender announced.
    TooLarge,
}

/// The verdict on FILE_END.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every byte arrived, in order, up to the announced length: commit, with
    /// the sender's SHA-256 as the file's digest.
    Complete,
    /// The sender abandoned the transfer; the partial file may be resumed.
    Aborted,
    /// The length differs: nothing may be kept.
    Mismatch,
}

/// The receiving side: it accepts only contiguous chunks inside the
/// announced size, starting at 0 or, once a resume was agreed, after the
/// bytes it holds, and judges FILE_END.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    held: u64,
    resumable: bool,
    size: u64,
    pos: Option<u64>,
}

impl Receiver {
    /// A receiver of a `size`-byte file whose partial file holds `held`
    /// bytes. Unless `resumable` (the server agreed on the prefix, see
    /// [`resume_point`]), the data must start at 0, and the bytes held go.
    pub fn new(held: u64, size: u64, resumable: bool) -> Self {
        Receiver { held, resumable: resumable && held > 0, size, pos: None }
    }

    /// The sender says where it starts: after the bytes held, if agreed, or at 0.
    pub fn start(&mut self, at: u64) -> Result<Start, Refusal> {
        let start = match at {
            _ if self.pos.is_some() => return Err(Refusal::Offset),
            0 if self.held > 0 => Start::Restart,
            0 => Start::Continue,
            at if self.resumable && at == self.held => Start::Continue,
            _ => return Err(Refusal::Offset),
        };
        self.pos = Some(at);
        Ok(start)
    }

    /// A FILE_DATA chunk. Before the start is known (an upload), the first
    /// chunk's offset is the start; `Some` tells what to do with the partial.
    /// A refused chunk changes nothing.
    pub fn data(&mut self, chunk: &FileData<'_>) -> Result<Option<Start>, Refusal> {
        let start = match self.pos {
            None => Some(self.clone().start(chunk.offset)?),
            Some(pos) if pos == chunk.offset => None,
            Some(_) => return Err(Refusal::Offset),
        };
        match chunk.offset.checked_add(chunk.bytes.len() as u64) {
            Some(end) if end <= self.size => {
                self.pos = Some(end);
                Ok(start)
            }
            _ => Err(Refusal::TooLarge),
        }
    }

    /// The size the sender announced.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes of the file held so far (those of the partial file until the data starts).
    pub fn position(&self) -> u64 {
        self.pos.unwrap_or(self.held)
    }

    /// Judge FILE_END: complete when every byte up to the announced size
    /// arrived. The bytes need no digest of their own: each arrived under a
    /// record MAC with its offset, in order, from the authenticated sender.
    pub fn end(&self, end: &FileEnd) -> Verdict {
        if end.abort {
            Verdict::Aborted
        } else if self.pos == Some(end.total) && end.total == self.size {
            Verdict::Complete
        } else {
            Verdict::Mismatch
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(offset: u64, bytes: &[u8]) -> FileData<'_> {
        FileData { offset, bytes }
    }

    #[test]
    fn a_transfer_resumes_only_inside_the_file_and_on_a_matching_prefix() {
        let (claimed, same, other) = ([7; 32], [7; 32], [8; 32]);
        assert_eq!(resume_point(10, 4, &claimed, Some(&same)), 4);
        assert_eq!(resume_point(10, 4, &claimed, Some(&other)), 0);
        assert_eq!(resume_point(10, 4, &claimed, None), 0, "prefix not readable");
        assert_eq!(resume_point(10, 11, &claimed, Some(&same)), 0, "more than the file");
        assert_eq!(resume_point(10, 0, &claimed, Some(&same)), 0);
        assert_eq!(Sender::new(10, 4).start(), 4);
    }

    #[test]
    fn sender_sends_an_empty_file_as_one_empty_chunk_then_ends() {
        let mut s = Sender::new(0, 0);
        assert_eq!(s.end([1; 32]), None, "no end before the first chunk");
        assert_eq!(s.next_len(), Some(0));
        assert_eq!(s.chunk(&[]), Some(data(0, &[])));
        assert_eq!(s.next_len(), None);
        assert_eq!(s.chunk(&[1]), None, "more than the file");
        assert_eq!(s.end([1; 32]).map(|e| e.total), Some(0));
    }

    #[test]
    fn receiver_takes_only_contiguous_chunks_inside_the_size() {
        let mut r = Receiver::new(0, 10, false);
        assert_eq!(r.data(&data(0, &[0; 4])), Ok(Some(Start::Continue)));
        assert_eq!(r.data(&data(5, &[0; 1])), Err(Refusal::Offset), "gap");
        assert_eq!(r.data(&data(3, &[0; 1])), Err(Refusal::Offset), "overlap");
        assert_eq!(r.data(&data(4, &[0; 7])), Err(Refusal::TooLarge));
        assert_eq!(r.data(&data(u64::MAX, &[0; 1])), Err(Refusal::Offset));
        assert_eq!(r.data(&data(4, &[0; 6])), Ok(None));
        assert_eq!(r.position(), 10);
    }

    #[test]
    fn receiver_continues_only_an_agreed_prefix_and_otherwise_starts_over_at_zero() {
        assert_eq!(Receiver::new(4, 10, true).data(&data(4, &[1])), Ok(Some(Start::Continue)));
        assert_eq!(Receiver::new(4, 10, true).data(&data(0, &[1])), Ok(Some(Start::Restart)));
        assert_eq!(Receiver::new(4, 10, true).data(&data(2, &[1])), Err(Refusal::Offset));
        // Without an agreed prefix (an upload whose sender sent no FILE_PREFIX,
        // or whose prefix differed) the bytes held are never continued.
        assert_eq!(Receiver::new(4, 10, false).data(&data(4, &[1])), Err(Refusal::Offset));
        assert_eq!(Receiver::new(4, 10, false).data(&data(0, &[1])), Ok(Some(Start::Restart)));
        // A refused first chunk decides nothing: a later one still restarts.
        let mut r = Receiver::new(4, 10, true);
        assert_eq!(r.data(&data(0, &[0; 11])), Err(Refusal::TooLarge));
        assert_eq!(r.data(&data(0, &[0; 1])), Ok(Some(Start::Restart)));
        assert_eq!(Receiver::new(0, 10, true).start(3), Err(Refusal::Offset));
        let mut r = Receiver::new(4, 10, true);
        assert_eq!(r.start(4), Ok(Start::Continue));
        assert_eq!(r.start(4), Err(Refusal::Offset), "a second start");
    }

    /// A FILE_END as it travels: encoded with its flags, decoded by the peer.
    fn over_the_wire(end: FileEnd) -> FileEnd {
        FileEnd::from_record(end.flags(), &end.to_vec()).unwrap()
    }

    #[test]
    fn an_uploading_client_that_aborts_leaves_the_server_a_partial_to_resume() {
        // The client's file shrank after 2 of 5 bytes were sent.
        let mut client = Sender::new(5, 0);
        let mut server = Receiver::new(0, 5, false);
        let chunk = client.chunk(b"ab").unwrap();
        assert_eq!(server.data(&chunk), Ok(Some(Start::Continue)));
        let end = over_the_wire(client.abort());
        assert_eq!((end.abort, end.total, end.sha256), (true, 2, [0; 32]));
        // Aborted, not Mismatch: the partial file is kept, not deleted.
        assert_eq!(server.end(&end), Verdict::Aborted);
        // The retry resumes at what the server holds, once the prefix is agreed.
        let mut again = Receiver::new(server.position(), 5, true);
        assert_eq!(again.data(&data(2, b"cde")), Ok(Some(Start::Continue)));
    }

    #[test]
    fn a_serving_server_that_aborts_is_an_abort_for_the_downloading_client() {
        // The client held 1 byte; its prefix matched the server's, which resumed there.
        let mut server = Sender::new(4, resume_point(4, 1, &[3; 32], Some(&[3; 32])));
        let mut client = Receiver::new(1, 4, true);
        assert_eq!(client.start(server.start()), Ok(Start::Continue));
        let chunk = server.chunk(b"b").unwrap();
        assert_eq!(client.data(&chunk), Ok(None));
        let end = over_the_wire(server.abort());
        assert_eq!(client.end(&end), Verdict::Aborted);
        // Without the flag the same FILE_END is a mismatch: nothing may be kept.
        let end = FileEnd { abort: false, ..end };
        assert_eq!(client.end(&over_the_wire(end)), Verdict::Mismatch);
    }

    #[test]
    fn file_end_is_complete_only_with_every_byte_up_to_the_announced_size() {
        let end = |total, abort| FileEnd { total, sha256: [5; 32], abort };
        let mut r = Receiver::new(0, 3, false);
        r.data(&data(0, b"abc")).unwrap();
        assert_eq!(r.end(&end(3, false)), Verdict::Complete);
        assert_eq!(r.end(&end(2, false)), Verdict::Mismatch);
        assert_eq!(r.end(&end(4, false)), Verdict::Mismatch);
        assert_eq!(r.end(&end(3, true)), Verdict::Aborted);
        let short = Receiver::new(0, 3, false);
        assert_eq!(short.end(&end(3, false)), Verdict::Mismatch, "no FILE_DATA at all");
    }
}
