//! Directory listings and file metadata: one page of a directory's entries
//! (PROTOCOL.md 7.9), and the mode bits and times that `-p` carries.

use super::names::check_name;
use crate::constants::{LIST_PAGE_ENTRIES, MAX_ENTRY_NAME};
use crate::message::{DirEntry, EntryKind};
use crate::proto::msg::{FileMeta, ListPage};
use std::fs::{self, File, Metadata};
use std::io;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// The entries of the directory `dir` whose names sort bytewise after
/// `after`, the first [`LIST_PAGE_ENTRIES`] of them, sorted. Symbolic links
/// are listed as such, never followed. Left out: names that are not UTF-8,
/// that [`check_name`] refuses (control or deceptive characters, partial
/// files `*.ovtp-part`) or that are longer than [`MAX_ENTRY_NAME`]: no
/// client could ask for them.
pub(crate) fn list_page(dir: &Path, after: &str) -> io::Result<ListPage> {
    // The first LIST_PAGE_ENTRIES + 1 names after `after` (the last says
    // `more`), kept in a heap whatever the directory's size.
    let mut first = std::collections::BinaryHeap::with_capacity(LIST_PAGE_ENTRIES + 2);
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let bytes = name.as_encoded_bytes();
        let full = first.len() > LIST_PAGE_ENTRIES;
        if bytes <= after.as_bytes()
            || full && first.peek().is_some_and(|l: &String| bytes >= l.as_bytes())
        {
            continue;
        }
        let Ok(name) = name.into_string() else { continue };
        // check_name also refuses partial files.
        if name.len() <= MAX_ENTRY_NAME && check_name(&name).is_ok() {
            first.push(name);
            if first.len() > LIST_PAGE_ENTRIES + 1 {
                first.pop();
            }
        }
    }
    let mut names = first.into_sorted_vec();
    let more = names.len() > LIST_PAGE_ENTRIES;
    names.truncate(LIST_PAGE_ENTRIES);
    let entries = names.into_iter().filter_map(|name| {
        // An entry removed meanwhile is left out, like one created meanwhile.
        let meta = fs::symlink_metadata(dir.join(&name)).ok()?;
        let kind = match meta.file_type() {
            t if t.is_file() => EntryKind::File,
            t if t.is_dir() => EntryKind::Dir,
            t if t.is_symlink() => EntryKind::Symlink,
            _ => EntryKind::Other,
        };
        let size = if kind == EntryKind::File { meta.len() } else { 0 };
        let FileMeta { mode, mtime } = meta_of(&meta);
        Some(DirEntry { name, kind, size, mode, mtime })
    });
    Ok(ListPage { entries: entries.collect(), more })
}

/// A file's permission bits (`& 0o777`) and modification time.
pub(crate) fn meta_of(meta: &Metadata) -> FileMeta {
    #[cfg(unix)]
    let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
    #[cfg(not(unix))]
    let mode = if meta.permissions().readonly() { 0o444 } else { 0o644 };
    let mtime = match meta.modified() {
        Ok(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
        },
        Err(_) => 0,
    };
    FileMeta { mode, mtime }
}

/// Give the open `file` the mode bits (`& 0o777`: never setuid, setgid or
/// sticky) and modification time of `meta`. Called on a partial file, after
/// its last write and before it gets its final name.
pub(crate) fn apply_meta(file: &File, meta: &FileMeta) -> io::Result<()> {
    let secs = Duration::from_secs(meta.mtime.unsigned_abs());
    let time =
        if meta.mtime >= 0 { UNIX_EPOCH.checked_add(secs) } else { UNIX_EPOCH.checked_sub(secs) };
    let out_of_range = || io::Error::new(io::ErrorKind::InvalidInput, "time out of range");
    file.set_modified(time.ok_or_else(out_of_range)?)?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(meta.mode & 0o777))?;
    #[cfg(not(unix))]
    let _ = meta.mode;
    Ok(())
}
