//! `ovtp serve`: the server, its log, and `--exec`.

use crate::args::Args;
use crate::{Fail, Run, exit, file_in_home};
use ovtp::Event;
use ovtp::constants::{
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_MESSAGE, DEFAULT_MAX_UNAUTHENTICATED, DEFAULT_RSA_BITS,
};
use ovtp::escape_control;
use ovtp::hex;
use ovtp::status::reserved_name;
use ovtp::{Error, KeyPair, Payload, Reply, Request, ServeFiles, Server, ServerConfig};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const OPTIONS: &str = "--no-serve --stdin-close-stops --quiet --verbose --listen= --key= \
    --authorized-keys= --dir= --max-connections= --handshake-timeout= --idle-timeout= \
    --max-message= --max-file-size= --max-unauthenticated= --exec= --exec-timeout= \
    --add-keys=...";

/// The default port on every address, IPv6 and IPv4 (see `default_listeners`).
const DEFAULT_LISTEN: &str = "[::]:888 and 0.0.0.0:888";
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);

pub fn serve(a: &Args) -> Run {
    a.positionals(0, 0, "options only")?;
    let level = match (a.flag("--quiet"), a.flag("--verbose")) {
        (true, true) => return Err(Fail::usage("give -q or -v, not both")),
        (true, false) => Level::Quiet,
        (false, true) => Level::Verbose,
        (false, false) => Level::Normal,
    };
    let log = Arc::new(Log { level, since: Mutex::new(HashMap::new()) });
    let authorized = crate::authorized_keys(a)?;
    let add = a.list("--add-keys");
    if !add.is_empty() && !crate::add_keys(&authorized, add) {
        return Err(Fail::new(exit::LOCAL, "some keys were not added; not serving"));
    }
    if a.flag("--no-serve") {
        return Ok(0);
    }
    let max_message = usize::try_from(a.number("--max-message", DEFAULT_MAX_MESSAGE as u64)?)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Fail::usage("--max-message must be at least 1"))?;
    let max_connections = a.number("--max-connections", DEFAULT_MAX_CONNECTIONS as u64)?;
    let max_connections = usize::try_from(max_connections)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Fail::usage("--max-connections must be at least 1"))?;
    let strangers = DEFAULT_MAX_UNAUTHENTICATED.min(max_connections) as u64;
    let max_unauthenticated = usize::try_from(a.number("--max-unauthenticated", strangers)?)
        .ok()
        .filter(|n| (1..=max_connections).contains(n))
        .ok_or_else(|| Fail::usage("--max-unauthenticated must be from 1 to --max-connections"))?;
    let max_file_size = match a.value("--max-file-size") {
        None => None,
        Some(_) => Some(a.number("--max-file-size", 0)?),
    };
    let files_dir = match a.value("--dir") {
        None => None,
        Some(dir) => Some(files_dir(Path::new(dir))?),
    };
    // The library protects authorized_keys and a loaded key; a key made on
    // first use and the home holding both are known here.
    let key = file_in_home(a, "--key", "id_rsa", true)?;
    let mut protected_paths = vec![crate::public_path(&key), key];
    protected_paths.extend(crate::home(a, true).ok());
    let defaults = ServerConfig::default();
    let events = log.clone();
    let config = ServerConfig {
        max_connections,
        max_unauthenticated,
        handshake_timeout: a.seconds("--handshake-timeout", defaults.handshake_timeout)?,
        idle_timeout: a.seconds("--idle-timeout", defaults.idle_timeout)?,
        max_message_size: max_message,
        files_dir: files_dir.clone(),
        protected_paths,
        max_file_size,
        events: Some(Arc::new(move |e: &Event<'_>| events.event(e))),
        ..defaults
    };
    let handler = Handler {
        log: log.clone(),
        exec: match a.value("--exec") {
            None => None,
            Some(cmd) => Some(Exec {
                cmd: cmd.to_string(),
                timeout: a.seconds("--exec-timeout", DEFAULT_EXEC_TIMEOUT)?,
                max_output: max_message,
            }),
        },
    };
    let count = authorized.keys().map_err(Fail::local)?.len();
    let keys = server_key(a, &log)?;
    let listen = a.value("--listen").unwrap_or(DEFAULT_LISTEN);
    let (listeners, stacks) = match a.value("--listen") {
        Some(addr) => {
            (vec![TcpListener::bind(addr).map_err(|e| bind_error(listen, e.into()))?], "")
        }
        None => default_listeners().map_err(|e| bind_error(listen, e.into()))?,
    };
    let fingerprint = keys.fingerprint();
    // Files are served only with --dir (no files directory refuses them all),
    // and then the handler below decides each file operation.
    let serve = ServeFiles(move |r: Request<'_>| handler.handle(r));
    let server = Server::from_listeners(listeners, keys, authorized, config.clone(), serve)
        .map_err(Fail::net)?;
    let addrs = server.local_addrs().map_err(Fail::net)?;
    let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let addr = format!("{}{stacks}", addrs.join(" and "));
    log.note(Level::Quiet, &format!("listening on {addr}, server key {fingerprint}"));
    if count == 0 {
        let msg = "no client key is authorized yet: add one with `ovtp authorize KEY.pub` \
                   (taken into account without a restart)";
        log.note(Level::Normal, msg);
    }
    let files = match &files_dir {
        Some(dir) => {
            let limit =
                max_file_size.map_or("no size limit".into(), |n| format!("at most {n} bytes"));
            log.note(Level::Normal, &format!("file transfers in {} ({limit})", dir.display()));
            format!("files directory {}", dir.display())
        }
        None => "file transfers off (no --dir)".to_string(),
    };
    let settings = format!(
        "{count} authorized keys; max {} connections ({} not yet authenticated), \
         handshake timeout {:?}, idle timeout {:?}, max message {max_message} bytes; {files}",
        config.max_connections,
        config.max_unauthenticated,
        config.handshake_timeout,
        config.idle_timeout
    );
    log.note(Level::Verbose, &settings);
    if a.flag("--stdin-close-stops") {
        let stopper = server.stopper().map_err(Fail::net)?;
        let log = log.clone();
        std::thread::spawn(move || {
            let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
            log.note(Level::Normal, "standard input closed: stopping");
            stopper.stop();
        });
    }
    server.run().map_err(Fail::net)?;
    log.note(Level::Normal, "stopped");
    Ok(0)
}

/// The files directory: created (mode 0700) if missing, as an absolute path.
fn files_dir(dir: &Path) -> Result<PathBuf, Fail> {
    let shown = || escape_control(&dir.display().to_string());
    if !dir.exists() {
        crate::make_dir(dir)?;
    }
    if !dir.is_dir() {
        return Err(Fail::new(exit::LOCAL, format!("--dir {}: not a directory", shown())));
    }
    dir.canonicalize().map_err(|e| Fail::new(exit::LOCAL, format!("--dir {}: {e}", shown())))
}

/// Load the server key, or make one on first use.
fn server_key(a: &Args, log: &Log) -> Result<KeyPair, Fail> {
    let path = file_in_home(a, "--key", "id_rsa", true)?;
    if path.exists() {
        return KeyPair::load(&path).map_err(Fail::local);
    }
    let keys = KeyPair::generate(DEFAULT_RSA_BITS).map_err(Fail::local)?;
    crate::write_key_pair(&keys, &path, false)?;
    let (p, fp) = (path.display(), keys.fingerprint());
    log.note(Level::Quiet, &format!("generated a new server key {p} ({p}.pub), fingerprint {fp}"));
    Ok(keys)
}

/// Port 888 on IPv6 and IPv4: one dual-stack `[::]` listener where the
/// system maps IPv4 into it, else `[::]` and `0.0.0.0` side by side, else
/// whichever family the system has. The text says which it is.
fn default_listeners() -> io::Result<(Vec<TcpListener>, &'static str)> {
    let port = ovtp::constants::DEFAULT_PORT;
    let v6 = match TcpListener::bind((std::net::Ipv6Addr::UNSPECIFIED, port)) {
        Ok(v6) => v6,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(e),
        Err(_) => {
            let v4 = TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port))?;
            return Ok((vec![v4], " (IPv4 only: this system has no IPv6)"));
        }
    };
    match TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)) {
        Ok(v4) => Ok((vec![v6, v4], " (IPv6 and IPv4)")),
        // The dual-stack [::] socket already holds the IPv4 port.
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok((vec![v6], " (IPv6 and IPv4)")),
        Err(_) => Ok((vec![v6], " (IPv6 only)")),
    }
}

fn bind_error(listen: &str, e: Error) -> Fail {
    let Error::Io(io) = &e else {
        return Fail::net(e);
    };
    let hint = match io.kind() {
        io::ErrorKind::PermissionDenied => {
            "; ports below 1024 need root or CAP_NET_BIND_SERVICE, \
             otherwise use e.g. --listen 127.0.0.1:8888"
        }
        io::ErrorKind::AddrInUse => "; another program (or another ovtp) listens there",
        _ => "",
    };
    Fail::new(exit::NETWORK, format!("cannot listen on {listen}: {io}{hint}"))
}

// ---- The log. ----

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Quiet,
    Normal,
    Verbose,
}

/// One line per event on standard error: time, peer, key, what, outcome.
struct Log {
    level: Level,
    /// When each authenticated connection began, for its duration.
    since: Mutex<HashMap<SocketAddr, Instant>>,
}

impl Log {
    /// A line about the server as a whole.
    fn note(&self, min: Level, what: &str) {
        self.line(min, None, None, what)
    }

    /// Write a line if the log level shows lines of level `min`.
    fn line(&self, min: Level, peer: Option<SocketAddr>, key: Option<&str>, what: &str) {
        if self.level < min {
            return;
        }
        let peer = peer.map_or("-".to_string(), |p| p.to_string());
        let time = rfc3339(SystemTime::now());
        let what = escape_control(what);
        let _ = writeln!(io::stderr().lock(), "{time} {peer} {} {what}", key.unwrap_or("-"));
    }

    fn event(&self, e: &Event<'_>) {
        use Level::{Normal, Quiet};
        let since = || self.since.lock().unwrap_or_else(|p| p.into_inner());
        let (min, peer, key, what) = match *e {
            Event::Busy { peer } => (Quiet, peer, None, "refused: busy (connection limit)".into()),
            Event::HandshakeFailed { peer, error } => {
                let key = match error {
                    Error::NotAuthorized { fingerprint } => Some(fingerprint.as_str()),
                    _ => None,
                };
                (Quiet, peer, key, format!("handshake failed: {error}"))
            }
            Event::Connected { peer, client } => {
                since().insert(peer, Instant::now());
                (Normal, peer, Some(client.as_str()), "connected".into())
            }
            #[rustfmt::skip]
            Event::Request { peer, client, op, bytes, status, elapsed, replayed } => {
                let name = reserved_name(status).map_or(String::new(), |n| format!(" ({n})"));
                let again = if replayed { ", answered again from the retry cache" } else { "" };
                let ms = elapsed.as_millis();
                // A file request's own size says little; its file line has the file's.
                let bytes = match op {
                    "put" | "get" | "digest" => String::new(),
                    _ => format!(" {bytes} bytes"),
                };
                let what = format!("request {op}{bytes} {ms} ms: status {status}{name}{again}");
                // A reserved status (bad request, handler panicked...) is an error.
                let min = if name.is_empty() { Normal } else { Quiet };
                (min, peer, Some(client.as_str()), what)
            }
            Event::Disconnected { peer, client, error } => {
                let secs = since().remove(&peer).map_or(0.0, |t| t.elapsed().as_secs_f64());
                let (min, outcome) = match error {
                    None => (Normal, String::new()),
                    Some(e @ Error::Timeout(_)) => (Normal, format!(": {e}")),
                    Some(e) => (Quiet, format!(": error: {e}")),
                };
                let what = format!("disconnected after {secs:.1} s{outcome}");
                (min, peer, Some(client.as_str()), what)
            }
            _ => return self.note(Level::Verbose, &format!("{e:?}")),
        };
        self.line(min, Some(peer), key, &what)
    }
}

/// `2026-01-31T12:34:56.789Z`: UTC, RFC 3339, computed by hand from the Unix time.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:03}Z", utc_seconds(d.as_secs() as i64), d.subsec_millis())
}

/// `2026-01-31T12:34:56`: the UTC date and time of `secs` since the Unix
/// epoch (negative: before it), computed by hand.
pub fn utc_seconds(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (Howard Hinnant's algorithm), in 400-year eras from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}")
}

// ---- Handling a message. ----

/// Messages are printed (answer "ok") or given to `--exec`'s program; file
/// events are accepted and logged either way.
struct Handler {
    log: Arc<Log>,
    exec: Option<Exec>,
}

/// `--exec`: run a program for each message.
struct Exec {
    cmd: String,
    timeout: Duration,
    max_output: usize,
}

impl Handler {
    fn handle(&self, req: Request<'_>) -> Reply {
        let (peer, key) = (Some(req.peer_addr), Some(req.client.as_str()));
        let file = match &req.payload {
            Payload::Text(_) | Payload::Data(_) => None,
            Payload::FileOffer { name, size } => Some(format!("file offer {name}: {size} bytes")),
            Payload::FileReceived { name, size, sha256, .. } => {
                Some(format!("file received {name}: {size} bytes, sha256 {}", hex(sha256)))
            }
            Payload::FileRequest { name, size, digest_only } => {
                let what = if *digest_only { "digest" } else { "download" };
                Some(format!("file {what} request {name}: {size} bytes"))
            }
            Payload::Listing { dir } if dir.is_empty() => Some("listing of the top".to_string()),
            Payload::Listing { dir } => Some(format!("listing of {dir}")),
            Payload::MakeDir { name } => Some(format!("make directory {name}")),
            _ => return Reply::new(ovtp::status::UNSUPPORTED, "unsupported request type"),
        };
        if let Some(line) = file {
            self.log.line(Level::Normal, peer, key, &line);
            return Reply::ok("");
        }
        match &self.exec {
            Some(e) => exec(e, req, &self.log),
            None => {
                let line = match &req.payload {
                    Payload::Text(t) => escape_control(t),
                    Payload::Data(d) => format!("<{} bytes>", d.len()),
                    _ => "<message of an unknown type>".to_string(),
                };
                let mut out = io::stdout().lock();
                let _ = writeln!(out, "{line}").and_then(|()| out.flush());
                Reply::ok("ok")
            }
        }
    }
}

/// Run `sh -c cmd` with the message on its standard input; answer with its
/// exit status and standard output, within `timeout`.
fn exec(e: &Exec, req: Request<'_>, log: &Log) -> Reply {
    let Exec { cmd, timeout, max_output } = e;
    let (timeout, max_output) = (*timeout, *max_output);
    let started = Instant::now();
    let deadline = started + timeout;
    let (peer, key) = (Some(req.peer_addr), Some(req.client.as_str()));
    let (kind, input) = match req.payload {
        Payload::Text(t) => ("text", t.into_bytes()),
        Payload::Data(d) => ("data", d),
        _ => return Reply::new(ovtp::status::UNSUPPORTED, "unsupported message type"),
    };
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("OVTP_CLIENT_FINGERPRINT", req.client.as_str())
        .env("OVTP_PEER_ADDR", req.peer_addr.to_string())
        .env("OVTP_MESSAGE_TYPE", kind)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            log.line(Level::Quiet, peer, key, &format!("cannot run sh -c {cmd:?}: {e}"));
            return Reply::new(1, "the server could not run its program");
        }
    };
    // Both pipes are served by their own threads, so a program that does not
    // read its input, or writes much output, cannot block us; the threads end
    // when the program (and whatever inherited its pipes) closes them.
    if let Some(mut stdin) = child.stdin.take() {
        std::thread::spawn(move || stdin.write_all(&input));
    }
    let (tx, rx) = mpsc::channel();
    if let Some(mut stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = (&mut stdout).take(max_output as u64).read_to_end(&mut out);
            let cut = io::copy(&mut stdout, &mut io::sink()).unwrap_or(0) > 0;
            let _ = tx.send((out, cut));
        });
    }
    let status = wait_until(&mut child, deadline);
    let left = deadline.saturating_duration_since(Instant::now());
    let output = rx.recv_timeout(left.max(Duration::from_millis(100)));
    let ms = started.elapsed().as_millis();
    let (Some(status), Ok((out, cut))) = (status, output) else {
        let msg = format!("program did not finish within {} s: killed", timeout.as_secs_f64());
        log.line(Level::Quiet, peer, key, &msg);
        return Reply::new(1, "timed out");
    };
    let code = status.code().map_or(1, |c| u16::try_from(c).unwrap_or(1));
    let how = status.code().map_or("killed by a signal".to_string(), |c| format!("exit {c}"));
    let cut = if cut { " (cut to the maximum message size)" } else { "" };
    let what = format!("program: {how}, {} bytes of output{cut}, {ms} ms", out.len());
    log.line(if cut.is_empty() { Level::Verbose } else { Level::Normal }, peer, key, &what);
    Reply::new(code, out)
}

/// Wait for the child until `deadline`; then kill it. `None` if it was killed.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        let at = |s: u64, ms: u64| rfc3339(UNIX_EPOCH + Duration::from_millis(s * 1000 + ms));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_700_000_000, 0), "2023-11-14T22:13:20.000Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    }
}
