//! The handshake, as states that consume each other, with no I/O: each step
//! takes the peer's frame body and returns the next state and the frame to send.
//! A [`Session`] can only be built from a verified transcript.
//!
//! ```text
//! client                                          server
//! ClientHello  nonce_c, pk_c          ------>     pk_c in authorized_keys? (no private-key work)
//!                                     <------     ServerHello  nonce_s, pk_s
//! pk_s pinned? (known_hosts/fingerprint)
//! ClientAuth   OAEP(pk_s, secret_c),
//!              PSS(sk_c, H1)          ------>     verify PSS first, then decrypt secret_c
//!                                     <------     ServerAuth  OAEP(pk_c, secret_s), PSS(sk_s, H2)
//! verify, decrypt secret_s
//! keys = HKDF(salt = H3, ikm = secret_c || secret_s)
//! ```
//!
//! H1, H2, H3 are SHA-256 over the label and each transcript element
//! length-prefixed (see [`Transcript`]); PROTOCOL.md gives the exact bytes.

use crate::constants::*;
use crate::error::{AlertCode, Error, Result};
use crate::keys::{KeyPair, PublicKey};
use crate::rand::Rng;
use crate::record::{Opener, Sealer, SessionKeys};
use crate::wire::{Reader, frame, put_vec16};
use cbc::cipher::zeroize::Zeroizing;
use sha2::{Digest, Sha256};

/// Handshake frame type: the client's first frame.
pub const CLIENT_HELLO: u8 = 1;
/// Handshake frame type: the server's hello.
pub const SERVER_HELLO: u8 = 2;
/// Handshake frame type: the client's key transport and signature.
pub const CLIENT_AUTH: u8 = 3;
/// Handshake frame type: the server's key transport and signature.
pub const SERVER_AUTH: u8 = 4;
/// Plaintext alert (refusal) frame, possible at any point before the session.
pub const ALERT: u8 = 0x15;
/// Longest alert message, in bytes.
pub const MAX_ALERT_MESSAGE: usize = 512;
/// Longest wrapped secret or signature (a 4096-bit modulus).
const MAX_RSA_BLOCK: usize = MAX_RSA_BITS / 8;

/// The running transcript hash: SHA-256 over the label, then each element as
/// `u32 length || bytes`, so that no two transcripts share an encoding.
#[derive(Clone)]
pub struct Transcript(Sha256);

impl Transcript {
    fn new() -> Self {
        let mut h = Sha256::new();
        h.update(LABEL_TRANSCRIPT);
        Transcript(h)
    }

    fn absorb(&mut self, element: &[u8]) {
        self.0
            .update(crate::wire::frame_len(element.len()).to_be_bytes());
        self.0.update(element);
    }

    fn hash(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

fn signed_message(label: &[u8], hash: &[u8; 32]) -> Vec<u8> {
    [label, hash.as_slice()].concat()
}

/// Start of every plaintext handshake frame body: magic, version, type.
fn plain_header(frame_type: u8) -> Vec<u8> {
    let mut b = Vec::with_capacity(1200);
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    b.push(frame_type);
    b
}

/// Parse the common header of a plaintext frame and check that it is `expected`.
/// An alert in its place becomes [`Error::Refused`].
fn parse_plain<'a>(body: &'a [u8], expected: u8) -> Result<Reader<'a>> {
    let mut r = Reader::new(body);
    let magic: [u8; 4] = r.array("magic")?;
    if magic != MAGIC {
        return Err(Error::Version {
            ours: PROTOCOL_VERSION,
            theirs: 0,
        });
    }
    let version = r.u16("version")?;
    if version != PROTOCOL_VERSION {
        return Err(Error::Version {
            ours: PROTOCOL_VERSION,
            theirs: version,
        });
    }
    match r.u8("frame type")? {
        ALERT => {
            let code = AlertCode::from_u8(r.u8("alert code")?);
            let message = r.vec16(MAX_ALERT_MESSAGE, "alert message")?;
            r.finish("alert")?;
            Err(Error::Refused {
                code,
                message: String::from_utf8_lossy(message).into_owned(),
            })
        }
        t if t == expected => Ok(r),
        _ => Err(Error::Malformed("unexpected handshake frame type")),
    }
}

/// A plaintext alert frame (with length prefix): a refusal before any session exists.
pub fn alert_frame(code: AlertCode, message: &str) -> Vec<u8> {
    let mut b = plain_header(ALERT);
    b.push(code.to_u8());
    put_vec16(&mut b, truncate_utf8(message, MAX_ALERT_MESSAGE).as_bytes());
    frame(&b)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn hello(frame_type: u8, nonce: &[u8; NONCE_LEN], key: &PublicKey) -> Vec<u8> {
    let mut b = plain_header(frame_type);
    b.extend_from_slice(nonce);
    put_vec16(&mut b, key.to_der());
    b
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

fn auth(frame_type: u8, wrapped: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut b = plain_header(frame_type);
    put_vec16(&mut b, wrapped);
    put_vec16(&mut b, signature);
    b
}

fn parse_auth(body: &[u8], frame_type: u8) -> Result<(&[u8], &[u8])> {
    let mut r = parse_plain(body, frame_type)?;
    let wrapped = r.vec16(MAX_RSA_BLOCK, "wrapped secret")?;
    let signature = r.vec16(MAX_RSA_BLOCK, "signature")?;
    r.finish("auth")?;
    Ok((wrapped, signature))
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
    /// Seals records we send.
    pub sealer: Sealer,
    /// Opens records we receive.
    pub opener: Opener,
    /// The peer's authenticated public key.
    pub peer: PublicKey,
    /// SHA-256 of the whole transcript.
    pub transcript: [u8; 32],
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
    transcript: Transcript,
}

impl ClientStart {
    /// Begin: returns the state and the ClientHello frame to send.
    pub fn new(keys: &KeyPair, rng: &mut Rng) -> Result<(Self, Vec<u8>)> {
        let nonce: [u8; NONCE_LEN] = rng.array()?;
        let body = hello(CLIENT_HELLO, &nonce, keys.public());
        let mut transcript = Transcript::new();
        transcript.absorb(&body);
        Ok((
            ClientStart {
                keys: keys.clone(),
                transcript,
            },
            frame(&body),
        ))
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
        self.transcript.absorb(body);
        let secret = Zeroizing::new(rng.array::<SECRET_LEN>()?);
        let wrapped = server_key.oaep_encrypt(rng, secret.as_slice())?;
        self.transcript.absorb(&wrapped);
        let h1 = self.transcript.hash();
        let signature = self
            .keys
            .sign_pss(rng, &signed_message(LABEL_CLIENT_SIG, &h1))?;
        self.transcript.absorb(&signature);
        let out = frame(&auth(CLIENT_AUTH, &wrapped, &signature));
        Ok((
            ClientAwaitAuth {
                keys: self.keys,
                server_key,
                secret,
                transcript: self.transcript,
            },
            out,
        ))
    }
}

impl ClientAwaitAuth {
    /// Read the ServerAuth: verify the server's signature, then unwrap its secret.
    pub fn read_server_auth(mut self, body: &[u8], rng: &mut Rng) -> Result<Session> {
        let (wrapped, signature) = parse_auth(body, SERVER_AUTH)?;
        self.transcript.absorb(wrapped);
        let h2 = self.transcript.hash();
        self.server_key
            .verify_pss(&signed_message(LABEL_SERVER_SIG, &h2), signature)?;
        let server_secret = unwrap_secret(&self.keys, rng, wrapped)?;
        self.transcript.absorb(signature);
        let h3 = self.transcript.hash();
        let (sealer, opener) =
            SessionKeys::derive(self.secret.as_slice(), &server_secret, &h3).client_halves();
        Ok(Session {
            sealer,
            opener,
            peer: self.server_key,
            transcript: h3,
        })
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
            return Err(Error::NotAuthorized {
                fingerprint: client_key.fingerprint().to_string(),
            });
        }
        let mut transcript = Transcript::new();
        transcript.absorb(body);
        let nonce: [u8; NONCE_LEN] = rng.array()?;
        let reply = hello(SERVER_HELLO, &nonce, keys.public());
        transcript.absorb(&reply);
        Ok((
            ServerAwaitAuth {
                keys: keys.clone(),
                client_key,
                transcript,
            },
            frame(&reply),
        ))
    }

    /// The authorized client's key.
    pub fn client_key(&self) -> &PublicKey {
        &self.client_key
    }

    /// Read the ClientAuth. The client's signature is verified (a public-key
    /// operation) before the server decrypts anything with its private key.
    pub fn read_client_auth(mut self, body: &[u8], rng: &mut Rng) -> Result<(Session, Vec<u8>)> {
        let (wrapped, signature) = parse_auth(body, CLIENT_AUTH)?;
        self.transcript.absorb(wrapped);
        let h1 = self.transcript.hash();
        self.client_key
            .verify_pss(&signed_message(LABEL_CLIENT_SIG, &h1), signature)?;
        // Only now, with the client proven, does the server use its private key.
        // Unwrapping the client's secret and signing our half are independent,
        // so they run on two threads: one private-key operation off the
        // critical path of every handshake. (The unwrap draws its blinding
        // from the system; `rng` alone decides what goes on the wire.)
        let keys = &self.keys;
        let (client_secret, ours) = std::thread::scope(|scope| {
            let unwrap = scope.spawn(|| unwrap_secret(keys, &mut Rng::system(), wrapped));
            let ours = (|| {
                self.transcript.absorb(signature);
                let secret = Zeroizing::new(rng.array::<SECRET_LEN>()?);
                let wrapped_s = self.client_key.oaep_encrypt(rng, secret.as_slice())?;
                self.transcript.absorb(&wrapped_s);
                let h2 = self.transcript.hash();
                let signature_s = keys.sign_pss(rng, &signed_message(LABEL_SERVER_SIG, &h2))?;
                Ok::<_, Error>((secret, wrapped_s, signature_s))
            })();
            let client_secret = unwrap
                .join()
                .unwrap_or(Err(Error::Malformed("key transport")));
            (client_secret, ours)
        });
        let (client_secret, (secret, wrapped_s, signature_s)) = (client_secret?, ours?);
        self.transcript.absorb(&signature_s);
        let h3 = self.transcript.hash();
        let (sealer, opener) =
            SessionKeys::derive(&client_secret, secret.as_slice(), &h3).server_halves();
        let out = frame(&auth(SERVER_AUTH, &wrapped_s, &signature_s));
        Ok((
            Session {
                sealer,
                opener,
                peer: self.client_key,
                transcript: h3,
            },
            out,
        ))
    }
}
