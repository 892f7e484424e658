//! The commands that talk to a server: `send`, the file transfers `put`,
//! `get` and `digest`, and `ls`.

use crate::args::Args;
use crate::progress::Display;
use crate::{Fail, Run, exit};
use ovtp::Progress;
use ovtp::escape_control;
use ovtp::status::{self, reserved_name};
use ovtp::{Client, ClientConfig, Error, Fingerprint, HostCheck, HostTrust, KeyPair};
use ovtp::{DirEntry, EntryKind, FileReport, TransferOptions};
use ovtp::{check_name, hex};
use std::collections::HashSet;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// Options of the commands that connect (see `args`).
pub const CONNECT: &str = "--accept-new --fingerprint= --key= --known-hosts=";
pub const SEND: &str = "--data --accept-new --fingerprint= --key= --known-hosts=";
pub const PUT: &str = "--to= --force --no-resume --verify --preserve --recursive --limit-rate= \
    --accept-new --fingerprint= --key= --known-hosts=";
pub const GET: &str = "--force --no-resume --verify --preserve --recursive --limit-rate= \
    --accept-new --fingerprint= --key= --known-hosts=";
pub const LS: &str = "--long --accept-new --fingerprint= --key= --known-hosts=";

/// Connect to `host` with the key and trust policy the options name.
pub fn connect(a: &Args, host: &str) -> Result<Client, Fail> {
    let key_path = crate::file_in_home(a, "--key", "id_rsa", false)?;
    if !key_path.exists() {
        return Err(Fail::new(
            exit::LOCAL,
            format!(
                "no private key at {}; create one with `ovtp keygen` (or give --key FILE)",
                key_path.display()
            ),
        ));
    }
    let keys = KeyPair::load(&key_path).map_err(Fail::local)?;
    let host = ovtp::normalize_host(host).map_err(Fail::local)?;
    let known = crate::known_hosts(a)?;
    let trust = match (a.value("--fingerprint"), a.flag("--accept-new")) {
        (Some(_), true) => return Err(Fail::usage("give --fingerprint or --accept-new, not both")),
        (Some(fp), false) => {
            HostTrust::Fingerprint(fp.parse::<Fingerprint>().map_err(Fail::local)?)
        }
        (None, true) => {
            crate::make_parent(known.path())?;
            HostTrust::AcceptNew(known.clone())
        }
        (None, false) => HostTrust::KnownHosts(known.clone()),
    };
    // With --accept-new: whether the host is recorded at all (our own
    // fingerprint stands in for "any key": it is never a server's), so that
    // a key it records can be reported.
    let accept_new = matches!(trust, HostTrust::AcceptNew(_));
    let recorded = !accept_new
        || known.check(&host, &keys.fingerprint()).map_err(Fail::local)? != HostCheck::Unknown;
    let ours = keys.fingerprint();
    let client = Client::connect_with(&host, keys, trust, ClientConfig::default())
        .map_err(|e| not_authorized(e, &ours, &key_path))?;
    if let (false, Some(fp)) = (recorded, client.server_fingerprint()) {
        warn!("ovtp: recorded {host} {fp} in {}", known.path().display());
    }
    Ok(client)
}

/// A refusal of our key says which key, where its public half is, and what
/// the server's operator runs to authorize it.
fn not_authorized(e: Error, ours: &Fingerprint, key_path: &std::path::Path) -> Fail {
    let Error::Refused { code: ovtp::AlertCode::Unauthorized, .. } = e else {
        return Fail::net(e);
    };
    let public = crate::public_path(key_path);
    let name = public.file_name().map_or("KEY.pub".into(), |n| n.to_string_lossy().into_owned());
    let msg = format!(
        "{e}. Your key {ours} is not in the server's authorized_keys; its public half is {}. \
         Send that file to the server's operator, who runs: ovtp authorize {}",
        escape_control(&public.display().to_string()),
        escape_control(&name)
    );
    Fail::new(exit::REFUSED, msg)
}

/// The message: the MESSAGE argument, or standard input when it is `-` or absent.
fn message(arg: Option<&String>) -> Result<Vec<u8>, Fail> {
    if let Some(m) = arg.filter(|m| *m != "-") {
        return Ok(m.as_bytes().to_vec());
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        warn!("ovtp: reading the message from standard input; end it with Ctrl-D");
    }
    let limit = ovtp::constants::DEFAULT_MAX_MESSAGE;
    let mut buf = Vec::new();
    stdin
        .lock()
        .take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Fail::new(exit::LOCAL, format!("cannot read standard input: {e}")))?;
    if buf.len() > limit {
        return Err(Fail::usage(format!("the message is larger than {limit} bytes")));
    }
    Ok(buf)
}

pub fn send(a: &Args) -> Run {
    let pos = a.positionals(1, 2, "HOST[:PORT] [MESSAGE|-]")?;
    let body = message(pos.get(1))?;
    let text = match a.flag("--data") {
        true => None,
        false => Some(String::from_utf8(body.clone()).map_err(|_| {
            Fail::usage("the message is not valid UTF-8 text; use --data to send raw bytes")
        })?),
    };
    let mut client = connect(a, &pos[0])?;
    let reply = match &text {
        Some(t) => client.send_message(t),
        None => client.send_data(&body),
    }
    .map_err(Fail::net)?;
    write_body(&reply.body).map_err(|e| Fail::new(exit::LOCAL, format!("standard output: {e}")))?;
    Ok(status_exit(reply.status))
}

/// Print a peer's bytes: raw into a pipe or file, escaped on a terminal
/// (newlines and tabs kept), so they cannot move the cursor or hide text.
fn write_body(body: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if !out.is_terminal() {
        out.write_all(body)?;
        return out.flush();
    }
    let mut shown = String::with_capacity(body.len());
    for c in String::from_utf8_lossy(body).chars() {
        match c {
            '\n' | '\t' => shown.push(c),
            c => shown.push_str(&escape_control(c.encode_utf8(&mut [0; 4]))),
        }
    }
    if !shown.is_empty() && !shown.ends_with('\n') {
        shown.push('\n');
    }
    out.write_all(shown.as_bytes())?;
    out.flush()
}

/// Report a non-zero status on stderr and turn it into the exit code.
fn status_exit(status: u16) -> u8 {
    if status == 0 {
        return 0;
    }
    match reserved_name(status) {
        Some(name) => warn!("status {status} ({name})"),
        None => warn!("status {status}"),
    }
    u8::try_from(status).map_or(exit::STATUS_MAX, |s| s.min(exit::STATUS_MAX))
}

// ---- File transfer. ----

/// `--force` and `--no-resume` as (overwrite, resume).
fn transfer_options(a: &Args) -> (bool, bool) {
    (a.flag("--force"), !a.flag("--no-resume"))
}

/// `--limit-rate RATE` in bytes per second (K, M, G suffixes), if given.
pub fn limit_rate(a: &Args) -> Result<Option<u64>, Fail> {
    let Some(v) = a.value("--limit-rate") else {
        return Ok(None);
    };
    let rate = a.number("--limit-rate", 0)?;
    let min = ovtp::constants::MIN_LIMIT_RATE;
    if rate < min {
        let v = escape_control(v);
        return Err(Fail::usage(format!(
            "--limit-rate: \"{v}\" is below the lowest rate, {}K bytes per second",
            min / 1024
        )));
    }
    Ok(Some(rate))
}

/// Check a remote name before connecting, so a bad one is a usage error.
pub fn remote_name(name: &str) -> Result<(), Fail> {
    check_name(name)
        .map_err(|why| Fail::usage(format!("bad remote name \"{}\": {why}", escape_control(name))))
}

/// The exit code for a status the server answered a file operation with.
fn file_status_exit(code: u16) -> u8 {
    match code {
        status::FILE_EXISTS => exit::EXISTS,
        status::DIGEST_MISMATCH | status::ABORTED | status::NAME_BUSY => exit::RETRY,
        status::BAD_REQUEST => exit::PROTOCOL,
        status::UNSUPPORTED
        | status::BAD_NAME
        | status::NOT_FOUND
        | status::IO_ERROR
        | status::TOO_LARGE
        | status::HANDLER_PANICKED
        | status::REPLY_LOST => exit::FILE_REFUSED,
        // The server's own handler refused: as for `send`.
        other => u8::try_from(other).map_or(exit::STATUS_MAX, |s| s.min(exit::STATUS_MAX)),
    }
}

/// A failed transfer of `what` (a file name): the exit code and a message
/// that says what to do.
pub fn transfer_fail(what: &str, e: Error) -> Fail {
    let what = escape_control(what);
    match e {
        Error::Remote { status: code, message } => {
            let message = escape_control(&message);
            let msg = match code {
                status::FILE_EXISTS => {
                    format!("{what} exists on the server; not replaced (use --force to replace it)")
                }
                status::UNSUPPORTED => format!(
                    "the server does not accept file transfers ({message}); \
                     an ovtp server accepts files only when started with --dir DIR"
                ),
                code => {
                    let name = reserved_name(code).map_or(format!("status {code}"), str::to_string);
                    format!("{what}: the server answered {name}: {message}")
                }
            };
            Fail::new(file_status_exit(code), msg)
        }
        // Left after our own checks: the local file changed or vanished meanwhile.
        Error::InvalidInput(m) => Fail::new(exit::LOCAL, m),
        Error::Exists(_) => Fail::new(exit::EXISTS, e.to_string()),
        Error::File { .. } => Fail::new(exit::LOCAL, e.to_string()),
        Error::DigestMismatch(_) => Fail::new(exit::RETRY, format!("{what}: {e}")),
        e => Fail::net(e),
    }
}

/// Run a transfer with the progress display when standard error is a terminal.
/// (`run` is called in one place only: it inlines a whole transfer.)
fn with_progress<T>(label: &str, run: impl FnOnce(Progress<'_>) -> T) -> T {
    let mut display = Display::new(label);
    let on = display.is_some();
    let mut show = |done, total| display.as_mut().map_or((), |d| d.update(done, total));
    let result = run(if on { Some(&mut show) } else { None });
    if let Some(d) = display.as_mut() {
        d.finish();
    }
    result
}

/// `NAME  SIZE  SHA256` on standard output, resume and server notes on standard error.
pub fn report(command: &str, name: &str, r: &FileReport) -> u8 {
    let name = escape_control(name);
    say!("{name}  {}  {}", r.size, hex(&r.sha256));
    if r.resumed_from > 0 && r.resumed_from < r.size {
        warn!("ovtp {command}: {name}: resumed an interrupted transfer at byte {}", r.resumed_from);
    }
    if !r.reply.body.is_empty() {
        let text = escape_control(&r.reply.text());
        warn!("ovtp {command}: {name}: the server says: {text}");
    }
    if r.reply.status == 0 {
        return 0;
    }
    warn!("ovtp {command}: {name}: stored, but the server answered:");
    status_exit(r.reply.status)
}

/// The remote names of `put`'s files: each file's name, or `--to`.
fn put_names(files: &[String], to: Option<&str>) -> Result<Vec<String>, Fail> {
    let base = |f: &String| {
        Path::new(f).file_name().and_then(|n| n.to_str()).map(str::to_string).ok_or_else(|| {
            Fail::usage(format!(
                "\"{}\" has no file name to use on the server; give --to REMOTE",
                escape_control(f)
            ))
        })
    };
    let names: Vec<String> = match to {
        Some(t) if files.len() == 1 && !t.ends_with('/') => vec![t.to_string()],
        Some(dir) => {
            let dir = dir.trim_end_matches('/');
            let names: Result<Vec<_>, _> = files.iter().map(base).collect();
            names?.into_iter().map(|n| format!("{dir}/{n}")).collect()
        }
        None => files.iter().map(base).collect::<Result<_, _>>()?,
    };
    let mut seen = HashSet::new();
    for n in &names {
        remote_name(n)?;
        if !seen.insert(n) {
            return Err(Fail::usage(format!(
                "two files would both be stored as \"{}\"",
                escape_control(n)
            )));
        }
    }
    Ok(names)
}

pub fn put(a: &Args) -> Run {
    if a.flag("--recursive") {
        return crate::trees::put(a);
    }
    let pos = a.positionals(2, usize::MAX, "HOST[:PORT] FILE...")?;
    let (host, files) = (&pos[0], &pos[1..]);
    let names = put_names(files, a.value("--to"))?;
    for f in files {
        let problem = match std::fs::metadata(f) {
            Ok(m) if m.is_file() => continue,
            Ok(m) if m.is_dir() => "is a directory; use -r to upload a tree".to_string(),
            Ok(_) => "not a regular file".to_string(),
            Err(e) => e.to_string(),
        };
        let f = escape_control(f);
        return Err(Fail::new(exit::LOCAL, format!("{f}: {problem}")));
    }
    let (overwrite, resume) = transfer_options(a);
    let (verify, preserve) = (a.flag("--verify"), a.flag("--preserve"));
    let limit_rate = limit_rate(a)?;
    let mut client = connect(a, host)?;
    let mut code = 0;
    let mut failed = 0;
    for (file, name) in files.iter().zip(&names) {
        let result = with_progress(name, |progress| {
            let opts =
                TransferOptions { overwrite, resume, progress, verify, preserve, limit_rate };
            client.send_file_with(file, name, opts)
        });
        match result {
            Ok(r) => {
                let c = report("put", name, &r);
                if code == 0 {
                    code = c;
                }
            }
            Err(e) if files.len() > 1 && e.is_per_file() => {
                let fail = transfer_fail(name, e);
                warn!("ovtp put: {}: {}", escape_control(file), fail.msg);
                failed += 1;
                if code == 0 {
                    code = fail.code;
                }
            }
            Err(e) => return Err(transfer_fail(name, e)),
        }
    }
    if failed > 0 {
        warn!("ovtp put: {failed} of {} files were not uploaded", files.len());
    }
    Ok(code)
}

/// Where `get` writes: LOCAL, or into it when it is a directory, by default
/// the remote name's last component in the current directory.
pub fn get_target(remote: &str, local: Option<&String>) -> PathBuf {
    let base = remote.rsplit('/').next().unwrap_or(remote);
    match local {
        None => PathBuf::from(base),
        Some(l) if l.ends_with('/') || Path::new(l).is_dir() => Path::new(l).join(base),
        Some(l) => PathBuf::from(l),
    }
}

pub fn get(a: &Args) -> Run {
    if a.flag("--recursive") {
        return crate::trees::get(a);
    }
    let pos = a.positionals(2, 3, "HOST[:PORT] REMOTE [LOCAL]")?;
    let remote = pos[1].as_str();
    remote_name(remote)?;
    let local = get_target(remote, pos.get(2));
    let shown = escape_control(&local.display().to_string());
    let (overwrite, resume) = transfer_options(a);
    let (verify, limit_rate) = (a.flag("--verify"), limit_rate(a)?);
    if let Some(dir) = local.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        let dir = escape_control(&dir.display().to_string());
        return Err(Fail::new(exit::LOCAL, format!("{dir}: no such directory")));
    }
    if local.is_dir() {
        return Err(Fail::new(exit::LOCAL, format!("{shown} is a directory")));
    }
    if !overwrite && std::fs::symlink_metadata(&local).is_ok() {
        return Err(Fail::new(
            exit::EXISTS,
            format!("{shown} exists; not replaced (use --force to replace it)"),
        ));
    }
    let mut client = connect(a, &pos[0])?;
    let label = local.file_name().map_or(shown.clone(), |n| n.to_string_lossy().into_owned());
    let partial = ovtp::partial_path(&local);
    let had_partial = std::fs::symlink_metadata(&partial).is_ok();
    let result = with_progress(&label, |progress| {
        let preserve = a.flag("--preserve");
        let opts = TransferOptions { overwrite, resume, progress, verify, preserve, limit_rate };
        client.get_file_with(remote, &local, opts)
    });
    if let Err(Error::Remote { .. }) = result {
        // Refused before any data came: leave no empty partial file behind.
        if !had_partial && std::fs::metadata(&partial).is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(&partial);
        }
    }
    let r = result.map_err(|e| transfer_fail(remote, e))?;
    Ok(report("get", &local.display().to_string(), &r))
}

pub fn digest(a: &Args) -> Run {
    let pos = a.positionals(2, 2, "HOST[:PORT] REMOTE")?;
    let remote = pos[1].as_str();
    remote_name(remote)?;
    let mut client = connect(a, &pos[0])?;
    let d = client.file_digest(remote).map_err(|e| transfer_fail(remote, e))?;
    say!("{}  {}  {}", hex(&d.sha256), d.size, escape_control(remote));
    Ok(0)
}

pub fn ls(a: &Args) -> Run {
    let pos = a.positionals(1, 2, "HOST[:PORT] [REMOTE_DIR]")?;
    let dir = pos.get(1).map_or("", |d| d.trim_end_matches('/'));
    if !dir.is_empty() {
        remote_name(dir)?;
    }
    let mut client = connect(a, &pos[0])?;
    let shown = if dir.is_empty() { "the files directory" } else { dir };
    let entries = client.list(dir).map_err(|e| transfer_fail(shown, e))?;
    let mut out = std::io::stdout().lock();
    for e in &entries {
        // Every name was checked: one component, no control characters.
        let line = match a.flag("--long") {
            false if e.kind == EntryKind::Dir => format!("{}/", e.name),
            false => e.name.clone(),
            true => long_line(e),
        };
        if writeln!(out, "{line}").is_err() {
            return Ok(0); // a closed pipe (`ovtp ls ... | head`) is not an error
        }
    }
    Ok(0)
}

/// `TYPE MODE SIZE MTIME NAME`: `f`, `d`, `l` or `?`, four octal digits,
/// bytes, `YYYY-MM-DDTHH:MM:SSZ` (UTC), the name (the rest of the line).
fn long_line(e: &DirEntry) -> String {
    let kind = match e.kind {
        EntryKind::File => 'f',
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        _ => '?',
    };
    let time = crate::serve::utc_seconds(e.mtime);
    format!("{kind} {:04o} {} {time}Z {}", e.mode, e.size, e.name)
}
