//! The file side of transfers: confining remote names to the files directory,
//! partial files beside their target, prefix digests for resume, and the
//! verify-then-rename step that makes a file appear whole or not at all.

use crate::constants::MAX_NAME_LEN;
use crate::message::status;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Suffix of partial files; names ending in it are refused as remote names so a
/// client can never address (or clobber) another transfer's partial file.
pub const PARTIAL_SUFFIX: &str = ".ovtp-part";

/// A refusal the server sends as a status and message.
pub(crate) type Refusal = (u16, String);

fn refuse(code: u16, msg: impl Into<String>) -> Refusal {
    (code, msg.into())
}

/// Check a remote name's syntax: relative, `/`-separated, no empty, `.` or `..`
/// components, no NUL, control characters or backslashes, not a partial file.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty file name".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("file name longer than {MAX_NAME_LEN} bytes"));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || *c == '\\') {
        return Err(format!(
            "file name contains the forbidden character {:?}",
            c
        ));
    }
    if name.starts_with('/') {
        return Err(
            "absolute paths are not allowed; names are relative to the server's files directory"
                .into(),
        );
    }
    for part in name.split('/') {
        match part {
            "" => return Err("file name has an empty path component".into()),
            "." | ".." => return Err("file name may not contain '.' or '..' components".into()),
            p if p.ends_with(PARTIAL_SUFFIX) => {
                return Err(format!(
                    "names ending in {PARTIAL_SUFFIX} are reserved for partial transfers"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Check `name` and join it to the canonical `root`: (root, target).
fn checked_target(root: &Path, name: &str) -> Result<(PathBuf, PathBuf), Refusal> {
    check_name(name).map_err(|m| refuse(status::BAD_NAME, m))?;
    let root = root.canonicalize().map_err(|e| {
        refuse(
            status::IO_ERROR,
            format!("files directory unavailable: {e}"),
        )
    })?;
    let target = root.join(name);
    Ok((root, target))
}

/// Resolve `name` under `root` for writing: parents are created inside `root`,
/// and the resolved parent must still be inside `root` after following links.
/// An existing target that is a symlink or not a regular file is refused.
pub(crate) fn resolve_for_write(root: &Path, name: &str) -> Result<PathBuf, Refusal> {
    let (root, target) = checked_target(root, name)?;
    let parent = target.parent().unwrap_or(&root).to_path_buf();
    // Refuse before creating anything if an existing ancestor escapes the root.
    let mut existing = parent.clone();
    while !existing.exists() {
        existing = existing
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| root.clone());
    }
    confined(&root, &existing)?;
    fs::create_dir_all(&parent)
        .map_err(|e| refuse(status::IO_ERROR, format!("cannot create directory: {e}")))?;
    let parent = confined(&root, &parent)?;
    let file_name = target
        .file_name()
        .ok_or_else(|| refuse(status::BAD_NAME, "no file name"))?;
    let target = parent.join(file_name);
    if let Ok(meta) = fs::symlink_metadata(&target)
        && !meta.file_type().is_file()
    {
        return Err(refuse(
            status::BAD_NAME,
            "the target exists and is not a regular file",
        ));
    }
    Ok(target)
}

/// Resolve `name` under `root` for reading: it must exist, be a regular file,
/// and lie inside `root` after following links.
pub(crate) fn resolve_for_read(root: &Path, name: &str) -> Result<PathBuf, Refusal> {
    let (root, target) = checked_target(root, name)?;
    if !target.exists() {
        return Err(refuse(status::NOT_FOUND, "no such file"));
    }
    let real = confined(&root, &target)?;
    if !fs::metadata(&real).map(|m| m.is_file()).unwrap_or(false) {
        return Err(refuse(status::BAD_NAME, "not a regular file"));
    }
    Ok(real)
}

fn confined(root: &Path, path: &Path) -> Result<PathBuf, Refusal> {
    let real = path
        .canonicalize()
        .map_err(|e| refuse(status::IO_ERROR, format!("cannot resolve path: {e}")))?;
    if real.starts_with(root) {
        Ok(real)
    } else {
        Err(refuse(
            status::BAD_NAME,
            "the name leads outside the files directory (symlink)",
        ))
    }
}

/// The partial file beside `target`: `.<file name>.ovtp-part`.
pub fn partial_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}{PARTIAL_SUFFIX}"))
}

/// Open the partial file for a transfer. With `resume`, an existing regular
/// partial file is kept and its length and digest returned (the hasher is
/// positioned after the prefix); otherwise it is created empty. Never follows
/// a symlink planted at the partial file's name.
pub(crate) fn open_partial(
    path: &Path,
    resume: bool,
    max_len: u64,
) -> io::Result<(File, u64, Sha256)> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.file_type().is_file() {
            return Err(io::Error::other("partial file is not a regular file"));
        }
        if resume && meta.len() <= max_len {
            let mut file = OpenOptions::new().read(true).write(true).open(path)?;
            let (len, hasher) = hash_prefix(&mut file, meta.len())?;
            file.seek(SeekFrom::Start(len))?;
            return Ok((file, len, hasher));
        }
        fs::remove_file(path)?;
    }
    // create_new does not follow a symlink someone raced into place.
    let file = create_private(path)?;
    Ok((file, 0, Sha256::new()))
}

fn create_private(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
}

/// Start the partial file over (the sender's file changed since the prefix was written).
pub(crate) fn restart(file: &mut File) -> io::Result<Sha256> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(Sha256::new())
}

/// Hash the first `len` bytes of `file` (from its start); returns the bytes
/// actually hashed (less if the file is shorter) and the running hasher.
pub fn hash_prefix(file: &mut File, len: u64) -> io::Result<(u64, Sha256)> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = 0u64;
    while done < len {
        let want = buf.len().min((len - done) as usize);
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    Ok((done, hasher))
}

/// Size and SHA-256 of a whole file.
pub fn digest_file(path: &Path) -> io::Result<(u64, [u8; 32])> {
    let mut file = File::open(path)?;
    let (len, hasher) = hash_prefix(&mut file, u64::MAX)?;
    Ok((len, hasher.finalize().into()))
}

/// Make a verified partial file the target: sync its data, then rename it into
/// place (or, without `overwrite`, link it so an existing target is never
/// replaced), then sync the directory so the new name survives a crash.
pub(crate) fn commit(partial: &Path, file: File, target: &Path, overwrite: bool) -> io::Result<()> {
    file.sync_all()?;
    drop(file);
    if overwrite {
        fs::rename(partial, target)?;
    } else {
        match fs::hard_link(partial, target) {
            Ok(()) => fs::remove_file(partial)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
            // Filesystems without hard links: check, then rename (a small race
            // with another writer outside ovtp; ovtp's own writers hold a name lock).
            Err(_) if !target.exists() => fs::rename(partial, target)?,
            Err(_) => return Err(io::Error::from(io::ErrorKind::AlreadyExists)),
        }
    }
    if let Some(dir) = target.parent() {
        // Not every platform can open a directory for syncing; the rename is done either way.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Who holds a name: the request (client key and request id) and its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) request: (
        crate::keys::Fingerprint,
        [u8; crate::constants::REQUEST_ID_LEN],
    ),
    pub(crate) conn: u64,
}

/// Target paths with a transfer in progress in this process: one writer per name.
#[derive(Default)]
pub(crate) struct NameLocks(Mutex<HashMap<PathBuf, Owner>>);

/// Holds a name until dropped.
pub(crate) struct NameGuard<'a> {
    locks: &'a NameLocks,
    path: PathBuf,
}

impl NameLocks {
    /// Take the name, or learn who holds it.
    pub(crate) fn try_lock(&self, path: &Path, owner: &Owner) -> Result<NameGuard<'_>, Owner> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(holder) = map.get(path) {
            return Err(holder.clone());
        }
        map.insert(path.to_path_buf(), owner.clone());
        Ok(NameGuard {
            locks: self,
            path: path.to_path_buf(),
        })
    }
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        self.locks
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.path);
    }
}

/// Hex of a digest, for messages and logs.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_or_smuggle_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a\0b",
            "a\nb",
            "a\u{1b}[2Jb",
            "a\\b",
            ".x.ovtp-part",
            "dir/.y.ovtp-part",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "a",
            "a.txt",
            "dir/sub/file.bin",
            "..a",
            "a..",
            "ünïcode name.txt",
        ] {
            assert!(check_name(good).is_ok(), "{good:?} refused");
        }
        assert!(check_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn partial_path_sits_beside_the_target() {
        assert_eq!(
            partial_path(Path::new("/srv/files/a/b.txt")),
            Path::new("/srv/files/a/.b.txt.ovtp-part")
        );
    }
}
