//! The record layer: AES-256-CBC + HMAC-SHA256
//! encrypt-then-MAC records with a sequence number per direction.
//!
//! Record frame body (after the 4-byte length prefix):
//! `type u8 | flags u8 | iv [16] | ciphertext [16*k] | tag [32]`, where
//! `tag = HMAC(mac_key, direction u8 | seq u64 | type | flags | ct_len u32 | iv | ciphertext)`.
//! The tag is checked in constant time before anything is decrypted.

use super::schedule::hmac;
use crate::constants::*;
use crate::error::{Error, Result};
use crate::rand::Rng;
use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::zeroize::Zeroize;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac_header(dir: u8, seq: u64, rtype: u8, flags: u8, ct_len: usize) -> [u8; 15] {
    let mut h = [0u8; 15];
    h[0] = dir;
    h[1..9].copy_from_slice(&seq.to_be_bytes());
    h[9] = rtype;
    h[10] = flags;
    h[11..15].copy_from_slice(&super::codec::frame_len(ct_len).to_be_bytes());
    h
}

/// Seals outgoing records of one direction.
pub struct Sealer {
    dir: u8,
    enc: [u8; 32],
    mac: [u8; 32],
    seq: u64,
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.enc.zeroize();
        self.mac.zeroize();
    }
}

impl Sealer {
    pub(crate) fn new(dir: u8, enc: [u8; 32], mac: [u8; 32]) -> Self {
        Sealer { dir, enc, mac, seq: 0 }
    }

    /// Seal `plaintext` as one record and append the whole frame (length prefix
    /// included) to `out`.
    pub fn seal(
        &mut self,
        rng: &mut Rng,
        rtype: u8,
        flags: u8,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.seal_parts(rng, rtype, flags, &[plaintext], out)
    }

    /// Seal the concatenation of `parts` as one record (no intermediate copy)
    /// and append the whole frame to `out`.
    pub fn seal_parts(
        &mut self,
        rng: &mut Rng,
        rtype: u8,
        flags: u8,
        parts: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let pt_len: usize = parts.iter().map(|p| p.len()).sum();
        if pt_len > MAX_RECORD_PLAINTEXT {
            return Err(Error::TooLarge {
                what: "record plaintext",
                size: pt_len as u64,
                limit: MAX_RECORD_PLAINTEXT as u64,
            });
        }
        // Sequence numbers never wrap: the last value is refused, not reused.
        if self.seq == u64::MAX {
            return Err(Error::SequenceExhausted);
        }
        let ct_len = (pt_len / 16 + 1) * 16;
        let body_len = RECORD_HEADER + IV_LEN + ct_len + TAG_LEN;
        out.reserve(LEN_PREFIX + body_len);
        out.extend_from_slice(&super::codec::frame_len(body_len).to_be_bytes());
        out.push(rtype);
        out.push(flags);
        let iv: [u8; IV_LEN] = rng.array()?;
        out.extend_from_slice(&iv);
        let ct_start = out.len();
        for p in parts {
            out.extend_from_slice(p);
        }
        out.resize(ct_start + ct_len, 0);
        // ct_len is the plaintext rounded up to the next whole block (always
        // at least one byte of padding), which is exactly what PKCS#7 needs.
        cbc::Encryptor::<Aes256>::new((&self.enc).into(), &iv.into())
            .encrypt_padded::<Pkcs7>(&mut out[ct_start..], pt_len)
            .expect("buffer sized for padding");
        let tag = hmac(
            &self.mac,
            &[&mac_header(self.dir, self.seq, rtype, flags, ct_len), &iv, &out[ct_start..]],
        );
        out.extend_from_slice(&tag);
        self.seq += 1;
        Ok(())
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
    enc: [u8; 32],
    mac: [u8; 32],
    seq: u64,
    failed: bool,
}

impl Drop for Opener {
    fn drop(&mut self) {
        self.enc.zeroize();
        self.mac.zeroize();
    }
}

impl Opener {
    pub(crate) fn new(dir: u8, enc: [u8; 32], mac: [u8; 32]) -> Self {
        Opener { dir, enc, mac, seq: 0, failed: false }
    }

    /// Verify and decrypt one record frame body (without its length prefix),
    /// in place. Any failure is [`Error::BadRecord`], and every later call fails
    /// too: the connection must be closed.
    pub fn open<'a>(&mut self, body: &'a mut [u8]) -> Result<Record<'a>> {
        if self.failed || self.seq == u64::MAX {
            self.failed = true;
            return Err(Error::BadRecord);
        }
        match self.open_inner(body) {
            Ok((rtype, flags, range)) => {
                self.seq += 1;
                Ok(Record { rtype, flags, plaintext: &body[range] })
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
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
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.mac).expect("any key length");
        mac.update(&mac_header(self.dir, self.seq, rtype, flags, ct_end - ct_start));
        mac.update(&head[RECORD_HEADER..]);
        // Constant-time comparison, before any decryption.
        mac.verify_slice(tag).map_err(|_| Error::BadRecord)?;
        // RECORD_HEADER..ct_start is IV_LEN bytes by construction of ct_start.
        let iv: [u8; IV_LEN] = head[RECORD_HEADER..ct_start].try_into().expect("fixed slice");
        let pt_len = cbc::Decryptor::<Aes256>::new((&self.enc).into(), &iv.into())
            .decrypt_padded::<Pkcs7>(&mut head[ct_start..])
            .map_err(|_| Error::BadRecord)?
            .len();
        Ok((rtype, flags, ct_start..ct_start + pt_len))
    }

    /// Number of records opened so far (the next expected sequence number).
    #[cfg(any(test, feature = "test-hooks"))]
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
