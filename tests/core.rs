//! The core properties, over real sockets on 127.0.0.1 (port 0), one per test.

mod common;

use common::*;
use ovtp::{
    AlertCode, AuthorizedKeys, Client, Error, HostTrust, KnownHosts, Reply, Request, ServerConfig,
    status,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn message_and_binary_payload_round_trip() {
    let srv = TestServer::start(quick_server());
    let mut c = srv.client();
    let r = c.send_message("héllo, wörld").unwrap();
    assert_eq!((r.status, r.text()), (status::OK, "ok: héllo, wörld".to_string()));
    let data: Vec<u8> = (0..=255u8).chain([0, 0xff, 0x80]).collect();
    let r = c.send_data(&data).unwrap();
    assert_eq!(r.status, 7);
    assert_eq!(r.body, data.iter().rev().copied().collect::<Vec<_>>());
    let r = c.send_data(&[]).unwrap();
    assert_eq!((r.status, r.body.len()), (7, 0));
    assert_eq!(srv.calls(), 3);
}

#[test]
fn many_requests_on_one_connection() {
    let srv = TestServer::start(quick_server());
    let mut c = srv.client();
    for i in 0..200 {
        assert_eq!(c.send_message(&format!("m{i}")).unwrap().text(), format!("ok: m{i}"));
    }
    assert_eq!(srv.calls(), 200);
    // One handshake only: the server did exactly 2 private-key operations (decrypt + sign).
    assert_eq!(srv.keys.private_operations(), 2);
}

#[test]
fn messages_larger_than_one_record_round_trip_and_oversized_ones_are_refused() {
    let config = ServerConfig { max_message_size: 3 << 20, ..quick_server() };
    let srv = TestServer::start(config);
    let mut c = srv.client();
    let big: Vec<u8> = (0..(2usize << 20) + 12345).map(|i| (i * 7 % 251) as u8).collect();
    let r = c.send_data(&big).unwrap();
    assert_eq!(r.body.len(), big.len());
    assert_eq!(r.body[0], big[big.len() - 1]);
    // 4 MiB exceeds the server's 3 MiB limit: refused with a clear error, handler not called.
    let before = srv.calls();
    let err = c.send_data(&vec![1u8; 4 << 20]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Refused { code: AlertCode::TooLarge, .. } | Error::Io(_) | Error::Closed(_)
        ),
        "{err}"
    );
    assert_eq!(srv.calls(), before);
    // The server keeps serving.
    assert!(srv.client().send_message("after").unwrap().is_ok());
}

#[test]
fn unauthorized_client_is_refused_and_costs_no_private_key_operation() {
    let srv = TestServer::start(quick_server());
    let before = srv.keys.private_operations();
    for _ in 0..5 {
        let err =
            Client::connect_with(&srv.addr.to_string(), stranger_keys(), srv.pin(), quick_client())
                .unwrap_err();
        match &err {
            Error::Refused { code: AlertCode::Unauthorized, .. } => {}
            other => panic!("expected an unauthorized refusal, got {other}"),
        }
        assert!(err.to_string().contains("not authorized"), "{err}");
    }
    assert_eq!(
        srv.keys.private_operations(),
        before,
        "the server did private-key work for a stranger"
    );
    assert_eq!(srv.calls(), 0);
    // An authorized client costs exactly two (unwrap the client's secret, sign the transcript).
    srv.client().send_message("hi").unwrap();
    assert_eq!(srv.keys.private_operations(), before + 2);
}

#[test]
fn client_with_a_stolen_public_key_but_no_private_key_is_refused_after_a_signature_check() {
    // A stranger presents the authorized client's public key but signs with its own private key.
    // We simulate by driving the handshake states directly with mismatched keys.
    use ovtp::hooks::{ClientStart, ServerAwaitAuth};
    use ovtp::{KeyPair, Rng};
    let srv_keys = server_keys();
    let client_pub_only = client_keys();
    let mut rng = Rng::system();
    // The server's generator is seeded, to see what it draws (its nonce, then nothing).
    let mut srng = Rng::from_seed([9; 32]);
    let (start, hello) = ClientStart::new(&client_pub_only, &mut rng).unwrap();
    let (server_state, shello) =
        ServerAwaitAuth::read_client_hello(&srv_keys, &hello[4..], &mut srng, |_| Ok(true))
            .unwrap();
    let (_, auth) = start.read_server_hello(&shello[4..], &mut rng, |_| Ok(())).unwrap();
    // Replace the signature with one made by another key: it must not verify.
    let mut forged = auth.clone();
    let n = forged.len();
    let other: KeyPair = stranger_keys();
    let (start2, hello2) = ClientStart::new(&other, &mut rng).unwrap();
    let (_s2, shello2) =
        ServerAwaitAuth::read_client_hello(&srv_keys, &hello2[4..], &mut rng, |_| Ok(true))
            .unwrap();
    let (_, auth2) = start2.read_server_hello(&shello2[4..], &mut rng, |_| Ok(())).unwrap();
    let sig_len = 256;
    forged[n - sig_len..].copy_from_slice(&auth2[auth2.len() - sig_len..]);
    let before = srv_keys.private_operations();
    let err =
        server_state.read_client_auth(&forged[4..], &mut srng).err().expect("forged auth accepted");
    assert!(matches!(err, Error::BadSignature), "{err}");
    assert_eq!(
        srv_keys.private_operations(),
        before,
        "private-key work before the client signature verified"
    );
    // No exponent was drawn, so no exponentiation can have happened: the
    // server's next draw is the block right after its nonce.
    let mut fresh = Rng::from_seed([9; 32]);
    let _nonce: [u8; 32] = fresh.array().unwrap();
    assert_eq!(srng.array::<32>().unwrap(), fresh.array::<32>().unwrap(), "an exponent was drawn");
}

#[test]
fn server_whose_key_changed_is_refused_by_a_strict_client() {
    let dir = TempDir::new("kh");
    let kh = KnownHosts::new(dir.join("known_hosts"));
    let srv = TestServer::start(quick_server());
    let host = format!("{}", srv.addr);

    // Strict and unknown: refused, with the fingerprint and the way to accept it.
    let err = Client::connect_with(
        &host,
        client_keys(),
        HostTrust::KnownHosts(kh.clone()),
        quick_client(),
    )
    .unwrap_err();
    match &err {
        Error::UnknownHost { fingerprint, .. } => {
            assert_eq!(*fingerprint, srv.keys.fingerprint().to_string())
        }
        other => panic!("expected UnknownHost, got {other}"),
    }
    assert!(err.to_string().contains("--accept-new"));

    // Accept-new records it; strict then works.
    let mut c = Client::connect_with(
        &host,
        client_keys(),
        HostTrust::AcceptNew(kh.clone()),
        quick_client(),
    )
    .unwrap();
    c.send_message("first").unwrap();
    let mut c = Client::connect_with(
        &host,
        client_keys(),
        HostTrust::KnownHosts(kh.clone()),
        quick_client(),
    )
    .unwrap();
    assert!(c.send_message("second").unwrap().is_ok());
    drop(srv);

    // Another server key on the same host:port: refused, naming both fingerprints, even in accept-new mode.
    let other = other_server_keys();
    let ak = AuthorizedKeys::new(dir.join("ak"));
    ak.add(client_keys().public(), "c").unwrap();
    let listener_addr = host.clone();
    let server = match ovtp::Server::bind(&listener_addr, other.clone(), ak, |_r: Request<'_>| {
        Reply::ok("x")
    }) {
        Ok(s) => s,
        Err(e) => {
            println!("skipping the changed-key half: port {listener_addr} was taken again: {e}");
            return;
        }
    };
    let stopper = server.stopper().unwrap();
    let t = std::thread::spawn(move || server.run());
    let old = server_keys().fingerprint().to_string();
    let new = other.fingerprint().to_string();
    for trust in [HostTrust::KnownHosts(kh.clone()), HostTrust::AcceptNew(kh.clone())] {
        let err = Client::connect_with(&host, client_keys(), trust, quick_client()).unwrap_err();
        match &err {
            Error::HostKeyChanged { expected, actual, .. } => {
                assert_eq!((expected, actual), (&old, &new));
            }
            other => panic!("expected HostKeyChanged, got {other}"),
        }
        let text = err.to_string();
        assert!(text.contains(&old) && text.contains(&new), "{text}");
    }
    // A pinned fingerprint that does not match is refused the same way.
    let err = Client::connect_with(
        &host,
        client_keys(),
        HostTrust::Fingerprint(server_keys().fingerprint()),
        quick_client(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::HostKeyChanged { .. }), "{err}");
    stopper.stop();
    t.join().unwrap().unwrap();
}

/// Flip one bit in the client's first record (frame index 2 toward the server).
fn tamper_first_request(byte: usize, bit: u8) -> Arc<Mutator> {
    Arc::new(move |_conn, dir, n, frame: &[u8]| {
        let mut f = frame.to_vec();
        if dir == Dir::ToServer && n == 2 {
            let i = byte.min(f.len() - 1);
            f[i] ^= 1 << bit;
        }
        Action::Forward(f)
    })
}

#[test]
fn one_flipped_bit_in_a_captured_record_closes_the_connection_and_the_handler_never_sees_it() {
    let srv = TestServer::start(quick_server());
    // A record frame is: len(4) type(1) flags(1) iv(16) ciphertext(..) tag(32). Flip one bit in each field.
    for (byte, bit) in [(3usize, 0u8), (4, 1), (5, 0), (10, 7), (30, 3), (60, 5), (usize::MAX, 0)] {
        let calls = srv.calls();
        let proxy_addr = proxy(srv.addr, 1, tamper_first_request(byte, bit));
        let config = ovtp::ClientConfig { retries: 0, ..quick_client() };
        let mut c = Client::connect_with(&proxy_addr.to_string(), client_keys(), srv.pin(), config)
            .unwrap();
        let err = c.send_message("pay 100 to alice").unwrap_err();
        assert!(
            matches!(err, Error::Closed(_) | Error::Io(_) | Error::Timeout(_)),
            "byte {byte}: {err}"
        );
        assert_eq!(srv.calls(), calls, "byte {byte}: the handler saw a tampered request");
    }
    // The server still serves an honest client.
    assert!(srv.client().send_message("still here").unwrap().is_ok());
}

#[test]
fn replayed_record_is_rejected_and_the_handler_runs_once() {
    let srv = TestServer::start(quick_server());
    let dup: Arc<Mutator> = Arc::new(|_c, dir, n, f: &[u8]| {
        if dir == Dir::ToServer && n == 2 { Action::Duplicate } else { Action::Forward(f.to_vec()) }
    });
    let proxy_addr = proxy(srv.addr, 1, dup);
    let config = ovtp::ClientConfig { retries: 0, ..quick_client() };
    let mut c =
        Client::connect_with(&proxy_addr.to_string(), client_keys(), srv.pin(), config).unwrap();
    // The first copy is answered; the replayed copy makes the server close the connection.
    let first = c.send_message("once");
    let deadline = Instant::now() + Duration::from_secs(5);
    while srv.calls() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = c.send_message("twice");
    assert!(first.is_ok() || second.is_err());
    assert!(second.is_err(), "the connection survived a replayed record");
    assert_eq!(srv.calls(), 1);
}

#[test]
fn reordered_and_dropped_records_are_rejected() {
    let srv = TestServer::start(quick_server());
    // Drop the first request record; the second request then arrives with the wrong sequence number.
    let drop_first: Arc<Mutator> = Arc::new(|_c, dir, n, f: &[u8]| {
        if dir == Dir::ToServer && n == 2 { Action::Drop } else { Action::Forward(f.to_vec()) }
    });
    let proxy_addr = proxy(srv.addr, 1, drop_first);
    let config =
        ovtp::ClientConfig { retries: 0, io_timeout: Duration::from_secs(1), ..quick_client() };
    let mut c =
        Client::connect_with(&proxy_addr.to_string(), client_keys(), srv.pin(), config).unwrap();
    assert!(c.send_message("lost").is_err());
    assert_eq!(srv.calls(), 0);

    // Reorder: hold request 1, send request 2 first (the client pipelines through raw frames here).
    let held: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let h = held.clone();
    let swap: Arc<Mutator> = Arc::new(move |_c, dir, n, f: &[u8]| {
        if dir == Dir::ToServer && n == 2 {
            *h.lock().unwrap() = Some(f.to_vec());
            return Action::Drop;
        }
        if dir == Dir::ToServer && n == 3 {
            let mut both = f.to_vec();
            both.extend(h.lock().unwrap().take().unwrap());
            return Action::Forward(both);
        }
        Action::Forward(f.to_vec())
    });
    let proxy_addr = proxy(srv.addr, 1, swap);
    let config =
        ovtp::ClientConfig { retries: 0, io_timeout: Duration::from_millis(500), ..quick_client() };
    let mut c =
        Client::connect_with(&proxy_addr.to_string(), client_keys(), srv.pin(), config).unwrap();
    assert!(c.send_message("one").is_err()); // held back, times out
    let _ = c.send_message("two");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(srv.calls(), 0, "a reordered record was accepted");
}

#[test]
fn reflected_record_is_rejected() {
    let srv = TestServer::start(quick_server());
    // Send the server's own first response back to it as if it were a request.
    let reflected: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let r = reflected.clone();
    let reflect: Arc<Mutator> = Arc::new(move |_c, dir, n, f: &[u8]| {
        if dir == Dir::ToClient && n == 2 {
            *r.lock().unwrap() = Some(f.to_vec());
        }
        if dir == Dir::ToServer
            && n == 3
            && let Some(own) = r.lock().unwrap().take()
        {
            return Action::Forward(own);
        }
        Action::Forward(f.to_vec())
    });
    let proxy_addr = proxy(srv.addr, 1, reflect);
    let config = ovtp::ClientConfig { retries: 0, ..quick_client() };
    let mut c =
        Client::connect_with(&proxy_addr.to_string(), client_keys(), srv.pin(), config).unwrap();
    assert!(c.send_message("one").is_ok());
    assert!(c.send_message("two").is_err(), "a reflected record was accepted");
    assert_eq!(srv.calls(), 1);
}

#[test]
fn length_prefix_of_4_gib_is_rejected_without_allocating_it() {
    let srv = TestServer::start(quick_server());
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    s.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    // The server answered at once with a plaintext alert "limit exceeded" and closed;
    // it did not wait for (or allocate) 4 GiB.
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(answer.len() > 11, "no alert: {answer:?}");
    assert_eq!(&answer[4..8], b"OVTP");
    assert_eq!(answer[10], 0x15, "alert frame type");
    assert_eq!(answer[11], AlertCode::TooLarge.to_u8());
    assert!(srv.client().send_message("next").unwrap().is_ok());
}

#[test]
fn a_client_sending_one_byte_per_second_is_cut_off_at_the_handshake_deadline() {
    let config = ServerConfig { handshake_timeout: Duration::from_millis(1500), ..quick_server() };
    let srv = TestServer::start(config);
    let addr = srv.addr;
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let started = Instant::now();
        // A valid-looking hello, one byte at a time, for at most 10 seconds.
        let hello = [0u8, 0, 1, 0, b'O', b'V', b'T', b'P', 0, 1, 1];
        for b in hello.iter().cycle().take(10) {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => break,
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(900));
        }
        started.elapsed()
    });
    // Meanwhile, other clients are served promptly.
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    assert!(srv.client().send_message("fast").unwrap().is_ok());
    assert!(t.elapsed() < Duration::from_secs(2));
    let cut_after = slow.join().unwrap();
    assert!(
        cut_after >= Duration::from_millis(1400) && cut_after < Duration::from_secs(5),
        "slow client was cut off after {cut_after:?}"
    );
}

#[test]
fn the_connection_cap_answers_busy_promptly() {
    let config = ServerConfig { max_connections: 2, ..quick_server() };
    let srv = TestServer::start(config);
    let mut a = srv.client();
    let mut b = srv.client();
    a.send_message("a").unwrap();
    b.send_message("b").unwrap();
    let started = Instant::now();
    let config = ovtp::ClientConfig { retries: 0, ..quick_client() };
    let err =
        Client::connect_with(&srv.addr.to_string(), client_keys(), srv.pin(), config).unwrap_err();
    assert!(matches!(err, Error::Refused { code: AlertCode::Busy, .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "busy refusal took {:?}",
        started.elapsed()
    );
    // When a slot frees, new clients get in again.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Client::connect_with(&srv.addr.to_string(), client_keys(), srv.pin(), quick_client())
        {
            Ok(mut c) => {
                assert!(c.send_message("in").unwrap().is_ok());
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("slot never freed: {e}"),
        }
    }
    b.send_message("b still works").unwrap();
}

#[test]
fn a_panicking_handler_does_not_take_the_server_down() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let srv = TestServer::start_with(quick_server(), calls, move |req: Request<'_>| {
        c.fetch_add(1, Ordering::SeqCst);
        match req.payload {
            ovtp::Payload::Text(t) if t == "boom" => panic!("handler exploded"),
            _ => Reply::ok("fine"),
        }
    });
    let mut client = srv.client();
    let r = client.send_message("boom").unwrap();
    assert_eq!(r.status, status::HANDLER_PANICKED);
    // Same connection still works, and new connections too.
    assert_eq!(client.send_message("next").unwrap().text(), "fine");
    assert_eq!(srv.client().send_message("other").unwrap().text(), "fine");
    assert_eq!(srv.calls(), 3);
}

#[test]
fn a_retry_after_a_lost_reply_does_not_run_the_handler_twice() {
    let srv = TestServer::start(quick_server());
    // On the first connection, cut the line when the reply comes back.
    let cut_reply: Arc<Mutator> = Arc::new(|conn, dir, n, f: &[u8]| {
        if conn == 0 && dir == Dir::ToClient && n == 2 {
            Action::Close
        } else {
            Action::Forward(f.to_vec())
        }
    });
    let proxy_addr = proxy(srv.addr, 2, cut_reply);
    let mut c =
        Client::connect_with(&proxy_addr.to_string(), client_keys(), srv.pin(), quick_client())
            .unwrap();
    let r = c.send_message("transfer 100").unwrap();
    assert_eq!(r.text(), "ok: transfer 100");
    assert_eq!(srv.calls(), 1, "the handler ran again for a retried request");
}

#[test]
fn adding_and_removing_a_key_takes_effect_without_a_restart() {
    let srv = TestServer::start(quick_server());
    let ak = AuthorizedKeys::new(&srv.authorized);
    let stranger = stranger_keys();
    let connect =
        || Client::connect_with(&srv.addr.to_string(), stranger.clone(), srv.pin(), quick_client());
    assert!(matches!(connect().unwrap_err(), Error::Refused { code: AlertCode::Unauthorized, .. }));
    assert!(ak.add(stranger.public(), "added later").unwrap());
    let mut c = connect().unwrap();
    assert!(c.send_message("now allowed").unwrap().is_ok());
    assert!(ak.remove(&stranger.fingerprint()).unwrap());
    assert!(matches!(connect().unwrap_err(), Error::Refused { code: AlertCode::Unauthorized, .. }));
}

#[test]
fn a_peer_with_another_protocol_version_gets_a_clear_error() {
    let srv = TestServer::start(quick_server());
    // A version-1 ClientHello (the layout of both versions), naming an authorized key.
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut body = b"OVTP".to_vec();
    body.extend_from_slice(&1u16.to_be_bytes());
    body.push(1);
    body.extend_from_slice(&[7u8; 32]);
    let key = client_keys().public().to_der().to_vec();
    body.extend_from_slice(&(key.len() as u16).to_be_bytes());
    body.extend(key);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    s.write_all(&frame).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert_eq!(&answer[4..11], b"OVTP\x00\x02\x15", "a version-2 plaintext alert");
    assert_eq!(answer[11], AlertCode::Version.to_u8());
    let msg = String::from_utf8_lossy(&answer[14..]);
    assert!(msg.contains("version 2"), "{msg}");

    // And the client side maps a peer's different version to Error::Version.
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_addr = fake.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = fake.accept() {
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let mut body = b"OVTP".to_vec();
            body.extend_from_slice(&1u16.to_be_bytes());
            body.push(2);
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend(body);
            let _ = s.write_all(&frame);
        }
    });
    let err =
        Client::connect_with(&fake_addr.to_string(), client_keys(), srv.pin(), quick_client())
            .unwrap_err();
    assert!(matches!(err, Error::Version { ours: 2, theirs: 1 }), "{err}");
    assert!(err.to_string().contains("we speak version 2, the peer speaks version 1"), "{err}");
}

#[test]
fn stopping_from_another_thread_makes_run_return() {
    let srv = TestServer::start(quick_server());
    let mut c = srv.client();
    c.send_message("before").unwrap();
    let started = Instant::now();
    srv.stop().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "stop took {:?}", started.elapsed());
    let config = ovtp::ClientConfig { retries: 0, ..quick_client() };
    assert!(
        c.send_message("after").is_err()
            || Client::connect_with(
                "127.0.0.1:1",
                client_keys(),
                HostTrust::Fingerprint(server_keys().fingerprint()),
                config
            )
            .is_err()
    );
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let config = ServerConfig { idle_timeout: Duration::from_millis(300), ..quick_server() };
    let srv = TestServer::start(config);
    let config = ovtp::ClientConfig { retries: 0, ..quick_client() };
    let mut c =
        Client::connect_with(&srv.addr.to_string(), client_keys(), srv.pin(), config).unwrap();
    c.send_message("a").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(c.send_message("b").is_err(), "idle connection was kept open");
    // With retries (the default), the client reconnects transparently.
    let mut c = srv.client();
    c.send_message("a").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(c.send_message("b").unwrap().is_ok());
}

#[test]
fn a_batch_of_messages_is_pipelined_and_answered_in_order() {
    let srv = TestServer::start(quick_server());
    let mut c = srv.client();
    let texts: Vec<String> = (0..2000).map(|i| format!("message number {i}")).collect();
    let items: Vec<ovtp::Outgoing<'_>> = texts.iter().map(|t| ovtp::Outgoing::Text(t)).collect();
    let replies = c.send_batch(&items).unwrap();
    assert_eq!(replies.len(), 2000);
    for (t, r) in texts.iter().zip(&replies) {
        assert_eq!(r.text(), format!("ok: {t}"));
    }
    assert_eq!(srv.calls(), 2000);
    // The connection is still usable for ordinary requests, and mixed batches work.
    let data = [1u8, 2, 3];
    let replies = c.send_batch(&[ovtp::Outgoing::Data(&data), ovtp::Outgoing::Text("x")]).unwrap();
    assert_eq!((replies[0].status, replies[0].body.clone()), (7, vec![3, 2, 1]));
    assert_eq!(c.send_message("single").unwrap().text(), "ok: single");
}

#[test]
fn a_batch_interrupted_by_a_lost_connection_is_completed_without_running_any_handler_twice() {
    let srv = TestServer::start(quick_server());
    // Cut the first connection after 300 replies.
    let cut: Arc<Mutator> = Arc::new(|conn, dir, n, f: &[u8]| {
        if conn == 0 && dir == Dir::ToClient && n == 2 + 300 {
            Action::Close
        } else {
            Action::Forward(f.to_vec())
        }
    });
    let proxy_addr = proxy(srv.addr, 3, cut);
    let mut c =
        Client::connect_with(&proxy_addr.to_string(), client_keys(), srv.pin(), quick_client())
            .unwrap();
    let texts: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
    let items: Vec<ovtp::Outgoing<'_>> = texts.iter().map(|t| ovtp::Outgoing::Text(t)).collect();
    let replies = c.send_batch(&items).unwrap();
    for (t, r) in texts.iter().zip(&replies) {
        assert_eq!(r.text(), format!("ok: {t}"));
    }
    assert_eq!(srv.calls(), 1000, "a retried request ran the handler again");
}

/// `[::1]:0` bound, or `None` (with the reason printed) where this machine has
/// no IPv6 loopback.
fn ipv6_loopback() -> Option<std::net::TcpListener> {
    match std::net::TcpListener::bind("[::1]:0") {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("skipped: no IPv6 loopback here ([::1]: {e})");
            None
        }
    }
}

#[test]
fn one_server_serves_ipv4_and_ipv6_listeners_and_stops_both() {
    let Some(v6) = ipv6_loopback() else { return };
    let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = TempDir::new("dual");
    let ak = ovtp::AuthorizedKeys::new(dir.join("authorized_keys"));
    ak.add(client_keys().public(), "test client").unwrap();
    let keys = server_keys();
    let handler = |req: Request<'_>| Reply::ok(format!("{:?}", req.peer_addr.is_ipv6()));
    let server =
        ovtp::Server::from_listeners(vec![v4, v6], keys.clone(), ak, quick_server(), handler)
            .unwrap();
    let addrs = server.local_addrs().unwrap();
    let stopper = server.stopper().unwrap();
    let running = std::thread::spawn(move || server.run());
    let pin = HostTrust::Fingerprint(keys.fingerprint());
    for (addr, v6) in [(addrs[0], "false"), (addrs[1], "true")] {
        let mut c =
            Client::connect_with(&addr.to_string(), client_keys(), pin.clone(), quick_client())
                .unwrap();
        assert_eq!(c.send_message("hi").unwrap().text(), v6, "{addr}");
    }
    stopper.stop();
    running.join().unwrap().unwrap();
}

#[test]
fn a_server_serves_a_listener_its_caller_bound() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = TempDir::new("own-listener");
    let ak = ovtp::AuthorizedKeys::new(dir.join("authorized_keys"));
    ak.add(client_keys().public(), "test client").unwrap();
    let keys = server_keys();
    let handler = |req: Request<'_>| Reply::ok(format!("got {:?}", req.payload));
    let server =
        ovtp::Server::from_listener(listener, keys.clone(), ak, quick_server(), handler).unwrap();
    assert_eq!(server.local_addrs().unwrap(), vec![addr], "not the caller's socket");
    let stopper = server.stopper().unwrap();
    let running = std::thread::spawn(move || server.run());
    let pin = HostTrust::Fingerprint(keys.fingerprint());
    let mut c =
        Client::connect_with(&addr.to_string(), client_keys(), pin, quick_client()).unwrap();
    let text = c.send_message("hi").unwrap().text();
    assert!(text.starts_with("got ") && text.contains("hi"), "{text}");
    stopper.stop();
    running.join().unwrap().unwrap();
}
