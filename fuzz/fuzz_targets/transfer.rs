//! The file-transfer state machines (proto/transfer.rs) driven as the I/O
//! layer drives them (io/pipes.rs, server/files.rs, client/transfer.rs). The
//! first byte picks one of three drivers:
//!
//! 0. A `Receiver` fed an arbitrary sequence of decrypted records, each
//!    decoded as `receive_file` does (flags checked as the channel does,
//!    FILE_DATA and FILE_END through the typed decoders, anything else ends
//!    the transfer), for an upload (the first chunk says where the data
//!    starts) or a download (FILE_READY's `start` does). An upload's held
//!    bytes may be continued only when the prefix was agreed (FILE_PREFIX);
//!    a download's always may (the server compared the client's digest).
//!    Against a model of the partial file, which the I/O layer writes at its
//!    end, whatever a chunk's offset says:
//!    - every accepted chunk starts exactly where the file ends: at the
//!      receiver's offer (if agreed), or at 0 after a `Start::Restart` (which
//!      empties the file), then where the previous chunk ended; so no offset
//!      outside the file is ever written;
//!    - no accepted chunk ends past the announced size;
//!    - a chunk is refused exactly when one of those fails, with the right
//!      `Refusal`;
//!    - `Verdict::Aborted` exactly when FILE_END carries the ABORT flag;
//!    - `Verdict::Complete` exactly when, without ABORT, the data started,
//!      the file holds [0, size) and FILE_END's total is the size (its
//!      SHA-256 is the sender's statement, kept, not checked: PROTOCOL.md
//!      7.7.6); `Mismatch` otherwise.
//! 1. A `Sender` for any size, offer and digests, asked for chunks of any
//!    length: `resume_point` resumes at the offer only when the client's
//!    digest equals the server's own (and the offer lies inside the file); its chunks
//!    are contiguous from `start()` and never pass the size; `next_len` asks
//!    for what is left (at most a chunk); `end()` is `Some` only once exactly
//!    `size` bytes are covered; `abort()` says where it stopped.
//! 2. An honest `Sender` and `Receiver` joined through the wire encodings,
//!    whatever the receiver's partial file (none, a prefix, a damaged prefix,
//!    longer than the file) and however the reads split the file: every
//!    chunk is accepted, the verdict is `Complete`, the receiver's file equals
//!    the sender's, and the transfer resumed exactly when the partial was an
//!    intact prefix.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovtp::constants::FILE_CHUNK;
use ovtp::hooks::msg::{
    FLAG_ABORT, FLAG_FIN, FileData, FileEnd, FilePrefix, Get, REC_FILE_DATA, REC_FILE_END,
    ReadyToReceive, ReadyToSend, check_flags,
};
use ovtp::hooks::{Body, Receiver, Refusal, Sender, Start, Verdict, resume_point};
use ovtp_fuzz::Input;
use sha2::{Digest, Sha256};

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Held prefixes up to this length are hashed for real; longer ones (offers
/// near u64::MAX, to reach the overflow checks) get a stand-in digest that is
/// still a function of the file's contents.
const MATERIAL: u64 = 1 << 16;

/// The receiver's partial file as the I/O layer holds it: `kept` bytes of its
/// own earlier attempt (contents `i % 251`), then the bytes written, in order.
struct PartialFile {
    kept: u64,
    written: Vec<u8>,
}

impl PartialFile {
    fn len(&self) -> u64 {
        self.kept + self.written.len() as u64
    }

    /// `partial::restart`: truncate.
    fn restart(&mut self) {
        (self.kept, self.written) = (0, Vec::new());
    }

    /// The SHA-256 of the file's bytes (what an honest sender's FILE_END says).
    fn sha256(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        if self.kept <= MATERIAL {
            h.update((0..self.kept).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        } else {
            h.update(b"stand-in for a held prefix of length ");
            h.update(self.kept.to_be_bytes());
        }
        h.update(&self.written);
        h.finalize().into()
    }
}

/// One decrypted record `(rtype, flags, plaintext)`. Mostly FILE_DATA and
/// FILE_END built so that their fields can be right (the next offset, the
/// true size and digest); sometimes raw fields, flags or other record types.
fn record(input: &mut Input, file: &PartialFile, offered: u64, size: u64) -> (u8, u8, Vec<u8>) {
    let sel = input.u8();
    let raw_flags = (sel & 0x80 != 0).then(|| input.u8());
    match sel & 7 {
        0..=4 => {
            let offset = match (sel >> 3) & 3 {
                0 => file.len(),
                1 => 0,
                2 => offered,
                _ => input.u64(),
            };
            let (len, fill) = (input.u16() % 2048, input.u8());
            let mut plaintext = offset.to_be_bytes().to_vec();
            plaintext.extend((0..len).map(|i| fill.wrapping_add(i as u8)));
            (REC_FILE_DATA, raw_flags.unwrap_or(FLAG_FIN), plaintext)
        }
        5 | 6 => {
            let abort = if sel & 0x08 != 0 { FLAG_ABORT } else { 0 };
            let total = match (sel >> 4) & 3 {
                0 => size,
                1 => file.len(),
                _ => input.u64(),
            };
            let sha = if sel & 0x40 != 0 { input.array() } else { file.sha256() };
            let plaintext = [&total.to_be_bytes()[..], &sha].concat();
            (REC_FILE_END, raw_flags.unwrap_or(FLAG_FIN | abort), plaintext)
        }
        _ => {
            let rtype = input.u8();
            let len = usize::from(input.u8());
            (rtype, raw_flags.unwrap_or(FLAG_FIN), input.bytes(len).to_vec())
        }
    }
}

/// Driver 0: one receiver, arbitrary records.
fn receiver(input: &mut Input) {
    let mode = input.u8();
    let offered = if mode & 2 != 0 { input.u64() } else { u64::from(input.u16() % 4096) };
    let mut file = PartialFile { kept: offered, written: Vec::new() };
    let mut started = false;
    let agreed = mode & 1 != 0 || mode & 0x20 != 0; // a download's offer was compared
    let mut rx = if mode & 1 != 0 {
        // A download: the server's FILE_READY, decoded as `get_once` does.
        let ready = if mode & 4 != 0 {
            input.array::<16>().to_vec()
        } else {
            let size = u64::from(input.u16());
            let start = match (mode >> 3) & 3 {
                0 => offered,
                1 => 0,
                _ => input.u64(),
            };
            ReadyToSend { size, start, meta: None }.to_vec()
        };
        let ready = ReadyToSend::decode(&ready).expect("16 bytes are a FILE_READY");
        let mut rx = Receiver::new(offered, ready.size, true);
        match rx.start(ready.start) {
            Ok(Start::Continue) => assert_eq!(ready.start, offered),
            Ok(Start::Restart) => {
                assert!(ready.start == 0 && offered > 0);
                file.restart();
            }
            Err(refusal) => {
                assert_eq!(refusal, Refusal::Offset);
                assert!(ready.start != offered && ready.start != 0, "a start refused wrongly");
                return;
            }
        }
        started = true;
        rx
    } else {
        // An upload: the size from the PUT; whether FILE_PREFIX agreed on the
        // held bytes; the first chunk says where the data starts.
        let size = if mode & 4 != 0 { input.u64() } else { u64::from(input.u16()) };
        Receiver::new(offered, size, agreed)
    };
    let size = rx.size();
    while !input.is_empty() {
        let (rtype, flags, plaintext) = record(input, &file, offered, size);
        if check_flags(flags).is_err() {
            return; // the channel refuses the record
        }
        if rtype == REC_FILE_END {
            let Ok(end) = FileEnd::from_record(flags, &plaintext) else { return };
            assert_eq!(end.abort, flags & FLAG_ABORT != 0, "abort is the ABORT flag");
            let whole = started && file.len() == size && end.total == size;
            let expected = match () {
                _ if end.abort => Verdict::Aborted,
                _ if whole => Verdict::Complete,
                _ => Verdict::Mismatch,
            };
            assert_eq!(rx.end(&end), expected, "file {} of {size}", file.len());
            return;
        }
        if rtype != REC_FILE_DATA {
            return; // `receive_file`: an unexpected record ends the transfer
        }
        let Ok(chunk) = FileData::decode(&plaintext) else { return };
        let where_ok = if started {
            chunk.offset == file.len()
        } else {
            (agreed && chunk.offset == offered) || chunk.offset == 0
        };
        let len = chunk.bytes.len() as u64;
        let fits = chunk.offset.checked_add(len).is_some_and(|end| end <= size);
        match rx.data(&chunk) {
            Err(Refusal::Offset) => return assert!(!where_ok, "chunk at {} refused", chunk.offset),
            Err(Refusal::TooLarge) => return assert!(where_ok && !fits, "fitting chunk refused"),
            Ok(start) => {
                assert!(where_ok && fits, "chunk at {} + {len} of {size} taken", chunk.offset);
                match start {
                    Some(Start::Restart) => {
                        assert!(!started && chunk.offset == 0 && offered > 0);
                        file.restart();
                    }
                    Some(Start::Continue) => assert!(!started && chunk.offset == offered),
                    None => assert!(started, "the first chunk did not say where data starts"),
                }
                started = true;
                // The writer appends at the file's end: the offset must be that end.
                assert_eq!(chunk.offset, file.len(), "a chunk written away from its offset");
                assert!(file.len() + len <= size, "a write past the announced size");
                file.written.extend_from_slice(chunk.bytes);
                assert_eq!(rx.position(), file.len());
            }
        }
    }
}

/// Chunks are cut from this (the sender never looks at their contents).
static ZEROS: [u8; FILE_CHUNK + 1] = [0; FILE_CHUNK + 1];

/// Driver 1: one sender, any offer and digests, chunks of any length.
fn sender(input: &mut Input) {
    let mode = input.u8();
    let size = if mode & 1 != 0 { input.u64() } else { u64::from(input.u16()) };
    let offer = match (mode >> 1) & 3 {
        0 => input.u64(),
        1 => size,
        2 => u64::from(input.u16()),
        _ => 0,
    };
    // Stands for the SHA-256 of the sender's own first `offer` bytes.
    let own_digest = sha256(&offer.to_be_bytes());
    let own = match (mode >> 3) & 3 {
        0 | 1 => Some(own_digest),
        2 => None, // its file is shorter than the offer
        _ => Some(input.array()),
    };
    let reported = if mode & 0x20 != 0 { input.array() } else { own_digest };
    let inside = offer > 0 && offer <= size;
    assert_eq!(Sender::prefix_to_check(size, offer), inside.then_some(offer));
    let mut s = Sender::new(size, resume_point(size, offer, &reported, own.as_ref()));
    let start = if inside && own == Some(reported) { offer } else { 0 };
    assert_eq!(s.start(), start, "resumed at {} for an offer of {offer}", s.start());
    assert_eq!((s.position(), s.size()), (start, size));
    let (mut sent, mut chunks, digest) = (0u64, 0u32, [0x5a; 32]);
    for _ in 0..64 {
        let (pos, left) = (start + sent, size - start - sent);
        let done = left == 0 && chunks > 0; // an empty file still sends one empty chunk
        assert_eq!(s.next_len(), (!done).then(|| left.min(FILE_CHUNK as u64) as usize));
        let end = s.end(digest);
        assert_eq!(end.is_some(), done, "end() at {pos} of {size} after {chunks} chunks");
        if let Some(end) = end {
            assert_eq!(end, FileEnd { total: size, sha256: digest, abort: false });
        }
        let abort = s.abort();
        assert_eq!(abort, FileEnd { total: pos, sha256: [0; 32], abort: true });
        assert_eq!(FileEnd::from_record(abort.flags(), &abort.to_vec()).ok(), Some(abort));
        if done || input.is_empty() {
            return;
        }
        let want = s.next_len().unwrap_or(0);
        let len = match input.u8() % 4 {
            0 => want,
            1 => input.u32() as usize % ZEROS.len(),
            2 => left.saturating_add(1).min(ZEROS.len() as u64) as usize,
            _ => usize::from(input.u16()).min(want),
        };
        match s.chunk(&ZEROS[..len]) {
            Some(chunk) => {
                assert!(len as u64 <= left, "a chunk past the size");
                assert_eq!((chunk.offset, chunk.bytes.len()), (pos, len), "not contiguous");
                (sent, chunks) = (sent + len as u64, chunks + 1);
            }
            None => assert!(len as u64 > left, "a chunk inside the file refused"),
        }
        assert_eq!(s.position(), start + sent);
    }
}

/// Driver 2: an honest sender and receiver, joined through the encodings.
fn honest(input: &mut Input) {
    let mode = input.u8();
    let (download, resume) = (mode & 1 != 0, mode & 4 == 0);
    let (size, seed) = (usize::from(input.u16() % 8192), input.u8());
    let ours: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(seed | 1) ^ seed).collect();
    // The receiver's partial: a prefix of the file, possibly longer, possibly damaged.
    let held = usize::from(input.u16() % 8192);
    let mut partial: Vec<u8> =
        ours.iter().copied().chain(std::iter::repeat(0xee)).take(held).collect();
    if mode & 2 != 0 && !partial.is_empty() {
        let i = usize::from(input.u16()) % partial.len();
        partial[i] ^= 1 << (input.u8() % 8);
    }
    if !resume {
        partial.clear(); // `open_partial` without resume
    }
    let offered = partial.len() as u64;
    // The sender's own digest of the first `n` bytes, if it has them.
    let own = |n: u64| Sender::prefix_to_check(size as u64, n).map(|n| sha256(&ours[..n as usize]));
    // The server decides where the data starts, from the client's digest.
    let start = if download {
        // The GET carries the client's partial's length and digest (`serve_get`).
        let wire =
            Get { name: "f", offset: offered, prefix: sha256(&partial), resume, preserve: false }
                .to_vec();
        let get = Get::decode(&wire).unwrap();
        let offer = if get.resume { get.offset } else { 0 };
        resume_point(size as u64, offer, &get.prefix, own(offer).as_ref())
    } else {
        // FILE_READY says the length held; the client proves its own prefix
        // with FILE_PREFIX (or starts at 0); the server compares (`serve_put`).
        let ready = ReadyToReceive::decode(&ReadyToReceive { offset: offered }.to_vec()).unwrap();
        match own(ready.offset) {
            Some(sha256) => {
                let claim = FilePrefix::decode(&FilePrefix { sha256 }.to_vec()).unwrap();
                resume_point(size as u64, offered, &claim.sha256, Some(&self::sha256(&partial)))
            }
            None => 0,
        }
    };
    let mut s = Sender::new(size as u64, start);
    let intact = offered > 0 && partial.len() <= size && partial[..] == ours[..partial.len()];
    assert_eq!(s.start(), if intact { offered } else { 0 }, "resume decided wrongly");
    let mut file = partial;
    let mut rx = Receiver::new(offered, size as u64, start > 0);
    if download {
        let wire = ReadyToSend { size: size as u64, start: s.start(), meta: None }.to_vec();
        let ready = ReadyToSend::decode(&wire).unwrap();
        rx = Receiver::new(offered, ready.size, true);
        if rx.start(ready.start).expect("an honest start refused") == Start::Restart {
            file.clear();
        }
    }
    while let Some(want) = s.next_len() {
        let n =
            if want == 0 || input.is_empty() { want } else { 1 + usize::from(input.u16()) % want };
        let pos = s.position() as usize;
        let wire = s.chunk(&ours[pos..pos + n]).expect("a read inside the file").to_vec();
        let chunk = FileData::decode(&wire).unwrap();
        if rx.data(&chunk).expect("an honest chunk refused") == Some(Start::Restart) {
            file.clear();
        }
        file.extend_from_slice(chunk.bytes);
    }
    let end = s.end(sha256(&ours)).expect("everything was sent");
    let end = FileEnd::from_record(end.flags(), &end.to_vec()).unwrap();
    assert_eq!(rx.end(&end), Verdict::Complete);
    assert!(file == ours, "the received file differs from the sent one");
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    match input.u8() % 3 {
        0 => receiver(&mut input),
        1 => sender(&mut input),
        _ => honest(&mut input),
    }
});
