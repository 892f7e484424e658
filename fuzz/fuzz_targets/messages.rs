//! Every typed message body a peer with a valid key can send (proto/msg.rs).
//! The first byte picks the decoder, the rest is the body. For each:
//! - it accepts exactly the well-formed encodings (checked against a
//!   reference reading of PROTOCOL.md 7, written apart from the decoder);
//! - whatever decodes re-encodes to a value that decodes the same;
//! - the encoding is canonical: re-encoding gives the input byte for byte,
//!   except the flag bits of PUT and GET that this version ignores (they are
//!   dropped) and an unknown operation's body (not kept);
//! - names are UTF-8 of at most MAX_NAME_LEN bytes; listed names of at most
//!   MAX_ENTRY_NAME, at most LIST_PAGE_ENTRIES of them in a page;
//! - no mode beyond 0o777 decodes (PRESERVE's FileMeta, listed entries);
//! - a LIST page that passes `ListPage::check` holds only names that are
//!   one path component `check_name` accepts, strictly ascending;
//! - FILE_END's `abort` is exactly the record's ABORT flag;
//! - an alert's message is cut to MAX_ALERT_MESSAGE bytes on encoding, on a
//!   character boundary by `Alert::new`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovtp::AlertCode;
use ovtp::constants::{LIST_PAGE_ENTRIES, MAX_ENTRY_NAME, MAX_NAME_LEN, REQUEST_ID_LEN};
use ovtp::hooks::Body;
use ovtp::hooks::msg::{
    Alert, DigestReply, FLAG_ABORT, FLAG_FIN, FileData, FileEnd, FileMeta, FilePrefix, Get, List,
    ListPage, MAX_ALERT_MESSAGE, OP_DATA, OP_DIGEST, OP_GET, OP_LIST, OP_MKDIR, OP_PUT, OP_TEXT,
    Op, PUT_OVERWRITE, Put, ReadyToReceive, ReadyToSend, Request, Response, XFER_PRESERVE,
    XFER_RESUME,
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

/// A reference reading of `mode u16 || mtime i64`: exactly 10 bytes, mode at most 0o777.
fn meta_ok(x: &[u8]) -> bool {
    x.len() == 10 && u16::from_be_bytes([x[0], x[1]]) <= 0o777
}

/// A reference reading of a PUT body: `name vec16 || size u64 || flags u8`,
/// then `mode u16 || mtime i64` when the flags hold PRESERVE. Returns its
/// canonical encoding (the flags this version ignores cleared).
fn put_ref(x: &[u8]) -> Option<Vec<u8>> {
    let len = usize::from(u16::from_be_bytes(x.get(..2)?.try_into().unwrap()));
    let flags = *x.get(2 + len + 8)?;
    let fixed = if flags & XFER_PRESERVE != 0 { 19 } else { 9 };
    name_then(x, fixed)?;
    if fixed == 19 && !meta_ok(&x[2 + len + 9..]) {
        return None;
    }
    let mut canonical = x.to_vec();
    canonical[2 + len + 8] &= PUT_OVERWRITE | XFER_RESUME | XFER_PRESERVE;
    Some(canonical)
}

/// A reference reading of a LIST body: `dir vec16 || after vec16`.
fn list_ok(x: &[u8]) -> bool {
    let Some(len) = x.get(..2).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))) else {
        return false;
    };
    let first =
        x.get(2..2 + len).is_some_and(|d| len <= MAX_NAME_LEN && std::str::from_utf8(d).is_ok());
    first && name_then(&x[2 + len..], 0).is_some()
}

/// A reference reading of a LIST page: `more u8 (0 or 1) || count u16 (at
/// most LIST_PAGE_ENTRIES) || count x (kind u8 (1 to 4) || mode u16 (at most
/// 0o777) || size u64 || mtime i64 || name vec16 (UTF-8, at most
/// MAX_ENTRY_NAME))`, nothing after.
fn page_ok(x: &[u8]) -> bool {
    let Some(&[more, c0, c1]) = x.get(..3) else { return false };
    let count = usize::from(u16::from_be_bytes([c0, c1]));
    let mut at = 3;
    for _ in 0..count {
        let Some(e) = x.get(at..at + 21) else { return false };
        let len = usize::from(u16::from_be_bytes([e[19], e[20]]));
        let kind_ok = (1..=4).contains(&e[0]) && u16::from_be_bytes([e[1], e[2]]) <= 0o777;
        let name = x.get(at + 21..at + 21 + len).and_then(|n| std::str::from_utf8(n).ok());
        if !kind_ok || name.is_none() || len > MAX_ENTRY_NAME {
            return false;
        }
        at += 21 + len;
    }
    more <= 1 && count <= LIST_PAGE_ENTRIES && at == x.len()
}

fn list_page(x: &[u8]) {
    assert_eq!(round_trip!(ListPage, x, x), page_ok(x), "listing page acceptance");
    let Ok(page) = ListPage::decode(x) else { return };
    assert!(page.entries.len() <= LIST_PAGE_ENTRIES);
    if page.check("").is_ok() {
        let mut last = "";
        for e in &page.entries {
            assert!(ovtp::check_name(&e.name).is_ok() && !e.name.contains('/'), "{:?}", e.name);
            assert!(e.name.as_bytes() > last.as_bytes(), "not ascending: {:?}", e.name);
            assert!(e.mode <= 0o777);
            last = &e.name;
        }
        assert!(!page.more || !page.entries.is_empty(), "no progress");
    }
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
            OP_PUT => put_ref(&x[id_end + 1..]).is_some(),
            OP_GET => name_then(&x[id_end + 1..], 41).is_some(),
            OP_DIGEST | OP_MKDIR => name_then(&x[id_end + 1..], 0).is_some(),
            OP_LIST => list_ok(&x[id_end + 1..]),
            _ => true,
        };
    let canonical = match x.get(id_end) {
        Some(&OP_PUT) => match put_ref(&x[id_end + 1..]) {
            Some(body) => [&x[..=id_end], &body[..]].concat(),
            None => x.to_vec(),
        },
        Some(&OP_GET) => mask_last(x, XFER_RESUME | XFER_PRESERVE),
        Some(&(OP_TEXT | OP_DATA | OP_DIGEST | OP_LIST | OP_MKDIR)) => x.to_vec(),
        _ => x[..x.len().min(id_end + 1)].to_vec(), // an unknown op's body is dropped
    };
    assert_eq!(round_trip!(Request, x, &canonical[..]), expect_ok, "request acceptance");
    let Ok(req) = Request::decode(x) else { return };
    assert_eq!(&req.id[..], &x[..id_end]);
    let body = &x[id_end + 1..];
    match req.op {
        Op::Text(b) | Op::Data(b) => assert_eq!(b, body),
        Op::Put(Put { name, .. })
        | Op::Get(Get { name, .. })
        | Op::Digest(name)
        | Op::MkDir(name)
        | Op::List(List { dir: name, .. }) => check_name(name),
        Op::Unknown(code) => assert!(!matches!(
            code,
            OP_TEXT | OP_DATA | OP_PUT | OP_GET | OP_DIGEST | OP_LIST | OP_MKDIR
        )),
    }
}

fn put(x: &[u8]) {
    let canonical = put_ref(x);
    let ok = canonical.is_some();
    assert_eq!(round_trip!(Put, x, &canonical.unwrap_or_default()[..]), ok);
    if let Ok(p) = Put::decode(x) {
        check_name(p.name);
        let at = 2 + p.name.len() + 8;
        let flags = x[at];
        assert_eq!((p.overwrite, p.resume), (flags & 1 != 0, flags & 2 != 0));
        assert_eq!(p.meta.is_some(), flags & XFER_PRESERVE != 0);
        assert!(p.meta.is_none_or(|m| m.mode <= 0o777), "a mode beyond 0777 decoded");
        assert_eq!(p.size.to_be_bytes(), x[at - 8..at]);
    }
}

fn get(x: &[u8]) {
    let ok = name_then(x, 41).is_some();
    assert_eq!(round_trip!(Get, x, &mask_last(x, XFER_RESUME | XFER_PRESERVE)[..]), ok);
    if let Ok(g) = Get::decode(x) {
        check_name(g.name);
        assert_eq!(g.resume, x[x.len() - 1] & XFER_RESUME != 0);
        assert_eq!(g.preserve, x[x.len() - 1] & XFER_PRESERVE != 0);
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
    match which % 16 {
        0 => alert(x),
        1 => alert_encode(x),
        2 => request(x),
        3 => put(x),
        4 => get(x),
        5 => assert_eq!(round_trip!(Response, x, x), x.len() >= REQUEST_ID_LEN + 2),
        6 => assert_eq!(round_trip!(DigestReply, x, x), x.len() == 40),
        7 => assert_eq!(round_trip!(ReadyToReceive, x, x), x.len() == 8),
        8 => {
            let ok = x.len() == 16 || (x.len() == 26 && meta_ok(&x[16..]));
            assert_eq!(round_trip!(ReadyToSend, x, x), ok)
        }
        9 => assert_eq!(round_trip!(FileData, x, x), x.len() >= 8),
        11 => assert_eq!(round_trip!(FilePrefix, x, x), x.len() == 32),
        12 => assert_eq!(round_trip!(List, x, x), list_ok(x)),
        13 => list_page(x),
        14 => assert_eq!(round_trip!(FileMeta, x, x), meta_ok(x)),
        _ => {
            if let Some((&flags, rest)) = x.split_first() {
                file_end(flags, rest)
            }
        }
    }
});
