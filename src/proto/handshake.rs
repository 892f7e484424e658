//! The handshake, as states that consume each other, with no I/O: each step
//! takes the peer's frame body and returns the next state and the frame to send.
//! A [`Session`] can only be built from a verified transcript.
//!
//! ```text
//! client                                          server
//! ClientHello  nonce_c, pk_c          ------>     pk_c in authorized_keys? (no private-key work)
//!                                     <------     ServerHello  nonce_s, pk_s
//! pk_s pinned? (known_hosts/fingerprint)
//! ClientAuth   OAEP(pk_s, secret_c), Y_c,
//!              PSS(sk_c, H1)          ------>     verify PSS first; only then draw x_s,
//!                                                 decrypt secret_c, Y_s = g^x_s, Z = Y_c^x_s
//!                                     <------     ServerAuth  OAEP(pk_c, secret_s), Y_s, PSS(sk_s, H2)
//! verify, decrypt secret_s, Z = Y_s^x_c
//! keys = HKDF(salt = H3, ikm = secret_c || secret_s || Z)
//! ```
//!
//! H1, H2, H3 are SHA-256 over the label and each transcript element
//! length-prefixed (see [`Transcript`]); PROTOCOL.md gives the exact bytes.
//! `Y = g^x mod p` in ffdhe3072 ([`super::dh`]); the exponents are fresh
//! for each handshake and wiped with the state that holds them.

use super::codec::{Body, Reader, frame, put_vec16};
use super::dh::{self, DH_LEN, Exponent, Share};
use super::msg::{ALERT, Alert, CLIENT_AUTH, CLIENT_HELLO, SERVER_AUTH, SERVER_HELLO};
use super::record::{Opener, Sealer};
use super::schedule::SessionKeys;
use crate::constants::*;
use crate::error::{Error, Result};
use crate::keys::{KeyPair, PublicKey};
use crate::rand::Rng;
use crate::status::AlertCode;
use cbc::cipher::zeroize::Zeroizing;
use sha2::{Digest, Sha256};

/// Longest wrapped secret or signature (a 4096-bit modulus).
const MAX_RSA_BLOCK: usize = MAX_RSA_BITS / 8;

/// The running transcript hash: SHA-256 over the label, then each element as
/// `u32 length || bytes`, so that no two transcripts share an encoding.
#[derive(Clone)]
pub struct Transcript(Sha256);

impl Transcript {
    fn new() -> Self {
        Transcript(Sha256::new_with_prefix(LABEL_TRANSCRIPT))
    }

    fn absorb(&mut self, elements: &[&[u8]]) {
        for element in elements {
            self.0.update(super::codec::frame_len(element.len()).to_be_bytes());
            self.0.update(element);
        }
    }

    fn hash(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }

    /// What a side signs: `label || hash` (H1 or H2).
    fn signed(&self, label: &[u8]) -> Vec<u8> {
        [label, &self.hash()].concat()
    }
}

/// Start of every plaintext handshake frame body: magic, version, type.
fn plain_header(frame_type: u8) -> Vec<u8> {
    [&MAGIC[..], &PROTOCOL_VERSION.to_be_bytes(), &[frame_type]].concat()
}

/// Parse the common header of a plaintext frame and check that it is `expected`.
/// An alert in its place becomes [`Error::Refused`].
fn parse_plain<'a>(body: &'a [u8], expected: u8) -> Result<Reader<'a>> {
    let mut r = Reader::new(body);
    if r.array::<4>("magic")? != MAGIC {
        return Err(Error::Version { ours: PROTOCOL_VERSION, theirs: 0 });
    }
    let version = r.u16("version")?;
    if version != PROTOCOL_VERSION {
        return Err(Error::Version { ours: PROTOCOL_VERSION, theirs: version });
    }
    match r.u8("frame type")? {
        // Body::decode refuses bytes after the alert's fields.
        ALERT => Err(Alert::decode(r.rest())?.into_error()),
        t if t == expected => Ok(r),
        _ => Err(Error::Malformed("unexpected handshake frame type")),
    }
}

/// A plaintext alert frame (with length prefix): a refusal before any session exists.
pub fn alert_frame(code: AlertCode, message: &str) -> Vec<u8> {
    let mut b = plain_header(ALERT);
    Alert::new(code, message).encode(&mut b);
    frame(&b)
}

/// A hello body with a fresh nonce.
fn hello(frame_type: u8, rng: &mut Rng, key: &PublicKey) -> Result<Vec<u8>> {
    let mut b = plain_header(frame_type);
    b.extend_from_slice(&rng.array::<NONCE_LEN>()?);
    put_vec16(&mut b, key.to_der());
    Ok(b)
}

fn parse_hello(body: &[u8], frame_type: u8) -> Result<([u8; NONCE_LEN], PublicKey)> {
    let mut r = parse_plain(body, frame_type)?;
    let nonce = r.array("nonce")?;
    let key = PublicKey::from_der(r.vec16(MAX_PUBLIC_KEY_DER, "public key")?)?;
    r.finish("hello")?;
    Ok((nonce, key))
}

/// The key a ClientHello body names (for admission decisions; nothing is verified).
pub fn client_hello_key(body: &[u8]) -> Result<PublicKey> {
    parse_hello(body, CLIENT_HELLO).map(|(_, key)| key)
}

fn auth(frame_type: u8, wrapped: &[u8], share: &Share, signature: &[u8]) -> Vec<u8> {
    let mut b = plain_header(frame_type);
    put_vec16(&mut b, wrapped);
    b.extend_from_slice(share);
    put_vec16(&mut b, signature);
    b
}

/// An auth frame's fields: the wrapped secret, the Diffie-Hellman share
/// (range-checked: [`Error::BadKeyShare`]) and the signature.
fn parse_auth(body: &[u8], frame_type: u8) -> Result<(&[u8], Share, &[u8])> {
    let mut r = parse_plain(body, frame_type)?;
    let wrapped = r.vec16(MAX_RSA_BLOCK, "wrapped secret")?;
    let share = r.take(DH_LEN, "key share")?;
    let signature = r.vec16(MAX_RSA_BLOCK, "signature")?;
    r.finish("auth")?;
    Ok((wrapped, dh::check_share(share)?, signature))
}

/// Unwrap the peer's secret, which must be exactly SECRET_LEN bytes.
fn unwrap_secret(keys: &KeyPair, rng: &mut Rng, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let secret = keys.oaep_decrypt(rng, wrapped)?;
    if secret.len() != SECRET_LEN {
        return Err(Error::Malformed("wrapped secret has the wrong length"));
    }
    Ok(secret)
}

/// An established session: the record keys of both directions, the peer's key
/// and the final transcript hash (a public session identifier).
pub struct Session {
    sealer: Sealer,
    opener: Opener,
    peer: PublicKey,
    // Read by the test vectors; kept in every build as the session's identifier.
    #[cfg_attr(not(any(test, feature = "test-hooks")), allow(dead_code))]
    transcript: [u8; 32],
}

impl Session {
    /// The peer's authenticated public key.
    pub fn peer(&self) -> &PublicKey {
        &self.peer
    }

    /// SHA-256 of the whole transcript: a public session identifier.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn transcript(&self) -> &[u8; 32] {
        &self.transcript
    }

    /// Seals records we send.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn sealer(&mut self) -> &mut Sealer {
        &mut self.sealer
    }

    /// Opens records we receive.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn opener(&mut self) -> &mut Opener {
        &mut self.opener
    }

    /// The record layer of both directions and the peer's key.
    pub fn into_parts(self) -> (Sealer, Opener, PublicKey) {
        (self.sealer, self.opener, self.peer)
    }
}

/// Client, before the server's hello.
pub struct ClientStart {
    keys: KeyPair,
    transcript: Transcript,
}

/// Client, after sending its auth frame; waiting for the server's.
pub struct ClientAwaitAuth {
    keys: KeyPair,
    server_key: PublicKey,
    secret: Zeroizing<[u8; SECRET_LEN]>,
    exponent: Exponent,
    transcript: Transcript,
}

impl ClientStart {
    /// Begin: returns the state and the ClientHello frame to send.
    pub fn new(keys: &KeyPair, rng: &mut Rng) -> Result<(Self, Vec<u8>)> {
        let body = hello(CLIENT_HELLO, rng, keys.public())?;
        let mut transcript = Transcript::new();
        transcript.absorb(&[&body]);
        Ok((ClientStart { keys: keys.clone(), transcript }, frame(&body)))
    }

    /// Read the ServerHello. `check_server_key` decides whether the server's key
    /// is trusted (pinning); nothing is signed or sent unless it returns `Ok`.
    pub fn read_server_hello(
        mut self,
        body: &[u8],
        rng: &mut Rng,
        check_server_key: impl FnOnce(&PublicKey) -> Result<()>,
    ) -> Result<(ClientAwaitAuth, Vec<u8>)> {
        let (_nonce, server_key) = parse_hello(body, SERVER_HELLO)?;
        check_server_key(&server_key)?;
        self.transcript.absorb(&[body]);
        let exponent = Exponent::draw(rng)?;
        let secret = Zeroizing::new(rng.array::<SECRET_LEN>()?);
        let wrapped = server_key.oaep_encrypt(rng, secret.as_slice())?;
        let share = exponent.share();
        self.transcript.absorb(&[&wrapped, &share]);
        let signature = self.keys.sign_pss(rng, &self.transcript.signed(LABEL_CLIENT_SIG))?;
        self.transcript.absorb(&[&signature]);
        let out = frame(&auth(CLIENT_AUTH, &wrapped, &share, &signature));
        let (keys, transcript) = (self.keys, self.transcript);
        Ok((ClientAwaitAuth { keys, server_key, secret, exponent, transcript }, out))
    }
}

impl ClientAwaitAuth {
    /// Read the ServerAuth and verify the server's signature; only a verified
    /// state can unwrap the server's secret or compute the Diffie-Hellman secret.
    pub fn verify_server_auth(mut self, body: &[u8]) -> Result<ClientVerified> {
        let (wrapped, share, signature) = parse_auth(body, SERVER_AUTH)?;
        self.transcript.absorb(&[wrapped, &share]);
        self.server_key.verify_pss(&self.transcript.signed(LABEL_SERVER_SIG), signature)?;
        self.transcript.absorb(&[signature]);
        Ok(ClientVerified { state: self, wrapped: wrapped.to_vec(), share })
    }

    /// [`ClientAwaitAuth::verify_server_auth`], then both secrets one after
    /// the other, then [`ClientVerified::finish`]. The client computes the
    /// two at once instead (`client::Client`).
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn read_server_auth(self, body: &[u8], rng: &mut Rng) -> Result<Session> {
        let verified = self.verify_server_auth(body)?;
        let server_secret = verified.unwrap_server_secret(rng)?;
        let dh_secret = verified.dh_secret();
        Ok(verified.finish(&server_secret, &dh_secret))
    }
}

/// Client, with the server's signature verified: two independent steps
/// remain, [`ClientVerified::unwrap_server_secret`] (a private-key operation)
/// and [`ClientVerified::dh_secret`] (an exponentiation); both take `&self`.
pub struct ClientVerified {
    state: ClientAwaitAuth,
    wrapped: Vec<u8>,
    share: Share,
}

impl ClientVerified {
    /// Unwrap the server's secret with the client's private key.
    pub fn unwrap_server_secret(&self, rng: &mut Rng) -> Result<Zeroizing<Vec<u8>>> {
        unwrap_secret(&self.state.keys, rng, &self.wrapped)
    }

    /// The Diffie-Hellman secret `Y_s^x_c mod p`.
    pub fn dh_secret(&self) -> Zeroizing<Share> {
        self.state.exponent.shared_secret(&self.share)
    }

    /// The session, from both secrets; the exponent is wiped with `self`.
    pub fn finish(self, server_secret: &[u8], dh_secret: &Share) -> Session {
        let ClientAwaitAuth { server_key, secret, transcript, .. } = self.state;
        let h3 = transcript.hash();
        let keys = SessionKeys::derive(secret.as_slice(), server_secret, dh_secret, &h3);
        let (sealer, opener) = keys.client_halves();
        Session { sealer, opener, peer: server_key, transcript: h3 }
    }
}

/// Server, after the client's hello; waiting for the client's auth frame.
pub struct ServerAwaitAuth {
    keys: KeyPair,
    client_key: PublicKey,
    transcript: Transcript,
}

impl ServerAwaitAuth {
    /// Read the ClientHello. `is_authorized` is asked about the client's key
    /// before anything else happens; an unknown key ends here with
    /// [`Error::NotAuthorized`], having cost no private-key operation.
    pub fn read_client_hello(
        keys: &KeyPair,
        body: &[u8],
        rng: &mut Rng,
        is_authorized: impl FnOnce(&PublicKey) -> Result<bool>,
    ) -> Result<(Self, Vec<u8>)> {
        let (_nonce, client_key) = parse_hello(body, CLIENT_HELLO)?;
        if !is_authorized(&client_key)? {
            return Err(Error::NotAuthorized { fingerprint: client_key.fingerprint().to_string() });
        }
        let reply = hello(SERVER_HELLO, rng, keys.public())?;
        let mut transcript = Transcript::new();
        transcript.absorb(&[body, &reply]);
        Ok((ServerAwaitAuth { keys: keys.clone(), client_key, transcript }, frame(&reply)))
    }

    /// Read the ClientAuth and verify the client's signature (a public-key
    /// operation). Only a verified state can reach the server's private key,
    /// and only then is the server's exponent drawn: a client that cannot sign
    /// costs no private-key operation and no exponentiation.
    pub fn verify_client_auth(mut self, body: &[u8], rng: &mut Rng) -> Result<ServerVerified> {
        let (wrapped, client_share, signature) = parse_auth(body, CLIENT_AUTH)?;
        self.transcript.absorb(&[wrapped, &client_share]);
        self.client_key.verify_pss(&self.transcript.signed(LABEL_CLIENT_SIG), signature)?;
        self.transcript.absorb(&[signature]);
        let (wrapped, exponent) = (wrapped.to_vec(), Exponent::draw(rng)?);
        Ok(ServerVerified { state: self, wrapped, client_share, exponent })
    }

    /// [`ServerAwaitAuth::verify_client_auth`], then both private-key
    /// operations one after the other, then [`ServerVerified::finish`]. The
    /// server runs the two operations in parallel instead (`server::session`).
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn read_client_auth(self, body: &[u8], rng: &mut Rng) -> Result<(Session, Vec<u8>)> {
        let verified = self.verify_client_auth(body, rng)?;
        let theirs = verified.client_secrets(&mut Rng::system())?;
        let ours = verified.sign(rng)?;
        Ok(verified.finish(theirs, ours))
    }
}

/// Server, with the client's signature verified and its exponent drawn: two
/// independent halves remain, [`ServerVerified::client_secrets`] and
/// [`ServerVerified::sign`], each a private-key operation and an
/// exponentiation; both take `&self`, so they can run at once.
pub struct ServerVerified {
    state: ServerAwaitAuth,
    wrapped: Vec<u8>,
    client_share: Share,
    exponent: Exponent,
}

/// What the server learns from the client's half: its unwrapped secret and
/// the Diffie-Hellman secret. Wiped on drop.
pub struct ClientSecrets {
    transported: Zeroizing<Vec<u8>>,
    dh: Zeroizing<Share>,
}

/// The server's half: its secret (and that secret wrapped to the client),
/// its share, and its signature over the transcript.
pub struct ServerHalf {
    secret: Zeroizing<[u8; SECRET_LEN]>,
    wrapped: Vec<u8>,
    share: Share,
    signature: Vec<u8>,
}

impl ServerVerified {
    /// Unwrap the client's secret with the server's private key, and compute
    /// the Diffie-Hellman secret. The blinding comes from `rng`; nothing drawn
    /// here goes on the wire.
    pub fn client_secrets(&self, rng: &mut Rng) -> Result<ClientSecrets> {
        let transported = unwrap_secret(&self.state.keys, rng, &self.wrapped)?;
        Ok(ClientSecrets { transported, dh: self.exponent.shared_secret(&self.client_share) })
    }

    /// Draw the server's secret, wrap it to the client, compute the server's
    /// share and sign the transcript.
    pub fn sign(&self, rng: &mut Rng) -> Result<ServerHalf> {
        let ServerAwaitAuth { keys, client_key, transcript } = &self.state;
        let mut transcript = transcript.clone();
        let secret = Zeroizing::new(rng.array::<SECRET_LEN>()?);
        let wrapped = client_key.oaep_encrypt(rng, secret.as_slice())?;
        let share = self.exponent.share();
        transcript.absorb(&[&wrapped, &share]);
        let signature = keys.sign_pss(rng, &transcript.signed(LABEL_SERVER_SIG))?;
        Ok(ServerHalf { secret, wrapped, share, signature })
    }

    /// The session, and the ServerAuth frame to send.
    pub fn finish(self, theirs: ClientSecrets, ours: ServerHalf) -> (Session, Vec<u8>) {
        let ServerAwaitAuth { client_key, mut transcript, .. } = self.state;
        transcript.absorb(&[&ours.wrapped, &ours.share, &ours.signature]);
        let h3 = transcript.hash();
        let keys =
            SessionKeys::derive(&theirs.transported, ours.secret.as_slice(), &theirs.dh, &h3);
        let (sealer, opener) = keys.server_halves();
        let out = frame(&auth(SERVER_AUTH, &ours.wrapped, &ours.share, &ours.signature));
        (Session { sealer, opener, peer: client_key, transcript: h3 }, out)
    }
}
