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

use ovtp::handshake::{ClientStart, ServerAwaitAuth};
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
const VERSION: u16 = 1;
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
const FIN: u8 = 0x01;
const OP_TEXT: u8 = 1;
const OP_DATA: u8 = 2;
const OP_PUT: u8 = 3;
const OP_GET: u8 = 4;
const OP_DIGEST: u8 = 5;
/// PUT and GET flag: keep a matching partial file from an earlier attempt.
const XFER_RESUME: u8 = 0x02;

// The file of the file-transfer vectors.
const FILE_NAME: &str = "hello.txt";
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
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
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
    let lens: Vec<[u8; 4]> = elements
        .iter()
        .map(|e| u32::try_from(e.len()).unwrap().to_be_bytes())
        .collect();
    let mut parts: Vec<&[u8]> = vec![b"ovtp/1 transcript"];
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

/// (wrapped secret, signature) of an auth frame body.
fn parse_auth<'a>(body: &'a [u8], frame_type: u8, what: &'static str) -> (&'a [u8], &'a [u8]) {
    let mut c = handshake_body(body, frame_type, what);
    let wrapped = c.vec16();
    let signature = c.vec16();
    c.end();
    (wrapped, signature)
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
    [
        &u16::try_from(field.len()).unwrap().to_be_bytes()[..],
        field,
    ]
    .concat()
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
    [
        &vec16(name.as_bytes())[..],
        &offset.to_be_bytes(),
        prefix,
        &[flags],
    ]
    .concat()
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
ovtp protocol version 1: test vectors (handshake, transcript, key schedule,
records, file transfer).

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
and each draw of n <= 32 bytes takes the first n bytes of the next block. Each
side's first four blocks are, in order: its nonce (block 0), its secret (block 1:
secret_c of the client, secret_s of the server), the RSA-OAEP seed that wraps
that secret (block 2) and the RSA-PSS salt of its signature (block 3). So both
auth frames reproduce byte for byte with an OAEP and a PSS that take the seed
and the salt from the caller. After block 3 the rsa crate draws blinding values
from the same generator (the server unwraps the client's secret on a thread of
its own, with blinding from the system, which cannot change the result), so the
later blocks (request ids, record IVs) are specific to this code; each IV is in
its frame. Everything else is a deterministic function of the values given here.";

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
    let (wrapped_c, sig_c) = parse_auth(ca, CLIENT_AUTH, "ClientAuth");
    let (wrapped_s, sig_s) = parse_auth(sa, SERVER_AUTH, "ServerAuth");
    let secret_c = oaep_unwrap(&server_rsa, wrapped_c);
    let secret_s = oaep_unwrap(&client_rsa, wrapped_s);
    let h1 = transcript_hash(&[ch, sh, wrapped_c]);
    let h2 = transcript_hash(&[ch, sh, wrapped_c, sig_c, wrapped_s]);
    let h3 = transcript_hash(&[ch, sh, wrapped_c, sig_c, wrapped_s, sig_s]);
    assert_eq!(
        c_session.transcript, h3,
        "client's H3 differs from PROTOCOL.md's"
    );
    assert_eq!(
        s_session.transcript, h3,
        "server's H3 differs from PROTOCOL.md's"
    );
    let ikm = [secret_c.as_slice(), secret_s.as_slice()].concat();
    let prk = hmac_sha256(&h3, &[&ikm]);
    let keys = [
        ("keys.c2s_enc", hkdf(&h3, &ikm, b"ovtp/1 c2s enc")),
        ("keys.c2s_mac", hkdf(&h3, &ikm, b"ovtp/1 c2s mac")),
        ("keys.s2c_enc", hkdf(&h3, &ikm, b"ovtp/1 s2c enc")),
        ("keys.s2c_mac", hkdf(&h3, &ikm, b"ovtp/1 s2c mac")),
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
         recipient's private key.",
    );
    out.bytes("client_hello.frame", &client_hello);
    out.bytes("client_hello.nonce", nonce_c);
    out.bytes("server_hello.frame", &server_hello);
    out.bytes("server_hello.nonce", nonce_s);
    out.bytes("client_auth.frame", &client_auth);
    out.bytes("client_auth.secret", &secret_c);
    out.bytes("server_auth.frame", &server_auth);
    out.bytes("server_auth.secret", &secret_s);
    out.blank();
    out.comment(
        "---- Transcript hashes. Elements are the ClientHello and ServerHello frame\n\
         bodies (no length prefix) and the raw wrapped secrets and signatures.\n\
         h1 = T(ClientHello, ServerHello, wrapped_c); the client signs\n\
         \"ovtp/1 client signature\" || h1.\n\
         h2 = T(..., sig_c, wrapped_s); the server signs \"ovtp/1 server signature\" || h2.\n\
         h3 = T(..., sig_s): the HKDF salt and session identifier.",
    );
    out.bytes("transcript.h1", &h1);
    out.bytes("transcript.h2", &h2);
    out.bytes("transcript.h3", &h3);
    out.blank();
    out.comment(
        "---- Key schedule: ikm = secret_c || secret_s, prk = HMAC-SHA256(h3, ikm),\n\
         key = HMAC-SHA256(prk, info || 0x01) with info \"ovtp/1 c2s enc\" and so on.",
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
            (
                &mut c_session.sealer,
                &mut s_session.opener,
                crng,
                "c2s",
                &mut c_seq,
            )
        } else {
            (
                &mut s_session.sealer,
                &mut c_session.opener,
                srng,
                "s2c",
                &mut s_seq,
            )
        };
        assert_eq!(sealer.sequence(), *seq);
        let mut frame = Vec::new();
        sealer
            .seal(rng, rec.rtype, rec.flags, &rec.plaintext, &mut frame)
            .unwrap();
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
    let file_records: [(&str, bool, u8, Vec<u8>); 11] = [
        (
            "PUT request (type 0x10, FIN), op 3: name \"hello.txt\" (vec16), size 100,\n\
             flags 0x02 (resume; no overwrite)",
            true,
            REC_REQUEST,
            request(&id4, OP_PUT, &put_body(FILE_NAME, size, XFER_RESUME)),
        ),
        (
            "FILE_READY (type 0x12, FIN) for the PUT: offset 0 (no partial file on the\n\
             server) and the SHA-256 of those 0 bytes (of the empty string)",
            false,
            REC_FILE_READY,
            u64_and(0, &empty_sha),
        ),
        (
            "FILE_DATA (type 0x13, FIN): offset 0, then the 100 bytes of hello.txt",
            true,
            REC_FILE_DATA,
            u64_and(0, FILE_CONTENT),
        ),
        (
            "FILE_END (type 0x14, FIN): total 100, SHA-256 of the whole file",
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
            request(
                &id5,
                OP_GET,
                &get_body(FILE_NAME, 0, &empty_sha, XFER_RESUME),
            ),
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
         uploaded (PUT), downloaded (GET) and its digest asked for (DIGEST).\n\
         file.content is the file (ASCII text ending in a newline); file.sha256 its SHA-256.",
    );
    out.bytes("file.content", FILE_CONTENT);
    out.bytes("file.sha256", &file_sha);
    for (note, c2s, rtype, plaintext) in file_records {
        emit(
            &mut out,
            Rec {
                note,
                c2s,
                rtype,
                flags: FIN,
                plaintext,
            },
            &mut crng,
            &mut srng,
        );
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
fn describe_difference(stored: &str, generated: &str) -> String {
    let clip = |s: &str, from: usize| -> String {
        let from = from.saturating_sub(20).min(s.len());
        let to = (from + 100).min(s.len());
        let prefix = if from > 0 { "..." } else { "" };
        let suffix = if to < s.len() { "..." } else { "" };
        format!("{prefix}{}{suffix}", &s[from..to])
    };
    let (a, b): (Vec<&str>, Vec<&str>) = (stored.lines().collect(), generated.lines().collect());
    let mut report = format!(
        "tests/vectors/handshake.txt no longer matches what the code produces \
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

#[test]
fn test_vectors_match_the_code_byte_for_byte() {
    let generated = generate();
    assert_eq!(
        generated,
        generate(),
        "generating the vectors twice gave different output: something draws from \
         a source other than the seeded generators"
    );
    if std::env::var(REGENERATE_VAR).as_deref() == Ok("1") {
        // Written beside and renamed, so the other test never reads half a file.
        let tmp = format!("{VECTOR_FILE}.tmp");
        std::fs::write(&tmp, &generated).unwrap();
        std::fs::rename(&tmp, VECTOR_FILE).unwrap();
        eprintln!("{REGENERATE_VAR}=1: rewrote {VECTOR_FILE}");
        return;
    }
    let stored = std::fs::read_to_string(VECTOR_FILE).unwrap_or_else(|e| {
        panic!(
            "cannot read {VECTOR_FILE}: {e}. Create it with {REGENERATE_VAR}=1 cargo test --test vectors"
        )
    });
    if stored != generated {
        panic!("{}", describe_difference(&stored, &generated));
    }
}

// ---------------------------------------------------------------- independent check

/// The stored vectors: `name: value` lines, in order, names unique.
struct Vectors(HashMap<String, String>, Vec<String>);

impl Vectors {
    fn load() -> Self {
        // While the file is being rewritten, check what is being written.
        let text = if std::env::var(REGENERATE_VAR).as_deref() == Ok("1") {
            generate()
        } else {
            std::fs::read_to_string(VECTOR_FILE).expect("vector file")
        };
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
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("vector file lacks `{name}`"))
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
    v.expect("client_auth.secret", &drbg_block(&client_seed, 1));
    v.expect("server_hello.nonce", &drbg_block(&server_seed, 0));

    // Handshake frames, parsed by hand.
    let frames = [
        "client_hello.frame",
        "server_hello.frame",
        "client_auth.frame",
        "server_auth.frame",
    ]
    .map(|name| v.bytes(name));
    let [ch, sh, ca, sa] =
        [0, 1, 2, 3].map(|i| frame_body(&frames[i], MAX_HANDSHAKE_FRAME, "frame"));
    let (nonce_c, spki_c) = parse_hello(ch, CLIENT_HELLO, "ClientHello");
    let (nonce_s, spki_s) = parse_hello(sh, SERVER_HELLO, "ServerHello");
    v.expect("client_hello.nonce", nonce_c);
    v.expect("server_hello.nonce", nonce_s);
    v.expect("client.spki", spki_c);
    v.expect("server.spki", spki_s);
    let (wrapped_c, sig_c) = parse_auth(ca, CLIENT_AUTH, "ClientAuth");
    let (wrapped_s, sig_s) = parse_auth(sa, SERVER_AUTH, "ServerAuth");
    for field in [wrapped_c, sig_c, wrapped_s, sig_s] {
        assert_eq!(field.len(), 256, "a 2048-bit RSA block is 256 bytes");
    }

    // Transcript and signatures.
    let h1 = transcript_hash(&[ch, sh, wrapped_c]);
    let h2 = transcript_hash(&[ch, sh, wrapped_c, sig_c, wrapped_s]);
    let h3 = transcript_hash(&[ch, sh, wrapped_c, sig_c, wrapped_s, sig_s]);
    v.expect("transcript.h1", &h1);
    v.expect("transcript.h2", &h2);
    v.expect("transcript.h3", &h3);
    let client_pub = rsa::PublicKey::from_public_key_der(spki_c).unwrap();
    let server_pub = rsa::PublicKey::from_public_key_der(spki_s).unwrap();
    client_pub
        .pss_verify::<sha2::Sha256>(&[&b"ovtp/1 client signature"[..], &h1].concat(), sig_c)
        .expect("client signature over label || h1");
    server_pub
        .pss_verify::<sha2::Sha256>(&[&b"ovtp/1 server signature"[..], &h2].concat(), sig_s)
        .expect("server signature over label || h2");
    // Each signature is bound to its own label.
    assert!(
        client_pub
            .pss_verify::<sha2::Sha256>(&[&b"ovtp/1 server signature"[..], &h1].concat(), sig_c)
            .is_err()
    );

    // Key transport and key schedule.
    let secret_c = oaep_unwrap(&server_rsa, wrapped_c);
    let secret_s = oaep_unwrap(&client_rsa, wrapped_s);
    v.expect("client_auth.secret", &secret_c);
    v.expect("server_auth.secret", &secret_s);
    v.expect("server_auth.secret", &drbg_block(&server_seed, 1));
    assert_eq!((secret_c.len(), secret_s.len()), (32, 32));

    // Both auth frames reproduce byte for byte: each side's OAEP seed is block 2
    // of its generator and its PSS salt block 3.
    let reproduce = |seed: &[u8], to: &rsa::PublicKey, signer: &rsa::PrivateKey, secret, msg| {
        let wrapped = to
            .oaep_encrypt_with_rng::<sha2::Sha256, _>(
                &mut Scripted(Some(drbg_block(seed, 2))),
                secret,
            )
            .unwrap();
        let signature = signer
            .pss_sign_with_rng::<sha2::Sha256, _>(&mut Scripted(Some(drbg_block(seed, 3))), msg)
            .unwrap();
        (wrapped, signature)
    };
    let client_msg = [&b"ovtp/1 client signature"[..], &h1].concat();
    let server_msg = [&b"ovtp/1 server signature"[..], &h2].concat();
    assert!(
        reproduce(
            &client_seed,
            &server_pub,
            &client_rsa,
            &secret_c,
            &client_msg
        ) == (wrapped_c.to_vec(), sig_c.to_vec()),
        "ClientAuth: OAEP with client block 2 as seed and PSS with client block 3 as salt \
         do not give wrapped_c and sig_c"
    );
    assert!(
        reproduce(
            &server_seed,
            &client_pub,
            &server_rsa,
            &secret_s,
            &server_msg
        ) == (wrapped_s.to_vec(), sig_s.to_vec()),
        "ServerAuth: OAEP with server block 2 as seed and PSS with server block 3 as salt \
         do not give wrapped_s and sig_s"
    );
    let ikm = [secret_c, secret_s].concat();
    v.expect("hkdf.ikm", &ikm);
    v.expect("hkdf.prk", &hmac_sha256(&h3, &[&ikm]));
    let c2s_enc = hkdf(&h3, &ikm, b"ovtp/1 c2s enc");
    let c2s_mac = hkdf(&h3, &ikm, b"ovtp/1 c2s mac");
    let s2c_enc = hkdf(&h3, &ikm, b"ovtp/1 s2c enc");
    let s2c_mac = hkdf(&h3, &ikm, b"ovtp/1 s2c mac");
    v.expect("keys.c2s_enc", &c2s_enc);
    v.expect("keys.c2s_mac", &c2s_mac);
    v.expect("keys.s2c_enc", &s2c_enc);
    v.expect("keys.s2c_mac", &s2c_mac);

    // Records: tag recomputed over the MAC input, ciphertext decrypted by hand.
    let mut next_seq = HashMap::from([("c2s", 0u64), ("s2c", 0u64)]);
    let mut messages: HashMap<&str, Vec<(u8, Vec<u8>)>> = HashMap::new();
    let mut partial: HashMap<&str, (u8, Vec<u8>)> = HashMap::new();
    let mut count = 0;
    for name in
        v.1.iter()
            .filter(|n| n.starts_with("record.") && n.ends_with(".frame"))
    {
        let parts: Vec<&str> = name.split('.').collect();
        let (dir, seq): (&str, u64) = match parts[..] {
            ["record", d @ ("c2s" | "s2c"), s, "frame"] => (d, s.parse().unwrap()),
            _ => panic!("unexpected record name {name}"),
        };
        let expected_seq = next_seq.get_mut(dir).unwrap();
        assert_eq!(
            seq, *expected_seq,
            "{name}: records of a direction are numbered from 0"
        );
        *expected_seq += 1;
        let (dir_byte, enc, mac) = match dir {
            "c2s" => (DIR_C2S, &c2s_enc, &c2s_mac),
            _ => (DIR_S2C, &s2c_enc, &s2c_mac),
        };
        let frame = v.bytes(name);
        let body = frame_body(&frame, MAX_RECORD_FRAME, "record");
        assert!(body.len() >= 2 + 16 + 16 + 32, "{name}: too short");
        let ct_len = body.len() - 2 - 16 - 32;
        assert!(
            ct_len.is_multiple_of(16),
            "{name}: ciphertext not whole blocks"
        );
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
            let other = hmac_sha256(
                mac,
                &[&[d], &s.to_be_bytes(), &[rtype, flags], &ct_len_be, iv, ct],
            );
            assert_ne!(
                tag, other,
                "{name}: tag does not bind direction and sequence"
            );
        }
        let plaintext = unpad(cbc_decrypt(enc, iv, ct), name);
        assert!(
            plaintext.len() <= MAX_RECORD_PLAINTEXT,
            "{name}: plaintext over the limit"
        );
        let plain_name = name.replace(".frame", ".plaintext");
        assert_eq!(
            plaintext,
            v.bytes(&plain_name),
            "{name}: decrypts to {plain_name}"
        );
        assert_eq!(
            ct_len,
            (plaintext.len() / 16 + 1) * 16,
            "{name}: PKCS#7 always pads"
        );

        // Messages: records of one type until FIN.
        let entry = partial.entry(dir).or_insert((rtype, Vec::new()));
        assert_eq!(
            entry.0, rtype,
            "{name}: record type changed inside a message"
        );
        entry.1.extend_from_slice(&plaintext);
        assert_eq!(flags & !FIN, 0, "{name}: unknown flags");
        if flags & FIN != 0 {
            let done = partial.remove(dir).unwrap();
            messages.entry(dir).or_default().push(done);
        }
        count += 1;
    }
    assert_eq!(count, 18, "expected the 18 records of the vector file");
    assert!(partial.is_empty(), "a message lacks its FIN record");

    // Message layouts, in the order each side sent them.
    let types = |dir: &str| messages[dir].iter().map(|m| m.0).collect::<Vec<_>>();
    assert_eq!(
        types("c2s"),
        [
            REC_REQUEST,   // text "hello"
            REC_REQUEST,   // data 00..ff
            REC_REQUEST,   // text "two records", in two records
            REC_REQUEST,   // PUT hello.txt
            REC_FILE_DATA, // its bytes
            REC_FILE_END,  // its length and digest
            REC_REQUEST,   // GET hello.txt
            REC_REQUEST,   // DIGEST hello.txt
        ]
    );
    assert_eq!(
        types("s2c"),
        [
            REC_RESPONSE,   // to "hello"
            REC_RESPONSE,   // to the data
            REC_FILE_READY, // PUT: where to start
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
    let requests: Vec<(&[u8], u8, &[u8])> = [0, 1, 2, 3, 6, 7]
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
    // FILE_READY of a PUT: offset u64 || SHA-256 of the receiver's first `offset` bytes.
    let mut c = Cursor(s2c[2], "FILE_READY (PUT)");
    let offset = c.u64();
    assert_eq!(offset, 0);
    assert_eq!(c.take(32), sha256(&[&content[..offset as usize]]));
    c.end();
    // FILE_DATA: offset u64 || bytes, starting at the offset the receiver offered
    // (its prefix digest matches); FILE_END: total u64 || SHA-256 of the whole file.
    let mut c = Cursor(c2s[4], "FILE_DATA (PUT)");
    assert_eq!(c.u64(), offset);
    assert_eq!(c.0, &content[offset as usize..]);
    let mut c = Cursor(c2s[5], "FILE_END (PUT)");
    assert_eq!(c.u64(), size);
    assert_eq!(c.take(32), sha256(&[&content]));
    c.end();
    assert_eq!(reply("response", s2c[3]), (id(3), 0, PUT_REPLY));

    // GET: name vec16 || offset u64 || prefix_sha256 [32] || flags u8.
    let mut c = Cursor(requests[4].2, "GET");
    assert_eq!(c.vec16(), FILE_NAME.as_bytes());
    let offset = c.u64();
    assert_eq!((offset, c.take(32)), (0, &sha256(&[])[..]));
    assert_eq!(c.u8(), XFER_RESUME);
    c.end();
    // FILE_READY of a GET: size u64 || start u64 (start is the offered offset or 0).
    let mut c = Cursor(s2c[4], "FILE_READY (GET)");
    assert_eq!(c.u64(), size);
    let start = c.u64();
    assert!(start == offset || start == 0);
    c.end();
    let mut c = Cursor(s2c[5], "FILE_DATA (GET)");
    assert_eq!(c.u64(), start);
    assert_eq!(c.0, &content[start as usize..]);
    let mut c = Cursor(s2c[6], "FILE_END (GET)");
    assert_eq!(c.u64(), size);
    assert_eq!(c.take(32), sha256(&[&content]));
    c.end();

    // DIGEST: name vec16; its reply body: size u64 || sha256 [32].
    let mut c = Cursor(requests[5].2, "DIGEST");
    assert_eq!(c.vec16(), FILE_NAME.as_bytes());
    c.end();
    let (rid, status, body) = reply("response", s2c[7]);
    assert_eq!((rid, status), (id(5), 0));
    let mut c = Cursor(body, "DIGEST reply");
    assert_eq!(c.u64(), size);
    assert_eq!(c.take(32), sha256(&[&content]));
    c.end();

    // The alert: code u8 || message vec16.
    let mut c = Cursor(s2c[8], "alert");
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
    use ovtp::{AuthorizedKeys, Payload, Reply, Request, Server, ServerConfig};
    use std::io::Write;
    let v = Vectors::load();
    let client = KeyPair::from_pem(CLIENT_PEM).unwrap();
    let server_keys = KeyPair::from_pem(SERVER_PEM).unwrap();
    let dir = std::env::temp_dir().join(format!("ovtp-vectors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let authorized = AuthorizedKeys::new(dir.join("authorized_keys"));
    authorized.add(client.public(), "vector client").unwrap();
    let config = ServerConfig {
        files_dir: Some(files.clone()),
        ..ServerConfig::default()
    };
    let server = Server::bind_with(
        "127.0.0.1:0",
        server_keys.clone(),
        authorized,
        config,
        |req: Request<'_>| match req.payload {
            Payload::FileReceived { .. } => Reply::ok(PUT_REPLY),
            _ => Reply::ok(""),
        },
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let stopper = server.stopper().unwrap();
    let running = std::thread::spawn(move || server.run());

    // A handshake through the public state machines, over a real socket.
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
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
    for name in v.1[first..]
        .iter()
        .filter(|n| n.starts_with("record.") && n.ends_with(".frame"))
    {
        let frame = v.bytes(name);
        let (rtype, flags) = (frame[4], frame[5]);
        if rtype == REC_ALERT {
            continue;
        }
        let plaintext = v.bytes(&name.replace(".frame", ".plaintext"));
        if name.starts_with("record.c2s.") {
            let mut out = Vec::new();
            session
                .sealer
                .seal(&mut rng, rtype, flags, &plaintext, &mut out)
                .unwrap();
            sock.write_all(&out).unwrap();
        } else {
            let mut body = read_frame(&mut sock, MAX_RECORD_FRAME);
            let got = session.opener.open(&mut body).expect("server record opens");
            assert_eq!(
                (got.rtype, got.flags, hex(got.plaintext)),
                (rtype, flags, hex(&plaintext)),
                "the server's record differs from `{name}`"
            );
        }
        replayed += 1;
    }
    assert_eq!(replayed, 11);
    assert_eq!(
        std::fs::read(files.join(FILE_NAME)).unwrap(),
        v.bytes("file.content"),
        "the uploaded file"
    );
    drop(sock);
    stopper.stop();
    running.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
