//! Trees: a directory sent or fetched whole, as a composition of the file
//! operations (LIST, MKDIR, DIGEST, PUT, GET); there is no tree operation on
//! the wire. Each file arrives atomically and verified, as
//! [`Client::send_file_with`] and [`Client::get_file_with`] make it, and the
//! same call again finishes the job: a file already there and identical
//! (size and SHA-256) is skipped, a partial one resumes, one that differs is
//! refused unless `overwrite`. Symbolic links are never followed (only a top
//! directory given by the caller may be one): each is skipped and reported.
//!
//! A download is planned first, from the whole listing, and only then
//! written: every listed name is checked again to be one safe component,
//! paths are built under the local top from checked components only, and no
//! local symbolic link under the top is followed (OpenSSH's CVE-2019-6111:
//! a server's names cannot make the client write outside the tree).

use super::Client;
use crate::constants::{MAX_TREE_DEPTH, MAX_TREE_ENTRIES, MAX_TREE_NAME_BYTES};
use crate::error::{Error, Result, escape_control};
use crate::message::{EntryKind, FileReport, TransferOptions};
use crate::status;
use crate::store::{self, partial};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Options of [`Client::send_tree`] and [`Client::get_tree`]; each file
/// goes with the same options as one file would.
#[derive(Default)]
pub struct TreeOptions<'a> {
    /// Replace files that differ (default: refuse them, listed in the report).
    pub overwrite: bool,
    /// Do not resume partial files (default: resume them).
    pub no_resume: bool,
    /// Read each stored file back (see [`TransferOptions::verify`]).
    pub verify: bool,
    /// Carry each file's mode bits and modification time (see
    /// [`TransferOptions::preserve`]); a download also sets its directories' times.
    pub preserve: bool,
    /// Bytes per second for each file (see [`TransferOptions::limit_rate`]).
    pub limit_rate: Option<u64>,
    /// Called as the tree goes, at most every 100 ms and after each file.
    pub progress: Option<&'a mut dyn FnMut(&TreeProgress)>,
}

/// Where a tree transfer stands, for a progress display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeProgress {
    /// Files finished (moved, skipped as identical, or refused).
    pub files_done: u64,
    /// Files in the tree.
    pub files: u64,
    /// Bytes moved so far (a resumed file counts from where it resumed).
    pub bytes_done: u64,
    /// Bytes to move: the tree's files, less those found identical.
    pub bytes: u64,
}

/// What a tree transfer did. Names are relative to the tree's top, with `/`.
#[derive(Debug, Default)]
pub struct TreeReport {
    /// Files moved, each with its report.
    pub moved: Vec<(String, FileReport)>,
    /// Files already there and identical, not moved.
    pub identical: Vec<String>,
    /// Files that exist with other contents, not replaced (no `overwrite`).
    pub differ: Vec<String>,
    /// Entries that could not be moved, and why (the other entries went on).
    pub failed: Vec<(String, Error)>,
    /// Symbolic links, skipped.
    pub links: Vec<String>,
    /// Entries neither file, directory nor link (sockets, devices), skipped.
    pub others: Vec<String>,
}

/// A tree to move: its directories with their times, its files with their
/// sizes (relative, `/`-separated, parents first), and what was skipped.
#[derive(Default)]
struct Plan {
    dirs: Vec<(String, i64)>,
    files: Vec<(String, u64)>,
    report: TreeReport,
    name_bytes: usize,
}

impl Plan {
    /// One more entry, `depth` levels below the top, its path `len` bytes:
    /// why not, past the bounds.
    fn admit(&mut self, depth: usize, len: usize) -> std::result::Result<(), &'static str> {
        let skipped = self.report.links.len() + self.report.others.len();
        self.name_bytes += len;
        if depth > MAX_TREE_DEPTH {
            Err("the tree is deeper than MAX_TREE_DEPTH (128) directories")
        } else if self.dirs.len() + self.files.len() + skipped >= MAX_TREE_ENTRIES {
            Err("the tree has more than MAX_TREE_ENTRIES (1,000,000) entries")
        } else if self.name_bytes > MAX_TREE_NAME_BYTES {
            Err("the tree's path names exceed MAX_TREE_NAME_BYTES (128 MiB) in all")
        } else {
            Ok(())
        }
    }
}

/// `dir/name`, or either alone when the other is empty.
fn join(dir: &str, name: &str) -> String {
    match (dir, name) {
        ("", n) => n.to_string(),
        (d, "") => d.to_string(),
        (d, n) => format!("{d}/{n}"),
    }
}

/// A listed name, checked again here: one component that the server's own
/// rules accept, so that joining it can only go one level down.
fn component(name: &str) -> Result<&str> {
    let one = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']);
    if one && store::check_name(name).is_ok() {
        Ok(name)
    } else {
        Err(Error::Malformed("the server listed a name that is not one safe path component"))
    }
}

/// An I/O error on `path`.
fn file_err(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |source| Error::File { path: path.to_path_buf(), source }
}

/// The refusal of a local `path` that is not what the tree needs there:
/// `what` says what it is.
fn refuse(path: &Path, what: &str) -> Error {
    Error::InvalidInput(format!("{} {what}", escape_control(&path.display().to_string())))
}

/// The local directory `top` walked without following links: what to send,
/// each directory's entries in name order.
fn walk_local(top: &Path) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut stack = vec![(String::new(), 1)];
    while let Some((rel, depth)) = stack.pop() {
        let path = top.join(&rel);
        let mut names = Vec::new();
        for entry in fs::read_dir(&path).map_err(file_err(&path))? {
            match entry.map_err(file_err(&path))?.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(name) => {
                    let shown = escape_control(&path.join(name).display().to_string());
                    let why = "its name is not UTF-8; remote names are".to_string();
                    plan.report.failed.push((shown, Error::InvalidInput(why)));
                }
            }
        }
        names.sort_unstable();
        let below = stack.len();
        for name in names {
            let (child, path) = (join(&rel, &name), path.join(&name));
            plan.admit(depth, child.len()).map_err(|why| Error::InvalidInput(why.into()))?;
            let meta = fs::symlink_metadata(&path).map_err(file_err(&path))?;
            if meta.is_symlink() {
                plan.report.links.push(child);
            } else if meta.is_dir() {
                plan.dirs.push((child.clone(), 0));
                stack.push((child, depth + 1));
            } else if meta.is_file() {
                plan.files.push((child, meta.len()));
            } else {
                plan.report.others.push(child);
            }
        }
        stack[below..].reverse(); // the first directory next
    }
    Ok(plan)
}

/// The remote directory `top` listed, every name checked: what to fetch.
fn walk_remote(client: &mut Client, top: &str) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut stack = vec![(String::new(), 1)];
    while let Some((rel, depth)) = stack.pop() {
        let below = stack.len();
        let entries = match client.list(&join(top, &rel)) {
            // A subdirectory the server refuses to list fails alone.
            Err(e @ Error::Remote { .. }) if !rel.is_empty() => {
                plan.report.failed.push((rel, e));
                continue;
            }
            listed => listed?,
        };
        for entry in entries {
            let child = join(&rel, component(&entry.name)?);
            plan.admit(depth, child.len()).map_err(Error::Malformed)?;
            match entry.kind {
                EntryKind::File => plan.files.push((child, entry.size)),
                EntryKind::Dir => {
                    plan.dirs.push((child.clone(), entry.mtime));
                    stack.push((child, depth + 1));
                }
                EntryKind::Symlink => plan.report.links.push(child),
                _ => plan.report.others.push(child),
            }
        }
        stack[below..].reverse();
    }
    Ok(plan)
}

/// What to do with one file, once the other side's copy was looked at.
enum Step {
    Move { overwrite: bool },
    Identical,
    Differs,
}

/// The step for the file whose local copy is `local` when the other side
/// holds `theirs` (size and SHA-256), if anything. Only files of the same
/// size are hashed.
fn step(local: &Path, theirs: Option<(u64, [u8; 32])>, overwrite: bool) -> Result<Step> {
    let Some((size, sha256)) = theirs else { return Ok(Step::Move { overwrite: false }) };
    let same_size = fs::metadata(local).map_err(file_err(local))?.len() == size;
    let same = same_size && partial::digest_file(local).map_err(file_err(local))? == (size, sha256);
    Ok(match same {
        true => Step::Identical,
        false if overwrite => Step::Move { overwrite: true },
        false => Step::Differs,
    })
}

/// The remote file's size and SHA-256, or `None` if there is no such file.
fn remote_digest(client: &mut Client, name: &str) -> Result<Option<(u64, [u8; 32])>> {
    match client.file_digest(name) {
        Ok(d) => Ok(Some((d.size, d.sha256))),
        Err(Error::Remote { status: status::NOT_FOUND, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The running state of one tree transfer.
struct Run<'o, 'a> {
    opts: &'o mut TreeOptions<'a>,
    at: TreeProgress,
    report: TreeReport,
}

impl Run<'_, '_> {
    fn new<'o, 'a>(opts: &'o mut TreeOptions<'a>, plan: &mut Plan) -> Run<'o, 'a> {
        let files = plan.files.len() as u64;
        // Sizes are a server's word: saturate, never overflow.
        let bytes = plan.files.iter().fold(0, |sum: u64, f| sum.saturating_add(f.1));
        let at = TreeProgress { files, bytes, ..TreeProgress::default() };
        Run { opts, at, report: std::mem::take(&mut plan.report) }
    }

    fn show(&mut self) {
        if let Some(f) = self.opts.progress.as_mut() {
            f(&self.at);
        }
    }

    /// Move one file with `transfer(options)`; record how it went. An error
    /// that ends the tree (a lost connection) is returned.
    fn file(
        &mut self,
        (rel, size): (&str, u64),
        decided: Result<Step>,
        transfer: &mut dyn FnMut(TransferOptions<'_>) -> Result<FileReport>,
    ) -> Result<()> {
        let base = self.at.bytes_done;
        let outcome = match decided {
            Ok(Step::Identical) => {
                self.report.identical.push(rel.to_string());
                Ok(false)
            }
            Ok(Step::Differs) => {
                self.report.differ.push(rel.to_string());
                Ok(false)
            }
            Ok(Step::Move { overwrite }) => {
                let (at, shown) = (&mut self.at, &mut self.opts.progress);
                let mut tick = |done: u64, _| {
                    at.bytes_done = base.saturating_add(done);
                    if let Some(f) = shown.as_mut() {
                        f(at);
                    }
                };
                let opts = TransferOptions {
                    overwrite,
                    resume: !self.opts.no_resume,
                    progress: Some(&mut tick),
                    verify: self.opts.verify,
                    preserve: self.opts.preserve,
                    limit_rate: self.opts.limit_rate,
                };
                let report = transfer(opts);
                report.map(|r| self.report.moved.push((rel.to_string(), r))).map(|()| true)
            }
            Err(e) => Err(e),
        };
        // Only bytes moved count; a file not moved leaves the total.
        let moved = *outcome.as_ref().unwrap_or(&false);
        self.at.files_done += 1;
        self.at.bytes_done = base.saturating_add(if moved { size } else { 0 });
        self.at.bytes = self.at.bytes.saturating_sub(if moved { 0 } else { size });
        self.show();
        match outcome {
            Err(e) if e.is_per_file() => self.report.failed.push((rel.to_string(), e)),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        Ok(())
    }
}

/// The local path of `rel` under `top`, every directory on the way checked
/// to be a directory and not a symbolic link (none is followed).
fn local_path(top: &Path, rel: &str) -> Result<PathBuf> {
    let mut path = top.to_path_buf();
    let mut parts = rel.split('/').peekable();
    while let Some(part) = parts.next() {
        path.push(component(part)?);
        if parts.peek().is_some() {
            let meta = fs::symlink_metadata(&path);
            if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
                let what = meta.map_or("is missing", |m| match m.is_symlink() {
                    true => "is a symbolic link (not followed)",
                    false => "is not a directory",
                });
                return Err(refuse(&path, what));
            }
        }
    }
    Ok(path)
}

/// Create the directory `rel` under `top` (its parent checked as
/// [`local_path`] does); one that exists must be a directory, not a link.
fn local_dir(top: &Path, rel: &str) -> Result<PathBuf> {
    let path = local_path(top, rel)?;
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(m) => {
            let what = if m.is_symlink() { "a symbolic link (not followed)" } else { "a file" };
            Err(refuse(&path, &format!("is {what}, not a directory")))
        }
        Err(_) => fs::create_dir(&path).map(|()| path.clone()).map_err(file_err(&path)),
    }
}

/// How to get the remote `name` to the local `path`: a local file there is
/// compared (a link or directory in its place is refused).
fn get_step(client: &mut Client, name: &str, path: &Path, overwrite: bool) -> Result<Step> {
    let theirs = match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => remote_digest(client, name)?,
        Ok(_) => return Err(refuse(path, "exists and is not a regular file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(file_err(path)(e)),
    };
    step(path, theirs, overwrite)
}

/// Set a directory's modification time (`-p`), after its files arrived:
/// only on a directory that is one (not a link, nor swapped for one before
/// the open), so that no time is set outside the tree.
fn set_dir_time(path: &Path, mtime: i64) -> io::Result<()> {
    let secs = std::time::Duration::from_secs(mtime.unsigned_abs());
    let epoch = std::time::UNIX_EPOCH;
    let time = if mtime >= 0 { epoch.checked_add(secs) } else { epoch.checked_sub(secs) };
    let time = time.ok_or_else(|| io::Error::other("time out of range"))?;
    let seen = fs::symlink_metadata(path)?;
    let dir = fs::File::open(path)?;
    if !seen.is_dir() || !store::names::same_file(&seen, &dir.metadata()?) {
        return Err(io::Error::other("not the directory that was checked"));
    }
    dir.set_modified(time)
}

impl Client {
    /// Upload the local directory `local` as the remote directory `remote`
    /// (created, with its parents): every file under it, every directory
    /// (empty ones too). Run again, it finishes the job (see the module
    /// notes). Errors end it only when the connection is lost or the tree is
    /// beyond the bounds; each file's refusal is in the report.
    pub fn send_tree(
        &mut self,
        local: impl AsRef<Path>,
        remote: &str,
        mut opts: TreeOptions<'_>,
    ) -> Result<TreeReport> {
        let local = local.as_ref();
        if !fs::metadata(local).is_ok_and(|m| m.is_dir()) {
            return Err(refuse(local, "is not a directory"));
        }
        store::check_name(remote).map_err(Error::InvalidInput)?;
        let mut plan = walk_local(local)?;
        let mut run = Run::new(&mut opts, &mut plan);
        run.show();
        self.make_dir(remote)?;
        for (dir, _) in &plan.dirs {
            match self.make_dir(&join(remote, dir)) {
                Err(e) if e.is_per_file() => run.report.failed.push((dir.clone(), e)),
                other => other?,
            }
        }
        for (rel, size) in &plan.files {
            let (path, name) = (local.join(rel), join(remote, rel));
            let overwrite = run.opts.overwrite;
            let decided = remote_digest(self, &name).and_then(|t| step(&path, t, overwrite));
            run.file((rel, *size), decided, &mut |o| self.put_path(&path, &name, o))?;
        }
        Ok(run.report)
    }

    /// Download the remote directory `remote` into the local directory
    /// `local` (created if missing; its parent must exist). The whole listing
    /// is read and checked before anything is written (see the module notes).
    pub fn get_tree(
        &mut self,
        remote: &str,
        local: impl AsRef<Path>,
        mut opts: TreeOptions<'_>,
    ) -> Result<TreeReport> {
        let local = local.as_ref();
        store::check_name(remote).map_err(Error::InvalidInput)?;
        let mut plan = walk_remote(self, remote)?;
        if !fs::metadata(local).is_ok_and(|m| m.is_dir()) {
            fs::create_dir(local).map_err(file_err(local))?;
        }
        let mut run = Run::new(&mut opts, &mut plan);
        run.show();
        for (dir, _) in &plan.dirs {
            if let Err(e) = local_dir(local, dir) {
                run.report.failed.push((dir.clone(), e));
            }
        }
        for (rel, size) in &plan.files {
            let name = join(remote, rel);
            // A name with no room for its partial file is refused here, not
            // by a failed create that would cost the connection.
            let room = store::check_name_for_write(rel).map_err(Error::InvalidInput);
            let (decided, path) = match room.and_then(|()| local_path(local, rel)) {
                Ok(path) => (get_step(self, &name, &path, run.opts.overwrite), path),
                Err(e) => (Err(e), PathBuf::new()),
            };
            run.file((rel, *size), decided, &mut |o| self.get_path(&name, &path, o))?;
        }
        if run.opts.preserve {
            for (dir, mtime) in plan.dirs.iter().rev() {
                let _ = local_path(local, dir).map(|p| set_dir_time(&p, *mtime));
            }
        }
        Ok(run.report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_plain_component_passes() {
        for good in ["a", "with space", "ünï cødé", "..a", "a.."] {
            assert_eq!(component(good).unwrap(), good);
        }
        for bad in ["", ".", "..", "a/b", "/x", "../x", "..\\x", "a\u{0}b", "x.ovtp-part"] {
            assert!(component(bad).is_err(), "{bad:?}");
        }
        let top = Path::new("/top");
        assert_eq!(local_path(top, "a").unwrap(), Path::new("/top/a"));
        assert!(local_path(top, "../a").is_err() && local_path(top, "a//b").is_err());
    }
}
