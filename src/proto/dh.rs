//! The ephemeral Diffie-Hellman exchange of version 2 (PROTOCOL.md 4.11):
//! the ffdhe3072 group of RFC 7919, each side's fresh exponent, its share
//! `g^x mod p` and the shared secret `Y^x mod p`. Pure computation over
//! `rsa::BoxedUint`, whose `pow_mod` is constant-time in the exponent.

use crate::error::{Error, Result};
use crate::rand::Rng;
use cbc::cipher::zeroize::Zeroizing;
use rsa::BoxedUint;

/// Bytes of the prime, of a share and of the shared secret (3072 bits).
pub const DH_LEN: usize = 384;
/// Bytes of a secret exponent: 320 bits, above the 275 that RFC 7919
/// (section 5.2) asks of ffdhe3072, at a sixth of a full-length exponent's cost.
pub const DH_EXPONENT_LEN: usize = 40;
const BITS: u32 = 8 * DH_LEN as u32;

/// The ffdhe3072 prime of RFC 7919, Appendix A.2, as big-endian 64-bit words:
/// `p = 2^3072 - 2^3008 + {[2^2942 * e] + 2625351} * 2^64 - 1`, a safe prime
/// (`(p-1)/2` is prime); the generator is 2.
#[rustfmt::skip]
const P_WORDS: [u64; 48] = [
    0xffffffffffffffff, 0xadf85458a2bb4a9a, 0xafdc5620273d3cf1, 0xd8b9c583ce2d3695,
    0xa9e13641146433fb, 0xcc939dce249b3ef9, 0x7d2fe363630c75d8, 0xf681b202aec4617a,
    0xd3df1ed5d5fd6561, 0x2433f51f5f066ed0, 0x856365553ded1af3, 0xb557135e7f57c935,
    0x984f0c70e0e68b77, 0xe2a689daf3efe872, 0x1df158a136ade735, 0x30acca4f483a797a,
    0xbc0ab182b324fb61, 0xd108a94bb2c8e3fb, 0xb96adab760d7f468, 0x1d4f42a3de394df4,
    0xae56ede76372bb19, 0x0b07a7c8ee0a6d70, 0x9e02fce1cdf7e2ec, 0xc03404cd28342f61,
    0x9172fe9ce98583ff, 0x8e4f1232eef28183, 0xc3fe3b1b4c6fad73, 0x3bb5fcbc2ec22005,
    0xc58ef1837d1683b2, 0xc6f34a26c1b2effa, 0x886b4238611fcfdc, 0xde355b3b6519035b,
    0xbc34f4def99c0238, 0x61b46fc9d6e6c907, 0x7ad91d2691f7f7ee, 0x598cb0fac186d91c,
    0xaefe130985139270, 0xb4130c93bc437944, 0xf4fd4452e2d74dd3, 0x64f2e21e71f54bff,
    0x5cae82ab9c9df69e, 0xe86d2bc522363a0d, 0xabc521979b0deada, 0x1dbf9a42d5c4484e,
    0x0abcd06bfa53ddef, 0x3c1b20ee3fd59d7c, 0x25e41d2b66c62e37, 0xffffffffffffffff,
];

/// The prime as 384 big-endian bytes.
pub const P: [u8; DH_LEN] = {
    let mut out = [0u8; DH_LEN];
    let mut i = 0;
    while i < DH_LEN {
        out[i] = P_WORDS[i / 8].to_be_bytes()[i % 8];
        i += 1;
    }
    out
};

/// A share: `g^x mod p`, 384 big-endian bytes (leading zeros kept).
pub type Share = [u8; DH_LEN];

/// `base^exponent mod p`, as 384 bytes; intermediate integers are wiped.
fn pow_mod(base: &[u8], exponent: &[u8]) -> Zeroizing<Share> {
    // Neither conversion can fail: both inputs fit their precision, and p is odd.
    let p = BoxedUint::from_be_slice(&P, BITS).expect("p has 3072 bits");
    let p = Option::from(p.to_odd()).expect("p is odd");
    let b = Zeroizing::new(BoxedUint::from_be_slice(base, BITS).expect("a base below 2^3072"));
    let e = BoxedUint::from_be_slice(exponent, 8 * exponent.len() as u32);
    let e = Zeroizing::new(e.expect("exponent fits its length"));
    let r = Zeroizing::new(b.pow_mod(&e, &p));
    let mut out = Zeroizing::new([0u8; DH_LEN]);
    out.copy_from_slice(&Zeroizing::new(r.to_be_bytes()));
    out
}

/// Refuse a peer's share outside `1 < Y < p-1` (RFC 7919 section 5.1): 0, 1,
/// p-1 and anything from p up would force the shared secret into a tiny set.
/// Shares are public, so comparing big-endian bytes needs no constant time.
pub fn check_share(share: &[u8]) -> Result<Share> {
    let share: Share = share.try_into().map_err(|_| Error::BadKeyShare)?;
    let mut p_minus_1 = P;
    p_minus_1[DH_LEN - 1] -= 1; // p ends in 0xff
    let mut one = [0u8; DH_LEN];
    one[DH_LEN - 1] = 1;
    if share > one && share < p_minus_1 { Ok(share) } else { Err(Error::BadKeyShare) }
}

/// One side's ephemeral exponent: fresh for each handshake, wiped on drop,
/// never sent or stored.
pub struct Exponent(Zeroizing<[u8; DH_EXPONENT_LEN]>);

impl Exponent {
    /// Draw a fresh 320-bit exponent.
    pub fn draw(rng: &mut Rng) -> Result<Self> {
        Ok(Exponent(Zeroizing::new(rng.array()?)))
    }

    /// Our share, `2^x mod p`.
    pub fn share(&self) -> Share {
        *pow_mod(&[2], self.0.as_slice())
    }

    /// The shared secret `Y^x mod p` for the peer's share (checked by [`check_share`]).
    pub fn shared_secret(&self, peer: &Share) -> Zeroizing<Share> {
        pow_mod(peer, self.0.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// `n` shifted right by one bit (big-endian bytes).
    fn half(n: &[u8; DH_LEN]) -> [u8; DH_LEN] {
        let mut out = [0u8; DH_LEN];
        for i in 0..DH_LEN {
            out[i] = n[i] >> 1 | if i > 0 { n[i - 1] << 7 } else { 0 };
        }
        out
    }

    /// `a^e mod m` for an odd modulus `m`, all 3072-bit.
    fn pow(a: u8, e: &[u8; DH_LEN], m: &[u8; DH_LEN]) -> BoxedUint {
        let m = Option::from(BoxedUint::from_be_slice(m, BITS).unwrap().to_odd()).unwrap();
        BoxedUint::from_be_slice(&[a], BITS)
            .unwrap()
            .pow_mod(&BoxedUint::from_be_slice(e, BITS).unwrap(), &m)
    }

    #[test]
    fn the_group_prime_is_rfc_7919_ffdhe3072_and_a_safe_prime() {
        // SHA-256 of the 384 bytes of Appendix A.2, computed apart from this file.
        let digest: [u8; 32] = Sha256::digest(P).into();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "0eaf67db3a839156d5013494a5318a772b5697d270d721f37f092efc69ea5a17");
        // The formula fixes the top and bottom 64 bits to ones; p = 7 mod 8
        // makes 2 a quadratic residue, so g = 2 generates the order-q subgroup.
        assert!(P[..8].iter().chain(&P[DH_LEN - 8..]).all(|&b| b == 0xff));
        assert_eq!(P[DH_LEN - 1] % 8, 7);
        let one = BoxedUint::from_be_slice(&[1], BITS).unwrap();
        let mut p_minus_1 = P;
        p_minus_1[DH_LEN - 1] -= 1;
        let q = half(&p_minus_1);
        assert_eq!(pow(2, &q, &P), one, "2^q = 1 mod p: 2 has order q");
        // q = 3 mod 4, so q - 1 = 2d with d odd: a Miller-Rabin round is a^d = +-1 mod q.
        let mut q_minus_1 = q;
        q_minus_1[DH_LEN - 1] -= 1;
        let (d, q_minus_1) =
            (half(&q_minus_1), BoxedUint::from_be_slice(&q_minus_1, BITS).unwrap());
        for a in [2, 3, 5, 7, 11] {
            assert_eq!(pow(a, &p_minus_1, &P), one, "Fermat round {a} on p");
            let x = pow(a, &d, &q);
            assert!(x == one || x == q_minus_1, "Miller-Rabin round {a} on q = (p-1)/2");
        }
    }

    #[test]
    fn both_sides_reach_one_secret_and_out_of_range_shares_are_refused() {
        let mut rng = Rng::from_seed([3; 32]);
        let (a, b) = (Exponent::draw(&mut rng).unwrap(), Exponent::draw(&mut rng).unwrap());
        let (ya, yb) = (check_share(&a.share()).unwrap(), check_share(&b.share()).unwrap());
        assert_eq!(*a.shared_secret(&yb), *b.shared_secret(&ya));
        assert_ne!(ya, yb);
        let small = |v: u8| {
            let mut s = [0u8; DH_LEN];
            s[DH_LEN - 1] = v;
            s
        };
        let plus = |d: i8| {
            let mut s = P;
            s[DH_LEN - 1] = s[DH_LEN - 1].wrapping_add_signed(d);
            s
        };
        for bad in [small(0), small(1), plus(-1), P, [0xff; DH_LEN]] {
            assert!(matches!(check_share(&bad), Err(Error::BadKeyShare)));
        }
        assert!(matches!(check_share(&P[1..]), Err(Error::BadKeyShare)), "short share");
        for good in [small(2), plus(-2)] {
            assert!(check_share(&good).is_ok());
        }
    }
}
