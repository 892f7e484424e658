//! The server's handshake parsers: the input is what a client sends, a
//! ClientHello frame then a ClientAuth frame (with its Diffie-Hellman share).
//! The server key and seed are those of tests/vectors, so the seed corpus (the
//! vector frames) completes a handshake.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovtp::constants::MAX_HANDSHAKE_FRAME;
use ovtp::hooks::ServerAwaitAuth;
use ovtp::hooks::split_frame;
use ovtp::{Error, KeyPair, PublicKey, Rng};
use std::sync::OnceLock;

const SERVER_SEED: [u8; 32] = *b"ovtp test vectors: server seed!!";

fn keys() -> &'static (KeyPair, PublicKey) {
    static K: OnceLock<(KeyPair, PublicKey)> = OnceLock::new();
    K.get_or_init(|| {
        let server = KeyPair::from_pem(include_str!("../../tests/vectors/server.pem")).unwrap();
        let client = KeyPair::from_pem(include_str!("../../tests/vectors/client.pem")).unwrap();
        (server, client.public().clone())
    })
}

fuzz_target!(|data: &[u8]| {
    let (server, client) = keys();
    let Ok((hello, rest)) = split_frame(data, MAX_HANDSHAKE_FRAME) else {
        return;
    };
    let mut rng = Rng::from_seed(SERVER_SEED);
    let before = server.private_operations();
    // Any well-formed key counts as authorized, so that the fuzzer gets past the hello.
    let state = ServerAwaitAuth::read_client_hello(server, hello, &mut rng, |_| Ok(true));
    assert_eq!(server.private_operations(), before, "private-key work on a hello");
    let Ok((state, _server_hello)) = state else {
        return;
    };
    let Ok((auth, _)) = split_frame(rest, MAX_HANDSHAKE_FRAME) else {
        return;
    };
    match state.read_client_auth(auth, &mut rng) {
        // Only the vector client can sign; anything else would be a forgery.
        Ok((session, _)) => assert!(session.peer() == client),
        // Failures after the signature verified come from the private-key step.
        Err(Error::Malformed("key transport" | "wrapped secret has the wrong length")) => {}
        Err(_) => {
            assert_eq!(
                server.private_operations(),
                before,
                "private-key work before the client's signature verified"
            );
            // Nothing drawn after the nonce: no exponent, so no exponentiation.
            let mut fresh = Rng::from_seed(SERVER_SEED);
            let _nonce: [u8; 32] = fresh.array().unwrap();
            assert_eq!(
                rng.array::<32>().unwrap(),
                fresh.array::<32>().unwrap(),
                "an exponent was drawn before the client's signature verified"
            );
        }
    }
});
