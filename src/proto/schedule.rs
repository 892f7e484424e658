//! The key schedule: HKDF-SHA256 (RFC 5869) over `hmac`, and the four keys
//! of a session (encryption and MAC, each direction) derived from both
//! sides' transported secrets, the Diffie-Hellman secret and the transcript
//! hash (PROTOCOL.md 4.12).

use super::dh::DH_LEN;
use super::record::{Opener, Sealer};
use crate::constants::*;
use cbc::cipher::zeroize::{Zeroize, Zeroizing};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Direction byte of records sent by the client.
pub const DIR_CLIENT_TO_SERVER: u8 = 1;
/// Direction byte of records sent by the server.
pub const DIR_SERVER_TO_CLIENT: u8 = 2;

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length (RFC 2104 hashes long ones), so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// HKDF-SHA256 (RFC 5869) with one output block: `Expand(Extract(salt, ikm), info, 32)`.
pub(crate) fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let prk = Zeroizing::new(hmac(salt, &[ikm]));
    // T(1) = HMAC(PRK, info || 0x01); 32 bytes need only the first block.
    hmac(prk.as_slice(), &[info, &[1u8]])
}

/// The four keys of a session: encryption and MAC, each direction.
#[derive(Clone)]
pub struct SessionKeys {
    pub(crate) c2s_enc: [u8; 32],
    pub(crate) c2s_mac: [u8; 32],
    pub(crate) s2c_enc: [u8; 32],
    pub(crate) s2c_mac: [u8; 32],
}

impl SessionKeys {
    /// Derive the keys from both sides' transported secrets, the
    /// Diffie-Hellman secret (all 384 bytes) and the final transcript hash.
    pub(crate) fn derive(
        client_secret: &[u8],
        server_secret: &[u8],
        dh_secret: &[u8; DH_LEN],
        transcript: &[u8; 32],
    ) -> Self {
        // Wiped when dropped, like every intermediate secret.
        let mut ikm = Zeroizing::new([0u8; 2 * SECRET_LEN + DH_LEN]);
        ikm[..SECRET_LEN].copy_from_slice(client_secret);
        ikm[SECRET_LEN..2 * SECRET_LEN].copy_from_slice(server_secret);
        ikm[2 * SECRET_LEN..].copy_from_slice(dh_secret);
        SessionKeys {
            c2s_enc: hkdf_sha256(transcript, ikm.as_slice(), LABEL_C2S_ENC),
            c2s_mac: hkdf_sha256(transcript, ikm.as_slice(), LABEL_C2S_MAC),
            s2c_enc: hkdf_sha256(transcript, ikm.as_slice(), LABEL_S2C_ENC),
            s2c_mac: hkdf_sha256(transcript, ikm.as_slice(), LABEL_S2C_MAC),
        }
    }

    /// Split into (sealer, opener) for the client side.
    pub(crate) fn client_halves(&self) -> (Sealer, Opener) {
        (
            Sealer::new(DIR_CLIENT_TO_SERVER, self.c2s_enc, self.c2s_mac),
            Opener::new(DIR_SERVER_TO_CLIENT, self.s2c_enc, self.s2c_mac),
        )
    }

    /// Split into (sealer, opener) for the server side.
    pub(crate) fn server_halves(&self) -> (Sealer, Opener) {
        (
            Sealer::new(DIR_SERVER_TO_CLIENT, self.s2c_enc, self.s2c_mac),
            Opener::new(DIR_CLIENT_TO_SERVER, self.c2s_enc, self.c2s_mac),
        )
    }

    /// Test and fuzzing hook (`fuzz/`, `tests/`, `benches/`): `((client
    /// sealer, client opener), (server sealer, server opener))` of a session
    /// derived from the given secrets and transcript hash as a handshake
    /// derives them, without the handshake. Fuzzing and benchmarks pass a
    /// zero Diffie-Hellman secret: only the record layer matters there.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn from_handshake_secrets_for_testing(
        client_secret: &[u8; SECRET_LEN],
        server_secret: &[u8; SECRET_LEN],
        dh_secret: &[u8; DH_LEN],
        transcript: &[u8; 32],
    ) -> ((Sealer, Opener), (Sealer, Opener)) {
        let keys = SessionKeys::derive(client_secret, server_secret, dh_secret, transcript);
        (keys.client_halves(), keys.server_halves())
    }
}

impl Drop for SessionKeys {
    fn drop(&mut self) {
        for key in [&mut self.c2s_enc, &mut self.c2s_mac, &mut self.s2c_enc, &mut self.s2c_mac] {
            key.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hkdf_matches_rfc5869_test_case_1_first_block() {
        // RFC 5869 A.1: IKM 22 x 0x0b, salt 0x00..0x0c, info 0xf0..0xf9; first 32 bytes of OKM.
        let okm = hkdf_sha256(
            &(0u8..=0x0c).collect::<Vec<_>>(),
            &[0x0b; 22],
            &(0xf0u8..=0xf9).collect::<Vec<_>>(),
        );
        let expected = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf";
        let hex: String = okm.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }
}
