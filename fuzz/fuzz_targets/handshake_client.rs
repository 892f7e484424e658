//! The client's handshake parsers: the input is what a server sends, a
//! ServerHello (or alert) frame then a ServerAuth frame (with its
//! Diffie-Hellman share, which must be 1 < Y < p-1). Keys and the client's
//! seed are those of tests/vectors, so the vector frames complete a handshake.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovtp::constants::MAX_HANDSHAKE_FRAME;
use ovtp::hooks::ClientStart;
use ovtp::hooks::split_frame;
use ovtp::{Error, KeyPair, PublicKey, Rng};
use std::sync::OnceLock;

const CLIENT_SEED: [u8; 32] = *b"ovtp test vectors: client seed!!";

fn keys() -> &'static (KeyPair, PublicKey) {
    static K: OnceLock<(KeyPair, PublicKey)> = OnceLock::new();
    K.get_or_init(|| {
        let client = KeyPair::from_pem(include_str!("../../tests/vectors/client.pem")).unwrap();
        let server = KeyPair::from_pem(include_str!("../../tests/vectors/server.pem")).unwrap();
        (client, server.public().clone())
    })
}

fuzz_target!(|data: &[u8]| {
    let (client, server) = keys();
    let mut rng = Rng::from_seed(CLIENT_SEED);
    let (start, _client_hello) = ClientStart::new(client, &mut rng).unwrap();
    let Ok((hello, rest)) = split_frame(data, MAX_HANDSHAKE_FRAME) else {
        return;
    };
    // The client pins the vector server key, as a strict client would.
    let pin = |k: &PublicKey| {
        if k == server { Ok(()) } else { Err(Error::InvalidInput("not the pinned key".into())) }
    };
    let before = client.private_operations();
    let Ok((state, _client_auth)) = start.read_server_hello(hello, &mut rng, pin) else {
        assert_eq!(client.private_operations(), before, "signed for a refused server");
        return;
    };
    let Ok((auth, _)) = split_frame(rest, MAX_HANDSHAKE_FRAME) else {
        return;
    };
    let before = client.private_operations();
    match state.read_server_auth(auth, &mut rng) {
        Ok(session) => assert!(session.peer() == server),
        Err(Error::Malformed("key transport" | "wrapped secret has the wrong length")) => {}
        Err(_) => assert_eq!(
            client.private_operations(),
            before,
            "private-key work before the server's signature verified"
        ),
    }
});
