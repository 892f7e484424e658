//! Record opening, three ways: the input as frames from someone without the
//! keys (must never open); as ciphertext tagged correctly, as a key holder
//! could send it (decryption and padding must fail cleanly); as plaintext
//! (seal then open returns it, and one flipped bit makes it fail).
#![no_main]
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use ovtp::constants::MAX_RECORD_FRAME;
use ovtp::hooks::dh::DH_LEN;
use ovtp::hooks::split_frame;
use ovtp::hooks::{DIR_CLIENT_TO_SERVER, Opener, Sealer, SessionKeys};
use ovtp::{Error, Rng};
use sha2::Sha256;

const SECRET_C: [u8; 32] = [1; 32];
const SECRET_S: [u8; 32] = [2; 32];
const TRANSCRIPT: [u8; 32] = [3; 32];

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The client-to-server MAC key, derived as PROTOCOL.md section 4.11 says.
fn c2s_mac() -> [u8; 32] {
    let prk = hmac(&TRANSCRIPT, &[&SECRET_C, &SECRET_S]);
    hmac(&prk, &[b"ovtp/1 c2s mac", &[1]])
}

/// A record frame body (type, flags, iv, ct) with the tag a key holder computes for sequence 0.
fn tagged(rtype: u8, flags: u8, iv: &[u8], ct: &[u8]) -> Vec<u8> {
    let mut head = vec![DIR_CLIENT_TO_SERVER];
    head.extend_from_slice(&0u64.to_be_bytes());
    head.extend_from_slice(&[rtype, flags]);
    head.extend_from_slice(&(ct.len() as u32).to_be_bytes());
    let tag = hmac(&c2s_mac(), &[&head, iv, ct]);
    [&[rtype, flags][..], iv, ct, &tag].concat()
}

fn halves() -> (Sealer, Opener) {
    let ((sealer, _), (_, opener)) = SessionKeys::from_handshake_secrets_for_testing(
        &SECRET_C,
        &SECRET_S,
        &[0; DH_LEN],
        &TRANSCRIPT,
    );
    (sealer, opener)
}

fuzz_target!(|data: &[u8]| {
    // 1. Frames from a peer without the keys.
    let (_, mut opener) = halves();
    if let Ok((body, _)) = split_frame(data, MAX_RECORD_FRAME) {
        assert!(matches!(opener.open(&mut body.to_vec()), Err(Error::BadRecord)));
        // The opener stays failed, even for a genuine record.
        let (mut sealer, _) = halves();
        let mut frame = Vec::new();
        sealer.seal(&mut Rng::from_seed([4; 32]), 0x10, 1, b"x", &mut frame).unwrap();
        assert!(opener.open(&mut frame[4..].to_vec()).is_err());
    }

    // 2. Correctly tagged ciphertext: the decryption and padding checks run.
    if data.len() >= 2 + 16 + 16 {
        let ct_len = (data.len() - 18) / 16 * 16;
        let mut body = tagged(data[0], data[1], &data[2..18], &data[18..18 + ct_len]);
        let (_, mut opener) = halves();
        match opener.open(&mut body) {
            Ok(rec) => assert!(rec.plaintext.len() < ct_len && rec.plaintext.len() + 16 >= ct_len),
            Err(e) => assert!(matches!(e, Error::BadRecord), "{e:?}"),
        }
    }

    // 3. Plaintext: round trip, and a flipped bit anywhere is refused.
    let (mut sealer, mut opener) = halves();
    let rtype = data.first().copied().unwrap_or(0x10);
    let mut frame = Vec::new();
    if sealer.seal(&mut Rng::from_seed([5; 32]), rtype, 1, data, &mut frame).is_err() {
        return;
    }
    let (body, rest) = split_frame(&frame, MAX_RECORD_FRAME).unwrap();
    assert!(rest.is_empty());
    // Our own tag computation agrees with the sealer (so part 2 tests what it claims).
    let ct = &body[18..body.len() - 32];
    assert_eq!(tagged(rtype, 1, &body[2..18], ct), body);
    let bit = data.iter().fold(0usize, |a, &b| a.wrapping_mul(31).wrapping_add(b.into()))
        % (body.len() * 8);
    let mut flipped = body.to_vec();
    flipped[bit / 8] ^= 1 << (bit % 8);
    let (_, mut other) = halves();
    assert!(other.open(&mut flipped).is_err(), "bit {bit} flipped and accepted");
    let mut body = body.to_vec();
    let rec = opener.open(&mut body).unwrap();
    assert_eq!((rec.rtype, rec.flags, rec.plaintext), (rtype, 1, data));
});
