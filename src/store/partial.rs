//! Partial files beside their target (a download's named after it, an
//! upload's after its target and the client key that owns it), prefix
//! digests for resume, and the commit that makes a file appear whole or not
//! at all.

use super::names::PARTIAL_SUFFIX;
use crate::keys::{Fingerprint, open_mode};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The partial file of a download beside `target`: `.<file name>.ovtp-part`.
pub fn partial_path(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    target.with_file_name(format!(".{name}{PARTIAL_SUFFIX}"))
}

/// The partial file of an upload to `target` by the client key `owner`,
/// beside the target: `.<32 hex digits>.ovtp-part`, the first 16 bytes of
/// SHA-256("ovtp/2 partial" || 0 || fingerprint || 0 || file name). Each key
/// has its own, so no other key can find, resume or learn anything of it
/// (PROTOCOL.md 7.7.7); its length does not depend on the name's.
pub fn upload_partial_path(target: &Path, owner: &Fingerprint) -> PathBuf {
    let name = target.file_name().unwrap_or_default().as_encoded_bytes();
    let parts: [&[u8]; 5] = [b"ovtp/2 partial", &[0], owner.as_str().as_bytes(), &[0], name];
    let digest = parts.iter().fold(Sha256::new(), |h, p| h.chain_update(p)).finalize();
    target.with_file_name(format!(".{}{PARTIAL_SUFFIX}", hex(&digest[..16])))
}

/// Open the partial file for a transfer. With `resume`, an existing regular
/// partial file of at most `max_len` bytes is kept and its length returned
/// (the file positioned at its end); it is not hashed, which only a resume
/// that gets that far needs ([`hash_prefix`]). Otherwise it is created empty.
/// Never follows a symlink planted at the partial file's name.
pub(crate) fn open_partial(path: &Path, resume: bool, max_len: u64) -> io::Result<(File, u64)> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.file_type().is_file() {
            return Err(io::Error::other("partial file is not a regular file"));
        }
        if resume && meta.len() <= max_len {
            let mut file = OpenOptions::new().read(true).write(true).open(path)?;
            let len = file.seek(SeekFrom::End(0))?;
            return Ok((file, len));
        }
        fs::remove_file(path)?;
    }
    // create_new does not follow a symlink someone raced into place.
    Ok((open_mode(OpenOptions::new().read(true).write(true).create_new(true), 0o600, path)?, 0))
}

/// Start the partial file over (the sender's file changed since the prefix was written).
pub(crate) fn restart(file: &mut File) -> io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0)).map(drop)
}

/// Hash the first `len` bytes of `file` (from its start); returns the bytes
/// actually hashed (less if the file is shorter) and the running hasher.
pub fn hash_prefix(file: &mut File, len: u64) -> io::Result<(u64, Sha256)> {
    file.seek(SeekFrom::Start(0))?;
    let (mut hasher, mut buf) = (Sha256::new(), vec![0u8; 256 * 1024]);
    // `Take` stops at `len` and counts what is left of it.
    let mut prefix = file.take(len);
    loop {
        match prefix.read(&mut buf) {
            Ok(0) => return Ok((len - prefix.limit(), hasher)),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The SHA-256 of the first `len` bytes of `file`, if it has that many.
pub(crate) fn prefix_digest(file: &mut File, len: u64) -> io::Result<Option<[u8; 32]>> {
    let (n, hasher) = hash_prefix(file, len)?;
    Ok((n == len).then(|| hasher.finalize().into()))
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
    // Not every platform can open a directory for syncing; the rename is done either way.
    if let Some(Ok(dir)) = target.parent().map(File::open) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Hex of a digest, for messages and logs.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_path_sits_beside_the_target() {
        assert_eq!(
            partial_path(Path::new("/srv/files/a/b.txt")),
            Path::new("/srv/files/a/.b.txt.ovtp-part")
        );
    }

    #[test]
    fn an_upload_partial_belongs_to_one_key_and_one_name() {
        let (a, b) = (Fingerprint::of_der(b"key a"), Fingerprint::of_der(b"key b"));
        let target = Path::new("/srv/files/a/b.txt");
        let p = upload_partial_path(target, &a);
        assert_eq!(p.parent(), target.parent());
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with('.') && name.ends_with(".ovtp-part") && name.len() == 43,
            "{name}"
        );
        assert_eq!(p, upload_partial_path(target, &a), "the same for the same key and name");
        assert_ne!(p, upload_partial_path(target, &b), "another key's");
        assert_ne!(p, upload_partial_path(&target.with_file_name("c.txt"), &a));
    }
}
