//! `put -r` and `get -r`: directory trees, through the library's
//! `send_tree` and `get_tree`, with one progress line for the whole tree.

use crate::args::Args;
use crate::client::{self, connect, get_target, remote_name, transfer_fail};
use crate::progress::Display;
use crate::{Fail, Run, exit};
use ovtp::{Error, TreeOptions, TreeProgress, TreeReport, escape_control};
use std::path::{Path, PathBuf};

/// The tree options the command line gives, without progress.
fn options(a: &Args) -> Result<TreeOptions<'static>, Fail> {
    Ok(TreeOptions {
        overwrite: a.flag("--force"),
        no_resume: a.flag("--no-resume"),
        verify: a.flag("--verify"),
        preserve: a.flag("--preserve"),
        limit_rate: client::limit_rate(a)?,
        progress: None,
    })
}

/// Run a tree transfer with one progress line when standard error is a
/// terminal (`run` is called in one place only: it inlines the whole tree).
fn with_progress<T>(
    label: &str,
    opts: TreeOptions<'_>,
    run: impl FnOnce(TreeOptions<'_>) -> T,
) -> T {
    let mut display = Display::new(label);
    let on = display.is_some();
    let mut show = |p: &TreeProgress| display.as_mut().map_or((), |d| d.update_tree(p));
    let progress: Option<&mut dyn FnMut(&TreeProgress)> = if on { Some(&mut show) } else { None };
    let result = run(TreeOptions { progress, ..opts });
    if let Some(d) = display.as_mut() {
        d.finish();
    }
    result
}

/// Print what a tree transfer did: each file moved on standard output (as
/// one file's `put` or `get` prints it), what was skipped or refused and a
/// summary on standard error. Returns the exit code: 0 when every file is in
/// place, else the first refusal's.
fn show(command: &str, top: &str, r: &TreeReport, name: impl Fn(&str) -> String) -> u8 {
    let mut code = 0;
    for (rel, file) in &r.moved {
        let c = client::report(command, &name(rel), file);
        code = if code == 0 { c } else { code };
    }
    for rel in &r.links {
        warn!("ovtp {command}: {}: a symbolic link; skipped (not followed)", shown(&name(rel)));
    }
    for rel in &r.others {
        warn!("ovtp {command}: {}: not a file or directory; skipped", shown(&name(rel)));
    }
    for (rel, e) in &r.failed {
        let fail = transfer_fail(&name(rel), clone(e));
        match fail.msg.contains(&shown(&name(rel))) {
            true => warn!("ovtp {command}: {}", fail.msg),
            false => warn!("ovtp {command}: {}: {}", shown(&name(rel)), fail.msg),
        }
        code = if code == 0 { fail.code } else { code };
    }
    let side = if command == "put" { "on the server" } else { "here" };
    for rel in &r.differ {
        warn!(
            "ovtp {command}: {} differs from the one {side}; not replaced (use --force to replace it)",
            shown(&name(rel))
        );
        code = if code == 0 { exit::EXISTS } else { code };
    }
    let bytes: u64 = r.moved.iter().map(|(_, f)| f.size - f.resumed_from.min(f.size)).sum();
    let verb = if command == "put" { "sent" } else { "received" };
    let refused = r.failed.len() + r.differ.len();
    warn!(
        "ovtp {command}: {}: {} files {verb} ({bytes} bytes), {} identical skipped, \
         {refused} refused, {} symbolic links skipped",
        shown(top),
        r.moved.len(),
        r.identical.len(),
        r.links.len()
    );
    code
}

fn shown(name: &str) -> String {
    escape_control(name)
}

/// A copy of the parts of `e` that `transfer_fail` reads (errors are not Clone).
fn clone(e: &Error) -> Error {
    match e {
        Error::Remote { status, message } => {
            Error::Remote { status: *status, message: message.clone() }
        }
        Error::DigestMismatch(m) => Error::DigestMismatch(m.clone()),
        Error::Exists(p) => Error::Exists(p.clone()),
        e => Error::InvalidInput(e.to_string()),
    }
}

/// A directory argument's last component, the name it gets on the server.
fn base_name(dir: &str) -> Result<String, Fail> {
    let path = Path::new(dir);
    let absolute = std::fs::canonicalize(path).ok();
    let name = path.file_name().or_else(|| absolute.as_deref().and_then(Path::file_name));
    name.and_then(|n| n.to_str()).map(str::to_string).ok_or_else(|| {
        let d = escape_control(dir);
        Fail::usage(format!("\"{d}\" has no name to use on the server; give --to REMOTE"))
    })
}

/// `put -r HOST DIR... [--to REMOTE]`: each DIR as REMOTE/NAME (or NAME).
pub fn put(a: &Args) -> Run {
    let pos = a.positionals(2, usize::MAX, "HOST[:PORT] DIR...")?;
    let (host, dirs) = (&pos[0], &pos[1..]);
    let to = a.value("--to").map(|t| t.trim_end_matches('/')).filter(|t| !t.is_empty());
    let mut trees = Vec::new();
    for dir in dirs {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                let d = escape_control(dir);
                return Err(Fail::usage(format!("{d} is not a directory; put it without -r")));
            }
            Err(e) => return Err(Fail::new(exit::LOCAL, format!("{}: {e}", escape_control(dir)))),
        }
        let base = base_name(dir)?;
        let name = to.map_or(base.clone(), |t| format!("{t}/{base}"));
        remote_name(&name)?;
        if trees.iter().any(|(_, n)| *n == name) {
            let n = escape_control(&name);
            return Err(Fail::usage(format!("two directories would both be stored as \"{n}\"")));
        }
        trees.push((dir, name));
    }
    options(a)?; // a bad option is a usage error before connecting
    let mut client = connect(a, host)?;
    let mut code = 0;
    for (dir, name) in trees {
        let r = with_progress(&name, options(a)?, |o| client.send_tree(dir, &name, o))
            .map_err(|e| transfer_fail(&name, e))?;
        let c = show("put", dir, &r, |rel| format!("{name}/{rel}"));
        code = if code == 0 { c } else { code };
    }
    Ok(code)
}

/// `get -r HOST REMOTE_DIR [LOCAL]`: into LOCAL/NAME if LOCAL is a
/// directory, else as LOCAL (created), by default NAME here.
pub fn get(a: &Args) -> Run {
    let pos = a.positionals(2, 3, "HOST[:PORT] REMOTE_DIR [LOCAL]")?;
    let remote = pos[1].trim_end_matches('/');
    remote_name(remote)?;
    let local: PathBuf = get_target(remote, pos.get(2));
    let shown_local = escape_control(&local.display().to_string());
    if let Some(dir) = local.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        let dir = escape_control(&dir.display().to_string());
        return Err(Fail::new(exit::LOCAL, format!("{dir}: no such directory")));
    }
    if std::fs::metadata(&local).is_ok_and(|m| !m.is_dir()) {
        return Err(Fail::new(exit::LOCAL, format!("{shown_local} exists and is not a directory")));
    }
    let opts = options(a)?;
    let mut client = connect(a, &pos[0])?;
    let result = with_progress(remote, opts, |o| client.get_tree(remote, &local, o));
    let r = match result {
        Ok(r) => r,
        // A refused listing: say so plainly if REMOTE_DIR is a file.
        Err(Error::Remote { .. }) if client.file_digest(remote).is_ok() => {
            let r = escape_control(remote);
            let msg = format!("{r} is a file on the server, not a directory; get it without -r");
            return Err(Fail::new(exit::FILE_REFUSED, msg));
        }
        Err(e) => return Err(transfer_fail(remote, e)),
    };
    let name = |rel: &str| local.join(rel).display().to_string();
    Ok(show("get", &local.display().to_string(), &r, name))
}
