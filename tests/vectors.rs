//! Test vectors for a second implementation, and a check that the code still
//! produces them byte for byte.
//!
//! `tests/vectors/handshake.txt` holds a complete handshake between the fixed
//! keys `tests/vectors/client.pem` and `tests/vectors/server.pem`, the transcript
//! hashes, the key schedule and records in both directions, ending with a file
//! upload, download and digest. Its format is
//! described at its top and in PROTOCOL.md ("Test vectors").
//!
//! - `test_vectors_match_the_code_byte_for_byte` runs the handshake and the
//!   record layer of the library with seeded random generators and compares the
//!   result with the stored file. With `OVTP_REGENERATE_VECTORS=1` in the
//!   environment it rewrites the file instead (after an intended wire change).
//! - `test_vectors_open_with_an_independent_check` reads the stored file and
//!   checks it with code written from PROTOCOL.md alone: frames parsed by hand,
//!   transcript hashes recomputed with `sha2`, signatures verified and secrets
//!   unwrapped with `rsa`, HKDF written out over `hmac`, each record's tag
//!   recomputed and its ciphertext decrypted block by block with `aes`, and the
//!   messages inside (requests, responses, the file exchange) parsed by hand.
//! - `file_exchange_vectors_are_what_a_real_server_speaks` replays the client's
//!   file records of the vector file (whose payloads this file encodes by hand)
//!   against a real `Server` over TCP, and checks that the server answers with
//!   exactly the stored plaintexts: the hand-written layouts are the code's.
//!
//! `tests/vectors/negative/` holds negative vectors in the manner of age's
//! testkit: one small text file per case, frames that a receiver must reject and
//! the error kind it must give (PROTOCOL.md 15.2). Each is made from the frames
//! of `handshake.txt` by the edit its header describes (`negatives` below).
//! - `negative_vectors_match_their_generator` remakes them and compares them
//!   with the folder byte for byte (`OVTP_REGENERATE_VECTORS=1` rewrites it).
//! - `negative_vectors_are_rejected_with_the_expected_errors` reads every file
//!   of the folder, feeds its frames to the library (`split_frame`, then the
//!   handshake states or a record opener keyed as in `handshake.txt`) and
//!   requires the error kind of its `expect:` line.

// The library's internals these tests drive (test hooks), all in this one block.
use ovtp::hooks::{ClientStart, ServerAwaitAuth, SessionKeys, split_frame};

use ovtp::{Error, KeyPair, Rng};
use std::collections::HashMap;
use std::fmt::Write as _;

const CLIENT_PEM: &str = include_str!("vectors/client.pem");
const SERVER_PEM: &str = include_str!("vectors/server.pem");
const VECTOR_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/handshake.txt");
const REGENERATE_VAR: &str = "OVTP_REGENERATE_VECTORS";

const CLIENT_SEED: [u8; 32] = *b"ovtp test vectors: client seed!!";
const SERVER_SEED: [u8; 32] = *b"ovtp test vectors: server seed!!";

// The protocol's numbers, written out again here from PROTOCOL.md rather than
// imported, so that the independent check does not trust the library's constants.
const MAGIC: &[u8; 4] = b"OVTP";
const VERSION: u16 = 2;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const CLIENT_AUTH: u8 = 3;
const SERVER_AUTH: u8 = 4;
const MAX_HANDSHAKE_FRAME: usize = 16 * 1024;
/// Largest record plaintext: a 1 MiB file chunk plus 64 bytes for its header.
const MAX_RECORD_PLAINTEXT: usize = 1024 * 1024 + 64;
const MAX_RECORD_FRAME: usize = 2 + 16 + (MAX_RECORD_PLAINTEXT / 16 + 1) * 16 + 32;
const DIR_C2S: u8 = 1;
const DIR_S2C: u8 = 2;
const REC_REQUEST: u8 = 0x10;
const REC_RESPONSE: u8 = 0x11;
const REC_FILE_READY: u8 = 0x12;
const REC_FILE_DATA: u8 = 0x13;
const REC_FILE_END: u8 = 0x14;
const REC_ALERT: u8 = 0x15;
const REC_FILE_PREFIX: u8 = 0x16;
const FIN: u8 = 0x01;
const OP_TEXT: u8 = 1;
const OP_DATA: u8 = 2;
const OP_PUT: u8 = 3;
const OP_GET: u8 = 4;
const OP_DIGEST: u8 = 5;
/// PUT and GET flag: keep a matching partial file from an earlier attempt.
const XFER_RESUME: u8 = 0x02;
/// The ffdhe3072 prime (RFC 7919, Appendix A.2), as PROTOCOL.md 4.10 prints it; g = 2.
const FFDHE3072_P: &str = "\
    ffffffffffffffffadf85458a2bb4a9aafdc5620273d3cf1d8b9c583ce2d3695\
    a9e13641146433fbcc939dce249b3ef97d2fe363630c75d8f681b202aec4617a\
    d3df1ed5d5fd65612433f51f5f066ed0856365553ded1af3b557135e7f57c935\
    984f0c70e0e68b77e2a689daf3efe8721df158a136ade73530acca4f483a797a\
    bc0ab182b324fb61d108a94bb2c8e3fbb96adab760d7f4681d4f42a3de394df4\
    ae56ede76372bb190b07a7c8ee0a6d709e02fce1cdf7e2ecc03404cd28342f61\
    9172fe9ce98583ff8e4f1232eef28183c3fe3b1b4c6fad733bb5fcbc2ec22005\
    c58ef1837d1683b2c6f34a26c1b2effa886b4238611fcfdcde355b3b6519035b\
    bc34f4def99c023861b46fc9d6e6c9077ad91d2691f7f7ee598cb0fac186d91c\
    aefe130985139270b4130c93bc437944f4fd4452e2d74dd364f2e21e71f54bff\
    5cae82ab9c9df69ee86d2bc522363a0dabc521979b0deada1dbf9a42d5c4484e\
    0abcd06bfa53ddef3c1b20ee3fd59d7c25e41d2b66c62e37ffffffffffffffff";
/// Bytes of a key share and of the Diffie-Hellman secret.
const DH_LEN: usize = 384;

// The file of the file-transfer vectors.
const FILE_NAME: &str = "hello.txt";
/// Bytes of the file that the server holds from an interrupted upload by the
/// same client key: the PUT resumes after them.
const HELD: usize = 40;
const FILE_CONTENT: &[u8; 100] = b"hello.txt holds one hundred bytes of known content for the ovtp file transfer test vectors. Goodbye\n";
/// The body of the server's final answer to the upload (chosen by its handler).
const PUT_REPLY: &[u8] = b"stored hello.txt";

// ---------------------------------------------------------------- helpers

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(name: &str, s: &str) -> Vec<u8> {
    assert!(
        s.len().is_multiple_of(2) && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
        "{name}: not lowercase hex"
    );
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// SHA-256 over the label and each element as `u32 length || bytes` (PROTOCOL.md, "Transcript").
fn transcript_hash(elements: &[&[u8]]) -> [u8; 32] {
    let lens: Vec<[u8; 4]> =
        elements.iter().map(|e| u32::try_from(e.len()).unwrap().to_be_bytes()).collect();
    let mut parts: Vec<&[u8]> = vec![b"ovtp/2 transcript"];
    for (len, e) in lens.iter().zip(elements) {
        parts.push(len);
        parts.push(e);
    }
    sha256(&parts)
}

/// HKDF-SHA256 (RFC 5869), one 32-byte output block.
fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let prk = hmac_sha256(salt, &[ikm]);
    hmac_sha256(&prk, &[info, &[1]])
}

/// Reads fields off a frame, failing the test on any shortfall.
struct Cursor<'a>(&'a [u8], &'static str);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "{}: truncated", self.1);
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn vec16(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.take(n)
    }
    fn end(self) {
        assert!(self.0.is_empty(), "{}: trailing bytes", self.1);
    }
}

/// Split a frame into its body, checking the 4-byte length prefix.
fn frame_body<'a>(frame: &'a [u8], max: usize, what: &'static str) -> &'a [u8] {
    let mut c = Cursor(frame, what);
    let len = c.u32() as usize;
    assert!(len > 0 && len <= max, "{what}: length {len} out of range");
    let body = c.take(len);
    c.end();
    body
}

/// Check the plaintext handshake header; returns a cursor after it.
fn handshake_body<'a>(body: &'a [u8], frame_type: u8, what: &'static str) -> Cursor<'a> {
    let mut c = Cursor(body, what);
    assert_eq!(c.take(4), MAGIC, "{what}: magic");
    assert_eq!(c.u16(), VERSION, "{what}: version");
    assert_eq!(c.u8(), frame_type, "{what}: frame type");
    c
}

/// (nonce, SPKI DER) of a hello frame body.
fn parse_hello<'a>(body: &'a [u8], frame_type: u8, what: &'static str) -> (&'a [u8], &'a [u8]) {
    let mut c = handshake_body(body, frame_type, what);
    let nonce = c.take(32);
    let spki = c.vec16();
    c.end();
    (nonce, spki)
}

/// (wrapped secret, key share, signature) of an auth frame body.
fn parse_auth<'a>(body: &'a [u8], frame_type: u8, what: &'static str) -> [&'a [u8]; 3] {
    let mut c = handshake_body(body, frame_type, what);
    let wrapped = c.vec16();
    let share = c.take(DH_LEN);
    let signature = c.vec16();
    c.end();
    [wrapped, share, signature]
}

/// `base^exponent mod p` in ffdhe3072, as 384 big-endian bytes.
fn dh_pow(base: &[u8], exponent: &[u8]) -> Vec<u8> {
    use rsa::BoxedUint;
    let p = BoxedUint::from_be_slice(&unhex("p", FFDHE3072_P), 3072).unwrap();
    let p = Option::from(p.to_odd()).expect("p is odd");
    let e = BoxedUint::from_be_slice(exponent, 8 * exponent.len() as u32).unwrap();
    BoxedUint::from_be_slice(base, 3072).unwrap().pow_mod(&e, &p).to_be_bytes().to_vec()
}

/// A side's Diffie-Hellman exponent: the 40 bytes drawn after its nonce, i.e.
/// block 1 and the first 8 bytes of block 2 of its generator.
fn dh_exponent(seed: &[u8]) -> Vec<u8> {
    [&drbg_block(seed, 1)[..], &drbg_block(seed, 2)[..8]].concat()
}

fn rsa_key(pem: &str) -> rsa::PrivateKey {
    use rsa::pkcs8::DecodePrivateKey;
    rsa::PrivateKey::from_pkcs8_pem(pem).expect("vector key parses")
}

fn spki_der(key: &rsa::PrivateKey) -> Vec<u8> {
    use rsa::pkcs8::EncodePublicKey;
    key.to_public_key().to_public_key_der().unwrap().into_vec()
}

fn fingerprint(spki: &[u8]) -> String {
    use base64ct::{Base64Unpadded, Encoding};
    format!("SHA256:{}", Base64Unpadded::encode_string(&sha256(&[spki])))
}

fn oaep_unwrap(key: &rsa::PrivateKey, wrapped: &[u8]) -> Vec<u8> {
    key.oaep_decrypt_with_rng::<sha2::Sha256, _>(&mut Rng::system(), wrapped)
        .expect("wrapped secret decrypts")
}

fn drbg_block(seed: &[u8], i: u64) -> [u8; 32] {
    hmac_sha256(seed, &[b"ovtp test drbg", &i.to_be_bytes()])
}

/// A generator for the `rsa` crate that hands out the given block on its first
/// draw, which must ask for exactly those 32 bytes, and the system's randomness
/// after it. OAEP draws its seed first, and PSS its salt first (then blinding
/// values, which do not change the signature): so the caller chooses both.
struct Scripted(Option<[u8; 32]>);

impl rsa::rand_core::TryRng for Scripted {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        match self.0.take() {
            Some(first) => {
                assert_eq!(dst.len(), 32, "the first draw is a 32-byte seed or salt");
                dst.copy_from_slice(&first);
            }
            None => getrandom::fill(dst).expect("system randomness"),
        }
        Ok(())
    }
}

impl rsa::rand_core::TryCryptoRng for Scripted {}

// Message payloads, written out by hand from PROTOCOL.md (the library's
// encoders are private): the live test below checks that a real server speaks
// exactly these bytes.

/// `u16 length || bytes`.
fn vec16(field: &[u8]) -> Vec<u8> {
    [&u16::try_from(field.len()).unwrap().to_be_bytes()[..], field].concat()
}

/// Request: `request_id [16] || op u8 || body`.
fn request(id: &[u8], op: u8, body: &[u8]) -> Vec<u8> {
    [id, &[op], body].concat()
}

/// Response: `request_id [16] || status u16 || body`.
fn response(id: &[u8], status: u16, body: &[u8]) -> Vec<u8> {
    [id, &status.to_be_bytes(), body].concat()
}

/// PUT body: `name vec16 || size u64 || flags u8`.
fn put_body(name: &str, size: u64, flags: u8) -> Vec<u8> {
    [&vec16(name.as_bytes())[..], &size.to_be_bytes(), &[flags]].concat()
}

/// GET body: `name vec16 || offset u64 || prefix_sha256 [32] || flags u8`.
fn get_body(name: &str, offset: u64, prefix: &[u8; 32], flags: u8) -> Vec<u8> {
    [&vec16(name.as_bytes())[..], &offset.to_be_bytes(), prefix, &[flags]].concat()
}

/// The server's partial file of hello.txt uploaded by the key `fingerprint`.
fn partial_name(fingerprint: &str) -> String {
    let digest =
        sha256(&[b"ovtp/2 partial", &[0], fingerprint.as_bytes(), &[0], FILE_NAME.as_bytes()]);
    format!(".{}.ovtp-part", hex(&digest[..16]))
}

/// Two u64 fields (FILE_READY of a GET: `size || start`) or a u64 and bytes
/// (FILE_READY of a PUT: `offset || prefix_sha256`; FILE_DATA: `offset ||
/// bytes`; FILE_END: `total || sha256`; a DIGEST reply body: `size || sha256`).
fn u64_and(n: u64, rest: &[u8]) -> Vec<u8> {
    [&n.to_be_bytes()[..], rest].concat()
}

// ---------------------------------------------------------------- generation

/// The vector file as text, built line by line.
#[derive(Default)]
struct Out(String);

impl Out {
    fn comment(&mut self, text: &str) {
        for line in text.lines() {
            if line.is_empty() {
                self.0.push_str("#\n");
            } else {
                let _ = writeln!(self.0, "# {line}");
            }
        }
    }
    fn blank(&mut self) {
        self.0.push('\n');
    }
    fn text(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            // No trailing space, which editors and tools like to strip.
            let _ = writeln!(self.0, "{name}:");
        } else {
            let _ = writeln!(self.0, "{name}: {value}");
        }
    }
    fn bytes(&mut self, name: &str, value: &[u8]) {
        self.text(name, &hex(value));
    }
}

const HEADER: &str = "\
ovtp protocol version 2: test vectors (handshake with its ephemeral ffdhe3072
exchange, transcript, key schedule, records, file transfer).

Generated from the code by tests/vectors.rs; do not edit by hand.
`cargo test --test vectors` regenerates everything in memory and fails if this
file differs from the code's output byte for byte. After an intended change of
the wire format, rewrite it with:
    OVTP_REGENERATE_VECTORS=1 cargo test --test vectors
The layouts are specified in PROTOCOL.md; section \"Test vectors\" there explains
how to use this file.

Format: UTF-8 text. Lines starting with '#' and blank lines are comments. Every
other line is `name: value` (one space after the colon; an empty value is
written `name:` alone). Names are unique.
Values are lowercase hex without separators, except `*.fingerprint`, which is
text. `*.frame` values are whole frames, 4-byte length prefix included.

Keys: tests/vectors/client.pem and tests/vectors/server.pem, 2048-bit RSA,
unencrypted PKCS#8 PEM made once with
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048
(git does not keep file modes; a copy used as a key file must be chmod 600).

Randomness: each side draws from a deterministic generator (ovtp::Rng::from_seed,
for test vectors only). Block i (i = 0, 1, 2, ...) is
    HMAC-SHA256(key = seed, \"ovtp test drbg\" || u64be(i))
and each draw of n bytes takes the next ceil(n / 32) blocks, the last one cut to
what is left. Each side's first six blocks are, in order: its nonce (block 0),
its Diffie-Hellman exponent (40 bytes: block 1 and the first 8 bytes of block 2),
its secret (block 3: secret_c of the client, secret_s of the server), the RSA-OAEP
seed that wraps that secret (block 4) and the RSA-PSS salt of its signature
(block 5). So both auth frames reproduce byte for byte with an OAEP and a PSS
that take the seed and the salt from the caller. After block 5 the rsa crate
draws blinding values from the same generator (the server unwraps the client's
secret on a thread of its own, with blinding from the system, which cannot
change the result), so the later blocks (request ids, record IVs) are specific
to this code; each IV is in its frame. Everything else is a deterministic
function of the values given here. The exponents are shown so that the shares
and the Diffie-Hellman secret can be checked; a real peer draws them fresh and
wipes them after the handshake.";

fn generate() -> String {
    let client = KeyPair::from_pem(CLIENT_PEM).expect("client key");
    let server = KeyPair::from_pem(SERVER_PEM).expect("server key");
    let client_rsa = rsa_key(CLIENT_PEM);
    let server_rsa = rsa_key(SERVER_PEM);
    let mut crng = Rng::from_seed(CLIENT_SEED);
    let mut srng = Rng::from_seed(SERVER_SEED);

    // The handshake, driven through the library's state machines.
    let (c_start, client_hello) = ClientStart::new(&client, &mut crng).unwrap();
    let ch = frame_body(&client_hello, MAX_HANDSHAKE_FRAME, "ClientHello");
    let (s_wait, server_hello) =
        ServerAwaitAuth::read_client_hello(&server, ch, &mut srng, |k| Ok(k == client.public()))
            .unwrap();
    let sh = frame_body(&server_hello, MAX_HANDSHAKE_FRAME, "ServerHello");
    let (c_wait, client_auth) = c_start
        .read_server_hello(sh, &mut crng, |k| {
            if k == server.public() {
                Ok(())
            } else {
                Err(Error::InvalidInput("not the vector server key".into()))
            }
        })
        .unwrap();
    let ca = frame_body(&client_auth, MAX_HANDSHAKE_FRAME, "ClientAuth");
    let (mut s_session, server_auth) = s_wait.read_client_auth(ca, &mut srng).unwrap();
    let sa = frame_body(&server_auth, MAX_HANDSHAKE_FRAME, "ServerAuth");
    let mut c_session = c_wait.read_server_auth(sa, &mut crng).unwrap();

    // Intermediate values the library keeps to itself, recomputed from the frames.
    let (nonce_c, _) = parse_hello(ch, CLIENT_HELLO, "ClientHello");
    let (nonce_s, _) = parse_hello(sh, SERVER_HELLO, "ServerHello");
    let [wrapped_c, share_c, sig_c] = parse_auth(ca, CLIENT_AUTH, "ClientAuth");
    let [wrapped_s, share_s, sig_s] = parse_auth(sa, SERVER_AUTH, "ServerAuth");
    let secret_c = oaep_unwrap(&server_rsa, wrapped_c);
    let secret_s = oaep_unwrap(&client_rsa, wrapped_s);
    let (x_c, x_s) = (dh_exponent(&CLIENT_SEED), dh_exponent(&SERVER_SEED));
    assert_eq!(dh_pow(&[2], &x_c), share_c, "the client's share is not 2^x_c");
    assert_eq!(dh_pow(&[2], &x_s), share_s, "the server's share is not 2^x_s");
    let dh_secret = dh_pow(share_s, &x_c);
    assert_eq!(dh_secret, dh_pow(share_c, &x_s));
    let h1 = transcript_hash(&[ch, sh, wrapped_c, share_c]);
    let h2 = transcript_hash(&[ch, sh, wrapped_c, share_c, sig_c, wrapped_s, share_s]);
    let h3 = transcript_hash(&[ch, sh, wrapped_c, share_c, sig_c, wrapped_s, share_s, sig_s]);
    assert_eq!(*c_session.transcript(), h3, "client's H3 differs from PROTOCOL.md's");
    assert_eq!(*s_session.transcript(), h3, "server's H3 differs from PROTOCOL.md's");
    let ikm = [&secret_c[..], &secret_s, &dh_secret].concat();
    let prk = hmac_sha256(&h3, &[&ikm]);
    let keys = [
        ("keys.c2s_enc", hkdf(&h3, &ikm, b"ovtp/2 c2s enc")),
        ("keys.c2s_mac", hkdf(&h3, &ikm, b"ovtp/2 c2s mac")),
        ("keys.s2c_enc", hkdf(&h3, &ikm, b"ovtp/2 s2c enc")),
        ("keys.s2c_mac", hkdf(&h3, &ikm, b"ovtp/2 s2c mac")),
    ];

    let mut out = Out::default();
    out.comment(HEADER);
    out.blank();
    out.comment("---- The two parties. spki: the SubjectPublicKeyInfo DER of the public key.");
    out.bytes("client.seed", &CLIENT_SEED);
    out.bytes("client.spki", client.public().to_der());
    out.text("client.fingerprint", client.fingerprint().as_str());
    out.bytes("server.seed", &SERVER_SEED);
    out.bytes("server.spki", server.public().to_der());
    out.text("server.fingerprint", server.fingerprint().as_str());
    out.blank();
    out.comment(
        "---- Handshake frames, in the order sent, with the values inside them.\n\
         secret_c and secret_s are shown after unwrapping (RSA-OAEP) with the\n\
         recipient's private key. share is the side's Diffie-Hellman share\n\
         (2^exponent mod p in ffdhe3072, 384 bytes); dh.secret is\n\
         share_s^exponent_c mod p = share_c^exponent_s mod p.",
    );
    out.bytes("client_hello.frame", &client_hello);
    out.bytes("client_hello.nonce", nonce_c);
    out.bytes("server_hello.frame", &server_hello);
    out.bytes("server_hello.nonce", nonce_s);
    out.bytes("client_auth.frame", &client_auth);
    out.bytes("client_auth.dh_exponent", &x_c);
    out.bytes("client_auth.share", share_c);
    out.bytes("client_auth.secret", &secret_c);
    out.bytes("server_auth.frame", &server_auth);
    out.bytes("server_auth.dh_exponent", &x_s);
    out.bytes("server_auth.share", share_s);
    out.bytes("server_auth.secret", &secret_s);
    out.bytes("dh.secret", &dh_secret);
    out.blank();
    out.comment(
        "---- Transcript hashes. Elements are the ClientHello and ServerHello frame\n\
         bodies (no length prefix) and the raw wrapped secrets, shares and signatures.\n\
         h1 = T(ClientHello, ServerHello, wrapped_c, share_c); the client signs\n\
         \"ovtp/2 client signature\" || h1.\n\
         h2 = T(..., sig_c, wrapped_s, share_s); the server signs\n\
         \"ovtp/2 server signature\" || h2.\n\
         h3 = T(..., sig_s): the HKDF salt and session identifier.",
    );
    out.bytes("transcript.h1", &h1);
    out.bytes("transcript.h2", &h2);
    out.bytes("transcript.h3", &h3);
    out.blank();
    out.comment(
        "---- Key schedule: ikm = secret_c || secret_s || dh.secret (448 bytes),\n\
         prk = HMAC-SHA256(h3, ikm), key = HMAC-SHA256(prk, info || 0x01) with info\n\
         \"ovtp/2 c2s enc\" and so on.",
    );
    out.bytes("hkdf.ikm", &ikm);
    out.bytes("hkdf.prk", &prk);
    for (name, key) in &keys {
        out.bytes(name, key);
    }
    out.blank();
    out.comment(
        "---- Records. record.<dir>.<seq>: dir c2s (direction byte 0x01) or s2c (0x02),\n\
         seq the record's sequence number in that direction. plaintext is the record's\n\
         decrypted content; frame is length || type || flags || iv || ciphertext || tag.\n\
         Request ids come from the client's generator.",
    );

    // Records, sealed by the library and opened by the peer's half of the session.
    struct Rec {
        note: &'static str,
        c2s: bool,
        rtype: u8,
        flags: u8,
        plaintext: Vec<u8>,
    }
    let (mut c_seq, mut s_seq) = (0u64, 0u64);
    let mut emit = |out: &mut Out, rec: Rec, crng: &mut Rng, srng: &mut Rng| {
        let (sealer, opener, rng, dir, seq) = if rec.c2s {
            (c_session.sealer(), s_session.opener(), crng, "c2s", &mut c_seq)
        } else {
            (s_session.sealer(), c_session.opener(), srng, "s2c", &mut s_seq)
        };
        assert_eq!(sealer.sequence(), *seq);
        let mut frame = Vec::new();
        sealer.seal(rng, rec.rtype, rec.flags, &rec.plaintext, &mut frame).unwrap();
        let mut body = frame_body(&frame, MAX_RECORD_FRAME, "record").to_vec();
        let opened = opener.open(&mut body).expect("the peer opens the record");
        assert_eq!(
            (opened.rtype, opened.flags, opened.plaintext),
            (rec.rtype, rec.flags, rec.plaintext.as_slice())
        );
        out.comment(&format!("{dir} seq {}: {}", *seq, rec.note));
        out.bytes(&format!("record.{dir}.{}.plaintext", *seq), &rec.plaintext);
        out.bytes(&format!("record.{dir}.{}.frame", *seq), &frame);
        *seq += 1;
    };

    // c2s 0: a text request "hello".
    let id1: [u8; 16] = crng.array().unwrap();
    emit(
        &mut out,
        Rec {
            note: "request (type 0x10, FIN), op 1 text, body \"hello\"",
            c2s: true,
            rtype: REC_REQUEST,
            flags: FIN,
            plaintext: request(&id1, OP_TEXT, b"hello"),
        },
        &mut crng,
        &mut srng,
    );
    // s2c 0: its response.
    emit(
        &mut out,
        Rec {
            note: "response (type 0x11, FIN) to it: status 0 (OK), body \"ok: hello\"",
            c2s: false,
            rtype: REC_RESPONSE,
            flags: FIN,
            plaintext: response(&id1, 0, b"ok: hello"),
        },
        &mut crng,
        &mut srng,
    );
    // c2s 1: a data request with the bytes 0..=255.
    let id2: [u8; 16] = crng.array().unwrap();
    let all: Vec<u8> = (0..=255u8).collect();
    emit(
        &mut out,
        Rec {
            note: "request (type 0x10, FIN), op 2 data, body the bytes 00 01 .. ff",
            c2s: true,
            rtype: REC_REQUEST,
            flags: FIN,
            plaintext: request(&id2, OP_DATA, &all),
        },
        &mut crng,
        &mut srng,
    );
    // s2c 1: a response with an empty body.
    emit(
        &mut out,
        Rec {
            note: "response (type 0x11, FIN) to it: status 7 (an application code), empty body",
            c2s: false,
            rtype: REC_RESPONSE,
            flags: FIN,
            plaintext: response(&id2, 7, b""),
        },
        &mut crng,
        &mut srng,
    );
    // c2s 2 and 3: one request in two records, the second empty and carrying FIN.
    let id3: [u8; 16] = crng.array().unwrap();
    emit(
        &mut out,
        Rec {
            note: "request (type 0x10, no FIN), op 1 text, body \"two records\": the message continues",
            c2s: true,
            rtype: REC_REQUEST,
            flags: 0,
            plaintext: request(&id3, OP_TEXT, b"two records"),
        },
        &mut crng,
        &mut srng,
    );
    emit(
        &mut out,
        Rec {
            note: "request (type 0x10, FIN) with an empty plaintext: ends the message above\n\
                   (the ciphertext is one block of padding)",
            c2s: true,
            rtype: REC_REQUEST,
            flags: FIN,
            plaintext: Vec::new(),
        },
        &mut crng,
        &mut srng,
    );
    // The file exchange: an upload of hello.txt, its download, and its digest.
    // Every file record is a message of its own (FIN set).
    let empty_sha = sha256(&[]);
    let file_sha = sha256(&[FILE_CONTENT]);
    let size = FILE_CONTENT.len() as u64;
    let id4: [u8; 16] = crng.array().unwrap();
    let id5: [u8; 16] = crng.array().unwrap();
    let id6: [u8; 16] = crng.array().unwrap();
    let held = HELD as u64;
    let file_records: [(&str, bool, u8, Vec<u8>); 13] = [
        (
            "PUT request (type 0x10, FIN), op 3: name \"hello.txt\" (vec16), size 100,\n\
             flags 0x02 (resume; no overwrite)",
            true,
            REC_REQUEST,
            request(&id4, OP_PUT, &put_body(FILE_NAME, size, XFER_RESUME)),
        ),
        (
            "FILE_READY (type 0x12, FIN) for the PUT: offset 40. The server holds the first\n\
             40 bytes of hello.txt in this client key's partial file (from an interrupted\n\
             upload); it tells their number, never their digest",
            false,
            REC_FILE_READY,
            held.to_be_bytes().to_vec(),
        ),
        (
            "FILE_PREFIX (type 0x16, FIN): the SHA-256 of the client's own first 40 bytes",
            true,
            REC_FILE_PREFIX,
            sha256(&[&FILE_CONTENT[..HELD]]).to_vec(),
        ),
        (
            "FILE_READY (type 0x12, FIN): offset 40, the prefix matched the partial file's:\n\
             the data continues there (0 would have meant: start over)",
            false,
            REC_FILE_READY,
            held.to_be_bytes().to_vec(),
        ),
        (
            "FILE_DATA (type 0x13, FIN): offset 40, then bytes 40..100 of hello.txt",
            true,
            REC_FILE_DATA,
            u64_and(held, &FILE_CONTENT[HELD..]),
        ),
        (
            "FILE_END (type 0x14, FIN): total 100, SHA-256 of the whole file (prefix\n\
             included), which the server keeps as the file's digest",
            true,
            REC_FILE_END,
            u64_and(size, &file_sha),
        ),
        (
            "response (type 0x11, FIN) to the PUT, after verifying and renaming the file:\n\
             status 0, body \"stored hello.txt\" (chosen by the server's handler)",
            false,
            REC_RESPONSE,
            response(&id4, 0, PUT_REPLY),
        ),
        (
            "GET request (type 0x10, FIN), op 4: name \"hello.txt\", offset 0 (no partial\n\
             file on the client), SHA-256 of the empty prefix, flags 0x02 (resume)",
            true,
            REC_REQUEST,
            request(&id5, OP_GET, &get_body(FILE_NAME, 0, &empty_sha, XFER_RESUME)),
        ),
        (
            "FILE_READY (type 0x12, FIN) for the GET: size 100, start 0",
            false,
            REC_FILE_READY,
            [size.to_be_bytes(), 0u64.to_be_bytes()].concat(),
        ),
        (
            "FILE_DATA (type 0x13, FIN): offset 0, then the 100 bytes",
            false,
            REC_FILE_DATA,
            u64_and(0, FILE_CONTENT),
        ),
        (
            "FILE_END (type 0x14, FIN): total 100, SHA-256 of the whole file. A successful\n\
             GET ends here: no response record follows",
            false,
            REC_FILE_END,
            u64_and(size, &file_sha),
        ),
        (
            "DIGEST request (type 0x10, FIN), op 5: name \"hello.txt\"",
            true,
            REC_REQUEST,
            request(&id6, OP_DIGEST, &vec16(FILE_NAME.as_bytes())),
        ),
        (
            "response (type 0x11, FIN) to the DIGEST: status 0, body size u64 || sha256",
            false,
            REC_RESPONSE,
            response(&id6, 0, &u64_and(size, &file_sha)),
        ),
    ];
    out.comment(
        "---- File transfer (PROTOCOL.md 7.7), continuing the same session: hello.txt is\n\
         uploaded (PUT, resuming after the 40 bytes the server already holds), downloaded\n\
         (GET) and its digest asked for (DIGEST). file.content is the file (ASCII text\n\
         ending in a newline); file.sha256 its SHA-256. file.partial_name is the name of\n\
         the server's partial file beside the target, as ASCII: \".\" and the hex of the\n\
         first 16 bytes of SHA-256(\"ovtp/2 partial\" || 00 || client.fingerprint || 00 ||\n\
         \"hello.txt\"), then \".ovtp-part\".",
    );
    out.bytes("file.content", FILE_CONTENT);
    out.bytes("file.sha256", &file_sha);
    out.bytes("file.partial_name", partial_name(client.fingerprint().as_str()).as_bytes());
    for (note, c2s, rtype, plaintext) in file_records {
        emit(&mut out, Rec { note, c2s, rtype, flags: FIN, plaintext }, &mut crng, &mut srng);
    }
    // Last, an encrypted alert, as a server sends when it shuts down (then it closes).
    let alert_msg = b"server is shutting down";
    let mut alert = vec![5u8];
    alert.extend_from_slice(&u16::try_from(alert_msg.len()).unwrap().to_be_bytes());
    alert.extend_from_slice(alert_msg);
    emit(
        &mut out,
        Rec {
            note: "alert (type 0x15, FIN): code 5 (shutting down), message \"server is shutting down\"",
            c2s: false,
            rtype: REC_ALERT,
            flags: FIN,
            plaintext: alert,
        },
        &mut crng,
        &mut srng,
    );
    out.0
}

/// Where the stored file and the code's output first differ, for the failure message.
fn describe_difference(file: &str, stored: &str, generated: &str) -> String {
    let clip = |s: &str, from: usize| -> String {
        let from = from.saturating_sub(20).min(s.len());
        let to = (from + 100).min(s.len());
        let prefix = if from > 0 { "..." } else { "" };
        let suffix = if to < s.len() { "..." } else { "" };
        format!("{prefix}{}{suffix}", &s[from..to])
    };
    let (a, b): (Vec<&str>, Vec<&str>) = (stored.lines().collect(), generated.lines().collect());
    let mut report = format!(
        "{file} no longer matches what the code produces \
         ({} lines stored, {} generated).\n",
        a.len(),
        b.len()
    );
    let n = a.len().max(b.len());
    for i in 0..n {
        let (x, y) = (a.get(i).copied(), b.get(i).copied());
        if x != y {
            let (x, y) = (x.unwrap_or("<end of file>"), y.unwrap_or("<end of file>"));
            let col = x.bytes().zip(y.bytes()).take_while(|(p, q)| p == q).count();
            let name = y.split_once(": ").map_or("(comment)", |(name, _)| name);
            let _ = write!(
                report,
                "First difference at line {}, column {}, in `{name}`:\n  stored: {}\n  code:   {}\n",
                i + 1,
                col + 1,
                clip(x, col),
                clip(y, col)
            );
            break;
        }
    }
    if a == b {
        report.push_str("(Only line endings differ.)\n");
    }
    let _ = write!(
        report,
        "If the wire format changed on purpose, update PROTOCOL.md and regenerate with\n  \
         {REGENERATE_VAR}=1 cargo test --test vectors\n\
         Otherwise the code drifted from the protocol: a second implementation built \
         from PROTOCOL.md would no longer interoperate."
    );
    report
}

fn regenerating() -> bool {
    std::env::var(REGENERATE_VAR).as_deref() == Ok("1")
}

/// Write a vector file beside and rename it, so that no test reads half a file.
fn write_whole(path: &str, text: &str) {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
    eprintln!("{REGENERATE_VAR}=1: rewrote {path}");
}

#[test]
fn test_vectors_match_the_code_byte_for_byte() {
    let generated = generate();
    assert_eq!(
        generated,
        generate(),
        "generating the vectors twice gave different output: something draws from \
         a source other than the seeded generators"
    );
    if regenerating() {
        write_whole(VECTOR_FILE, &generated);
        return;
    }
    let stored = std::fs::read_to_string(VECTOR_FILE).unwrap_or_else(|e| {
        panic!(
            "cannot read {VECTOR_FILE}: {e}. Create it with {REGENERATE_VAR}=1 cargo test --test vectors"
        )
    });
    if stored != generated {
        panic!("{}", describe_difference("tests/vectors/handshake.txt", &stored, &generated));
    }
}

// ---------------------------------------------------------------- independent check

/// The stored vectors: `name: value` lines, in order, names unique.
struct Vectors(HashMap<String, String>, Vec<String>);

impl Vectors {
    fn load() -> Self {
        // While the file is being rewritten, check what is being written.
        let text = if regenerating() {
            generate()
        } else {
            std::fs::read_to_string(VECTOR_FILE).expect("vector file")
        };
        Vectors::parse(&text)
    }

    fn parse(text: &str) -> Self {
        let (mut map, mut order) = (HashMap::new(), Vec::new());
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = match line.split_once(": ") {
                Some(pair) => pair,
                None => (
                    line.strip_suffix(':')
                        .unwrap_or_else(|| panic!("line {}: not `name: value`", n + 1)),
                    "",
                ),
            };
            assert!(
                map.insert(name.to_string(), value.to_string()).is_none(),
                "line {}: {name} appears twice",
                n + 1
            );
            order.push(name.to_string());
        }
        Vectors(map, order)
    }

    fn text(&self, name: &str) -> &str {
        self.0.get(name).unwrap_or_else(|| panic!("vector file lacks `{name}`"))
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        unhex(name, self.text(name))
    }

    /// Fail, naming the field and showing both values in hex, unless `name` holds `actual`.
    fn expect(&self, name: &str, actual: &[u8]) {
        let stored = self.text(name);
        assert!(
            stored == hex(actual),
            "`{name}` in the vector file does not match the independent computation\n  \
             stored:   {stored}\n  computed: {}",
            hex(actual)
        );
    }
}

/// AES-256-CBC decryption written out block by block: P_i = D(C_i) xor C_(i-1), C_0 = IV.
fn cbc_decrypt(key: &[u8], iv: &[u8], ct: &[u8]) -> Vec<u8> {
    use aes::cipher::{BlockCipherDecrypt, KeyInit};
    let aes = aes::Aes256::new_from_slice(key).unwrap();
    let mut prev = iv;
    let mut out = Vec::with_capacity(ct.len());
    for block in ct.chunks(16) {
        let mut b = aes::Block::try_from(block).unwrap();
        aes.decrypt_block(&mut b);
        out.extend(b.iter().zip(prev).map(|(x, y)| x ^ y));
        prev = block;
    }
    out
}

/// Remove PKCS#7 padding, checking every padding byte.
fn unpad(mut padded: Vec<u8>, what: &str) -> Vec<u8> {
    let p = *padded.last().unwrap() as usize;
    assert!((1..=16).contains(&p), "{what}: bad padding length {p}");
    assert!(
        padded[padded.len() - p..].iter().all(|&b| b as usize == p),
        "{what}: bad padding bytes"
    );
    padded.truncate(padded.len() - p);
    padded
}

#[test]
fn test_vectors_open_with_an_independent_check() {
    use rsa::pkcs8::DecodePublicKey;
    let v = Vectors::load();
    let client_rsa = rsa_key(CLIENT_PEM);
    let server_rsa = rsa_key(SERVER_PEM);

    // The parties: keys, fingerprints, and the first draws of the generators.
    for (who, key) in [("client", &client_rsa), ("server", &server_rsa)] {
        let spki = spki_der(key);
        v.expect(&format!("{who}.spki"), &spki);
        assert_eq!(v.text(&format!("{who}.fingerprint")), fingerprint(&spki));
        assert_eq!(v.text(&format!("{who}.fingerprint")).len(), 50);
    }
    let (client_seed, server_seed) = (v.bytes("client.seed"), v.bytes("server.seed"));
    v.expect("client_hello.nonce", &drbg_block(&client_seed, 0));
    v.expect("client_auth.dh_exponent", &dh_exponent(&client_seed));
    v.expect("client_auth.secret", &drbg_block(&client_seed, 3));
    v.expect("server_hello.nonce", &drbg_block(&server_seed, 0));
    v.expect("server_auth.dh_exponent", &dh_exponent(&server_seed));

    // Handshake frames, parsed by hand.
    let frames =
        ["client_hello.frame", "server_hello.frame", "client_auth.frame", "server_auth.frame"]
            .map(|name| v.bytes(name));
    let [ch, sh, ca, sa] =
        [0, 1, 2, 3].map(|i| frame_body(&frames[i], MAX_HANDSHAKE_FRAME, "frame"));
    let (nonce_c, spki_c) = parse_hello(ch, CLIENT_HELLO, "ClientHello");
    let (nonce_s, spki_s) = parse_hello(sh, SERVER_HELLO, "ServerHello");
    v.expect("client_hello.nonce", nonce_c);
    v.expect("server_hello.nonce", nonce_s);
    v.expect("client.spki", spki_c);
    v.expect("server.spki", spki_s);
    let [wrapped_c, share_c, sig_c] = parse_auth(ca, CLIENT_AUTH, "ClientAuth");
    let [wrapped_s, share_s, sig_s] = parse_auth(sa, SERVER_AUTH, "ServerAuth");
    for field in [wrapped_c, sig_c, wrapped_s, sig_s] {
        assert_eq!(field.len(), 256, "a 2048-bit RSA block is 256 bytes");
    }

    // The ephemeral exchange: each share is 2^x mod p for the exponent drawn
    // after the nonce, 1 < share < p - 1, and both sides reach one secret.
    let p = unhex("p", FFDHE3072_P);
    assert_eq!(
        hex(&sha256(&[&p])),
        "0eaf67db3a839156d5013494a5318a772b5697d270d721f37f092efc69ea5a17"
    );
    let mut p_minus_1 = p.clone();
    *p_minus_1.last_mut().unwrap() -= 1;
    let one = [&[0u8; DH_LEN - 1][..], &[1]].concat();
    for (share, seed, name) in
        [(share_c, &client_seed, "client_auth.share"), (share_s, &server_seed, "server_auth.share")]
    {
        v.expect(name, share);
        assert!(share > &one[..] && share < &p_minus_1[..], "{name}: out of range");
        assert_eq!(dh_pow(&[2], &dh_exponent(seed)), share, "{name}: not 2^exponent mod p");
    }
    let dh_secret = dh_pow(share_s, &dh_exponent(&client_seed));
    assert_eq!(dh_secret, dh_pow(share_c, &dh_exponent(&server_seed)));
    v.expect("dh.secret", &dh_secret);

    // Transcript and signatures.
    let h1 = transcript_hash(&[ch, sh, wrapped_c, share_c]);
    let h2 = transcript_hash(&[ch, sh, wrapped_c, share_c, sig_c, wrapped_s, share_s]);
    let h3 = transcript_hash(&[ch, sh, wrapped_c, share_c, sig_c, wrapped_s, share_s, sig_s]);
    v.expect("transcript.h1", &h1);
    v.expect("transcript.h2", &h2);
    v.expect("transcript.h3", &h3);
    let client_pub = rsa::PublicKey::from_public_key_der(spki_c).unwrap();
    let server_pub = rsa::PublicKey::from_public_key_der(spki_s).unwrap();
    client_pub
        .pss_verify::<sha2::Sha256>(&[&b"ovtp/2 client signature"[..], &h1].concat(), sig_c)
        .expect("client signature over label || h1");
    server_pub
        .pss_verify::<sha2::Sha256>(&[&b"ovtp/2 server signature"[..], &h2].concat(), sig_s)
        .expect("server signature over label || h2");
    // Each signature is bound to its own label.
    assert!(
        client_pub
            .pss_verify::<sha2::Sha256>(&[&b"ovtp/2 server signature"[..], &h1].concat(), sig_c)
            .is_err()
    );

    // Key transport and key schedule.
    let secret_c = oaep_unwrap(&server_rsa, wrapped_c);
    let secret_s = oaep_unwrap(&client_rsa, wrapped_s);
    v.expect("client_auth.secret", &secret_c);
    v.expect("server_auth.secret", &secret_s);
    v.expect("server_auth.secret", &drbg_block(&server_seed, 3));
    assert_eq!((secret_c.len(), secret_s.len()), (32, 32));

    // Both auth frames reproduce byte for byte: each side's OAEP seed is block 4
    // of its generator and its PSS salt block 5.
    let reproduce = |seed: &[u8], to: &rsa::PublicKey, signer: &rsa::PrivateKey, secret, msg| {
        let wrapped = to
            .oaep_encrypt_with_rng::<sha2::Sha256, _>(
                &mut Scripted(Some(drbg_block(seed, 4))),
                secret,
            )
            .unwrap();
        let signature = signer
            .pss_sign_with_rng::<sha2::Sha256, _>(&mut Scripted(Some(drbg_block(seed, 5))), msg)
            .unwrap();
        (wrapped, signature)
    };
    let client_msg = [&b"ovtp/2 client signature"[..], &h1].concat();
    let server_msg = [&b"ovtp/2 server signature"[..], &h2].concat();
    assert!(
        reproduce(&client_seed, &server_pub, &client_rsa, &secret_c, &client_msg)
            == (wrapped_c.to_vec(), sig_c.to_vec()),
        "ClientAuth: OAEP with client block 4 as seed and PSS with client block 5 as salt \
         do not give wrapped_c and sig_c"
    );
    assert!(
        reproduce(&server_seed, &client_pub, &server_rsa, &secret_s, &server_msg)
            == (wrapped_s.to_vec(), sig_s.to_vec()),
        "ServerAuth: OAEP with server block 4 as seed and PSS with server block 5 as salt \
         do not give wrapped_s and sig_s"
    );
    let ikm = [secret_c, secret_s, dh_secret].concat();
    v.expect("hkdf.ikm", &ikm);
    v.expect("hkdf.prk", &hmac_sha256(&h3, &[&ikm]));
    let c2s_enc = hkdf(&h3, &ikm, b"ovtp/2 c2s enc");
    let c2s_mac = hkdf(&h3, &ikm, b"ovtp/2 c2s mac");
    let s2c_enc = hkdf(&h3, &ikm, b"ovtp/2 s2c enc");
    let s2c_mac = hkdf(&h3, &ikm, b"ovtp/2 s2c mac");
    v.expect("keys.c2s_enc", &c2s_enc);
    v.expect("keys.c2s_mac", &c2s_mac);
    v.expect("keys.s2c_enc", &s2c_enc);
    v.expect("keys.s2c_mac", &s2c_mac);

    // Records: tag recomputed over the MAC input, ciphertext decrypted by hand.
    let mut next_seq = HashMap::from([("c2s", 0u64), ("s2c", 0u64)]);
    let mut messages: HashMap<&str, Vec<(u8, Vec<u8>)>> = HashMap::new();
    let mut partial: HashMap<&str, (u8, Vec<u8>)> = HashMap::new();
    let mut count = 0;
    for name in v.1.iter().filter(|n| n.starts_with("record.") && n.ends_with(".frame")) {
        let parts: Vec<&str> = name.split('.').collect();
        let (dir, seq): (&str, u64) = match parts[..] {
            ["record", d @ ("c2s" | "s2c"), s, "frame"] => (d, s.parse().unwrap()),
            _ => panic!("unexpected record name {name}"),
        };
        let expected_seq = next_seq.get_mut(dir).unwrap();
        assert_eq!(seq, *expected_seq, "{name}: records of a direction are numbered from 0");
        *expected_seq += 1;
        let (dir_byte, enc, mac) = match dir {
            "c2s" => (DIR_C2S, &c2s_enc, &c2s_mac),
            _ => (DIR_S2C, &s2c_enc, &s2c_mac),
        };
        let frame = v.bytes(name);
        let body = frame_body(&frame, MAX_RECORD_FRAME, "record");
        assert!(body.len() >= 2 + 16 + 16 + 32, "{name}: too short");
        let ct_len = body.len() - 2 - 16 - 32;
        assert!(ct_len.is_multiple_of(16), "{name}: ciphertext not whole blocks");
        let mut c = Cursor(body, "record");
        let (rtype, flags) = (c.u8(), c.u8());
        let iv = c.take(16);
        let ct = c.take(ct_len);
        let tag = c.take(32);
        c.end();
        let expected_tag = hmac_sha256(
            mac,
            &[
                &[dir_byte],
                &seq.to_be_bytes(),
                &[rtype, flags],
                &u32::try_from(ct_len).unwrap().to_be_bytes(),
                iv,
                ct,
            ],
        );
        assert_eq!(tag, expected_tag, "{name}: tag");
        // The same bytes under the other direction's byte, or at the next sequence number, do not verify.
        let ct_len_be = u32::try_from(ct_len).unwrap().to_be_bytes();
        for (d, s) in [(3 - dir_byte, seq), (dir_byte, seq + 1)] {
            let other =
                hmac_sha256(mac, &[&[d], &s.to_be_bytes(), &[rtype, flags], &ct_len_be, iv, ct]);
            assert_ne!(tag, other, "{name}: tag does not bind direction and sequence");
        }
        let plaintext = unpad(cbc_decrypt(enc, iv, ct), name);
        assert!(plaintext.len() <= MAX_RECORD_PLAINTEXT, "{name}: plaintext over the limit");
        let plain_name = name.replace(".frame", ".plaintext");
        assert_eq!(plaintext, v.bytes(&plain_name), "{name}: decrypts to {plain_name}");
        assert_eq!(ct_len, (plaintext.len() / 16 + 1) * 16, "{name}: PKCS#7 always pads");

        // Messages: records of one type until FIN.
        let entry = partial.entry(dir).or_insert((rtype, Vec::new()));
        assert_eq!(entry.0, rtype, "{name}: record type changed inside a message");
        entry.1.extend_from_slice(&plaintext);
        assert_eq!(flags & !FIN, 0, "{name}: unknown flags");
        if flags & FIN != 0 {
            let done = partial.remove(dir).unwrap();
            messages.entry(dir).or_default().push(done);
        }
        count += 1;
    }
    assert_eq!(count, 20, "expected the 20 records of the vector file");
    assert!(partial.is_empty(), "a message lacks its FIN record");

    // Message layouts, in the order each side sent them.
    let types = |dir: &str| messages[dir].iter().map(|m| m.0).collect::<Vec<_>>();
    assert_eq!(
        types("c2s"),
        [
            REC_REQUEST,     // text "hello"
            REC_REQUEST,     // data 00..ff
            REC_REQUEST,     // text "two records", in two records
            REC_REQUEST,     // PUT hello.txt
            REC_FILE_PREFIX, // the digest of its first 40 bytes
            REC_FILE_DATA,   // the bytes after them
            REC_FILE_END,    // its length and digest
            REC_REQUEST,     // GET hello.txt
            REC_REQUEST,     // DIGEST hello.txt
        ]
    );
    assert_eq!(
        types("s2c"),
        [
            REC_RESPONSE,   // to "hello"
            REC_RESPONSE,   // to the data
            REC_FILE_READY, // PUT: how much is held
            REC_FILE_READY, // PUT: where to start, once the prefix is proven
            REC_RESPONSE,   // PUT: the final answer
            REC_FILE_READY, // GET: size and start
            REC_FILE_DATA,  // GET: the bytes
            REC_FILE_END,   // GET: length and digest; no response follows
            REC_RESPONSE,   // DIGEST: size and digest
            REC_ALERT,      // shutting down
        ]
    );
    let c2s: Vec<&[u8]> = messages["c2s"].iter().map(|m| m.1.as_slice()).collect();
    let s2c: Vec<&[u8]> = messages["s2c"].iter().map(|m| m.1.as_slice()).collect();

    // Requests: id [16] || op || body.
    let requests: Vec<(&[u8], u8, &[u8])> = [0, 1, 2, 3, 7, 8]
        .iter()
        .map(|&i| {
            let mut c = Cursor(c2s[i], "request");
            (c.take(16), c.u8(), c.0)
        })
        .collect();
    let ops: Vec<u8> = requests.iter().map(|r| r.1).collect();
    assert_eq!(ops, [OP_TEXT, OP_DATA, OP_TEXT, OP_PUT, OP_GET, OP_DIGEST]);
    assert_eq!(requests[0].2, b"hello");
    assert_eq!(requests[1].2, (0..=255u8).collect::<Vec<_>>());
    assert_eq!(requests[2].2, b"two records");
    let id = |i: usize| requests[i].0;

    // Responses: id [16] || status u16 || body, echoing the request's id.
    let reply = |m: &'static str, bytes| {
        let mut c = Cursor(bytes, m);
        (c.take(16), c.u16(), c.0)
    };
    assert_eq!(reply("response", s2c[0]), (id(0), 0, &b"ok: hello"[..]));
    assert_eq!(
        reply("response", s2c[1]),
        (id(1), 7, &b""[..]),
        "an empty body leaves id and status"
    );

    // The file: what the records must carry.
    let content = v.bytes("file.content");
    v.expect("file.sha256", &sha256(&[&content]));
    let size = content.len() as u64;

    // PUT: name vec16 || size u64 || flags u8.
    let mut c = Cursor(requests[3].2, "PUT");
    assert_eq!(c.vec16(), FILE_NAME.as_bytes());
    assert_eq!(c.u64(), size);
    assert_eq!(c.u8(), XFER_RESUME);
    c.end();
    // FILE_READY of a PUT: offset u64 alone, the bytes of the partial file held.
    let mut c = Cursor(s2c[2], "FILE_READY (PUT)");
    let offset = c.u64();
    assert_eq!(offset, HELD as u64);
    c.end();
    // FILE_PREFIX: the client's SHA-256 of its own first `offset` bytes.
    let mut c = Cursor(c2s[4], "FILE_PREFIX");
    assert_eq!(c.take(32), sha256(&[&content[..HELD]]));
    c.end();
    // The second FILE_READY: the agreed start, `offset` (or 0 to start over).
    let mut c = Cursor(s2c[3], "FILE_READY (PUT, agreed)");
    let start = c.u64();
    assert_eq!(start, offset, "the prefix matched, the data continues after it");
    c.end();
    // FILE_DATA: offset u64 || bytes, from the agreed start; FILE_END: total u64
    // || SHA-256 of the whole file, prefix included.
    let mut c = Cursor(c2s[5], "FILE_DATA (PUT)");
    assert_eq!(c.u64(), start);
    assert_eq!(c.0, &content[start as usize..]);
    let mut c = Cursor(c2s[6], "FILE_END (PUT)");
    assert_eq!(c.u64(), size);
    assert_eq!(c.take(32), sha256(&[&content]));
    c.end();
    assert_eq!(reply("response", s2c[4]), (id(3), 0, PUT_REPLY));
    let fingerprint = v.text("client.fingerprint");
    v.expect("file.partial_name", partial_name(fingerprint).as_bytes());

    // GET: name vec16 || offset u64 || prefix_sha256 [32] || flags u8.
    let mut c = Cursor(requests[4].2, "GET");
    assert_eq!(c.vec16(), FILE_NAME.as_bytes());
    let offset = c.u64();
    assert_eq!((offset, c.take(32)), (0, &sha256(&[])[..]));
    assert_eq!(c.u8(), XFER_RESUME);
    c.end();
    // FILE_READY of a GET: size u64 || start u64 (start is the offered offset or 0).
    let mut c = Cursor(s2c[5], "FILE_READY (GET)");
    assert_eq!(c.u64(), size);
    let start = c.u64();
    assert!(start == offset || start == 0);
    c.end();
    let mut c = Cursor(s2c[6], "FILE_DATA (GET)");
    assert_eq!(c.u64(), start);
    assert_eq!(c.0, &content[start as usize..]);
    let mut c = Cursor(s2c[7], "FILE_END (GET)");
    assert_eq!(c.u64(), size);
    assert_eq!(c.take(32), sha256(&[&content]));
    c.end();

    // DIGEST: name vec16; its reply body: size u64 || sha256 [32].
    let mut c = Cursor(requests[5].2, "DIGEST");
    assert_eq!(c.vec16(), FILE_NAME.as_bytes());
    c.end();
    let (rid, status, body) = reply("response", s2c[8]);
    assert_eq!((rid, status), (id(5), 0));
    let mut c = Cursor(body, "DIGEST reply");
    assert_eq!(c.u64(), size);
    assert_eq!(c.take(32), sha256(&[&content]));
    c.end();

    // The alert: code u8 || message vec16.
    let mut c = Cursor(s2c[9], "alert");
    assert_eq!(c.u8(), 5);
    assert_eq!(c.vec16(), b"server is shutting down");
    c.end();
}

// ---------------------------------------------------------------- live check

/// Read one frame body from a socket (length checked before allocating).
fn read_frame(s: &mut std::net::TcpStream, max: usize) -> Vec<u8> {
    use std::io::Read;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("frame length");
    let len = u32::from_be_bytes(len) as usize;
    assert!(len > 0 && len <= max, "frame length {len}");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("frame body");
    body
}

#[test]
fn file_exchange_vectors_are_what_a_real_server_speaks() {
    use ovtp::{AuthorizedKeys, Payload, Reply, Request, ServeFiles, Server, ServerConfig};
    use std::io::Write;
    let v = Vectors::load();
    let client = KeyPair::from_pem(CLIENT_PEM).unwrap();
    let server_keys = KeyPair::from_pem(SERVER_PEM).unwrap();
    let dir = std::env::temp_dir().join(format!("ovtp-vectors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let files = dir.join("files");
    let mut builder = std::fs::DirBuilder::new();
    // 0755 whatever the umask: a server refuses a group-writable files directory.
    std::os::unix::fs::DirBuilderExt::mode(builder.recursive(true), 0o755);
    builder.create(&files).unwrap();
    let authorized = AuthorizedKeys::new(dir.join("authorized_keys"));
    authorized.add(client.public(), "vector client").unwrap();
    let config = ServerConfig { files_dir: Some(files.clone()), ..ServerConfig::default() };
    let server = Server::bind_with(
        "127.0.0.1:0",
        server_keys.clone(),
        authorized,
        config,
        ServeFiles(|req: Request<'_>| match req.payload {
            Payload::FileReceived { .. } => Reply::ok(PUT_REPLY),
            _ => Reply::ok(""),
        }),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let stopper = server.stopper().unwrap();
    let running = std::thread::spawn(move || server.run());
    // The 40 bytes an interrupted upload by this client key left, under the
    // name PROTOCOL.md 7.7.7 gives this key's partial file of hello.txt.
    let partial = files.join(String::from_utf8(v.bytes("file.partial_name")).unwrap());
    assert_eq!(partial, ovtp::upload_partial_path(&files.join(FILE_NAME), &client.fingerprint()));
    std::fs::write(&partial, &v.bytes("file.content")[..HELD]).unwrap();

    // A handshake through the public state machines, over a real socket.
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut rng = Rng::system();
    let (state, hello) = ClientStart::new(&client, &mut rng).unwrap();
    sock.write_all(&hello).unwrap();
    let body = read_frame(&mut sock, MAX_HANDSHAKE_FRAME);
    let (state, auth) = state
        .read_server_hello(&body, &mut rng, |k| {
            assert!(k == server_keys.public());
            Ok(())
        })
        .unwrap();
    sock.write_all(&auth).unwrap();
    let body = read_frame(&mut sock, MAX_HANDSHAKE_FRAME);
    let mut session = state.read_server_auth(&body, &mut rng).unwrap();

    // The file exchange, in the vector file's order: send the client's records
    // (type, flags and plaintext as stored), compare each server record with the
    // stored one. The closing alert is left out (a server only sends it when stopping).
    let first = v.1.iter().position(|n| n == "file.content").unwrap();
    let mut replayed = 0;
    for name in v.1[first..].iter().filter(|n| n.starts_with("record.") && n.ends_with(".frame")) {
        let frame = v.bytes(name);
        let (rtype, flags) = (frame[4], frame[5]);
        if rtype == REC_ALERT {
            continue;
        }
        let plaintext = v.bytes(&name.replace(".frame", ".plaintext"));
        if name.starts_with("record.c2s.") {
            let mut out = Vec::new();
            session.sealer().seal(&mut rng, rtype, flags, &plaintext, &mut out).unwrap();
            sock.write_all(&out).unwrap();
        } else {
            let mut body = read_frame(&mut sock, MAX_RECORD_FRAME);
            let got = session.opener().open(&mut body).expect("server record opens");
            assert_eq!(
                (got.rtype, got.flags, hex(got.plaintext)),
                (rtype, flags, hex(&plaintext)),
                "the server's record differs from `{name}`"
            );
        }
        replayed += 1;
    }
    assert_eq!(replayed, 13);
    assert_eq!(
        std::fs::read(files.join(FILE_NAME)).unwrap(),
        v.bytes("file.content"),
        "the uploaded file"
    );
    assert!(!partial.exists(), "the partial file became the file");
    drop(sock);
    stopper.stop();
    running.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- negative vectors

const NEGATIVE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/negative");

/// Plaintext handshake frame type of an alert (PROTOCOL.md 4.6).
const PLAIN_ALERT: u8 = 0x15;

// The receivers a negative vector is fed to (its `at:` line): who receives the
// frames, and what that receiver expects next.
/// The server, before anything was received: the frame is its first.
const AT_SERVER_HELLO: &str = "server ClientHello";
/// The server, after handshake.txt's ClientHello (it answered with handshake.txt's ServerHello).
const AT_SERVER_AUTH: &str = "server ClientAuth";
/// The client, after sending handshake.txt's ClientHello.
const AT_CLIENT_HELLO: &str = "client ServerHello";
/// The client, after handshake.txt's ServerHello (it answered with handshake.txt's ClientAuth).
const AT_CLIENT_AUTH: &str = "client ServerAuth";
/// The server's record opener of handshake.txt's session (c2s keys), at sequence number 0.
const AT_SERVER_RECORD: &str = "server record";
/// The client's record opener of handshake.txt's session (s2c keys), at sequence number 0.
const AT_CLIENT_RECORD: &str = "client record";

// What this implementation does after each error (the `# then:` line).
const THEN_ALERT_2: &str = "the server answers plaintext alert 2 (Unauthorized) and closes";
const THEN_ALERT_3: &str = "the server answers plaintext alert 3 (Version) and closes";
const THEN_ALERT_4: &str = "the server answers plaintext alert 4 (HandshakeFailed) and closes";
const THEN_ALERT_6: &str = "the server answers plaintext alert 6 (TooLarge) and closes";
const THEN_ALERT_8: &str = "the server answers plaintext alert 8 (KeyShare) and closes";
const THEN_CLIENT_CLOSES: &str = "the client closes the connection without an alert";
const THEN_SILENT_CLOSE: &str = "the server closes the connection without an alert";

const NEGATIVE_HEADER: &str = "\
ovtp negative test vector: frames that a receiver must reject (PROTOCOL.md 15.2).
Made by tests/vectors.rs from tests/vectors/handshake.txt; do not edit by hand
(OVTP_REGENERATE_VECTORS=1 cargo test --test vectors rewrites the folder).
`at` names the receiver and what it expects next; the `frame` lines (whole
frames, length prefix included) are fed to it in order: all but the last are
accepted, the last fails with the error kind of `expect`. `# then` says what
this implementation does next. Body offsets count from the first byte after
the length prefix.";

/// Frames that a receiver must reject, derived from the positive vectors by a
/// documented edit, with the error they must produce.
struct Negative {
    file: &'static str,
    what: &'static str,
    how: &'static str,
    then: &'static str,
    at: &'static str,
    expect: &'static str,
    frames: Vec<Vec<u8>>,
}

impl Negative {
    fn text(&self) -> String {
        let mut out = Out::default();
        out.comment(&format!(
            "{NEGATIVE_HEADER}\n\n{}\n{}\n{}",
            wrap("what: ", self.what),
            wrap("how: ", self.how),
            wrap("then: ", self.then)
        ));
        out.text("at", self.at);
        out.text("expect", self.expect);
        for frame in &self.frames {
            out.bytes("frame", frame);
        }
        out.0
    }
}

/// `label` and `text`, wrapped at 78 columns (with the `# ` of a comment).
fn wrap(label: &str, text: &str) -> String {
    let mut lines = vec![label.trim_end().to_string()];
    for word in text.split(' ') {
        let line = lines.last_mut().unwrap();
        if line.len() + 1 + word.len() > 76 {
            lines.push(format!("  {word}"));
        } else {
            line.push(' ');
            line.push_str(word);
        }
    }
    lines.join("\n")
}

/// `body` with its 4-byte length prefix.
fn framed(body: &[u8]) -> Vec<u8> {
    [&u32::try_from(body.len()).unwrap().to_be_bytes()[..], body].concat()
}

/// A length prefix announcing `len` bytes, without the body.
fn length_prefix(len: usize) -> Vec<u8> {
    u32::try_from(len).unwrap().to_be_bytes().to_vec()
}

/// handshake.txt's ClientAuth (`client`) or ServerAuth with its key share
/// replaced by `share`, signed again over the transcript that holds it (with
/// the signer's PSS salt, block 5): only the share is wrong.
fn auth_with_share(v: &Vectors, client: bool, share: &[u8]) -> Vec<u8> {
    let body = |name: &str| v.bytes(name)[4..].to_vec();
    let (ch, sh, ca, sa) = (
        body("client_hello.frame"),
        body("server_hello.frame"),
        body("client_auth.frame"),
        body("server_auth.frame"),
    );
    let [wrapped_c, share_c, sig_c] = parse_auth(&ca, CLIENT_AUTH, "ClientAuth");
    let [wrapped_s, ..] = parse_auth(&sa, SERVER_AUTH, "ServerAuth");
    let (who, pem, label, frame_type, wrapped, elements) = if client {
        let elements = vec![&ch[..], &sh, wrapped_c, share];
        ("client", CLIENT_PEM, &b"ovtp/2 client signature"[..], CLIENT_AUTH, wrapped_c, elements)
    } else {
        let elements = vec![&ch[..], &sh, wrapped_c, share_c, sig_c, wrapped_s, share];
        ("server", SERVER_PEM, &b"ovtp/2 server signature"[..], SERVER_AUTH, wrapped_s, elements)
    };
    let salt = drbg_block(&v.bytes(&format!("{who}.seed")), 5);
    let signature = rsa_key(pem)
        .pss_sign_with_rng::<sha2::Sha256, _>(
            &mut Scripted(Some(salt)),
            &[label, &transcript_hash(&elements)].concat(),
        )
        .unwrap();
    let header = [&MAGIC[..], &VERSION.to_be_bytes(), &[frame_type]].concat();
    framed(&[&header[..], &vec16(wrapped), share, &vec16(&signature)].concat())
}

/// A copy of `frame` with body byte `at` XORed with `mask`.
fn flipped(frame: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[4 + at] ^= mask;
    out
}

/// The negative vectors, each made from handshake.txt's frames by the edit its `how` describes.
fn negatives(v: &Vectors) -> Vec<Negative> {
    let ch = v.bytes("client_hello.frame");
    let ca = v.bytes("client_auth.frame");
    let sa = v.bytes("server_auth.frame");
    let record = |name: &str| v.bytes(&format!("record.{name}.frame"));
    let ch_body = &ch[4..];
    // A ClientHello of handshake.txt with another `pk_c` field (body offset 39).
    let hello_with_key = |key: &[u8]| framed(&[&ch_body[..39], &vec16(key)].concat());
    let plain_alert = |code: u8, message: &str| {
        framed(
            &[&MAGIC[..], &VERSION.to_be_bytes(), &[PLAIN_ALERT, code], &vec16(message.as_bytes())]
                .concat(),
        )
    };
    let spki_c = v.bytes("client.spki");
    let too_long_key = [&spki_c[..], &vec![0u8; 1025 - spki_c.len()]].concat();
    let c2s0 = record("c2s.0");
    // In a record frame the ciphertext runs from byte 22 (after the length prefix,
    // type, flags and IV) to the tag, which is the last 32 bytes.
    let (ct_start, ct_end) = (4 + 2 + 16, c2s0.len() - 32);
    let wrapped_c_last = 9 + 256 - 1; // body offset of wrapped_c's last byte (2048-bit keys)
    let p = unhex("p", FFDHE3072_P);
    let minus = |d: u8| {
        let mut n = p.clone();
        *n.last_mut().unwrap() -= d; // p ends in ff
        n
    };
    let one = [&[0u8; DH_LEN - 1][..], &[1]].concat();
    let negative = |file, what, how, then, at, expect, frames| Negative {
        file,
        what,
        how,
        then,
        at,
        expect,
        frames,
    };
    vec![
        negative(
            "handshake-bad-magic.txt",
            "a ClientHello whose magic is \"OVTQ\"",
            "client_hello.frame with body byte 3 (the last byte of the magic) changed from 50 to 51",
            THEN_ALERT_3,
            AT_SERVER_HELLO,
            "Version 0",
            vec![flipped(&ch, 3, 0x01)],
        ),
        negative(
            "handshake-wrong-version.txt",
            "a ClientHello of protocol version 1, as a version-1 peer sends it (the hello layout \
             did not change, so only the version differs)",
            "client_hello.frame with body bytes 4-5 (the version) changed from 00 02 to 00 01",
            THEN_ALERT_3,
            AT_SERVER_HELLO,
            "Version 1",
            vec![flipped(&ch, 5, 0x03)],
        ),
        negative(
            "handshake-unknown-frame-type.txt",
            "a ClientHello whose frame type is 9, which no handshake frame has",
            "client_hello.frame with body byte 6 (the type) changed from 01 to 09",
            THEN_ALERT_4,
            AT_SERVER_HELLO,
            "Malformed",
            vec![flipped(&ch, 6, 0x08)],
        ),
        negative(
            "handshake-hello-trailing-byte.txt",
            "a ClientHello with one byte after its last field",
            "client_hello.frame with a byte 00 appended to the body and the length prefix raised by one",
            THEN_ALERT_4,
            AT_SERVER_HELLO,
            "Malformed",
            vec![framed(&[ch_body, &[0]].concat())],
        ),
        negative(
            "handshake-public-key-too-long.txt",
            "a ClientHello whose public key field is 1,025 bytes, one more than MAX_PUBLIC_KEY_DER: \
             a size error, not a key error, because the field's length is refused before its content is read",
            "client_hello.frame with pk_c (body offset 39) replaced by client.spki followed by zero bytes, \
             1,025 bytes in all; length prefixes adjusted",
            THEN_ALERT_6,
            AT_SERVER_HELLO,
            "TooLarge",
            vec![hello_with_key(&too_long_key)],
        ),
        negative(
            "handshake-public-key-truncated.txt",
            "a ClientHello whose public key is not a whole SubjectPublicKeyInfo",
            "client_hello.frame with the last byte of pk_c removed (a 293-byte key); length prefixes adjusted",
            THEN_ALERT_4,
            AT_SERVER_HELLO,
            "Key",
            vec![hello_with_key(&spki_c[..spki_c.len() - 1])],
        ),
        negative(
            "handshake-unauthorized-key.txt",
            "a well-formed ClientHello naming a key that the server does not authorize \
             (the server of these vectors authorizes client.spki only)",
            "client_hello.frame with pk_c replaced by server.spki (same length)",
            THEN_ALERT_2,
            AT_SERVER_HELLO,
            "NotAuthorized",
            vec![hello_with_key(&v.bytes("server.spki"))],
        ),
        negative(
            "frame-empty.txt",
            "a frame of length 0",
            "the length prefix 00000000 alone",
            THEN_ALERT_4,
            AT_SERVER_HELLO,
            "Malformed",
            vec![vec![0; 4]],
        ),
        negative(
            "frame-handshake-length-over-limit.txt",
            "a handshake frame announced one byte longer than MAX_HANDSHAKE_FRAME (16,384): refused \
             from its length prefix alone, before the body is read or allocated",
            "the length prefix 16,385 (00004001) without a body",
            THEN_ALERT_6,
            AT_SERVER_HELLO,
            "TooLarge",
            vec![length_prefix(MAX_HANDSHAKE_FRAME + 1)],
        ),
        negative(
            "frame-record-length-over-limit.txt",
            "a record frame announced one byte longer than MAX_RECORD_FRAME (1,048,706): refused \
             from its length prefix alone, before the body is read or allocated",
            "the length prefix 1,048,707 (00100083) without a body",
            "between requests the server answers encrypted alert 6 (TooLarge), then closes with a \
             lingering close (PROTOCOL.md 7.6); inside a file exchange it closes without an alert",
            AT_SERVER_RECORD,
            "TooLarge",
            vec![length_prefix(MAX_RECORD_FRAME + 1)],
        ),
        negative(
            "handshake-client-auth-signature-flipped.txt",
            "a ClientAuth whose signature has one bit flipped",
            "client_auth.frame with the low bit of its last byte (the last byte of sig_c) flipped",
            THEN_ALERT_4,
            AT_SERVER_AUTH,
            "BadSignature",
            vec![flipped(&ca, ca.len() - 5, 0x01)],
        ),
        negative(
            "handshake-client-auth-wrapped-secret-flipped.txt",
            "a ClientAuth whose wrapped secret has one bit flipped: the signature covers it (H1) and \
             is verified before anything is decrypted, so this is a signature error",
            "client_auth.frame with the low bit of body byte 264 (the last byte of wrapped_c) flipped",
            THEN_ALERT_4,
            AT_SERVER_AUTH,
            "BadSignature",
            vec![flipped(&ca, wrapped_c_last, 0x01)],
        ),
        negative(
            "handshake-client-share-one.txt",
            "a ClientAuth whose key share is 1, validly signed: 1^x = 1 for every exponent, so the \
             Diffie-Hellman secret would be known to anyone",
            "client_auth.frame with share_c (body offset 265, 384 bytes) replaced by 00..0001, and \
             sig_c made again over the new H1 with the client's PSS salt (block 5)",
            THEN_ALERT_8,
            AT_SERVER_AUTH,
            "BadKeyShare",
            vec![auth_with_share(v, true, &one)],
        ),
        negative(
            "handshake-client-share-p-minus-1.txt",
            "a ClientAuth whose key share is p - 1, validly signed: (p-1)^x is 1 or p - 1",
            "client_auth.frame with share_c replaced by p - 1 and sig_c made again over the new H1",
            THEN_ALERT_8,
            AT_SERVER_AUTH,
            "BadKeyShare",
            vec![auth_with_share(v, true, &minus(1))],
        ),
        negative(
            "handshake-client-share-p.txt",
            "a ClientAuth whose key share is p itself, validly signed: no share may be p or more",
            "client_auth.frame with share_c replaced by p and sig_c made again over the new H1",
            THEN_ALERT_8,
            AT_SERVER_AUTH,
            "BadKeyShare",
            vec![auth_with_share(v, true, &p)],
        ),
        negative(
            "handshake-server-share-too-large.txt",
            "a ServerAuth whose key share is 2^3072 - 1 (all ones, above p), validly signed",
            "server_auth.frame with share_s (body offset 265) replaced by 384 bytes ff, and sig_s \
             made again over the new H2 with the server's PSS salt (block 5)",
            THEN_CLIENT_CLOSES,
            AT_CLIENT_AUTH,
            "BadKeyShare",
            vec![auth_with_share(v, false, &[0xff; DH_LEN])],
        ),
        negative(
            "handshake-client-alert.txt",
            "a plaintext alert 4 (HandshakeFailed) from the client in place of its ClientAuth",
            "made from PROTOCOL.md 4.6: OVTP, version 2, type 15, code 04, message \"handshake failed\"",
            THEN_ALERT_4,
            AT_SERVER_AUTH,
            "Refused 4",
            vec![plain_alert(4, "handshake failed")],
        ),
        negative(
            "handshake-server-auth-signature-flipped.txt",
            "a ServerAuth whose signature has one bit flipped",
            "server_auth.frame with the low bit of its last byte (the last byte of sig_s) flipped",
            THEN_CLIENT_CLOSES,
            AT_CLIENT_AUTH,
            "BadSignature",
            vec![flipped(&sa, sa.len() - 5, 0x01)],
        ),
        negative(
            "handshake-alert-unauthorized.txt",
            "a plaintext alert 2 (Unauthorized) in place of the ServerHello, as a server sends it \
             to a key that is not in its authorized_keys",
            "made from PROTOCOL.md 4.6: OVTP, version 2, type 15, code 02, message \
             \"client key is not in authorized_keys\"",
            THEN_CLIENT_CLOSES,
            AT_CLIENT_HELLO,
            "Refused 2",
            vec![plain_alert(2, "client key is not in authorized_keys")],
        ),
        negative(
            "record-tag-bit-flipped.txt",
            "a record whose tag has one bit flipped",
            "record.c2s.0.frame with the low bit of its last byte (the last byte of the tag) flipped",
            THEN_SILENT_CLOSE,
            AT_SERVER_RECORD,
            "BadRecord",
            vec![flipped(&c2s0, c2s0.len() - 5, 0x01)],
        ),
        negative(
            "record-ciphertext-not-whole-blocks.txt",
            "a record whose ciphertext is 31 bytes, not a multiple of 16",
            "record.c2s.0.frame with the last ciphertext byte (the one before the tag) removed; \
             length prefix lowered by one",
            THEN_SILENT_CLOSE,
            AT_SERVER_RECORD,
            "BadRecord",
            vec![framed(&[&c2s0[4..ct_end - 1], &c2s0[ct_end..]].concat())],
        ),
        negative(
            "record-no-ciphertext.txt",
            "a record without ciphertext: a 50-byte body, below the 66 of MIN_RECORD_FRAME",
            "record.c2s.0.frame with its whole ciphertext removed; length prefix adjusted",
            THEN_SILENT_CLOSE,
            AT_SERVER_RECORD,
            "BadRecord",
            vec![framed(&[&c2s0[4..ct_start], &c2s0[ct_end..]].concat())],
        ),
        negative(
            "record-replayed.txt",
            "the same record twice: the second copy was sealed with sequence number 0, and 1 is due",
            "record.c2s.0.frame, twice",
            THEN_SILENT_CLOSE,
            AT_SERVER_RECORD,
            "BadRecord",
            vec![c2s0.clone(), c2s0.clone()],
        ),
        negative(
            "record-reordered.txt",
            "the second record of a direction sent first",
            "record.c2s.1.frame alone, where record.c2s.0.frame is due",
            THEN_SILENT_CLOSE,
            AT_SERVER_RECORD,
            "BadRecord",
            vec![record("c2s.1")],
        ),
        negative(
            "record-dropped.txt",
            "a record missing from the stream",
            "record.c2s.0.frame, then record.c2s.2.frame (record.c2s.1.frame left out)",
            THEN_SILENT_CLOSE,
            AT_SERVER_RECORD,
            "BadRecord",
            vec![c2s0.clone(), record("c2s.2")],
        ),
        negative(
            "record-reflected.txt",
            "a record of the client's sent back to the client",
            "record.c2s.0.frame, where the client expects record.s2c.0.frame",
            THEN_CLIENT_CLOSES,
            AT_CLIENT_RECORD,
            "BadRecord",
            vec![c2s0.clone()],
        ),
    ]
}

/// The error kind a negative vector's `expect:` line names: the `Error` variant,
/// with the peer's version for `Version` and the alert code for `Refused`.
fn error_kind(e: &Error) -> String {
    match e {
        Error::Malformed(_) => "Malformed".into(),
        Error::TooLarge { .. } => "TooLarge".into(),
        Error::Version { theirs, .. } => format!("Version {theirs}"),
        Error::BadRecord => "BadRecord".into(),
        Error::BadSignature => "BadSignature".into(),
        Error::BadKeyShare => "BadKeyShare".into(),
        Error::Key(_) => "Key".into(),
        Error::NotAuthorized { .. } => "NotAuthorized".into(),
        Error::Refused { code, .. } => format!("Refused {}", code.to_u8()),
        other => format!("{other:?}"),
    }
}

/// A negative vector file: its `at`, its `expect` and its frames.
fn parse_negative(file: &str, text: &str) -> (String, String, Vec<Vec<u8>>) {
    let (mut at, mut expect, mut frames) = (None, None, Vec::new());
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) =
            line.split_once(": ").unwrap_or_else(|| panic!("{file}: not `name: value`: {line}"));
        match name {
            "at" => at = Some(value.to_string()),
            "expect" => expect = Some(value.to_string()),
            "frame" => frames.push(unhex(file, value)),
            _ => panic!("{file}: unknown field `{name}`"),
        }
    }
    let at = at.unwrap_or_else(|| panic!("{file}: no `at:` line"));
    let expect = expect.unwrap_or_else(|| panic!("{file}: no `expect:` line"));
    assert!(!frames.is_empty(), "{file}: no `frame:` line");
    (at, expect, frames)
}

/// Feed a negative vector's frames to the receiver `at` names (PROTOCOL.md 15.2),
/// through the library's framing, handshake states and record opener: every
/// frame but the last must be accepted; returns what the last one gives.
fn feed(file: &str, at: &str, frames: &[Vec<u8>], v: &Vectors) -> Result<(), Error> {
    let client = KeyPair::from_pem(CLIENT_PEM).unwrap();
    let server = KeyPair::from_pem(SERVER_PEM).unwrap();
    let seeded = |who: &str| Rng::from_seed(v.bytes(&format!("{who}.seed")).try_into().unwrap());
    let authorized = |k: &ovtp::PublicKey| Ok(k == client.public());
    let pinned = |k: &ovtp::PublicKey| {
        if k == server.public() {
            Ok(())
        } else {
            Err(Error::InvalidInput("not the vector server key".into()))
        }
    };
    let stored_body = |name: &str| v.bytes(name)[4..].to_vec();
    let max = if at.ends_with(" record") { MAX_RECORD_FRAME } else { MAX_HANDSHAKE_FRAME };
    let split = |frame: &[u8]| -> Result<Vec<u8>, Error> {
        let (body, rest) = split_frame(frame, max)?;
        assert!(rest.is_empty(), "{file}: bytes after a frame");
        Ok(body.to_vec())
    };
    let (last, earlier) = frames.split_last().unwrap();
    if !at.ends_with(" record") {
        assert!(earlier.is_empty(), "{file}: one handshake frame per vector");
    }
    match at {
        AT_SERVER_HELLO => {
            let body = split(last)?;
            ServerAwaitAuth::read_client_hello(&server, &body, &mut seeded("server"), authorized)
                .map(drop)
        }
        AT_SERVER_AUTH => {
            let mut rng = seeded("server");
            let (state, hello) = ServerAwaitAuth::read_client_hello(
                &server,
                &stored_body("client_hello.frame"),
                &mut rng,
                authorized,
            )
            .unwrap();
            assert_eq!(hello, v.bytes("server_hello.frame"), "the vector ServerHello");
            state.read_client_auth(&split(last)?, &mut rng).map(drop)
        }
        AT_CLIENT_HELLO | AT_CLIENT_AUTH => {
            let mut rng = seeded("client");
            let (state, hello) = ClientStart::new(&client, &mut rng).unwrap();
            assert_eq!(hello, v.bytes("client_hello.frame"), "the vector ClientHello");
            if at == AT_CLIENT_HELLO {
                return state.read_server_hello(&split(last)?, &mut rng, pinned).map(drop);
            }
            let (state, auth) = state
                .read_server_hello(&stored_body("server_hello.frame"), &mut rng, pinned)
                .unwrap();
            assert_eq!(auth, v.bytes("client_auth.frame"), "the vector ClientAuth");
            state.read_server_auth(&split(last)?, &mut rng).map(drop)
        }
        AT_SERVER_RECORD | AT_CLIENT_RECORD => {
            let value = |name: &str| -> [u8; 32] { v.bytes(name).try_into().unwrap() };
            let ((_, client_opener), (_, server_opener)) =
                SessionKeys::from_handshake_secrets_for_testing(
                    &value("client_auth.secret"),
                    &value("server_auth.secret"),
                    &v.bytes("dh.secret").try_into().unwrap(),
                    &value("transcript.h3"),
                );
            let mut opener = if at == AT_SERVER_RECORD { server_opener } else { client_opener };
            let mut open = |frame: &[u8]| opener.open(&mut split(frame)?).map(drop);
            for (i, frame) in earlier.iter().enumerate() {
                open(frame).unwrap_or_else(|e| panic!("{file}: frame {} must open: {e}", i + 1));
            }
            open(last)
        }
        _ => panic!("{file}: unknown receiver `at: {at}`"),
    }
}

/// The `.txt` files of tests/vectors/negative/, by name.
fn negative_files() -> std::collections::BTreeMap<String, String> {
    std::fs::read_dir(NEGATIVE_DIR)
        .unwrap_or_else(|e| panic!("{NEGATIVE_DIR}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|x| x == "txt"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

#[test]
fn negative_vectors_match_their_generator() {
    let cases = negatives(&Vectors::load());
    if regenerating() {
        std::fs::create_dir_all(NEGATIVE_DIR).unwrap();
        for stale in negative_files().keys() {
            if !cases.iter().any(|c| c.file == stale) {
                std::fs::remove_file(format!("{NEGATIVE_DIR}/{stale}")).unwrap();
            }
        }
        for case in &cases {
            write_whole(&format!("{NEGATIVE_DIR}/{}", case.file), &case.text());
        }
        return;
    }
    let stored = negative_files();
    let made: Vec<&str> = cases.iter().map(|c| c.file).collect();
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        made.iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>(),
        "tests/vectors/negative/ holds other files than tests/vectors.rs makes; \
         regenerate with {REGENERATE_VAR}=1 cargo test --test vectors"
    );
    for case in &cases {
        let text = case.text();
        if stored[case.file] != text {
            let file = format!("tests/vectors/negative/{}", case.file);
            panic!("{}", describe_difference(&file, &stored[case.file], &text));
        }
    }
}

#[test]
fn negative_vectors_are_rejected_with_the_expected_errors() {
    let v = Vectors::load();
    // While the folder is being rewritten, check what is being written.
    let files = if regenerating() {
        negatives(&v).into_iter().map(|c| (c.file.to_string(), c.text())).collect()
    } else {
        negative_files()
    };
    assert!(files.len() >= 20, "the negative vectors are missing");
    for (file, text) in &files {
        let (at, expect, frames) = parse_negative(file, text);
        match feed(file, &at, &frames, &v) {
            Ok(()) => panic!("{file}: the last frame was accepted; expected {expect}"),
            Err(e) => assert!(
                error_kind(&e) == expect,
                "{file}: expected {expect}, got {} ({e})",
                error_kind(&e)
            ),
        }
    }
}

// ---------------------------------------------------------------- forward secrecy

/// What an attacker who recorded a session and later stole both long-term
/// private keys computes: both RSA secrets unwrapped, the transcript hash, and
/// the record keys of `schedule`. Returns whether the first client record opens
/// (its tag verifies under the derived MAC key) and, if so, its plaintext.
struct Recorded {
    /// Frames client to server and server to client, length prefixes included.
    c2s: Vec<Vec<u8>>,
    s2c: Vec<Vec<u8>>,
}

impl Recorded {
    /// Split two recorded byte streams into frames.
    fn from_streams(c2s: &[u8], s2c: &[u8]) -> Self {
        let split = |mut bytes: &[u8]| {
            let mut frames = Vec::new();
            while !bytes.is_empty() {
                let len = 4 + u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
                frames.push(bytes[..len].to_vec());
                bytes = &bytes[len..];
            }
            frames
        };
        Recorded { c2s: split(c2s), s2c: split(s2c) }
    }

    /// Both RSA secrets, with both private keys: `(secret_c, secret_s)`.
    fn unwrap_both(&self, version: u16) -> (Vec<u8>, Vec<u8>) {
        let auth = |frame: &[u8], frame_type| -> Vec<u8> {
            let mut c = Cursor(frame_body(frame, MAX_HANDSHAKE_FRAME, "auth"), "auth");
            assert_eq!((c.take(4), c.u16(), c.u8()), (&MAGIC[..], version, frame_type));
            c.vec16().to_vec()
        };
        let secret_c = oaep_unwrap(&rsa_key(SERVER_PEM), &auth(&self.c2s[1], CLIENT_AUTH));
        let secret_s = oaep_unwrap(&rsa_key(CLIENT_PEM), &auth(&self.s2c[1], SERVER_AUTH));
        (secret_c, secret_s)
    }

    /// Try to open the first client record with keys derived from `ikm` and
    /// `h3` under the labels of `version`: its plaintext if the tag verifies.
    fn open_first_request(&self, version: u8, h3: &[u8; 32], ikm: &[u8]) -> Option<Vec<u8>> {
        let label = |what: &str| format!("ovtp/{version} c2s {what}").into_bytes();
        let (enc, mac) = (hkdf(h3, ikm, &label("enc")), hkdf(h3, ikm, &label("mac")));
        let body = frame_body(&self.c2s[2], MAX_RECORD_FRAME, "record");
        let ct_len = body.len() - 2 - 16 - 32;
        let (head, rest) = body.split_at(2);
        let (iv, rest) = rest.split_at(16);
        let (ct, tag) = rest.split_at(ct_len);
        let ct_len_be = u32::try_from(ct_len).unwrap().to_be_bytes();
        let expected =
            hmac_sha256(&mac, &[&[DIR_C2S], &0u64.to_be_bytes(), head, &ct_len_be, iv, ct]);
        (expected == tag).then(|| unpad(cbc_decrypt(&enc, iv, ct), "record"))
    }
}

/// The ikm of `secret_c || secret_s || tail`.
fn ikm(secrets: &(Vec<u8>, Vec<u8>), tail: &[u8]) -> Vec<u8> {
    [&secrets.0[..], &secrets.1, tail].concat()
}

/// Record the bytes of one direction while forwarding them.
fn relay(mut from: std::net::TcpStream, mut to: std::net::TcpStream) -> Vec<u8> {
    use std::io::{Read, Write};
    let (mut seen, mut buf) = (Vec::new(), [0u8; 16 * 1024]);
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
    seen
}

#[test]
fn a_recorded_session_stays_closed_to_both_stolen_private_keys() {
    use ovtp::{AuthorizedKeys, ClientConfig, HostTrust, Reply, Request, Server, ServerConfig};
    use std::net::{TcpListener, TcpStream};
    const SECRET: &str = "recorded today, read never";
    let (client, server_keys) =
        (KeyPair::from_pem(CLIENT_PEM).unwrap(), KeyPair::from_pem(SERVER_PEM).unwrap());
    let dir = std::env::temp_dir().join(format!("ovtp-fs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let authorized = AuthorizedKeys::new(dir.join("authorized_keys"));
    authorized.add(client.public(), "vector client").unwrap();
    // The server's generator is seeded so that this test (not an attacker) can
    // compute the Diffie-Hellman secret afterwards and show what it is worth.
    let config = ServerConfig { test_rng_seed: Some(SERVER_SEED), ..ServerConfig::default() };
    let handler = |req: Request<'_>| Reply::ok(format!("{:?}", req.payload));
    let server =
        Server::bind_with("127.0.0.1:0", server_keys.clone(), authorized, config, handler).unwrap();
    let (addr, stopper) = (server.local_addr().unwrap(), server.stopper().unwrap());
    let running = std::thread::spawn(move || server.run());

    // A recording proxy between a real client and the real server.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let recorder = std::thread::spawn(move || {
        let (down, _) = listener.accept().unwrap();
        let up = TcpStream::connect(addr).unwrap();
        let (d2, u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
        let to_server = std::thread::spawn(move || relay(down, up));
        let s2c = relay(u2, d2);
        (to_server.join().unwrap(), s2c)
    });
    let trust = HostTrust::Fingerprint(server_keys.fingerprint());
    let mut c = ovtp::Client::connect_with(
        &proxy_addr.to_string(),
        client,
        trust,
        ClientConfig { retries: 0, ..ClientConfig::default() },
    )
    .unwrap();
    assert_eq!(c.send_message(SECRET).unwrap().status, 0);
    drop(c);
    let (c2s, s2c) = recorder.join().unwrap();
    stopper.stop();
    running.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let rec = Recorded::from_streams(&c2s, &s2c);
    assert!(rec.c2s.len() >= 3 && rec.s2c.len() >= 3, "handshake and one exchange recorded");

    // The attacker holds both private keys: both RSA secrets come out.
    let secrets = rec.unwrap_both(2);
    let bodies = |frames: &[Vec<u8>]| -> Vec<Vec<u8>> {
        frames[..2].iter().map(|f| f[4..].to_vec()).collect()
    };
    let (cb, sb) = (bodies(&rec.c2s), bodies(&rec.s2c));
    let [wrapped_c, share_c, sig_c] = parse_auth(&cb[1], CLIENT_AUTH, "ClientAuth");
    let [wrapped_s, share_s, sig_s] = parse_auth(&sb[1], SERVER_AUTH, "ServerAuth");
    let h3 =
        transcript_hash(&[&cb[0], &sb[0], wrapped_c, share_c, sig_c, wrapped_s, share_s, sig_s]);

    // Everything on the wire and both long-term keys are not enough: the key
    // schedule of version 1 (the secrets alone), or of version 2 with any
    // guess in place of the Diffie-Hellman secret, leaves the records shut.
    assert_eq!(rec.open_first_request(1, &h3, &ikm(&secrets, &[])), None);
    for guess in [[0u8; DH_LEN].to_vec(), share_c.to_vec(), share_s.to_vec()] {
        assert_eq!(rec.open_first_request(2, &h3, &ikm(&secrets, &guess)), None);
    }
    // With the ephemeral secret, which only the exponents give and both sides
    // wiped, the same steps open them: nothing else was missing.
    let dh_secret = dh_pow(share_c, &dh_exponent(&SERVER_SEED));
    let opened = rec.open_first_request(2, &h3, &ikm(&secrets, &dh_secret)).expect("opens with Z");
    assert!(opened.ends_with(SECRET.as_bytes()), "the request carries the message");
}

#[test]
fn a_recorded_version_1_session_opens_with_both_stolen_private_keys() {
    // tests/vectors/v1-session.txt: the version-1 vectors, kept as a recording
    // of a version-1 session. The same steps, with version 1's key schedule.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/v1-session.txt"
    ))
    .unwrap();
    let value = |name: &str| {
        let line = text.lines().find(|l| l.starts_with(&format!("{name}: "))).unwrap();
        unhex(name, &line[name.len() + 2..])
    };
    let frame = |name: &str| value(&format!("{name}.frame"));
    let rec = Recorded {
        c2s: vec![frame("client_hello"), frame("client_auth"), frame("record.c2s.0")],
        s2c: vec![frame("server_hello"), frame("server_auth")],
    };
    let secrets = rec.unwrap_both(1);
    // Version 1's transcript: no shares, its own label.
    let element =
        |f: &[u8]| -> Vec<u8> { [&u32::try_from(f.len()).unwrap().to_be_bytes()[..], f].concat() };
    let mut t = b"ovtp/1 transcript".to_vec();
    let mut fields = vec![rec.c2s[0][4..].to_vec(), rec.s2c[0][4..].to_vec()];
    for auth in [&rec.c2s[1], &rec.s2c[1]] {
        let mut c = Cursor(&auth[4 + 7..], "v1 auth");
        fields.extend([c.vec16().to_vec(), c.vec16().to_vec()]);
    }
    for f in &fields {
        t.extend(element(f));
    }
    let h3 = sha256(&[&t]);
    assert_eq!(h3.to_vec(), value("transcript.h3"));
    let opened = rec.open_first_request(1, &h3, &ikm(&secrets, &[])).expect("version 1 opens");
    assert_eq!(opened, value("record.c2s.0.plaintext"));
}

// ---------------------------------------------------------------- listing, directories, -p

const LISTING_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/listing.txt");
const OP_LIST: u8 = 6;
const OP_MKDIR: u8 = 7;
const XFER_PRESERVE: u8 = 0x04;
const KIND_FILE: u8 = 1;
const KIND_DIR: u8 = 2;
/// The modification time of every file of these vectors: 2001-09-09T01:46:40Z.
const LIST_MTIME: i64 = 1_000_000_000;
const NOTES: &[u8] = b"hello, list\n";
const TOOL: &[u8] = b"#!/bin/sh\necho hi\n";

/// One listed entry: `kind u8 || mode u16 || size u64 || mtime i64 || name vec16`.
fn list_entry(kind: u8, mode: u16, size: u64, name: &[u8]) -> Vec<u8> {
    let fixed = [&[kind][..], &mode.to_be_bytes(), &size.to_be_bytes(), &LIST_MTIME.to_be_bytes()];
    [&fixed.concat()[..], &vec16(name)].concat()
}

/// A LIST page: `more u8 || count u16 || entries`.
fn list_page(more: u8, entries: &[Vec<u8>]) -> Vec<u8> {
    let count = u16::try_from(entries.len()).unwrap();
    [&[more][..], &count.to_be_bytes(), &entries.concat()].concat()
}

/// `mode u16 || mtime i64`, after a PUT's flags or a GET's FILE_READY.
fn file_meta(mode: u16) -> Vec<u8> {
    [&mode.to_be_bytes()[..], &LIST_MTIME.to_be_bytes()].concat()
}

const LISTING_HEADER: &str = "\
ovtp protocol version 2: test vectors of LIST, MKDIR and the PRESERVE flag
(PROTOCOL.md 7.7.1, 7.9): message plaintexts, in the order of one session.

Generated by tests/vectors.rs from PROTOCOL.md (the message bodies are encoded
by hand there); do not edit by hand. `cargo test --test vectors` fails if this
file differs; OVTP_REGENERATE_VECTORS=1 rewrites it. The records that carry
these plaintexts are sealed as in handshake.txt; here only plaintexts are given.

Format: as handshake.txt (`name: value`, lowercase hex). `step.NN.c2s.TYPE` is
a record the client sends, `step.NN.s2c.TYPE` one the server answers with, each
one record with FIN set, TYPE one of request (0x10), response (0x11),
file_ready (0x12), file_data (0x13), file_end (0x14). Request ids are 16 bytes
of the step number.

The server's files directory holds, before step 01:
    docs/            a directory
    docs/a dir/      a directory, mode 0755
    docs/notes.txt   the 12 bytes of `notes.content`, mode 0640
every entry of docs/ with modification time 1000000000 (2001-09-09T01:46:40Z).

`bad.NAME.page` are LIST page bodies (of an OK response to a LIST with an empty
`after`) that a client must refuse, with the error kind `bad.NAME.expect`:
Malformed or TooLarge (the body does not decode), BadListing (it decodes, but a
name is not one plain path component, or the order or progress rule fails).
`bad.NAME.file_ready` is a FILE_READY answering a GET with PRESERVE, to refuse.";

fn generate_listing() -> String {
    let mut out = Out::default();
    out.comment(LISTING_HEADER);
    out.blank();
    out.bytes("notes.content", NOTES);
    out.bytes("tool.content", TOOL);
    let ok = 0u16;
    let dir = |mode| list_entry(KIND_DIR, mode, 0, b"a dir");
    let notes = list_entry(KIND_FILE, 0o640, NOTES.len() as u64, b"notes.txt");
    let list = |dir: &str, after: &str| [vec16(dir.as_bytes()), vec16(after.as_bytes())].concat();
    let id = |n: u8| [n; 16];
    let mut step = |n: u8, what: &str, msgs: &[(&str, Vec<u8>)]| {
        out.blank();
        out.comment(what);
        for (name, bytes) in msgs {
            out.bytes(&format!("step.{n:02}.{name}"), bytes);
        }
    };
    let page = list_page(0, &[dir(0o755), notes.clone()]);
    step(
        1,
        "LIST docs from the start: both entries, no more.",
        &[
            ("c2s.request", request(&id(1), OP_LIST, &list("docs", ""))),
            ("s2c.response", response(&id(1), ok, &page)),
        ],
    );
    step(
        2,
        "LIST docs after \"a dir\" (the cursor of a next page).",
        &[
            ("c2s.request", request(&id(2), OP_LIST, &list("docs", "a dir"))),
            ("s2c.response", response(&id(2), ok, &list_page(0, std::slice::from_ref(&notes)))),
        ],
    );
    step(
        3,
        "MKDIR docs/new, then LIST it: an empty page.",
        &[
            ("c2s.request", request(&id(3), OP_MKDIR, &vec16(b"docs/new"))),
            ("s2c.response", response(&id(3), ok, b"")),
        ],
    );
    step(
        4,
        "",
        &[
            ("c2s.request", request(&id(4), OP_LIST, &list("docs/new", ""))),
            ("s2c.response", response(&id(4), ok, &list_page(0, &[]))),
        ],
    );
    let refusal = b"file name may not contain '.' or '..' components";
    step(
        5,
        "LIST ../etc: refused, BAD_NAME (0xff10).",
        &[
            ("c2s.request", request(&id(5), OP_LIST, &list("../etc", ""))),
            ("s2c.response", response(&id(5), 0xff10, refusal)),
        ],
    );
    let size = TOOL.len() as u64;
    let put = [put_body("docs/tool", size, XFER_RESUME | XFER_PRESERVE), file_meta(0o751)].concat();
    let digest = sha256(&[TOOL]);
    step(
        6,
        "PUT docs/tool with RESUME and PRESERVE: mode 0751, the vectors' mtime.",
        &[
            ("c2s.request", request(&id(6), OP_PUT, &put)),
            ("s2c.file_ready", u64_and(0, b"")),
            ("c2s.file_data", u64_and(0, TOOL)),
            ("c2s.file_end", u64_and(size, &digest)),
            ("s2c.response", response(&id(6), ok, b"")),
        ],
    );
    let empty = sha256(&[b""]);
    let get = get_body("docs/tool", 0, &empty, XFER_RESUME | XFER_PRESERVE);
    step(
        7,
        "GET docs/tool with PRESERVE: FILE_READY carries its mode and mtime.",
        &[
            ("c2s.request", request(&id(7), OP_GET, &get)),
            ("s2c.file_ready", [u64_and(size, &0u64.to_be_bytes()), file_meta(0o751)].concat()),
            ("s2c.file_data", u64_and(0, TOOL)),
            ("s2c.file_end", u64_and(size, &digest)),
        ],
    );
    out.blank();
    out.comment("Pages a client must refuse.");
    let one = |name: &[u8]| list_page(0, &[list_entry(KIND_FILE, 0o644, 1, name)]);
    let two = |a: &[u8], b: &[u8]| {
        list_page(0, &[list_entry(KIND_FILE, 0o644, 1, a), list_entry(KIND_FILE, 0o644, 1, b)])
    };
    let mut trailing = one(b"a");
    trailing.push(0);
    let bad: [(&str, Vec<u8>, &str); 17] = [
        ("kind-unknown", list_page(0, &[list_entry(9, 0o644, 1, b"a")]), "Malformed"),
        ("more-is-2", list_page(2, &[]), "Malformed"),
        ("count-over-256", vec![0, 0x01, 0x01], "TooLarge"),
        ("mode-setuid", list_page(0, &[list_entry(KIND_FILE, 0o4755, 1, b"a")]), "Malformed"),
        ("trailing-byte", trailing, "Malformed"),
        ("truncated-entry", vec![0, 0, 1, KIND_FILE], "Malformed"),
        ("name-not-utf8", one(b"\xff"), "Malformed"),
        ("name-over-255-bytes", one(&[b'a'; 256]), "TooLarge"),
        ("name-dot-dot-slash", one(b"../x"), "BadListing"),
        ("name-absolute", one(b"/abs"), "BadListing"),
        ("name-with-slash", one(b"a/b"), "BadListing"),
        ("name-dot", one(b"."), "BadListing"),
        ("name-empty", one(b""), "BadListing"),
        ("name-escape-sequence", one(b"a\x1b[2Jb"), "BadListing"),
        ("out-of-order", two(b"b", b"a"), "BadListing"),
        ("duplicate", two(b"a", b"a"), "BadListing"),
        ("more-but-empty", list_page(1, &[]), "BadListing"),
    ];
    for (name, page, expect) in bad {
        out.bytes(&format!("bad.{name}.page"), &page);
        out.text(&format!("bad.{name}.expect"), expect);
    }
    let setuid = [u64_and(size, &0u64.to_be_bytes()), file_meta(0o4751)].concat();
    out.bytes("bad.ready-mode-setuid.file_ready", &setuid);
    out.text("bad.ready-mode-setuid.expect", "Malformed");
    out.0
}

fn listing_vectors() -> Vectors {
    if regenerating() {
        return Vectors::parse(&generate_listing());
    }
    Vectors::parse(&std::fs::read_to_string(LISTING_FILE).expect("tests/vectors/listing.txt"))
}

#[test]
fn listing_vectors_match_their_generator_and_the_library_codec() {
    use ovtp::hooks::Body;
    use ovtp::hooks::msg::{ListPage, ReadyToSend, Request, Response};
    let generated = generate_listing();
    if regenerating() {
        write_whole(LISTING_FILE, &generated);
    } else {
        let stored = std::fs::read_to_string(LISTING_FILE).expect("tests/vectors/listing.txt");
        if stored != generated {
            panic!("{}", describe_difference("tests/vectors/listing.txt", &stored, &generated));
        }
    }
    // Every message decodes with the library and encodes back to the same bytes.
    let v = listing_vectors();
    let mut checked = 0;
    for name in v.1.iter().filter(|n| n.starts_with("step.")) {
        let bytes = v.bytes(name);
        let again = match name.rsplit('.').next().unwrap() {
            "request" => Request::decode(&bytes).unwrap().to_vec(),
            "response" => {
                let r = Response::decode(&bytes).unwrap();
                if r.status == 0 && r.body.len() >= 3 {
                    assert_eq!(ListPage::decode(r.body).unwrap().to_vec(), r.body, "{name}");
                }
                r.to_vec()
            }
            "file_ready" if bytes.len() > 8 => ReadyToSend::decode(&bytes).unwrap().to_vec(),
            _ => bytes.clone(),
        };
        assert_eq!(hex(&again), hex(&bytes), "{name}: the library's encoding differs");
        checked += 1;
    }
    assert_eq!(checked, 19);
}

#[test]
fn listing_negative_vectors_are_refused_with_their_errors() {
    use ovtp::hooks::Body;
    use ovtp::hooks::msg::{ListPage, ReadyToSend};
    let v = listing_vectors();
    let mut cases = 0;
    for name in v.1.iter().filter(|n| n.starts_with("bad.") && n.ends_with(".expect")) {
        let case = name.strip_suffix(".expect").unwrap();
        let expect = v.text(name);
        let got = if v.0.contains_key(&format!("{case}.page")) {
            match ListPage::decode(&v.bytes(&format!("{case}.page"))) {
                Ok(page) => match page.check("") {
                    Ok(()) => "accepted".to_string(),
                    Err(_) => "BadListing".to_string(),
                },
                Err(e) => error_kind(&e),
            }
        } else {
            ReadyToSend::decode(&v.bytes(&format!("{case}.file_ready")))
                .map_or_else(|e| error_kind(&e), |_| "accepted".into())
        };
        assert_eq!(got, expect, "{case}");
        cases += 1;
    }
    assert_eq!(cases, 18);
}

#[test]
fn listing_vectors_are_what_a_real_server_speaks() {
    use ovtp::{AuthorizedKeys, Reply, Request, ServeFiles, Server, ServerConfig};
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let v = listing_vectors();
    let client = KeyPair::from_pem(CLIENT_PEM).unwrap();
    let server_keys = KeyPair::from_pem(SERVER_PEM).unwrap();
    let dir = std::env::temp_dir().join(format!("ovtp-list-vectors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let files = dir.join("files");
    let mut builder = std::fs::DirBuilder::new();
    std::os::unix::fs::DirBuilderExt::mode(builder.recursive(true), 0o755);
    builder.create(files.join("docs/a dir")).unwrap();
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(LIST_MTIME as u64);
    let notes = files.join("docs/notes.txt");
    std::fs::write(&notes, v.bytes("notes.content")).unwrap();
    for (path, mode) in [(notes, 0o640), (files.join("docs/a dir"), 0o755)] {
        let f = std::fs::File::open(&path).unwrap();
        f.set_modified(time).unwrap();
        f.set_permissions(std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let authorized = AuthorizedKeys::new(dir.join("authorized_keys"));
    authorized.add(client.public(), "vector client").unwrap();
    let config = ServerConfig { files_dir: Some(files.clone()), ..ServerConfig::default() };
    let handler = ServeFiles(|_: Request<'_>| Reply::ok(""));
    let server =
        Server::bind_with("127.0.0.1:0", server_keys.clone(), authorized, config, handler).unwrap();
    let addr = server.local_addr().unwrap();
    let stopper = server.stopper().unwrap();
    let running = std::thread::spawn(move || server.run());

    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut rng = Rng::system();
    let (state, hello) = ClientStart::new(&client, &mut rng).unwrap();
    sock.write_all(&hello).unwrap();
    let body = read_frame(&mut sock, MAX_HANDSHAKE_FRAME);
    let (state, auth) = state.read_server_hello(&body, &mut rng, |_| Ok(())).unwrap();
    sock.write_all(&auth).unwrap();
    let body = read_frame(&mut sock, MAX_HANDSHAKE_FRAME);
    let mut session = state.read_server_auth(&body, &mut rng).unwrap();
    let mut replayed = 0;
    for name in v.1.iter().filter(|n| n.starts_with("step.")) {
        let rtype = match name.rsplit('.').next().unwrap() {
            "request" => REC_REQUEST,
            "response" => REC_RESPONSE,
            "file_ready" => REC_FILE_READY,
            "file_data" => REC_FILE_DATA,
            "file_end" => REC_FILE_END,
            other => panic!("{name}: unknown record {other}"),
        };
        let plaintext = v.bytes(name);
        if name.contains(".c2s.") {
            let mut out = Vec::new();
            session.sealer().seal(&mut rng, rtype, FIN, &plaintext, &mut out).unwrap();
            sock.write_all(&out).unwrap();
        } else {
            let mut body = read_frame(&mut sock, MAX_RECORD_FRAME);
            let got = session.opener().open(&mut body).expect("server record opens");
            assert_eq!(
                (got.rtype, hex(got.plaintext)),
                (rtype, hex(&plaintext)),
                "the server's record differs from `{name}`"
            );
        }
        replayed += 1;
    }
    assert_eq!(replayed, 19);
    let tool = std::fs::metadata(files.join("docs/tool")).unwrap();
    assert_eq!((tool.permissions().mode() & 0o7777, tool.modified().unwrap()), (0o751, time));
    assert!(files.join("docs/new").is_dir());
    drop(sock);
    stopper.stop();
    running.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
