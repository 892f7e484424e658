//! File transfer over real sockets: integrity, atomic confined writes, resume.

mod common;

use common::*;
use ovtp::{Client, Error, Payload, Reply, Request, ServerConfig, TransferOptions, status};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + seed as usize * 7) % 253) as u8).collect()
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A server with a files directory whose handler logs file events and accepts
/// everything except offers whose name starts with "quota".
struct FileServer {
    srv: TestServer,
    files: PathBuf,
    events: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

fn file_server(tweak: impl FnOnce(&mut ServerConfig)) -> FileServer {
    let dir = TempDir::new("files");
    let files = dir.join("files");
    make_dir(&files).unwrap();
    let mut config = ServerConfig { files_dir: Some(files.clone()), ..quick_server() };
    tweak(&mut config);
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let ev = events.clone();
    let srv =
        TestServer::start_with(config, Arc::new(AtomicUsize::new(0)), move |req: Request<'_>| {
            let line = match &req.payload {
                Payload::FileOffer { name, size } if name.starts_with("quota") => {
                    ev.lock().unwrap().push(format!("refused {name} {size}"));
                    return Reply::new(42, "over quota");
                }
                Payload::FileOffer { name, size } => format!("offer {name} {size}"),
                Payload::FileReceived { name, size, sha256, path } => {
                    assert!(path.exists(), "FileReceived before the file has its final name");
                    format!("received {name} {size} {}", ovtp::hex(sha256))
                }
                Payload::FileRequest { name, digest_only, .. } => {
                    format!("request {name} {digest_only}")
                }
                other => format!("{other:?}"),
            };
            ev.lock().unwrap().push(line);
            Reply::ok("stored")
        });
    FileServer { srv, files, events, _dir: dir }
}

#[test]
fn a_download_refused_because_the_local_file_exists_keeps_the_connection() {
    use std::sync::atomic::Ordering::SeqCst;
    let connects = Arc::new(AtomicUsize::new(0));
    let seen = connects.clone();
    let fs = file_server(|c| {
        c.events = Some(Arc::new(move |e: &ovtp::Event<'_>| {
            if matches!(e, ovtp::Event::Connected { .. }) {
                seen.fetch_add(1, SeqCst);
            }
        }))
    });
    let local = TempDir::new("exists-local");
    std::fs::write(fs.files.join("f"), b"remote").unwrap();
    let mine = write(&local, "f", b"mine");
    let mut c = fs.srv.client();
    for _ in 0..3 {
        let err = c.get_file("f", &mine).unwrap_err();
        assert!(matches!(err, Error::Exists(_)), "{err}");
    }
    assert_eq!(c.send_message("still here").unwrap().status, status::OK);
    // Every Connected event comes before its connection's first request is answered.
    assert_eq!(connects.load(SeqCst), 1, "a local refusal cost a new connection");
    assert_eq!(std::fs::read(&mine).unwrap(), b"mine");
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".ovtp-part") {
            out.push(name);
        }
    }
    out
}

#[test]
fn a_message_handler_that_answers_everything_ok_cannot_be_made_to_accept_or_serve_files() {
    let dir = TempDir::new("files");
    let files = dir.join("files");
    make_dir(&files).unwrap();
    std::fs::write(files.join("kept.txt"), b"private").unwrap();
    let config = ServerConfig { files_dir: Some(files.clone()), ..quick_server() };
    // A closure is a handler for messages only, however it answers.
    let catch_all = |_: Request<'_>| Reply::ok("yes to everything");
    let srv = TestServer::start_handler(config, Arc::new(AtomicUsize::new(0)), catch_all);
    let local = TempDir::new("local");
    let src = write(&local, "src", b"payload");
    let mut c = srv.client();
    let refused = |r: ovtp::Result<_>| match r {
        Err(Error::Remote { status, .. }) => status,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(refused(c.send_file(&src, "new.txt").map(|_| ())), status::UNSUPPORTED);
    assert!(!files.join("new.txt").exists());
    assert!(leftovers(&files).is_empty());
    let dst = local.join("dst");
    assert_eq!(refused(c.get_file("kept.txt", &dst).map(|_| ())), status::UNSUPPORTED);
    assert!(!dst.exists());
    assert_eq!(refused(c.file_digest("kept.txt").map(|_| ())), status::UNSUPPORTED);
    // Messages are still answered, on the same connection.
    assert_eq!(c.send_message("hi").unwrap().text(), "yes to everything");
}

#[test]
fn upload_and_download_round_trip_with_whole_file_digests() {
    let fs = file_server(|_| {});
    let local = TempDir::new("local");
    let mut c = fs.srv.client();
    for (i, len) in [0usize, 1, 1 << 20, (3 << 20) + 17].into_iter().enumerate() {
        let data = content(len, i as u8);
        let src = write(&local, &format!("src{i}"), &data);
        let name = format!("sub/dir/file{i}.bin");
        let report = c.send_file(&src, &name).unwrap();
        assert_eq!((report.size, report.sha256, report.resumed_from), (len as u64, sha(&data), 0));
        assert_eq!(report.reply.text(), "stored");
        assert_eq!(std::fs::read(fs.files.join(&name)).unwrap(), data);

        let digest = c.file_digest(&name).unwrap();
        assert_eq!((digest.size, digest.sha256), (len as u64, sha(&data)));

        let dst = local.join(&format!("dst{i}"));
        let report = c.get_file(&name, &dst).unwrap();
        assert_eq!((report.size, report.sha256), (len as u64, sha(&data)));
        assert_eq!(std::fs::read(&dst).unwrap(), data);
    }
    assert!(leftovers(&fs.files.join("sub/dir")).is_empty());
    assert!(leftovers(local.path()).is_empty());
    // The handler heard of each upload before data flowed and again after it was verified.
    let ev = fs.events.lock().unwrap();
    assert_eq!(ev[0], "offer sub/dir/file0.bin 0");
    assert!(ev[1].starts_with("received sub/dir/file0.bin 0 e3b0c442"), "{}", ev[1]);
    assert!(ev.iter().any(|e| e == "request sub/dir/file3.bin true"));
    assert!(ev.iter().any(|e| e == "request sub/dir/file3.bin false"));
}

#[test]
fn messages_and_files_share_one_connection() {
    let fs = file_server(|_| {});
    let local = TempDir::new("local");
    let mut c = fs.srv.client();
    let src = write(&local, "a", b"alpha");
    assert!(c.send_message("before").unwrap().is_ok());
    c.send_file(&src, "a").unwrap();
    assert!(c.send_message("after").unwrap().is_ok());
    assert_eq!(fs.srv.keys.private_operations(), 2, "more than one handshake");
}

#[test]
fn an_existing_file_is_not_overwritten_unless_asked() {
    let fs = file_server(|_| {});
    let local = TempDir::new("local");
    let mut c = fs.srv.client();
    let one = write(&local, "one", b"first version");
    let two = write(&local, "two", b"second");
    c.send_file(&one, "f").unwrap();
    let err = c.send_file(&two, "f").unwrap_err();
    assert!(matches!(err, Error::Remote { status: status::FILE_EXISTS, .. }), "{err}");
    assert_eq!(std::fs::read(fs.files.join("f")).unwrap(), b"first version");
    let opts = || TransferOptions { overwrite: true, ..Default::default() };
    c.send_file_with(&two, "f", opts()).unwrap();
    assert_eq!(std::fs::read(fs.files.join("f")).unwrap(), b"second");
    // Downloads too: an existing local file is kept unless asked.
    let err = c.get_file("f", &one).unwrap_err();
    assert!(matches!(err, Error::Exists(_)), "{err}");
    assert_eq!(std::fs::read(&one).unwrap(), b"first version");
    c.get_file_with("f", &one, opts()).unwrap();
    assert_eq!(std::fs::read(&one).unwrap(), b"second");
}

#[test]
fn names_outside_the_files_directory_are_refused() {
    let fs = file_server(|_| {});
    let local = TempDir::new("local");
    let outside = TempDir::new("outside");
    std::fs::write(outside.join("secret"), b"top secret").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outside.path(), fs.files.join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), fs.files.join("secret-link")).unwrap();
    }
    let src = write(&local, "x", b"payload");
    let mut c = fs.srv.client();
    // Syntactically bad names are refused by the client before sending...
    for bad in ["../x", "/etc/passwd", "a/../../x", "a\nb", "", "a\0b", ".x.ovtp-part"] {
        assert!(matches!(c.send_file(&src, bad), Err(Error::InvalidInput(_))), "{bad:?}");
    }
    // ...and by the server when a client sends them anyway (the server checks on its own).
    let err = ovtp::check_name("../x").unwrap_err();
    assert!(err.contains(".."));
    #[cfg(unix)]
    {
        let err = c.send_file(&src, "escape/x").unwrap_err();
        assert!(matches!(err, Error::Remote { status: status::BAD_NAME, .. }), "{err}");
        assert!(!outside.join("x").exists(), "a write escaped through a symlink");
        let err = c.get_file("secret-link", local.join("got")).unwrap_err();
        assert!(matches!(err, Error::Remote { status: status::BAD_NAME, .. }), "{err}");
        let err = c.file_digest("escape/secret").unwrap_err();
        assert!(matches!(err, Error::Remote { status: status::BAD_NAME, .. }), "{err}");
    }
    let err = c.get_file("missing", local.join("m")).unwrap_err();
    assert!(matches!(err, Error::Remote { status: status::NOT_FOUND, .. }), "{err}");
    assert!(c.send_message("still fine").unwrap().is_ok());
}

#[test]
fn the_handler_can_refuse_an_offer_before_data_flows() {
    let fs = file_server(|_| {});
    let local = TempDir::new("local");
    let src = write(&local, "big", &content(100_000, 1));
    let mut c = fs.srv.client();
    let err = c.send_file(&src, "quota-exceeded.bin").unwrap_err();
    match &err {
        Error::Remote { status: 42, message } => assert_eq!(message, "over quota"),
        other => panic!("{other}"),
    }
    assert!(!fs.files.join("quota-exceeded.bin").exists());
    assert!(leftovers(&fs.files).is_empty());
}

#[test]
fn a_server_without_a_files_directory_refuses_transfers() {
    let srv = TestServer::start(quick_server());
    let local = TempDir::new("local");
    let src = write(&local, "x", b"x");
    let mut c = srv.client();
    let err = c.send_file(&src, "x").unwrap_err();
    assert!(matches!(err, Error::Remote { status: status::UNSUPPORTED, .. }), "{err}");
    assert!(c.send_message("ok").unwrap().is_ok());
}

#[test]
fn a_file_larger_than_the_limit_is_refused_up_front() {
    let fs = file_server(|c| c.max_file_size = Some(1000));
    let local = TempDir::new("local");
    let src = write(&local, "x", &content(1001, 0));
    let err = fs.srv.client().send_file(&src, "x").unwrap_err();
    assert!(matches!(err, Error::Remote { status: status::TOO_LARGE, .. }), "{err}");
}

/// Cut connection 0 after `records` data records in `dir`.
fn cut_after(dir: Dir, records: usize) -> Arc<Mutator> {
    Arc::new(move |conn, d, n, f: &[u8]| {
        // Frames 0 and 1 are the handshake, 2 is the request (or FILE_READY), then data.
        if conn == 0 && d == dir && n == 3 + records {
            Action::Close
        } else {
            Action::Forward(f.to_vec())
        }
    })
}

fn no_retry() -> ovtp::ClientConfig {
    ovtp::ClientConfig { retries: 0, ..quick_client() }
}

#[test]
fn an_interrupted_upload_leaves_nothing_under_the_final_name_and_resumes() {
    let fs = file_server(|_| {});
    let local = TempDir::new("local");
    let data = content((5 << 20) + 99, 3);
    let src = write(&local, "src", &data);
    let proxy_addr = proxy(fs.srv.addr, 3, cut_after(Dir::ToServer, 2));
    let mut c =
        Client::connect_with(&proxy_addr.to_string(), client_keys(), fs.srv.pin(), no_retry())
            .unwrap();
    let err = c.send_file(&src, "big.bin").unwrap_err();
    assert!(matches!(err, Error::Closed(_) | Error::Io(_)), "{err}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!fs.files.join("big.bin").exists(), "a partial upload appeared under the final name");
    // The upload's partial file is this client key's own (PROTOCOL.md 7.7.7).
    let partial =
        ovtp::upload_partial_path(&fs.files.join("big.bin"), &client_keys().fingerprint());
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept > 0 && kept < data.len() as u64, "kept {kept}");

    // Resume on a new connection: only the rest travels.
    let report = c.send_file(&src, "big.bin").unwrap();
    assert_eq!(report.resumed_from, kept);
    assert_eq!(report.sha256, sha(&data));
    assert_eq!(std::fs::read(fs.files.join("big.bin")).unwrap(), data);
    assert!(!partial.exists());
}

#[test]
fn resuming_a_file_that_changed_meanwhile_starts_over() {
    let fs = file_server(|_| {});
    let local = TempDir::new("local");
    let old = content(4 << 20, 5);
    let src = write(&local, "src", &old);
    let proxy_addr = proxy(fs.srv.addr, 3, cut_after(Dir::ToServer, 2));
    let mut c =
        Client::connect_with(&proxy_addr.to_string(), client_keys(), fs.srv.pin(), no_retry())
            .unwrap();
    assert!(c.send_file(&src, "f").is_err());
    let mut new = old.clone();
    new[10] ^= 0xff; // changed inside the prefix the server already has
    std::fs::write(&src, &new).unwrap();
    let report = c.send_file(&src, "f").unwrap();
    assert_eq!(report.resumed_from, 0, "resumed from a prefix that no longer matches");
    assert_eq!(std::fs::read(fs.files.join("f")).unwrap(), new);
}

#[test]
fn a_lost_connection_during_upload_is_retried_and_resumed_automatically() {
    let fs = file_server(|_| {});
    let local = TempDir::new("local");
    let data = content(4 << 20, 9);
    let src = write(&local, "src", &data);
    let proxy_addr = proxy(fs.srv.addr, 3, cut_after(Dir::ToServer, 2));
    let mut c =
        Client::connect_with(&proxy_addr.to_string(), client_keys(), fs.srv.pin(), quick_client())
            .unwrap();
    let report = c.send_file(&src, "auto").unwrap();
    assert!(report.resumed_from > 0);
    assert_eq!(std::fs::read(fs.files.join("auto")).unwrap(), data);
    let received =
        fs.events.lock().unwrap().iter().filter(|e| e.starts_with("received auto")).count();
    assert_eq!(received, 1);
}

#[test]
fn an_interrupted_download_keeps_only_a_partial_file_and_resumes() {
    let fs = file_server(|_| {});
    let data = content((6 << 20) + 5, 4);
    std::fs::write(fs.files.join("remote.bin"), &data).unwrap();
    let local = TempDir::new("local");
    let dst = local.join("copy.bin");
    let proxy_addr = proxy(fs.srv.addr, 3, cut_after(Dir::ToClient, 2));
    let mut c =
        Client::connect_with(&proxy_addr.to_string(), client_keys(), fs.srv.pin(), no_retry())
            .unwrap();
    assert!(c.get_file("remote.bin", &dst).is_err());
    assert!(!dst.exists(), "a partial download appeared under the final name");
    let kept = std::fs::metadata(local.join(".copy.bin.ovtp-part")).unwrap().len();
    assert!(kept > 0);
    let report = c.get_file("remote.bin", &dst).unwrap();
    assert_eq!(report.resumed_from, kept);
    assert_eq!(std::fs::read(&dst).unwrap(), data);
    assert!(leftovers(local.path()).is_empty());
}

#[test]
fn concurrent_uploads_to_one_name_do_not_interleave() {
    let fs = file_server(|_| {});
    let local = TempDir::new("local");
    let a = content(3 << 20, 1);
    let b = content(3 << 20, 2);
    let pa = write(&local, "a", &a);
    let pb = write(&local, "b", &b);
    let addr = fs.srv.addr;
    let pin = fs.srv.pin();
    let results: Vec<_> = [pa, pb]
        .into_iter()
        .map(|p| {
            let pin = pin.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect_with(&addr.to_string(), client_keys(), pin, no_retry())
                    .unwrap();
                c.send_file(&p, "same")
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(ok >= 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, Error::Remote { status: status::NAME_BUSY | status::FILE_EXISTS, .. }),
                "unexpected outcome {e}"
            );
        }
    }
    let stored = std::fs::read(fs.files.join("same")).unwrap();
    assert!(stored == a || stored == b, "the stored file is a mix of both uploads");
}

#[test]
fn a_file_longer_than_the_background_sync_interval_arrives_whole_both_ways() {
    // 32 MiB written starts the receiver's background sync (io/pipes.rs
    // SYNC_EVERY); the sender cuts each 1 MiB read into several records.
    let fs = file_server(|_| {});
    let local = TempDir::new("local");
    let data = content((70 << 20) + 5, 2);
    let src = write(&local, "src", &data);
    let mut c = fs.srv.client();
    assert_eq!(c.send_file(&src, "big").unwrap().sha256, sha(&data));
    assert_eq!(std::fs::read(fs.files.join("big")).unwrap(), data);
    let dst = local.join("dst");
    assert_eq!(c.get_file("big", &dst).unwrap().sha256, sha(&data));
    assert_eq!(std::fs::read(&dst).unwrap(), data);
}

#[test]
fn progress_is_reported_at_a_modest_rate_and_ends_at_the_total() {
    let fs = file_server(|_| {});
    let local = TempDir::new("local");
    let data = content(16 << 20, 6);
    let src = write(&local, "src", &data);
    let mut c = fs.srv.client();
    let mut calls = Vec::new();
    let mut record = |done: u64, total: u64| calls.push((done, total));
    let opts = TransferOptions { progress: Some(&mut record), ..Default::default() };
    c.send_file_with(&src, "p", opts).unwrap();
    assert!(!calls.is_empty());
    assert_eq!(*calls.last().unwrap(), (data.len() as u64, data.len() as u64));
    assert!(calls.len() < 16, "called {} times for 16 records", calls.len());
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
}

#[test]
fn a_full_disk_on_the_server_is_reported_and_nothing_is_left_behind() {
    let fs = file_server(|_| {});
    let mnt = fs.files.join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !mounted {
        println!("skipping: cannot mount a 1 MiB tmpfs here (needs root and mount permission)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let local = TempDir::new("local");
    let src = write(&local, "src", &content(3 << 20, 8));
    let mut c = fs.srv.client();
    let err = c.send_file(&src, "small/too-big.bin").unwrap_err();
    match &err {
        Error::Remote { status: status::IO_ERROR, message } => {
            assert!(message.contains("No space left"), "{message}")
        }
        other => panic!("expected an I/O error from the server, got {other}"),
    }
    assert!(!mnt.join("too-big.bin").exists());
    assert!(leftovers(&mnt).is_empty(), "partial file left on the full disk");
    // The connection and the server still work.
    assert!(c.send_message("after").unwrap().is_ok());
    let small = write(&local, "small", b"fits");
    c.send_file(&small, "small/fits").unwrap();
    assert_eq!(std::fs::read(mnt.join("fits")).unwrap(), b"fits");

    // The other receiving side: a download into a full local disk fails with
    // the file named and the cause given, never appears under its final name,
    // and another client of the same server is served meanwhile.
    let big = content(3 << 20, 9);
    std::fs::write(fs.files.join("big.bin"), &big).unwrap();
    let dst = mnt.join("big-copy.bin");
    let err = c.get_file("big.bin", &dst).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::File { .. }) && text.contains("No space left"), "{text}");
    assert!(text.contains("big-copy.bin"), "the error does not name the file: {text}");
    assert!(!dst.exists(), "a partial download has the final name");
    let mut other = fs.srv.client();
    assert!(other.send_message("meanwhile").unwrap().is_ok());
    // Space freed (the partial file removed), the same client downloads it whole.
    std::fs::remove_file(mnt.join(".big-copy.bin.ovtp-part")).unwrap();
    let small_copy = mnt.join("fits-copy");
    c.get_file("small/fits", &small_copy).unwrap();
    assert_eq!(std::fs::read(&small_copy).unwrap(), b"fits");
    assert_eq!(std::fs::read(fs.files.join("big.bin")).unwrap(), big);
}

#[test]
fn a_retry_supersedes_an_upload_whose_connection_went_silent() {
    // The server would wait 30 s to notice the dead connection; the retry must not.
    let fs = file_server(|c| c.io_timeout = Duration::from_secs(30));
    let local = TempDir::new("local");
    let data = content(4 << 20, 11);
    let src = write(&local, "src", &data);
    // Connection 0 goes silent (frames swallowed, socket left open) after two data records.
    let silent: Arc<Mutator> = Arc::new(|conn, dir, n, f: &[u8]| {
        if conn == 0 && dir == Dir::ToServer && n == 5 {
            Action::Freeze
        } else {
            Action::Forward(f.to_vec())
        }
    });
    let proxy_addr = proxy(fs.srv.addr, 3, silent);
    let config = ovtp::ClientConfig { io_timeout: Duration::from_secs(1), ..quick_client() };
    let mut c =
        Client::connect_with(&proxy_addr.to_string(), client_keys(), fs.srv.pin(), config).unwrap();
    let started = std::time::Instant::now();
    let report = c.send_file(&src, "silent.bin").unwrap();
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert!(report.resumed_from > 0);
    assert_eq!(std::fs::read(fs.files.join("silent.bin")).unwrap(), data);
}

#[test]
fn a_lost_final_reply_of_an_upload_is_answered_from_the_cache_on_retry() {
    let fs = file_server(|_| {});
    let local = TempDir::new("local");
    let data = content(300_000, 12);
    let src = write(&local, "src", &data);
    // Toward the client on connection 0: hello, auth, FILE_READY, then the final reply: cut it.
    let lose_reply: Arc<Mutator> = Arc::new(|conn, dir, n, f: &[u8]| {
        if conn == 0 && dir == Dir::ToClient && n == 3 {
            Action::Close
        } else {
            Action::Forward(f.to_vec())
        }
    });
    let proxy_addr = proxy(fs.srv.addr, 3, lose_reply);
    let mut c =
        Client::connect_with(&proxy_addr.to_string(), client_keys(), fs.srv.pin(), quick_client())
            .unwrap();
    let report = c.send_file(&src, "once.bin").unwrap();
    assert_eq!(report.reply.text(), "stored");
    assert_eq!(std::fs::read(fs.files.join("once.bin")).unwrap(), data);
    let received =
        fs.events.lock().unwrap().iter().filter(|e| e.starts_with("received once.bin")).count();
    assert_eq!(received, 1, "the handler heard of the same upload twice");
}

/// SHA-256 length extension (the attack of finding 2): from the digest of a
/// `len`-byte message alone (`len` a multiple of 64), the glue padding that
/// follows it and the digest of `message || glue || ext` (`ext` whole blocks).
fn extend_sha256(digest: &[u8], len: u64, ext: &[u8]) -> (Vec<u8>, [u8; 32]) {
    let padding = |len: u64| {
        let mut p = vec![0x80];
        p.resize(56, 0);
        p.extend_from_slice(&(len * 8).to_be_bytes());
        p
    };
    assert!(len.is_multiple_of(64) && ext.len().is_multiple_of(64));
    let glue = padding(len);
    let mut state = [0u32; 8];
    for (i, w) in state.iter_mut().enumerate() {
        *w = u32::from_be_bytes(digest[4 * i..4 * i + 4].try_into().unwrap());
    }
    let total = len + 64 + ext.len() as u64;
    let tail = [ext, &padding(total)].concat();
    let blocks: Vec<[u8; 64]> = tail.chunks(64).map(|c| c.try_into().unwrap()).collect();
    sha2::block_api::compress256(&mut state, &blocks);
    let mut out = [0u8; 32];
    for (i, w) in state.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
    }
    (glue, out)
}

#[test]
fn length_extension_helper_matches_sha256() {
    let m = content(128, 1);
    let ext = [7u8; 64];
    let (glue, forged) = extend_sha256(&sha(&m), 128, &ext);
    assert_eq!(forged, sha(&[&m[..], &glue, &ext].concat()));
}

/// Finding 2 of issue 12, as it was tried live: a victim's upload is cut
/// after 1 MiB; a second authorized key asks to resume the same name. In
/// version 1 it was told the partial file's length and SHA-256, continued it
/// with SHA-256 padding and a digest computed from that state alone, had it
/// committed, and downloaded the victim's first MiB. Now a partial file
/// belongs to the key that started it: the second key sees nothing, and the
/// victim still resumes its own upload.
#[test]
fn another_key_can_neither_see_nor_complete_an_interrupted_upload() {
    use ovtp::hooks::msg::{
        FLAG_ABORT, FLAG_FIN, FileEnd, Get, Op, Put, REC_FILE_DATA, REC_FILE_END, REC_FILE_READY,
        REC_RESPONSE,
    };
    let fs = file_server(|_| {});
    let second = other_server_keys();
    ovtp::AuthorizedKeys::new(&fs.srv.authorized).add(second.public(), "second client").unwrap();
    let local = TempDir::new("local");
    let victim = content(3 << 20, 11);
    let src = write(&local, "victim.bin", &victim);
    let proxy_addr = proxy(fs.srv.addr, 1, cut_after(Dir::ToServer, 1));
    let mut c =
        Client::connect_with(&proxy_addr.to_string(), client_keys(), fs.srv.pin(), no_retry())
            .unwrap();
    assert!(c.send_file(&src, "report.bin").is_err());
    // The bytes of the victim's first FILE_DATA record (its size is the
    // sender's choice) land in a partial file.
    let held = |dir: &Path| {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).find_map(|p| {
            let len = std::fs::metadata(&p).map_or(0, |m| m.len());
            (p.to_string_lossy().ends_with(".ovtp-part") && len > 0).then_some(len)
        })
    };
    for _ in 0..100 {
        if held(&fs.files).is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let kept = held(&fs.files).expect("the victim's first bytes are kept in a partial file");

    // The second key asks to resume the same name.
    let mut b = RawClient::connect(fs.srv.addr, &second, fs.srv.keys.public());
    let put = |size| {
        Op::Put(Put { name: "report.bin", size, overwrite: false, resume: true, meta: None })
    };
    b.request(put(4 << 20));
    let (rtype, _, ready) = b.recv();
    assert_eq!(rtype, REC_FILE_READY);
    let seen = u64::from_be_bytes(ready[..8].try_into().unwrap());
    let abort = |b: &mut RawClient, total| {
        let end = FileEnd { total, sha256: [0; 32], abort: true };
        b.send(REC_FILE_END, FLAG_FIN | FLAG_ABORT, &end.to_vec());
        assert_eq!(b.recv().0, REC_RESPONSE, "ABORTED");
    };
    if seen > 0 && ready.len() == 40 {
        // Version 1: the length and SHA-256 of the victim's bytes. Extend them.
        abort(&mut b, 0);
        let ext = [b'!'; 64];
        let (glue, forged) = extend_sha256(&ready[8..], seen, &ext);
        let total = seen + (glue.len() + ext.len()) as u64;
        b.request(put(total));
        assert_eq!(b.recv().0, REC_FILE_READY);
        b.send(REC_FILE_DATA, FLAG_FIN, &[&seen.to_be_bytes()[..], &glue, &ext].concat());
        b.send(REC_FILE_END, FLAG_FIN, &FileEnd { total, sha256: forged, abort: false }.to_vec());
        assert_eq!(b.recv().0, REC_RESPONSE);
        let prefix = sha(b"");
        b.request(Op::Get(Get {
            name: "report.bin",
            offset: 0,
            prefix,
            resume: false,
            preserve: false,
        }));
        let mut got = Vec::new();
        loop {
            let (rtype, _, pt) = b.recv();
            match rtype {
                REC_FILE_DATA => got.extend_from_slice(&pt[8..]),
                REC_FILE_READY => {}
                _ => break,
            }
        }
        assert!(
            !got.starts_with(&victim[..kept as usize]),
            "a second key completed the victim's interrupted upload by length extension \
             and downloaded the victim's first bytes"
        );
    }
    assert_eq!((seen, ready.len()), (0, 8), "a second key sees another key's partial file");
    abort(&mut b, 0);
    drop(b);

    // The victim's own retry resumes where its upload was cut.
    let report = fs.srv.client().send_file(&src, "report.bin").unwrap();
    assert_eq!(report.resumed_from, kept);
    assert_eq!(std::fs::read(fs.files.join("report.bin")).unwrap(), victim);
}

#[test]
fn a_verified_transfer_reads_the_stored_file_back_and_catches_a_changed_copy() {
    // The handler appends to files named "rot*" once they are stored: a disk
    // (or a bug) that changed what was written.
    let dir = TempDir::new("files");
    let files = dir.join("files");
    make_dir(&files).unwrap();
    let config = ServerConfig { files_dir: Some(files.clone()), ..quick_server() };
    let srv = TestServer::start_with(config, Arc::new(AtomicUsize::new(0)), |req: Request<'_>| {
        if let Payload::FileReceived { name, path, .. } = &req.payload
            && name.starts_with("rot")
        {
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            std::io::Write::write_all(&mut f, b"!").unwrap();
        }
        Reply::ok("")
    });
    let local = TempDir::new("local");
    let data = content((2 << 20) + 3, 8);
    let src = write(&local, "src", &data);
    let verify = || TransferOptions { verify: true, ..Default::default() };
    let mut c = srv.client();
    let report = c.send_file_with(&src, "kept.bin", verify()).unwrap();
    assert_eq!(report.sha256, sha(&data));
    let copy = local.join("copy.bin");
    let report = c.get_file_with("kept.bin", &copy, verify()).unwrap();
    assert_eq!((report.sha256, std::fs::read(&copy).unwrap()), (sha(&data), data.clone()));
    let err = c.send_file_with(&src, "rot.bin", verify()).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch(_)), "{err}");
    assert!(err.to_string().contains(&format!("{} bytes", data.len() + 1)), "{err}");
}

/// The server continues a partial upload only after the client proved, with
/// FILE_PREFIX, that the bytes held are its file's: a FILE_DATA after them
/// without the proof is refused, and a wrong digest makes the data start at 0.
#[test]
fn a_partial_upload_is_continued_only_after_its_prefix_is_proven() {
    use ovtp::hooks::msg::{
        FLAG_FIN, FileEnd, Op, Put, REC_FILE_DATA, REC_FILE_END, REC_FILE_PREFIX, REC_FILE_READY,
        REC_RESPONSE,
    };
    let fs = file_server(|_| {});
    let data = content(1000, 4);
    let partial = ovtp::upload_partial_path(&fs.files.join("p.bin"), &client_keys().fingerprint());
    let put =
        Op::Put(Put { name: "p.bin", size: 1000, overwrite: false, resume: true, meta: None });
    let ready = |c: &mut RawClient| {
        let (rtype, _, pt) = c.recv();
        assert_eq!(rtype, REC_FILE_READY);
        u64::from_be_bytes(pt.try_into().unwrap())
    };
    let status = |pt: &[u8]| u16::from_be_bytes([pt[16], pt[17]]);

    // No proof: FILE_DATA right after the 400 bytes held is refused at once.
    std::fs::write(&partial, &data[..400]).unwrap();
    let mut c = RawClient::connect(fs.srv.addr, &client_keys(), fs.srv.keys.public());
    c.request(put.clone());
    assert_eq!(ready(&mut c), 400);
    c.send(REC_FILE_DATA, FLAG_FIN, &[&400u64.to_be_bytes()[..], &data[400..]].concat());
    let (rtype, _, pt) = c.recv();
    assert_eq!((rtype, status(&pt)), (REC_RESPONSE, ovtp::status::BAD_REQUEST));
    let end = FileEnd { total: 1000, sha256: sha(&data), abort: false };
    c.send(REC_FILE_END, FLAG_FIN, &end.to_vec()); // drained
    assert!(!fs.files.join("p.bin").exists());

    // A proof that does not match: the data starts over at 0, and the file is whole.
    std::fs::write(&partial, &data[..400]).unwrap();
    c.request(put);
    assert_eq!(ready(&mut c), 400);
    c.send(REC_FILE_PREFIX, FLAG_FIN, &sha(&data[..399]));
    assert_eq!(ready(&mut c), 0, "a prefix that differs is not continued");
    c.send(REC_FILE_DATA, FLAG_FIN, &[&0u64.to_be_bytes()[..], &data].concat());
    c.send(REC_FILE_END, FLAG_FIN, &end.to_vec());
    let (rtype, _, pt) = c.recv();
    assert_eq!((rtype, status(&pt)), (REC_RESPONSE, ovtp::status::OK));
    assert_eq!(std::fs::read(fs.files.join("p.bin")).unwrap(), data);
    assert!(!partial.exists());
}

#[cfg(unix)]
#[test]
fn a_files_directory_others_can_write_or_holding_the_servers_own_files_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let home = TempDir::new("fdir");
    let files = home.join("files");
    make_dir(&files).unwrap();
    let key_file = home.join("id_rsa");
    server_keys().save(&key_file, false).unwrap();
    let keys = ovtp::KeyPair::load(&key_file).unwrap();
    let bind = |dir: &Path, authorized: &Path, protected: &[&Path]| {
        let config = ServerConfig {
            files_dir: Some(dir.to_path_buf()),
            protected_paths: protected.iter().map(|p| p.to_path_buf()).collect(),
            ..quick_server()
        };
        let ak = ovtp::AuthorizedKeys::new(authorized);
        let handler = |_: Request<'_>| Reply::ok("");
        ovtp::Server::bind_with("127.0.0.1:0", keys.clone(), ak, config, handler)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let authorized = home.join("authorized_keys");
    // Inside the home, beside the key and trust files: fine.
    bind(&files, &authorized, &[home.path()]).unwrap();
    // Writable by group or others: refused, with the command that fixes it.
    std::fs::set_permissions(&files, std::fs::Permissions::from_mode(0o775)).unwrap();
    let err = bind(&files, &authorized, &[]).unwrap_err();
    assert!(err.contains(&format!("chmod go-w {}", files.display())), "{err}");
    std::fs::set_permissions(&files, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Holding authorized_keys (even before it exists), the key it was loaded
    // from, or a protected path such as the command line's home: refused.
    let (inside, outside) = (files.join("sub/authorized_keys"), TempDir::new("fdir-ak"));
    for (dir, authorized, protected, named) in [
        (home.path(), &authorized, &[][..], "authorized_keys"),
        (files.as_path(), &inside, &[][..], "authorized_keys"),
        (home.path(), &outside.join("ak"), &[][..], "id_rsa"),
        (files.as_path(), &authorized, &[files.join("home").as_path()][..], "home"),
    ] {
        let err = bind(dir, authorized, protected).unwrap_err();
        assert!(err.contains("contains") && err.contains(named), "{err}");
    }
    // A files directory that does not exist is refused up front.
    let err = bind(&home.join("missing"), &authorized, &[]).unwrap_err();
    assert!(err.contains("missing"), "{err}");
}
