//! One connection, from handshake to close: the handshake driven over the
//! socket (with the server's two private-key operations in parallel), then
//! the request loop that answers each request at most once.

use super::files::{self, FileContext};
use super::handler::dispatch;
use super::reply_cache::{CacheKey, Claim};
use super::{Event, Shared, lock};
use crate::constants::*;
use crate::error::{Error, Result};
use crate::io::channel::Channel;
use crate::io::conn::Conn;
use crate::keys::Fingerprint;
use crate::message::{Payload, Reply, Request};
use crate::proto::codec::Body;
use crate::proto::handshake::{ServerAwaitAuth, Session};
use crate::proto::msg::{self, Op, REC_REQUEST, REC_RESPONSE, REQUEST_HEADER, Response};
use crate::rand::Rng;
use crate::status::{self, AlertCode};
use crate::store::locks::Owner;
use std::net::{SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Serve one accepted connection until it ends.
pub(crate) fn serve_connection(shared: &Shared, stream: TcpStream, peer: SocketAddr, id: u64) {
    let config = &shared.config;
    let Ok(mut conn) = Conn::new(stream, config.io_timeout) else { return };
    let mut rng = connection_rng(shared);
    let outcome = handshake(shared, &mut conn, &mut rng, id);
    lock(&shared.gate).leave(id, peer.ip(), outcome.is_err(), Instant::now());
    let channel = match outcome {
        Ok(session) => conn.into_channel(session, rng, config.max_message_size),
        Err(error) => {
            shared.emit(Event::HandshakeFailed { peer, error: &error });
            let (code, message) = alert_for(&error);
            conn.refuse(code, &message);
            return;
        }
    };
    let client = channel.peer.fingerprint();
    shared.emit(Event::Connected { peer, client: &client });
    let result = serve_requests(shared, id, channel, peer, &client);
    shared.emit(Event::Disconnected { peer, client: &client, error: result.as_ref().err() });
}

fn connection_rng(_shared: &Shared) -> Rng {
    #[cfg(feature = "test-hooks")]
    return _shared.config.test_rng_seed.map_or_else(Rng::system, Rng::from_seed);
    #[cfg(not(feature = "test-hooks"))]
    Rng::system()
}

/// The alert code a peer is told for a failed handshake, and a short message
/// that reveals nothing the peer does not already know.
fn alert_for(err: &Error) -> (AlertCode, String) {
    let (code, text) = match err {
        Error::NotAuthorized { .. } => {
            (AlertCode::Unauthorized, "client key is not in authorized_keys")
        }
        Error::Version { .. } => {
            let text = format!("this server speaks ovtp protocol version {PROTOCOL_VERSION}");
            return (AlertCode::Version, text);
        }
        Error::TooLarge { .. } => (AlertCode::TooLarge, "size limit exceeded"),
        Error::BadKeyShare => (AlertCode::KeyShare, "Diffie-Hellman share out of range"),
        Error::ShuttingDown => (AlertCode::ShuttingDown, "server is shutting down"),
        Error::Timeout(_) => (AlertCode::HandshakeFailed, "timed out"),
        _ => (AlertCode::HandshakeFailed, "handshake failed"),
    };
    (code, text.to_string())
}

fn handshake(shared: &Shared, conn: &mut Conn, rng: &mut Rng, id: u64) -> Result<Session> {
    let deadline = Instant::now() + shared.config.handshake_timeout;
    let hello = conn.read_frame(MAX_HANDSHAKE_FRAME, deadline, "handshake")?;
    if shared.stop.load(Ordering::SeqCst) {
        return Err(Error::ShuttingDown);
    }
    let (state, reply) = ServerAwaitAuth::read_client_hello(&shared.keys, &hello, rng, |key| {
        let authorized = shared.authorized.contains(key)?;
        if authorized {
            lock(&shared.gate).named(id);
        }
        Ok(authorized)
    })?;
    conn.write_all(&reply)?;
    let auth = conn.read_frame(MAX_HANDSHAKE_FRAME, deadline, "handshake")?;
    let verified = state.verify_client_auth(&auth, rng)?;
    // A public key is public: only its signature takes the connection out of
    // the stranger pool.
    lock(&shared.gate).promote(id);
    // Only now, with the client proven, does the server use its private key
    // and exponentiate. The client's half (unwrap its secret, then the
    // Diffie-Hellman secret) and ours (our share, then our signature) are
    // independent, so they run on two threads: each a private-key operation
    // and an exponentiation. (The unwrap draws its blinding from the system;
    // `rng` alone decides what goes on the wire.)
    let (theirs, ours) = std::thread::scope(|scope| {
        let theirs = scope.spawn(|| verified.client_secrets(&mut Rng::system()));
        let ours = verified.sign(rng);
        (theirs.join().unwrap_or(Err(Error::Malformed("key transport"))), ours)
    });
    let (session, reply) = verified.finish(theirs?, ours?);
    conn.write_all(&reply)?;
    Ok(session)
}

fn serve_requests(
    shared: &Shared,
    conn_id: u64,
    mut ch: Channel,
    peer: SocketAddr,
    client: &Fingerprint,
) -> Result<()> {
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            let _ = ch.send_alert(AlertCode::ShuttingDown, "server is shutting down");
            return Ok(());
        }
        let deadline = Instant::now() + shared.config.idle_timeout;
        let got = ch.recv(deadline, REQUEST_HEADER).map_err(|e| refused(shared, &mut ch, e))?;
        let Some(message) = got else { return Ok(()) };
        if message.rtype != REC_REQUEST {
            let _ = ch.send_alert(AlertCode::Protocol, "expected a request");
            return Err(Error::Malformed("expected a request record"));
        }
        let started = Instant::now();
        let request = msg::Request::decode(&message.payload)?;
        let caller = Caller { shared, client, peer };
        let (status, replayed) = match &request.op {
            Op::Text(_) | Op::Data(_) | Op::Unknown(_) => {
                let (reply, replayed) = answer(&caller, &request);
                // Pipelined requests already waiting: answer them all, then write once.
                ch.queue(REC_RESPONSE, &Response::header(&request.id, reply.status), &reply.body)?;
                if !ch.has_buffered_input() {
                    ch.flush()?;
                }
                (reply.status, replayed)
            }
            _ => (serve_file_op(&caller, conn_id, &mut ch, &request)?, false),
        };
        shared.emit(Event::Request {
            peer,
            client,
            op: request.op.code().1,
            bytes: message.payload.len() - REQUEST_HEADER,
            status,
            elapsed: started.elapsed(),
            replayed,
        });
    }
}

/// A message that could not be received: tell the peer when it is too large
/// (and read what it is still sending, so it sees the alert), then close.
fn refused(shared: &Shared, ch: &mut Channel, e: Error) -> Error {
    if let Error::TooLarge { .. } = e {
        let _ = ch.send_alert(AlertCode::TooLarge, "message larger than the server accepts");
        // At most twice a message's worth, for at most two seconds.
        ch.conn.linger(Duration::from_secs(2), 2 * shared.config.max_message_size as u64);
    }
    e
}

/// Who asks: the server, the client's key and its address.
struct Caller<'a> {
    shared: &'a Shared,
    client: &'a Fingerprint,
    peer: SocketAddr,
}

impl Caller<'_> {
    /// Call the handler; a panic answers HANDLER_PANICKED and harms nothing else.
    fn call(&self, payload: Payload) -> Reply {
        let request = Request { client: self.client, peer_addr: self.peer, payload };
        let handler = &*self.shared.handler;
        catch_unwind(AssertUnwindSafe(|| dispatch(handler, request))).unwrap_or_else(|_| {
            Reply::new(status::HANDLER_PANICKED, "the server's handler failed on this request")
        })
    }

    fn key(&self, request: &msg::Request<'_>) -> CacheKey {
        (self.client.clone(), request.id)
    }
}

/// File operations stream their own records; an upload's final reply is
/// remembered so that a retry after a lost reply is answered, not repeated.
fn serve_file_op(
    caller: &Caller<'_>,
    conn_id: u64,
    ch: &mut Channel,
    request: &msg::Request<'_>,
) -> Result<u16> {
    let shared = caller.shared;
    let key = caller.key(request);
    if let Op::Put(_) = request.op
        && let Some(reply) = shared.replies.stored(&key)
    {
        return files::respond(ch, &request.id, (*reply).clone()).map(|r| r.status);
    }
    let ctx = FileContext {
        root: shared.config.files_dir.as_deref(),
        max_file_size: shared.config.max_file_size,
        io_timeout: shared.config.io_timeout,
        locks: &shared.names,
        handler: &|payload| caller.call(payload),
        owner: Owner { request: key.clone(), conn: conn_id },
        supersede: &|conn| shared.close(conn),
        remember: &|reply: &Reply| shared.replies.remember(key.clone(), reply.clone()),
    };
    let reply = match &request.op {
        Op::Put(put) => files::serve_put(&ctx, ch, &request.id, put)?,
        Op::Get(get) => files::serve_get(&ctx, ch, &request.id, get)?,
        Op::Digest(name) => files::serve_digest(&ctx, ch, &request.id, name)?,
        Op::List(list) => files::serve_list(&ctx, ch, &request.id, list)?,
        Op::MkDir(name) => files::serve_mkdir(&ctx, ch, &request.id, name)?,
        _ => return Err(Error::Malformed("not a file operation")),
    };
    Ok(reply.status)
}

/// Answer a message at most once: a retry with the same id gets the first reply.
fn answer(caller: &Caller<'_>, request: &msg::Request<'_>) -> (Arc<Reply>, bool) {
    let replies = &caller.shared.replies;
    let key = caller.key(request);
    if let Claim::Answered(reply) = replies.claim(&key, caller.shared.config.io_timeout) {
        return (reply, true);
    }
    let reply =
        Arc::new(message_payload(&request.op).map(|p| caller.call(p)).unwrap_or_else(|r| r));
    replies.finish(key, reply.clone());
    (reply, false)
}

fn message_payload(op: &Op<'_>) -> std::result::Result<Payload, Reply> {
    match op {
        Op::Text(body) => String::from_utf8(body.to_vec()).map(Payload::Text).map_err(|e| {
            Reply::new(status::BAD_REQUEST, format!("text message is not valid UTF-8: {e}"))
        }),
        Op::Data(body) => Ok(Payload::Data(body.to_vec())),
        Op::Unknown(other) => {
            Err(Reply::new(status::UNSUPPORTED, format!("unknown operation {other}")))
        }
        _ => Err(Reply::new(status::BAD_REQUEST, "not a message")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_handshake_failure_gets_its_documented_alert() {
        // PROTOCOL.md 9: the alert a client is told for each way a handshake fails.
        let cases = [
            (Error::NotAuthorized { fingerprint: String::new() }, 2),
            (Error::Version { ours: 1, theirs: 9 }, 3),
            (Error::Timeout("handshake"), 4),
            (Error::BadSignature, 4),
            (Error::Malformed("hello"), 4),
            (Error::Refused { code: AlertCode::HandshakeFailed, message: String::new() }, 4),
            (Error::ShuttingDown, 5),
            (Error::TooLarge { what: "public key", size: 2000, limit: 1024 }, 6),
        ];
        for (error, code) in cases {
            let (alert, message) = alert_for(&error);
            assert_eq!(alert.to_u8(), code, "{error:?}");
            assert!(!message.contains("hello") && !message.contains("public key"), "{message}");
        }
    }

    #[test]
    fn a_text_message_that_is_not_utf8_is_a_bad_request_that_says_where() {
        let reply = message_payload(&Op::Text(b"ok\xff")).unwrap_err();
        assert_eq!(reply.status, status::BAD_REQUEST);
        let expected =
            "text message is not valid UTF-8: invalid utf-8 sequence of 1 bytes from index 2";
        assert_eq!(reply.text(), expected);
        assert_eq!(message_payload(&Op::Text(b"ok")), Ok(Payload::Text("ok".into())));
        let unknown = message_payload(&Op::Unknown(9)).unwrap_err();
        assert_eq!(
            (unknown.status, unknown.text()),
            (status::UNSUPPORTED, "unknown operation 9".into())
        );
    }
}
