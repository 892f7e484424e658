//! The record layer: AES-256-CBC + HMAC-SHA256
//! encrypt-then-MAC records with a sequence number per direction.
//!
//! Record frame body (after the 4-byte length prefix):
//! `type u8 | flags u8 | iv [16] | ciphertext [16*k] | tag [32]`, where
//! `tag = HMAC(mac_key, direction u8 | seq u64 | type | flags | ct_len u32 | iv | ciphertext)`.
//! The tag is checked in constant time before anything is decrypted.

use crate::constants::*;
use crate::error::{Error, Result};
use crate::rand::Rng;
use aes::cipher::consts::U16;
use aes::cipher::{
    Array, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser,
    InnerIvInit,
};
use aes::{Aes256Dec, Aes256Enc};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::zeroize::Zeroize;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;
type Block = Array<u8, U16>;

/// `direction u8 | seq u64 | type | flags | ct_len u32`, which the tag covers before the IV.
fn mac_header(dir: u8, seq: u64, rtype: u8, flags: u8, ct_len: usize) -> [u8; 15] {
    let mut h = [dir, 0, 0, 0, 0, 0, 0, 0, 0, rtype, flags, 0, 0, 0, 0];
    h[1..9].copy_from_slice(&seq.to_be_bytes());
    h[11..15].copy_from_slice(&super::codec::frame_len(ct_len).to_be_bytes());
    h
}

/// The AES key schedule and the keyed HMAC-SHA256 state of one direction,
/// kept for the session: each record clones the HMAC state instead of keying
/// it again (two SHA-256 compressions). Both wipe themselves on drop (the
/// `zeroize` features of aes, hmac and sha2), and so do the key copies here.
fn keyed<C: KeyInit>(mut enc: [u8; 32], mut mac: [u8; 32]) -> (C, HmacSha256) {
    let cipher = C::new_from_slice(&enc).expect("AES-256 takes 32-byte keys");
    // HMAC accepts keys of any length (RFC 2104), so this cannot fail.
    let hmac = <HmacSha256 as KeyInit>::new_from_slice(&mac).expect("HMAC takes any key length");
    enc.zeroize();
    mac.zeroize();
    (cipher, hmac)
}

/// AES-256-CBC encryption of several independent chains in one interleaved
/// pass: at each block position every chain's next block is XORed with that
/// chain's previous ciphertext block and encrypted. The chains do not depend
/// on each other, so the CPU overlaps their AES rounds (one chain waits for
/// each block's result before the next can start). Each chain's output is
/// exactly CBC's with its IV.
struct Chains<'a, 'b>(&'a mut [(Block, &'b mut [Block])]);

impl BlockSizeUser for Chains<'_, '_> {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for Chains<'_, '_> {
    #[inline(always)]
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        let longest = self.0.iter().map(|(_, blocks)| blocks.len()).max().unwrap_or(0);
        for i in 0..longest {
            for (prev, blocks) in self.0.iter_mut() {
                if let Some(block) = blocks.get_mut(i) {
                    for (b, p) in block.iter_mut().zip(prev.iter()) {
                        *b ^= p;
                    }
                    backend.encrypt_block_inplace(block);
                    *prev = *block;
                }
            }
        }
    }
}

/// One record to seal: its type, flags, and its plaintext as the
/// concatenation of `parts` (copied once, into the frame).
#[derive(Debug, Clone, Copy)]
pub struct Plain<'a> {
    /// Record type.
    pub rtype: u8,
    /// Record flags.
    pub flags: u8,
    /// The plaintext, in pieces.
    pub parts: &'a [&'a [u8]],
}

/// Seals outgoing records of one direction.
pub struct Sealer {
    dir: u8,
    aes: Aes256Enc,
    mac: HmacSha256,
    seq: u64,
    /// The first sequence number this sealer may not use: `u64::MAX` (never
    /// used, so numbers never wrap), or the end of a range given by [`Sealer::split_off`].
    end: u64,
}

impl Sealer {
    pub(crate) fn new(dir: u8, enc: [u8; 32], mac: [u8; 32]) -> Self {
        let (aes, mac) = keyed(enc, mac);
        Sealer { dir, aes, mac, seq: 0, end: u64::MAX }
    }

    /// Seal `plaintext` as one record and append the whole frame (length prefix
    /// included) to `out`.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn seal(
        &mut self,
        rng: &mut Rng,
        rtype: u8,
        flags: u8,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.seal_batch(rng, &[Plain { rtype, flags, parts: &[plaintext] }], out)
    }

    /// Seal `records` in order, with consecutive sequence numbers, and append
    /// their frames to `out`: the same frames as sealing them one by one (each
    /// its own random IV, sequence number and tag), but the CBC chains of all
    /// of them are encrypted in one interleaved pass. Nothing is appended
    /// unless all of them can be sealed.
    pub fn seal_batch(
        &mut self,
        rng: &mut Rng,
        records: &[Plain<'_>],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let lens: Vec<usize> =
            records.iter().map(|r| r.parts.iter().map(|p| p.len()).sum()).collect();
        if let Some(&len) = lens.iter().find(|&&len| len > MAX_RECORD_PLAINTEXT) {
            let limit = MAX_RECORD_PLAINTEXT as u64;
            return Err(Error::TooLarge { what: "record plaintext", size: len as u64, limit });
        }
        // Sequence numbers never wrap: the last value is refused, not reused.
        if self.end - self.seq < records.len() as u64 {
            return Err(Error::SequenceExhausted);
        }
        let ivs: Vec<[u8; IV_LEN]> = records.iter().map(|_| rng.array()).collect::<Result<_>>()?;
        let ct_len = |pt_len: usize| (pt_len / 16 + 1) * 16;
        let body_len = |pt_len: usize| RECORD_HEADER + IV_LEN + ct_len(pt_len) + TAG_LEN;
        out.reserve(lens.iter().map(|&l| LEN_PREFIX + body_len(l)).sum());
        let first = out.len();
        for ((rec, &pt_len), iv) in records.iter().zip(&lens).zip(&ivs) {
            out.extend_from_slice(&super::codec::frame_len(body_len(pt_len)).to_be_bytes());
            out.extend_from_slice(&[rec.rtype, rec.flags]);
            out.extend_from_slice(iv);
            for p in rec.parts {
                out.extend_from_slice(p);
            }
            // PKCS#7: the plaintext rounded up to the next whole block, always
            // at least one byte of padding, each padding byte its count.
            let pad = ct_len(pt_len) - pt_len;
            out.resize(out.len() + pad, pad as u8);
            out.resize(out.len() + TAG_LEN, 0);
        }
        // Each record's ciphertext blocks, as disjoint slices of `out`.
        let mut chains = Vec::with_capacity(records.len());
        let mut rest = &mut out[first..];
        for (&pt_len, iv) in lens.iter().zip(ivs) {
            let (frame, tail) = rest.split_at_mut(LEN_PREFIX + body_len(pt_len));
            let ct = &mut frame[LEN_PREFIX + RECORD_HEADER + IV_LEN..][..ct_len(pt_len)];
            chains.push((Block::from(iv), Block::slice_as_chunks_mut(ct).0));
            rest = tail;
        }
        match &mut chains[..] {
            // One chain alone is serial either way; `cbc` keeps its previous
            // block in a register, about 10% faster than the interleaved loop.
            [(iv, blocks)] => {
                cbc::Encryptor::inner_iv_init(self.aes.clone(), &*iv).encrypt_blocks(blocks)
            }
            chains => self.aes.encrypt_with_backend(Chains(chains)),
        }
        let mut at = first;
        for (rec, &pt_len) in records.iter().zip(&lens) {
            let head = at + LEN_PREFIX + RECORD_HEADER;
            let tag_at = head + IV_LEN + ct_len(pt_len);
            let mut mac = self.mac.clone();
            mac.update(&mac_header(self.dir, self.seq, rec.rtype, rec.flags, ct_len(pt_len)));
            mac.update(&out[head..tag_at]);
            out[tag_at..tag_at + TAG_LEN].copy_from_slice(&mac.finalize().into_bytes());
            self.seq += 1;
            at = tag_at + TAG_LEN;
        }
        Ok(())
    }

    /// A sealer for the next `n` sequence numbers, which this one skips: for
    /// sealing on another thread. Its `n` records must all be sealed and sent
    /// after those sealed here before, and before those sealed here after.
    pub fn split_off(&mut self, n: u64) -> Result<Sealer> {
        if self.end - self.seq < n {
            return Err(Error::SequenceExhausted);
        }
        let part =
            Sealer { aes: self.aes.clone(), mac: self.mac.clone(), end: self.seq + n, ..*self };
        self.seq += n;
        Ok(part)
    }

    /// Number of records sealed so far (the next sequence number).
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn sequence(&self) -> u64 {
        self.seq
    }
}

/// A record after opening: its type, flags and plaintext.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Record type (see PROTOCOL.md).
    pub rtype: u8,
    /// Record flags (FIN, ABORT; see `msg`).
    pub flags: u8,
    /// The decrypted plaintext, borrowed from the frame buffer.
    pub plaintext: &'a [u8],
}

/// Opens incoming records of one direction.
pub struct Opener {
    dir: u8,
    aes: Aes256Dec,
    mac: HmacSha256,
    seq: u64,
    failed: bool,
}

impl Opener {
    pub(crate) fn new(dir: u8, enc: [u8; 32], mac: [u8; 32]) -> Self {
        let (aes, mac) = keyed(enc, mac);
        Opener { dir, aes, mac, seq: 0, failed: false }
    }

    /// Verify and decrypt one record frame body (without its length prefix),
    /// in place. Any failure is [`Error::BadRecord`], and every later call fails
    /// too: the connection must be closed.
    pub fn open<'a>(&mut self, body: &'a mut [u8]) -> Result<Record<'a>> {
        if self.failed || self.seq == u64::MAX {
            self.failed = true;
            return Err(Error::BadRecord);
        }
        let opened = self.open_inner(body);
        // A failure poisons the opener: the connection must be closed.
        self.failed = opened.is_err();
        let (rtype, flags, range) = opened?;
        self.seq += 1;
        Ok(Record { rtype, flags, plaintext: &body[range] })
    }

    fn open_inner(&mut self, body: &mut [u8]) -> Result<(u8, u8, std::ops::Range<usize>)> {
        let len = body.len();
        if !(MIN_RECORD_FRAME..=MAX_RECORD_FRAME).contains(&len)
            || !(len - RECORD_HEADER - IV_LEN - TAG_LEN).is_multiple_of(16)
        {
            return Err(Error::BadRecord);
        }
        let (rtype, flags) = (body[0], body[1]);
        let ct_start = RECORD_HEADER + IV_LEN;
        let ct_end = len - TAG_LEN;
        let (head, tag) = body.split_at_mut(ct_end);
        let mut mac = self.mac.clone();
        mac.update(&mac_header(self.dir, self.seq, rtype, flags, ct_end - ct_start));
        mac.update(&head[RECORD_HEADER..]);
        // Constant-time comparison, before any decryption.
        mac.verify_slice(tag).map_err(|_| Error::BadRecord)?;
        // RECORD_HEADER..ct_start is IV_LEN bytes by construction of ct_start.
        let iv: [u8; IV_LEN] = head[RECORD_HEADER..ct_start].try_into().expect("fixed slice");
        let pt_len = cbc::Decryptor::inner_iv_init(self.aes.clone(), &iv.into())
            .decrypt_padded::<Pkcs7>(&mut head[ct_start..])
            .map_err(|_| Error::BadRecord)?
            .len();
        Ok((rtype, flags, ct_start..ct_start + pt_len))
    }

    /// Number of records opened so far (the next expected sequence number).
    #[cfg(test)]
    pub fn sequence(&self) -> u64 {
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::msg::FLAG_FIN;
    use crate::proto::schedule::SessionKeys;

    fn pair() -> (Sealer, Opener, Sealer, Opener) {
        let keys = SessionKeys::derive(&[1; 32], &[2; 32], &[4; 384], &[3; 32]);
        let (cs, co) = keys.client_halves();
        let (ss, so) = keys.server_halves();
        (cs, so, ss, co)
    }

    fn body(frame: &[u8]) -> Vec<u8> {
        frame[LEN_PREFIX..].to_vec()
    }

    #[test]
    fn records_round_trip_in_order_with_all_sizes() {
        let (mut cs, mut so, _, _) = pair();
        let mut rng = Rng::from_seed([9; 32]);
        for len in [0usize, 1, 15, 16, 17, 1000, MAX_RECORD_PLAINTEXT] {
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            cs.seal(&mut rng, 0x10, FLAG_FIN, &pt, &mut out).unwrap();
            let mut b = body(&out);
            let rec = so.open(&mut b).unwrap();
            assert_eq!((rec.rtype, rec.flags, rec.plaintext), (0x10, FLAG_FIN, &pt[..]));
        }
        let mut out = Vec::new();
        assert!(matches!(
            cs.seal(&mut rng, 0x10, 0, &vec![0; MAX_RECORD_PLAINTEXT + 1], &mut out),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn one_flipped_bit_anywhere_in_a_record_is_rejected() {
        let mut rng = Rng::from_seed([9; 32]);
        let (mut cs, _, _, _) = pair();
        let mut frame = Vec::new();
        cs.seal(&mut rng, 0x10, FLAG_FIN, b"transfer 100 to alice", &mut frame).unwrap();
        let original = body(&frame);
        for bit in 0..original.len() * 8 {
            let (_, mut so, _, _) = pair();
            let mut b = original.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(so.open(&mut b), Err(Error::BadRecord)), "bit {bit} accepted");
            // The opener is poisoned: even the genuine record is refused afterwards.
            assert!(so.open(&mut original.clone()).is_err());
        }
    }

    #[test]
    fn replayed_reordered_and_reflected_records_are_rejected() {
        let mut rng = Rng::from_seed([9; 32]);
        let (mut cs, _, mut ss, _) = pair();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        cs.seal(&mut rng, 0x10, FLAG_FIN, b"first", &mut a).unwrap();
        cs.seal(&mut rng, 0x10, FLAG_FIN, b"second", &mut b).unwrap();

        // Replay: the same record twice.
        let (_, mut so, _, _) = pair();
        so.open(&mut body(&a)).unwrap();
        assert!(so.open(&mut body(&a)).is_err());

        // Reorder: the second before the first.
        let (_, mut so, _, _) = pair();
        assert!(so.open(&mut body(&b)).is_err());

        // Drop: the first is lost, the second arrives.
        let (_, mut so, _, _) = pair();
        assert!(so.open(&mut body(&b)).is_err());

        // Reflection: a server record fed back to the server, and a client record to the client.
        let mut s = Vec::new();
        ss.seal(&mut rng, 0x11, FLAG_FIN, b"reply", &mut s).unwrap();
        let (_, mut so, _, mut co) = pair();
        assert!(so.open(&mut body(&s)).is_err());
        assert!(co.open(&mut body(&a)).is_err());
    }

    /// Every length class of a batch: empty, under a block, whole blocks,
    /// between blocks, long.
    const LENS: [usize; 9] = [0, 1, 15, 16, 17, 31, 1000, 4096 + 7, 64 * 1024];

    #[test]
    fn interleaved_chains_encrypt_as_cbc_does() {
        use cbc::cipher::{BlockModeEncrypt, KeyIvInit};
        let key = [5u8; 32];
        let aes = Aes256Enc::new(&key.into());
        for n in [1, 2, 3, 8, 9] {
            let data: Vec<Vec<u8>> = (0..n)
                .map(|c| {
                    (0..LENS[(c * 4) % LENS.len()] / 16 * 16).map(|i| (i * 7 + c) as u8).collect()
                })
                .collect();
            let ivs: Vec<[u8; 16]> = (0..n).map(|c| [c as u8 + 1; 16]).collect();
            let mut mine = data.clone();
            let mut chains: Vec<(Block, &mut [Block])> = mine
                .iter_mut()
                .zip(&ivs)
                .map(|(d, iv)| (Block::from(*iv), Block::slice_as_chunks_mut(d).0))
                .collect();
            aes.encrypt_with_backend(Chains(&mut chains));
            for ((mut d, iv), got) in data.into_iter().zip(&ivs).zip(&mine) {
                cbc::Encryptor::<aes::Aes256>::new(&key.into(), &(*iv).into())
                    .encrypt_blocks(Block::slice_as_chunks_mut(&mut d).0);
                assert_eq!(&d, got, "{n} chains");
            }
        }
    }

    #[test]
    fn a_sealed_batch_is_cbc_and_hmac_record_by_record_and_opens() {
        use cbc::cipher::{BlockModeEncrypt, KeyIvInit};
        let keys = SessionKeys::derive(&[1; 32], &[2; 32], &[4; 384], &[3; 32]);
        for n in [1, 2, 5, 8, 9] {
            let (mut cs, mut so, _, _) = pair();
            let pts: Vec<Vec<u8>> = (0..n)
                .map(|r| (0..LENS[(r * 5 + n) % LENS.len()]).map(|i| (i ^ r) as u8).collect())
                .collect();
            let parts: Vec<[&[u8]; 2]> = pts.iter().map(|p| [&b"hd"[..], &p[..]]).collect();
            let recs: Vec<Plain<'_>> =
                parts.iter().map(|p| Plain { rtype: 0x13, flags: FLAG_FIN, parts: p }).collect();
            let mut out = Vec::new();
            cs.seal_batch(&mut Rng::from_seed([4; 32]), &recs, &mut out).unwrap();
            assert_eq!(cs.sequence(), n as u64);
            let mut frames = &out[..];
            for (seq, pt) in pts.iter().enumerate() {
                let len = u32::from_be_bytes(frames[..4].try_into().unwrap()) as usize;
                let (frame, rest) = frames.split_at(LEN_PREFIX + len);
                frames = rest;
                let body = &frame[LEN_PREFIX..];
                let (iv, ct, tag) =
                    (&body[2..18], &body[18..len - TAG_LEN], &body[len - TAG_LEN..]);
                let plain = [&b"hd"[..], pt].concat();
                let mut want = plain.clone();
                want.resize((plain.len() / 16 + 1) * 16, 0);
                cbc::Encryptor::<aes::Aes256>::new(&keys.c2s_enc.into(), iv.try_into().unwrap())
                    .encrypt_padded::<Pkcs7>(&mut want, plain.len())
                    .unwrap();
                assert_eq!(ct, &want[..], "record {seq} of {n}");
                let header = mac_header(1, seq as u64, 0x13, FLAG_FIN, ct.len());
                assert_eq!(tag, super::super::schedule::hmac(&keys.c2s_mac, &[&header, iv, ct]));
                let mut b = body.to_vec();
                assert_eq!(so.open(&mut b).unwrap().plaintext, &plain[..]);
            }
            assert!(frames.is_empty());
        }
    }

    #[test]
    fn a_split_off_sealer_takes_the_next_numbers_and_no_more() {
        let (mut cs, mut so, _, _) = pair();
        let mut rng = Rng::from_seed([2; 32]);
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        let mut part = cs.split_off(2).unwrap();
        cs.seal(&mut rng, 0x10, 0, b"third", &mut c).unwrap();
        part.seal(&mut rng, 0x10, 0, b"first", &mut a).unwrap();
        part.seal(&mut rng, 0x10, 0, b"second", &mut b).unwrap();
        assert!(matches!(
            part.seal(&mut rng, 0x10, 0, b"x", &mut a),
            Err(Error::SequenceExhausted)
        ));
        for (frame, text) in [(&a, &b"first"[..]), (&b, b"second"), (&c, b"third")] {
            assert_eq!(so.open(&mut body(frame)).unwrap().plaintext, text);
        }
    }

    #[test]
    fn sequence_number_never_wraps() {
        let (mut cs, mut so, _, _) = pair();
        cs.seq = u64::MAX;
        so.seq = u64::MAX;
        let mut out = Vec::new();
        let mut rng = Rng::from_seed([1; 32]);
        assert!(matches!(
            cs.seal(&mut rng, 0x10, 0, b"x", &mut out),
            Err(Error::SequenceExhausted)
        ));
        assert!(out.is_empty());
        let mut fake = vec![0u8; MIN_RECORD_FRAME];
        assert!(so.open(&mut fake).is_err());
    }
}
