//! Listing directories, making them, and preserved modes and times, over
//! real sockets: confinement on the server, checks of every listed name on
//! the client (a hostile server below), the handler's say, pages and caps.

mod common;

use common::*;
use ovtp::constants::{LIST_PAGE_ENTRIES, MAX_LIST_ENTRIES};
use ovtp::hooks::Body;
use ovtp::hooks::msg::{self, FLAG_FIN, ListPage, Op, REC_RESPONSE, Response};
use ovtp::{
    Client, DirEntry, EntryKind, Error, HostTrust, Payload, Reply, Request, ServerConfig,
    TransferOptions, status,
};
use sha2::Digest;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

type Events = Arc<Mutex<Vec<String>>>;

/// A server with a files directory whose handler records listings and
/// directory creations and allows them (all but directories named "nope").
fn server() -> (TestServer, PathBuf, Events, TempDir) {
    let dir = TempDir::new("listing");
    let files = dir.join("files");
    make_dir(&files).unwrap();
    let config = ServerConfig { files_dir: Some(files.clone()), ..quick_server() };
    let events: Events = Arc::default();
    let ev = events.clone();
    let srv = TestServer::start_with(config, Arc::new(AtomicUsize::new(0)), move |req| {
        let line = match &req.payload {
            Payload::Listing { dir } => format!("list {dir}"),
            Payload::MakeDir { name } if name.ends_with("nope") => {
                return Reply::new(42, "no such directories here");
            }
            Payload::MakeDir { name } => format!("mkdir {name}"),
            other => format!("{other:?}"),
        };
        ev.lock().unwrap().push(line);
        Reply::ok("")
    });
    (srv, files, events, dir)
}

fn remote_status<T: std::fmt::Debug>(r: ovtp::Result<T>) -> u16 {
    match r {
        Err(Error::Remote { status, .. }) => status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn names(entries: &[DirEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn mtime(path: &Path) -> i64 {
    let t = std::fs::metadata(path).unwrap().modified().unwrap();
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn set_mtime(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs)).unwrap();
}

#[test]
fn a_directory_lists_sorted_with_kinds_sizes_modes_and_times_and_links_are_not_followed() {
    let (srv, files, events, _dir) = server();
    std::fs::write(files.join("b.txt"), b"12345").unwrap();
    std::fs::set_permissions(files.join("b.txt"), PermissionsExt::from_mode(0o640)).unwrap();
    set_mtime(&files.join("b.txt"), 1_000_000_000);
    make_dir(&files.join("a dir/inner")).unwrap();
    std::fs::write(files.join("a dir/inner/deep"), b"x").unwrap();
    std::os::unix::fs::symlink("/etc", files.join("link")).unwrap();
    // Left out: partial files, names no client could ask for, non-UTF-8 names.
    std::fs::write(files.join(".x.ovtp-part"), b"partial").unwrap();
    std::fs::write(files.join("bad\nname"), b"").unwrap();
    let raw = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"\xff\xfe");
    std::fs::write(files.join(raw), b"").unwrap();
    std::fs::write(files.join("Ünï"), b"").unwrap();

    let mut c = srv.client();
    let top = c.list("").unwrap();
    assert_eq!(names(&top), ["a dir", "b.txt", "link", "Ünï"], "{top:?}");
    let b = &top[1];
    assert_eq!((b.kind, b.size, b.mode, b.mtime), (EntryKind::File, 5, 0o640, 1_000_000_000));
    assert_eq!((top[0].kind, top[0].size), (EntryKind::Dir, 0));
    assert_eq!((top[2].kind, top[2].size), (EntryKind::Symlink, 0), "the link is not followed");
    let inner = c.list("a dir").unwrap();
    assert_eq!(names(&inner), ["inner"]);
    assert_eq!(names(&c.list("a dir/inner").unwrap()), ["deep"]);
    assert_eq!(*events.lock().unwrap(), ["list ", "list a dir", "list a dir/inner"]);
}

#[test]
fn a_listing_outside_the_files_directory_or_through_a_link_leading_out_is_refused() {
    let (srv, files, _events, dir) = server();
    let outside = dir.join("outside");
    make_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"s").unwrap();
    std::os::unix::fs::symlink(&outside, files.join("out")).unwrap();
    make_dir(&files.join("real")).unwrap();
    std::os::unix::fs::symlink(files.join("real"), files.join("inside")).unwrap();
    std::fs::write(files.join("f"), b"").unwrap();
    let mut c = srv.client();
    assert_eq!(remote_status(c.list("out")), status::BAD_NAME);
    assert_eq!(remote_status(c.list("f")), status::BAD_NAME, "not a directory");
    assert_eq!(remote_status(c.list("missing")), status::NOT_FOUND);
    assert!(c.list("inside").unwrap().is_empty(), "a link that stays inside is fine");
    for bad in ["..", "../outside", "/etc", "a/../..", "out/"] {
        assert!(matches!(c.list(bad), Err(Error::InvalidInput(_))), "{bad}");
    }
    // The server checks on its own, whatever a client sends.
    let mut raw = ovtp_raw(&srv);
    for bad in ["..", "../outside", "/etc", "out"] {
        let id = raw.request(Op::List(msg::List { dir: bad, after: "" }));
        let (rtype, _, body) = raw.recv();
        let response = Response::decode(&body).unwrap();
        assert_eq!((rtype, response.id, response.status), (REC_RESPONSE, id, status::BAD_NAME));
        let text = String::from_utf8_lossy(response.body).into_owned();
        assert!(!text.contains("secret"), "{text}");
    }
}

fn ovtp_raw(srv: &TestServer) -> RawClient {
    RawClient::connect(srv.addr, &client_keys(), srv.keys.public())
}

#[test]
fn a_big_directory_comes_in_pages_each_told_to_the_handler() {
    let (srv, files, events, _dir) = server();
    let count = 2 * LIST_PAGE_ENTRIES + 7;
    for i in 0..count {
        std::fs::write(files.join(format!("f{i:05}")), b"").unwrap();
    }
    let entries = srv.client().list("").unwrap();
    assert_eq!(entries.len(), count);
    let expected: Vec<String> = (0..count).map(|i| format!("f{i:05}")).collect();
    assert_eq!(names(&entries), expected);
    assert_eq!(events.lock().unwrap().len(), 3, "three pages");
    // One page holds at most LIST_PAGE_ENTRIES, and says that more follow.
    let mut raw = ovtp_raw(&srv);
    raw.request(Op::List(msg::List { dir: "", after: "f00005" }));
    let body = raw.recv().2;
    let page = ListPage::decode(Response::decode(&body).unwrap().body).unwrap();
    assert_eq!((page.entries.len(), page.more), (LIST_PAGE_ENTRIES, true));
    assert_eq!(page.entries[0].name, "f00006");
}

#[test]
fn pages_skip_unlisted_names_around_their_edges() {
    let (srv, files, _events, _dir) = server();
    // Names no client may see among the first ones, so that each page's
    // last candidates are sometimes unlisted (the server keeps the first
    // 257 listable names of each page, not the first 257 names).
    let mut expected = Vec::new();
    for i in 0..700 {
        let name = format!("g{i:04}");
        match i % 3 {
            0 => std::fs::write(files.join(format!(".{name}.ovtp-part")), b"").unwrap(),
            1 => std::fs::write(files.join(format!("{name}\u{1b}")), b"").unwrap(),
            _ => {}
        }
        std::fs::write(files.join(&name), b"").unwrap();
        expected.push(name);
    }
    let entries = srv.client().list("").unwrap();
    assert_eq!(names(&entries), expected);
}

#[test]
fn make_dir_creates_parents_without_group_or_other_write_and_refuses_files_and_escapes() {
    let (srv, files, events, dir) = server();
    let mut c = srv.client();
    c.make_dir("a/b/c").unwrap();
    c.make_dir("a/b/c").unwrap(); // already a directory: fine
    for d in ["a", "a/b", "a/b/c"] {
        assert!(files.join(d).is_dir());
        assert_eq!(mode(&files.join(d)) & 0o022, 0, "{d}");
    }
    std::fs::write(files.join("file"), b"").unwrap();
    assert_eq!(remote_status(c.make_dir("file")), status::FILE_EXISTS);
    assert_eq!(remote_status(c.make_dir("file/sub")), status::IO_ERROR);
    let outside = dir.join("outside");
    make_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, files.join("out")).unwrap();
    assert_eq!(remote_status(c.make_dir("out/new")), status::BAD_NAME);
    assert_eq!(remote_status(c.make_dir("out")), status::BAD_NAME);
    assert!(!outside.join("new").exists(), "created outside");
    for bad in ["..", "../x", "/abs", "a/./b", "x.ovtp-part"] {
        assert!(matches!(c.make_dir(bad), Err(Error::InvalidInput(_))), "{bad}");
    }
    let mut raw = ovtp_raw(&srv);
    raw.request(Op::MkDir("../escaped"));
    let body = raw.recv().2;
    assert_eq!(Response::decode(&body).unwrap().status, status::BAD_NAME);
    assert!(!dir.join("escaped").exists());
    // The handler decides before anything is made.
    assert_eq!(remote_status(c.make_dir("x/nope")), 42);
    assert!(!files.join("x").exists());
    let seen = events.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|e| e.starts_with("mkdir a/b/c")).count(), 2, "{seen:?}");
}

#[test]
fn make_dir_never_creates_through_a_dangling_link() {
    let (srv, files, _events, dir) = server();
    let mut c = srv.client();
    let outside = dir.join("outside");
    make_dir(&outside).unwrap();
    // A link to a directory that does not exist yet, outside.
    std::os::unix::fs::symlink(outside.join("new"), files.join("dangling")).unwrap();
    assert_eq!(remote_status(c.make_dir("dangling")), status::FILE_EXISTS);
    assert_ne!(remote_status(c.make_dir("dangling/sub")), status::OK);
    std::fs::write(dir.join("f"), b"x").unwrap();
    assert_eq!(remote_status(c.send_file(dir.join("f"), "dangling/f")), status::IO_ERROR);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "created outside");
}

#[test]
fn a_message_only_handler_refuses_listings_and_directories() {
    let dir = TempDir::new("listing-msg");
    let files = dir.join("files");
    make_dir(&files).unwrap();
    std::fs::write(files.join("f"), b"").unwrap();
    let config = ServerConfig { files_dir: Some(files.clone()), ..quick_server() };
    let handler = |_: Request<'_>| Reply::ok("anything");
    let srv = TestServer::start_handler(config, Arc::new(AtomicUsize::new(0)), handler);
    let mut c = srv.client();
    assert_eq!(remote_status(c.list("")), status::UNSUPPORTED);
    assert_eq!(remote_status(c.make_dir("d")), status::UNSUPPORTED);
    assert!(!files.join("d").exists());
    // And without a files directory at all.
    let srv = TestServer::start(quick_server());
    assert_eq!(remote_status(srv.client().list("")), status::UNSUPPORTED);
}

// ---- A hostile server. ----

fn entry(name: &str) -> DirEntry {
    DirEntry { name: name.into(), kind: EntryKind::File, size: 1, mode: 0o644, mtime: 0 }
}

fn hostile_client(addr: &str, trust: HostTrust) -> Client {
    let config = ovtp::ClientConfig { retries: 0, ..quick_client() };
    Client::connect_with(addr, client_keys(), trust, config).unwrap()
}

#[test]
fn a_hostile_servers_paths_dot_entries_and_disorder_fail_the_listing_naming_the_entry() {
    let cases: [(&[&str], bool, &str); 11] = [
        (&["a", "../x"], false, "../x"),
        (&["/abs"], false, "/abs"),
        (&["a/b"], false, "a/b"),
        (&["."], false, "\".\""),
        (&[".."], false, "\"..\""),
        (&[""], false, "\"\""),
        (&["a\u{1b}[2Jb"], false, "a\\u{1b}[2Jb"),
        (&["x.ovtp-part"], false, "x.ovtp-part"),
        (&["b", "a"], false, "\"a\""),
        (&["a", "a"], false, "\"a\""),
        (&[], true, "empty page"),
    ];
    for (listed, more, named) in cases {
        let page = ListPage { entries: listed.iter().map(|n| entry(n)).collect(), more };
        let (addr, trust, _) = hostile_list_server(move |_| page.clone());
        let got = hostile_client(&addr, trust).list("");
        match got {
            Err(Error::BadListing(m)) => assert!(m.contains(named), "{listed:?}: {m}"),
            other => panic!("{listed:?} accepted: {other:?}"),
        }
    }
}

#[test]
fn a_server_that_never_stops_listing_is_cut_off_at_the_cap() {
    let (addr, trust, pages) = hostile_list_server(|after| {
        let start = after.strip_prefix('n').map_or(0, |n| n.parse::<u64>().unwrap() + 1);
        let entries = (start..start + LIST_PAGE_ENTRIES as u64).map(|i| entry(&format!("n{i:09}")));
        ListPage { entries: entries.collect(), more: true }
    });
    let got = hostile_client(&addr, trust).list("");
    assert!(matches!(got, Err(Error::TooLarge { limit, .. }) if limit == MAX_LIST_ENTRIES as u64));
    let most = MAX_LIST_ENTRIES / LIST_PAGE_ENTRIES + 1;
    assert_eq!(pages.load(std::sync::atomic::Ordering::SeqCst), most);
}

// ---- Modes and times. ----

#[test]
fn preserve_carries_permission_bits_and_mtime_both_ways_without_setuid() {
    let (srv, files, _events, dir) = server();
    let local = dir.join("tool");
    std::fs::write(&local, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&local, PermissionsExt::from_mode(0o4751)).unwrap();
    let y2001 = 1_000_000_000 - 3_600;
    set_mtime(&local, y2001);
    let mut c = srv.client();
    let preserve = || TransferOptions { preserve: true, ..Default::default() };
    c.send_file_with(&local, "tool", preserve()).unwrap();
    assert_eq!(mode(&files.join("tool")), 0o751, "setuid stripped");
    assert_eq!(mtime(&files.join("tool")), y2001 as i64);
    // Without -p: as before, the server's own mode and the time of arrival.
    c.send_file(&local, "plain").unwrap();
    assert_eq!(mode(&files.join("plain")), 0o600);
    assert!(mtime(&files.join("plain")) > y2001 as i64 + 1_000_000);

    std::fs::set_permissions(files.join("plain"), PermissionsExt::from_mode(0o6705)).unwrap();
    set_mtime(&files.join("plain"), 978_307_200); // 2001-01-01
    let back = dir.join("back");
    c.get_file_with("plain", &back, preserve()).unwrap();
    assert_eq!((mode(&back), mtime(&back)), (0o705, 978_307_200));
    let plain = dir.join("plain-back");
    c.get_file("plain", &plain).unwrap();
    assert_ne!(mtime(&plain), 978_307_200);
    // A preserved mode that denies its owner reading is still stored (a raw
    // client: ours could not read such a file to send it).
    let mut raw = ovtp_raw(&srv);
    let meta = Some(msg::FileMeta { mode: 0o200, mtime: 5 });
    let put = msg::Put { name: "write-only", size: 2, overwrite: false, resume: false, meta };
    raw.request(Op::Put(put));
    assert_eq!(raw.recv().0, msg::REC_FILE_READY);
    raw.send(msg::REC_FILE_DATA, FLAG_FIN, &[&0u64.to_be_bytes()[..], b"ok"].concat());
    let sha256 = sha2::Sha256::digest(b"ok").into();
    raw.send(
        msg::REC_FILE_END,
        FLAG_FIN,
        &msg::FileEnd { total: 2, sha256, abort: false }.to_vec(),
    );
    let (rtype, _, body) = raw.recv();
    let response = Response::decode(&body).unwrap();
    assert_eq!((rtype, response.status), (REC_RESPONSE, status::OK), "{:?}", response.body);
    assert_eq!((mode(&files.join("write-only")), mtime(&files.join("write-only"))), (0o200, 5));
}

#[test]
fn preserved_times_at_the_ends_of_i64_are_answered_and_the_session_goes_on() {
    let (srv, files, _events, _dir) = server();
    let mut raw = ovtp_raw(&srv);
    for (name, mtime) in [("max", i64::MAX), ("min", i64::MIN), ("neg", -1)] {
        let meta = Some(msg::FileMeta { mode: 0o777, mtime });
        raw.request(Op::Put(msg::Put { name, size: 2, overwrite: false, resume: false, meta }));
        assert_eq!(raw.recv().0, msg::REC_FILE_READY);
        raw.send(msg::REC_FILE_DATA, FLAG_FIN, &[&0u64.to_be_bytes()[..], b"ok"].concat());
        let sha256 = sha2::Sha256::digest(b"ok").into();
        let end = msg::FileEnd { total: 2, sha256, abort: false }.to_vec();
        raw.send(msg::REC_FILE_END, FLAG_FIN, &end);
        let (rtype, _, body) = raw.recv();
        let status = Response::decode(&body).unwrap().status;
        assert_eq!(rtype, REC_RESPONSE, "{name}");
        // Stored with a time the filesystem can hold, or refused and not stored.
        match status {
            status::OK => assert_eq!(std::fs::read(files.join(name)).unwrap(), b"ok"),
            _ => assert!(!files.join(name).exists(), "{name}: {status:#x}"),
        }
    }
    assert_eq!(srv.client().list("").unwrap().len(), files.read_dir().unwrap().count());
}

#[test]
fn a_preserved_mode_never_makes_a_server_file_writable_by_group_or_others() {
    let (srv, files, _events, dir) = server();
    let local = dir.join("shared");
    std::fs::write(&local, b"x").unwrap();
    std::fs::set_permissions(&local, PermissionsExt::from_mode(0o777)).unwrap();
    let mut c = srv.client();
    let preserve = TransferOptions { preserve: true, ..Default::default() };
    c.send_file_with(&local, "shared", preserve).unwrap();
    assert_eq!(mode(&files.join("shared")), 0o755);
}

#[test]
fn a_mode_beyond_0777_never_decodes() {
    let put = msg::Put { name: "x", size: 1, overwrite: false, resume: false, meta: None };
    let mut bytes = msg::Request { id: [0; 16], op: Op::Put(put) }.to_vec();
    let flags = bytes.len() - 1;
    bytes[flags] |= msg::XFER_PRESERVE;
    bytes.extend_from_slice(&0o4755u16.to_be_bytes());
    bytes.extend_from_slice(&0i64.to_be_bytes());
    assert!(matches!(msg::Request::decode(&bytes), Err(Error::Malformed(_))));
    let at = bytes.len() - 10;
    bytes[at..at + 2].copy_from_slice(&0o755u16.to_be_bytes());
    let Op::Put(put) = msg::Request::decode(&bytes).unwrap().op else { panic!() };
    assert_eq!(put.meta, Some(msg::FileMeta { mode: 0o755, mtime: 0 }));
}

#[test]
fn the_time_of_a_file_is_what_a_listing_and_preserve_agree_on() {
    // A pre-1970 time survives too.
    let (srv, files, _events, dir) = server();
    let local = dir.join("old");
    std::fs::write(&local, b"o").unwrap();
    let f = std::fs::File::options().write(true).open(&local).unwrap();
    f.set_modified(UNIX_EPOCH - Duration::from_secs(86_400)).unwrap();
    let mut c = srv.client();
    c.send_file_with(&local, "old", TransferOptions { preserve: true, ..Default::default() })
        .unwrap();
    let listed = c.list("").unwrap();
    assert_eq!(listed[0].mtime, -86_400);
    let t = std::fs::metadata(files.join("old")).unwrap().modified().unwrap();
    assert_eq!(t, UNIX_EPOCH - Duration::from_secs(86_400));
}

#[test]
fn a_resumed_transfer_with_preserve_still_gets_the_mode_and_time() {
    let (srv, files, _events, dir) = server();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let local = dir.join("big");
    std::fs::write(&local, &data).unwrap();
    std::fs::set_permissions(&local, PermissionsExt::from_mode(0o710)).unwrap();
    set_mtime(&local, 1_000_000_000);
    // The server holds the first 40,000 bytes from an interrupted upload by this key.
    let partial = ovtp::upload_partial_path(&files.join("big"), &client_keys().fingerprint());
    std::fs::write(&partial, &data[..40_000]).unwrap();
    let mut c = srv.client();
    let preserve = || TransferOptions { preserve: true, ..Default::default() };
    let report = c.send_file_with(&local, "big", preserve()).unwrap();
    assert_eq!(report.resumed_from, 40_000);
    assert_eq!((mode(&files.join("big")), mtime(&files.join("big"))), (0o710, 1_000_000_000));
    // And a download that resumes from our own partial file.
    let back = dir.join("back");
    std::fs::write(ovtp::partial_path(&back), &data[..30_000]).unwrap();
    let report = c.get_file_with("big", &back, preserve()).unwrap();
    assert_eq!(report.resumed_from, 30_000);
    assert_eq!(std::fs::read(&back).unwrap(), data);
    assert_eq!((mode(&back), mtime(&back)), (0o710, 1_000_000_000));
}
