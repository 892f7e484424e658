//! The commands that talk to a server: `send` now; `put`, `get` and `digest`
//! once the library has file transfer (each will be `connect` plus one call).

use crate::args::Args;
use crate::{Fail, Run, exit};
use ovtp::error::escape_control;
use ovtp::status::reserved_name;
use ovtp::{Client, ClientConfig, Fingerprint, HostCheck, HostTrust, KeyPair};
use std::io::{IsTerminal, Read, Write};

/// Options of the commands that connect (see `args`).
pub const CONNECT: &str = "--accept-new --fingerprint= --key= --known-hosts=";
pub const SEND: &str = "--data --accept-new --fingerprint= --key= --known-hosts=";
pub const PUT: &str = "--to= --accept-new --fingerprint= --key= --known-hosts=";

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
    let host = ovtp::client::normalize_host(host).map_err(Fail::local)?;
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
        || known
            .check(&host, &keys.fingerprint())
            .map_err(Fail::local)?
            != HostCheck::Unknown;
    let client =
        Client::connect_with(&host, keys, trust, ClientConfig::default()).map_err(Fail::net)?;
    if let (false, Some(fp)) = (recorded, client.server_fingerprint()) {
        warn!("ovtp: recorded {host} {fp} in {}", known.path().display());
    }
    Ok(client)
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
        return Err(Fail::usage(format!(
            "the message is larger than {limit} bytes"
        )));
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

fn not_available(a: &Args, min: usize, max: usize, usage: &str) -> Run {
    a.positionals(min, max, usage)?;
    Err(Fail::new(
        exit::NOT_AVAILABLE,
        "not yet available in this build (file transfer is not in the library yet)",
    ))
}

pub fn put(a: &Args) -> Run {
    not_available(a, 2, usize::MAX, "HOST[:PORT] FILE...")
}

pub fn get(a: &Args) -> Run {
    not_available(a, 2, 3, "HOST[:PORT] REMOTE [LOCAL]")
}

pub fn digest(a: &Args) -> Run {
    not_available(a, 2, 2, "HOST[:PORT] REMOTE")
}
