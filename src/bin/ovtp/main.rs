//! `ovtp`, the command-line tool: a thin layer over the library.
//!
//! `main.rs` holds dispatch, exit codes, the ovtp home and the key and trust
//! commands; `client.rs` the commands that talk to a server; `serve.rs` the server.
#![forbid(unsafe_code)]

/// `println!` and `eprintln!` that ignore a closed output instead of panicking.
macro_rules! say {
    ($($t:tt)*) => {{ let _ = std::io::Write::write_fmt(&mut std::io::stdout(), format_args!("{}\n", format_args!($($t)*))); }};
}
macro_rules! warn {
    ($($t:tt)*) => {{ let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("{}\n", format_args!($($t)*))); }};
}

mod args;
mod client;
mod help;
mod progress;
mod serve;

use args::Args;
use ovtp::escape_control;
use ovtp::{AuthorizedKeys, Error, Fingerprint, HostCheck, KeyPair, KnownHosts, PublicKey};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit codes, as `ovtp --help` documents them.
pub mod exit {
    pub const NOT_FOUND: u8 = 1; // deauthorize: the key was not present
    pub const STATUS_MAX: u8 = 63; // remote statuses from 63 up
    pub const USAGE: u8 = 64;
    pub const HOST_KEY: u8 = 65; // server key unknown or changed
    pub const REFUSED: u8 = 66; // authentication refused, by either side
    pub const FILE_REFUSED: u8 = 67; // the server refused or failed a file operation
    pub const NETWORK: u8 = 69; // cannot connect or listen, lost, timeout, busy
    pub const EXISTS: u8 = 73; // the destination exists; not replaced without --force
    pub const LOCAL: u8 = 74; // local file problem
    pub const RETRY: u8 = 75; // the transfer did not arrive intact, or the name is busy
    pub const PROTOCOL: u8 = 76; // the peer broke the protocol
}

/// Why a command failed: the exit code and a message a person can act on.
#[derive(Debug)]
pub struct Fail {
    pub code: u8,
    pub msg: String,
}

impl Fail {
    pub fn new(code: u8, msg: impl Into<String>) -> Fail {
        let msg = msg.into();
        Fail { code, msg }
    }

    /// A bad command line.
    pub fn usage(msg: impl Into<String>) -> Fail {
        Fail::new(exit::USAGE, msg)
    }

    /// An error while working with local files (keys, trust files).
    pub fn local(e: Error) -> Fail {
        match e {
            Error::InvalidInput(_) => Fail::usage(e.to_string()),
            e => Fail::new(exit::LOCAL, e.to_string()),
        }
    }

    /// An error while talking to a peer.
    pub fn net(e: Error) -> Fail {
        use ovtp::AlertCode as A;
        let code = match &e {
            Error::UnknownHost { .. } | Error::HostKeyChanged { .. } => exit::HOST_KEY,
            Error::NotAuthorized { .. } | Error::BadSignature => exit::REFUSED,
            Error::Refused { code, .. } => match code {
                A::Unauthorized | A::HandshakeFailed => exit::REFUSED,
                A::Busy | A::ShuttingDown => exit::NETWORK,
                _ => exit::PROTOCOL,
            },
            Error::Io(_) | Error::Timeout(_) | Error::Closed(_) => exit::NETWORK,
            Error::Key(_) | Error::TrustFile(_) | Error::File { .. } => exit::LOCAL,
            Error::DigestMismatch(_) => exit::RETRY,
            Error::Exists(_) => exit::EXISTS,
            Error::InvalidInput(_) => exit::USAGE,
            _ => exit::PROTOCOL,
        };
        Fail::new(code, e.to_string())
    }
}

impl From<String> for Fail {
    fn from(msg: String) -> Fail {
        Fail::usage(msg)
    }
}

/// A command's result: the exit code on success.
pub type Run = Result<u8, Fail>;

/// Each command: name, help, options (see `args`), and what runs it.
type Command = (&'static str, &'static str, &'static str, fn(&Args) -> Run);

/// Options of authorize and deauthorize.
const AK: &str = "--authorized-keys=";

const COMMANDS: &[Command] = &[
    ("keygen", help::KEYGEN, "--force --bits= --key=", keygen),
    ("fingerprint", help::FINGERPRINT, "", fingerprint),
    ("serve", help::SERVE, serve::OPTIONS, serve::serve),
    ("authorize", help::AUTHORIZE, AK, authorize),
    ("deauthorize", help::DEAUTHORIZE, AK, deauthorize),
    ("trust", help::TRUST, "--known-hosts=", trust),
    ("send", help::SEND, client::SEND, client::send),
    ("put", help::PUT, client::PUT, client::put),
    ("get", help::GET, client::GET, client::get),
    ("digest", help::DIGEST, client::CONNECT, client::digest),
    ("ls", help::LS, client::LS, client::ls),
];

fn main() -> ExitCode {
    let argv: Result<Vec<String>, _> =
        std::env::args_os().skip(1).map(|a| a.into_string()).collect();
    let Ok(mut argv) = argv else {
        warn!("ovtp: arguments must be valid UTF-8");
        return ExitCode::from(exit::USAGE);
    };
    // Global options before the command: --home DIR, --help, --version.
    let mut home = Vec::new();
    while let Some(first) = argv.first() {
        match first.as_str() {
            "-h" | "--help" => return print(help::MAIN),
            "-V" | "--version" => {
                let v = env!("CARGO_PKG_VERSION");
                let p = ovtp::constants::PROTOCOL_VERSION;
                return print(&format!("ovtp {v} (protocol version {p})\n"));
            }
            "--home" if argv.len() > 1 => home.extend(argv.drain(..2)),
            s if s.starts_with("--home=") => home.push(argv.remove(0)),
            _ => break,
        }
    }
    let Some(name) = argv.first().cloned() else {
        return usage_error("", "missing command");
    };
    if name == "help" {
        return match argv.get(1) {
            None => print(help::MAIN),
            Some(topic) => match COMMANDS.iter().find(|c| c.0 == topic) {
                Some(c) => print(c.1),
                None => usage_error("help", &format!("unknown command \"{topic}\"")),
            },
        };
    }
    let Some(&(name, help, options, run)) = COMMANDS.iter().find(|c| c.0 == name) else {
        let msg = format!("unknown command \"{name}\"; run `ovtp --help` for the list");
        return usage_error("", &msg);
    };
    home.extend(argv.drain(1..));
    let result = args::parse(options, &home).map_err(Fail::usage);
    let result =
        result.and_then(|args| if args.flag("--help") { Ok(print_code(help)) } else { run(&args) });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) if f.code == exit::USAGE => usage_error(name, &f.msg),
        Err(f) => {
            warn!("ovtp {name}: {}", escape_control(&f.msg));
            ExitCode::from(f.code)
        }
    }
}

fn print_code(text: &str) -> u8 {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
    0
}

fn print(text: &str) -> ExitCode {
    ExitCode::from(print_code(text))
}

fn usage_error(command: &str, msg: &str) -> ExitCode {
    let sep = if command.is_empty() { "" } else { " " };
    warn!("ovtp{sep}{command}: {}", escape_control(msg));
    warn!("Try `ovtp{sep}{command} --help`.");
    ExitCode::from(exit::USAGE)
}

/// Whether this process runs as root (Linux: the owner of /proc/self is the effective uid).
fn is_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
    #[cfg(not(unix))]
    false
}

/// The ovtp home: --home, else $OVTP_HOME, else /var/lib/ovtp for server-side
/// commands run as root, else ~/.ovtp.
pub fn home(a: &Args, server_side: bool) -> Result<PathBuf, Fail> {
    if let Some(dir) = a.value("--home") {
        return Ok(dir.into());
    }
    if let Some(dir) = std::env::var_os("OVTP_HOME").filter(|d| !d.is_empty()) {
        return Ok(dir.into());
    }
    if server_side && is_root() {
        return Ok("/var/lib/ovtp".into());
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => Ok(Path::new(&h).join(".ovtp")),
        None => Err(Fail::usage("HOME is not set; give --home DIR or set OVTP_HOME")),
    }
}

/// An option naming a file, or that name inside the home.
pub fn file_in_home(a: &Args, option: &str, name: &str, server: bool) -> Result<PathBuf, Fail> {
    match a.value(option) {
        Some(p) => Ok(p.into()),
        None => Ok(home(a, server)?.join(name)),
    }
}

/// FILE.pub beside a private key FILE.
pub fn public_path(private: &Path) -> PathBuf {
    let mut s = private.as_os_str().to_owned();
    s.push(".pub");
    s.into()
}

/// Create the directory holding `file` (mode 0700) if missing.
pub fn make_parent(file: &Path) -> Result<(), Fail> {
    match file.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => make_dir(dir),
        None => Ok(()),
    }
}

/// Create a directory and its parents (mode 0700) if missing.
pub fn make_dir(dir: &Path) -> Result<(), Fail> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| Fail::new(exit::LOCAL, format!("cannot create {}: {e}", dir.display())))
}

/// Write a new key pair to `private` and `private.pub`.
pub fn write_key_pair(keys: &KeyPair, private: &Path, overwrite: bool) -> Result<(), Fail> {
    make_parent(private)?;
    keys.save(private, overwrite).map_err(Fail::local)?;
    keys.public().save(public_path(private)).map_err(Fail::local)
}

fn keygen(a: &Args) -> Run {
    a.positionals(0, 0, "no arguments")?;
    let bits = a.number("--bits", ovtp::constants::DEFAULT_RSA_BITS as u64)?;
    if ![2048, 3072, 4096].contains(&bits) {
        return Err(Fail::usage(format!("--bits must be 2048, 3072 or 4096, not {bits}")));
    }
    let private = file_in_home(a, "--key", "id_rsa", false)?;
    let public = public_path(&private);
    let force = a.flag("--force");
    for p in [&private, &public] {
        if !force && p.exists() {
            return Err(Fail::new(
                exit::EXISTS,
                format!(
                    "{} already exists; refusing to overwrite a key. \
                     Use --force to replace it (the old key is then lost)",
                    p.display()
                ),
            ));
        }
    }
    let keys = KeyPair::generate(bits as usize).map_err(Fail::local)?;
    write_key_pair(&keys, &private, force)?;
    say!("private key: {}", private.display());
    say!("public key:  {}", public.display());
    say!("fingerprint: {}", keys.fingerprint());
    Ok(0)
}

fn fingerprint(a: &Args) -> Run {
    let path = match a.positionals(0, 1, "[KEYFILE]")?.first() {
        Some(p) => PathBuf::from(p),
        None => home(a, false)?.join("id_rsa.pub"),
    };
    let text = std::fs::read(&path)
        .map_err(|e| Fail::new(exit::LOCAL, format!("{}: {e}", path.display())))?;
    let private = String::from_utf8_lossy(&text).contains("PRIVATE KEY-----");
    let fp = if private {
        KeyPair::load(&path).map(|k| k.fingerprint())
    } else {
        PublicKey::load(&path).map(|k| k.fingerprint())
    };
    say!("{}", fp.map_err(Fail::local)?);
    Ok(0)
}

/// Add each key file (or directory of them) and report every key; returns
/// whether all went well.
pub fn add_keys(keys: &AuthorizedKeys, paths: &[String]) -> bool {
    let mut ok = true;
    for path in paths {
        let outcomes = match keys.add_from_path(Path::new(path)) {
            Ok(o) => o,
            Err(e) => {
                warn!("ovtp: {}", escape_control(&e.to_string()));
                ok = false;
                continue;
            }
        };
        if outcomes.is_empty() {
            warn!("ovtp: {path}: no *.pub or *.pem files in this directory");
            ok = false;
        }
        for o in outcomes {
            let source = escape_control(&o.source.display().to_string());
            match o.result {
                Ok((fp, true)) => say!("added {fp} ({source})"),
                Ok((fp, false)) => say!("already present {fp} ({source})"),
                Err(e) => {
                    warn!("ovtp: {source}: {}", escape_control(&e.to_string()));
                    ok = false;
                }
            }
        }
    }
    ok
}

pub fn authorized_keys(a: &Args) -> Result<AuthorizedKeys, Fail> {
    let path = file_in_home(a, "--authorized-keys", "authorized_keys", true)?;
    Ok(AuthorizedKeys::new(path))
}

fn authorize(a: &Args) -> Run {
    let paths = a.positionals(1, usize::MAX, "FILE|DIR...")?;
    match add_keys(&authorized_keys(a)?, paths) {
        true => Ok(0),
        false => Err(Fail::new(exit::LOCAL, "some keys were not added")),
    }
}

fn deauthorize(a: &Args) -> Run {
    let fp: Fingerprint = a.positionals(1, 1, "FINGERPRINT")?[0].parse().map_err(Fail::local)?;
    let keys = authorized_keys(a)?;
    let path = keys.path().display();
    match keys.remove(&fp).map_err(Fail::local)? {
        true => say!("removed {fp} from {path}"),
        false => return Err(Fail::new(exit::NOT_FOUND, format!("{fp} is not in {path}"))),
    }
    Ok(0)
}

pub fn known_hosts(a: &Args) -> Result<KnownHosts, Fail> {
    let path = file_in_home(a, "--known-hosts", "known_hosts", false)?;
    Ok(KnownHosts::new(path))
}

fn trust(a: &Args) -> Run {
    let pos = a.positionals(2, 2, "HOST[:PORT] FINGERPRINT")?;
    let host = ovtp::normalize_host(&pos[0]).map_err(Fail::local)?;
    let fp: Fingerprint = pos[1].parse().map_err(Fail::local)?;
    let file = known_hosts(a)?;
    let path = file.path().display();
    match file.check(&host, &fp).map_err(Fail::local)? {
        HostCheck::Match => say!("{host} is already recorded with {fp} in {path}"),
        HostCheck::Unknown => {
            make_parent(file.path())?;
            file.add(&host, &fp).map_err(Fail::local)?;
            say!("added {host} {fp} to {path}");
        }
        HostCheck::Changed { expected } => {
            let line =
                line_of_host(file.path(), &host).map_or(String::new(), |n| format!(" line {n}"));
            return Err(Fail::new(
                exit::HOST_KEY,
                format!(
                    "{host} is recorded with another key: {expected} ({path}{line}); \
                     refusing to record {fp}. If the server's key changed legitimately, \
                     delete that line first, then run this again"
                ),
            ));
        }
    }
    Ok(0)
}

/// The line number of the first entry for `host` in a known_hosts file.
fn line_of_host(path: &Path, host: &str) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .position(|l| l.split_whitespace().next().is_some_and(|h| h.eq_ignore_ascii_case(host)))
        .map(|i| i + 1)
}
