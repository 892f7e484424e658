//! Every typed message body a peer with a valid key can send (proto/msg.rs).
//! The first byte picks the decoder, the rest is the body. For each:
//! - it accepts exactly the well-formed encodings (checked against a
//!   reference reading of PROTOCOL.md 7, written apart from the decoder);
//! - whatever decodes re-encodes to a value that decodes the same;
//! - the encoding is canonical: re-encoding gives the input byte for byte,
//!   except the flag bits of PUT and GET that this version ignores (they are
//!   dropped) and an unknown operation's body (not kept);
//! - names are UTF-8 of at most MAX_NAME_LEN bytes;
//! - FILE_END's `abort` is exactly the record's ABORT flag;
//! - an alert's message is cut to MAX_ALERT_MESSAGE bytes on encoding, on a
//!   character boundary by `Alert::new`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovtp::AlertCode;
use ovtp::constants::{MAX_NAME_LEN, REQUEST_ID_LEN};
use ovtp::hooks::Body;
use ovtp::hooks::msg::{
    Alert, DigestReply, FLAG_ABORT, FLAG_FIN, FileData, FileEnd, FilePrefix, Get,
    MAX_ALERT_MESSAGE, OP_DATA, OP_DIGEST, OP_GET, OP_PUT, OP_TEXT, Op, PUT_OVERWRITE, Put,
    ReadyToReceive, ReadyToSend, Request, Response, XFER_RESUME,
};

/// Decode `$x` as `$t`; if it decodes, its encoding must be `$canonical`
/// (the input with the bits the decoder ignores cleared) and decode to the
/// same value. Evaluates to whether `$x` decoded. (A macro, not a generic
/// function, so that the value decoded from the re-encoding may borrow from
/// a buffer of its own.)
macro_rules! round_trip {
    ($t:ident, $x:expr, $canonical:expr) => {
        match $t::decode($x) {
            Err(_) => false,
            Ok(value) => {
                let encoded = value.to_vec();
                let what = $t::WHAT;
                assert_eq!(encoded, $canonical, "{what} not re-encoded canonically: {value:?}");
                let again = $t::decode(&encoded).expect("a re-encoded value decodes");
                assert_eq!(again, value, "{what}: decode(encode(decode(x))) != decode(x)");
                true
            }
        }
    };
}

/// A reference reading of `name vec16 || <fixed> bytes`, written from the spec.
fn name_then(x: &[u8], fixed: usize) -> Option<&str> {
    let len = usize::from(u16::from_be_bytes(x.get(..2)?.try_into().unwrap()));
    let name = std::str::from_utf8(x.get(2..2 + len)?).ok()?;
    (len <= MAX_NAME_LEN && x.len() == 2 + len + fixed).then_some(name)
}

/// `x` with its last byte masked by `keep` (the flag bits a decoder keeps).
fn mask_last(x: &[u8], keep: u8) -> Vec<u8> {
    let mut out = x.to_vec();
    if let Some(last) = out.last_mut() {
        *last &= keep;
    }
    out
}

fn check_name(name: &str) {
    assert!(name.len() <= MAX_NAME_LEN && std::str::from_utf8(name.as_bytes()).is_ok());
}

fn alert(x: &[u8]) {
    let ok = x.len() >= 3 && {
        let len = usize::from(u16::from_be_bytes([x[1], x[2]]));
        len <= MAX_ALERT_MESSAGE && x.len() == 3 + len
    };
    assert_eq!(round_trip!(Alert, x, x), ok, "alert acceptance");
    if let Ok(a) = Alert::decode(x) {
        assert_eq!(a.code.to_u8(), x[0]);
        assert_eq!(AlertCode::from_u8(a.code.to_u8()), a.code);
    }
}

/// Alerts we build: any message is cut to the limit when encoded, and
/// `Alert::new` cuts on a character boundary.
fn alert_encode(x: &[u8]) {
    let Some((&code, message)) = x.split_first() else { return };
    let code = AlertCode::from_u8(code);
    let wire = Alert { code, message }.to_vec();
    let back = Alert::decode(&wire).expect("an encoded alert decodes");
    assert_eq!(back.message, &message[..message.len().min(MAX_ALERT_MESSAGE)]);
    let text = String::from_utf8_lossy(message);
    let built = Alert::new(code, &text);
    let cut = std::str::from_utf8(built.message).expect("Alert::new cuts on a char boundary");
    assert!(text.starts_with(cut) && cut.len() <= MAX_ALERT_MESSAGE);
    // Cut no more than the one character that would cross the limit.
    assert!(cut.len() == text.len() || cut.len() + 4 > MAX_ALERT_MESSAGE);
}

fn request(x: &[u8]) {
    let id_end = REQUEST_ID_LEN;
    let expect_ok = x.len() > id_end
        && match x[id_end] {
            OP_PUT => name_then(&x[id_end + 1..], 9).is_some(),
            OP_GET => name_then(&x[id_end + 1..], 41).is_some(),
            OP_DIGEST => name_then(&x[id_end + 1..], 0).is_some(),
            _ => true,
        };
    let canonical = match x.get(id_end) {
        Some(&OP_PUT) => mask_last(x, PUT_OVERWRITE | XFER_RESUME),
        Some(&OP_GET) => mask_last(x, XFER_RESUME),
        Some(&(OP_TEXT | OP_DATA | OP_DIGEST)) => x.to_vec(),
        _ => x[..x.len().min(id_end + 1)].to_vec(), // an unknown op's body is dropped
    };
    assert_eq!(round_trip!(Request, x, &canonical[..]), expect_ok, "request acceptance");
    let Ok(req) = Request::decode(x) else { return };
    assert_eq!(&req.id[..], &x[..id_end]);
    let body = &x[id_end + 1..];
    match req.op {
        Op::Text(b) | Op::Data(b) => assert_eq!(b, body),
        Op::Put(Put { name, .. }) | Op::Get(Get { name, .. }) | Op::Digest(name) => {
            check_name(name)
        }
        Op::Unknown(code) => {
            assert!(!matches!(code, OP_TEXT | OP_DATA | OP_PUT | OP_GET | OP_DIGEST))
        }
    }
}

fn put(x: &[u8]) {
    let ok = name_then(x, 9).is_some();
    assert_eq!(round_trip!(Put, x, &mask_last(x, PUT_OVERWRITE | XFER_RESUME)[..]), ok);
    if let Ok(p) = Put::decode(x) {
        check_name(p.name);
        let flags = x[x.len() - 1];
        assert_eq!((p.overwrite, p.resume), (flags & 1 != 0, flags & 2 != 0));
        assert_eq!(p.size.to_be_bytes(), x[x.len() - 9..x.len() - 1]);
    }
}

fn get(x: &[u8]) {
    let ok = name_then(x, 41).is_some();
    assert_eq!(round_trip!(Get, x, &mask_last(x, XFER_RESUME)[..]), ok);
    if let Ok(g) = Get::decode(x) {
        check_name(g.name);
        assert_eq!(g.resume, x[x.len() - 1] & XFER_RESUME != 0);
        assert_eq!(g.prefix, x[x.len() - 33..x.len() - 1]);
    }
}

fn file_end(flags: u8, x: &[u8]) {
    match FileEnd::from_record(flags, x) {
        Ok(end) => {
            assert_eq!(x.len(), 40);
            assert_eq!(end.abort, flags & FLAG_ABORT != 0, "abort is the ABORT flag");
            assert_eq!(end.to_vec(), x);
            assert_eq!(end.flags(), FLAG_FIN | (flags & FLAG_ABORT));
            assert_eq!(FileEnd::from_record(end.flags(), &end.to_vec()).unwrap(), end);
        }
        Err(_) => assert_ne!(x.len(), 40, "a 40-byte FILE_END is refused"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, x)) = data.split_first() else { return };
    match which % 12 {
        0 => alert(x),
        1 => alert_encode(x),
        2 => request(x),
        3 => put(x),
        4 => get(x),
        5 => assert_eq!(round_trip!(Response, x, x), x.len() >= REQUEST_ID_LEN + 2),
        6 => assert_eq!(round_trip!(DigestReply, x, x), x.len() == 40),
        7 => assert_eq!(round_trip!(ReadyToReceive, x, x), x.len() == 8),
        8 => assert_eq!(round_trip!(ReadyToSend, x, x), x.len() == 16),
        9 => assert_eq!(round_trip!(FileData, x, x), x.len() >= 8),
        11 => assert_eq!(round_trip!(FilePrefix, x, x), x.len() == 32),
        _ => {
            if let Some((&flags, rest)) = x.split_first() {
                file_end(flags, rest)
            }
        }
    }
});
