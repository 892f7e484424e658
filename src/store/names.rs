//! Name confinement: a remote name is checked, then resolved inside the
//! files directory so that neither `..`, an absolute path, a control
//! character nor a symlink can lead outside it (PROTOCOL.md 7.7.8).

use crate::constants::{MAX_LAST_COMPONENT, MAX_NAME_LEN};
use crate::error::{escape_control, is_deceptive};
use crate::status;
use std::fs::{self, File};
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Suffix of partial files; names ending in it are refused as remote names so a
/// client can never address (or clobber) another transfer's partial file.
pub const PARTIAL_SUFFIX: &str = ".ovtp-part";

/// A refusal the server sends as a status and message.
pub(crate) type Refusal = (u16, String);

fn refuse(code: u16, msg: impl Into<String>) -> Refusal {
    (code, msg.into())
}

/// Maps an I/O error `e` to the refusal IO_ERROR, "{what}: {e}".
fn io_refusal(what: &'static str) -> impl FnOnce(std::io::Error) -> Refusal {
    move |e| refuse(status::IO_ERROR, format!("{what}: {e}"))
}

/// The files directory `root`, canonical.
fn real_root(root: &Path) -> Result<PathBuf, Refusal> {
    root.canonicalize().map_err(io_refusal("files directory unavailable"))
}

/// Check a remote name's syntax: relative, `/`-separated, no empty, `.` or `..`
/// components, no NUL, control or other deceptive characters (bidirectional
/// overrides, zero-width characters...) or backslashes, not a partial file.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty file name".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("file name longer than {MAX_NAME_LEN} bytes"));
    }
    if let Some(c) = name.chars().find(|c| is_deceptive(*c) || *c == '\\') {
        return Err(format!("file name contains the forbidden character {:?}", c));
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

/// [`check_name`], and the last component short enough for the partial file
/// beside it (`.NAME.ovtp-part` must fit in 255 bytes): the rule for names
/// that are written.
pub fn check_name_for_write(name: &str) -> Result<(), String> {
    check_name(name)?;
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.len() > MAX_LAST_COMPONENT {
        return Err(format!(
            "the last component of a file name may be at most {MAX_LAST_COMPONENT} bytes"
        ));
    }
    Ok(())
}

/// Check `name` and join it to the canonical `root`: (root, target).
fn checked_target(root: &Path, name: &str) -> Result<(PathBuf, PathBuf), Refusal> {
    check_name(name).map_err(|m| refuse(status::BAD_NAME, m))?;
    let root = real_root(root)?;
    let target = root.join(name);
    Ok((root, target))
}

/// Resolve `name` under `root` for writing: parents are created inside `root`,
/// and the resolved parent must still be inside `root` after following links.
/// An existing target that is a symlink or not a regular file is refused.
pub(crate) fn resolve_for_write(root: &Path, name: &str) -> Result<PathBuf, Refusal> {
    check_name_for_write(name).map_err(|m| refuse(status::BAD_NAME, m))?;
    let (root, target) = checked_target(root, name)?;
    let parent = create_dirs(&root, target.parent().unwrap_or(&root))?;
    let file_name = target.file_name().ok_or_else(|| refuse(status::BAD_NAME, "no file name"))?;
    let target = parent.join(file_name);
    if fs::symlink_metadata(&target).is_ok_and(|meta| !meta.file_type().is_file()) {
        return Err(refuse(status::BAD_NAME, "the target exists and is not a regular file"));
    }
    Ok(target)
}

/// Create `dir` and its parents under the canonical `root`, never writable by
/// group or others whatever the umask (see [`check_files_dir`]); returns it
/// resolved, inside `root`. Nothing is created if an existing ancestor
/// leads outside.
fn create_dirs(root: &Path, dir: &Path) -> Result<PathBuf, Refusal> {
    // The nearest ancestor that exists already must be inside `root`.
    confined(root, dir.ancestors().find(|a| a.exists()).unwrap_or(root))?;
    let mut dirs = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dirs, 0o755);
    dirs.recursive(true).create(dir).map_err(io_refusal("cannot create directory"))?;
    confined(root, dir)
}

/// Create the directory `name` (and its parents) under `root`; fine if it
/// already is a directory inside `root`, refused if it is anything else.
pub(crate) fn make_dir(root: &Path, name: &str) -> Result<PathBuf, Refusal> {
    let (root, target) = checked_target(root, name)?;
    if fs::symlink_metadata(&target).is_ok() && !target.is_dir() {
        return Err(refuse(status::FILE_EXISTS, format!("{name} exists and is not a directory")));
    }
    create_dirs(&root, &target)
}

/// Resolve the directory `dir` under `root` for listing (`""`: `root`
/// itself): it must exist, be a directory, and lie inside `root` after
/// following links.
pub(crate) fn resolve_dir(root: &Path, dir: &str) -> Result<PathBuf, Refusal> {
    if dir.is_empty() {
        return real_root(root);
    }
    resolve_existing(root, dir, ("no such directory", "not a directory"), Path::is_dir)
}

/// Open the directory `real` (from [`resolve_dir`]), checked through its
/// descriptor to be inside `root`, and the path to list it by: on Linux one
/// through the descriptor, so that a directory swapped for a link after the
/// checks is never read. The path is valid while the `File` is open.
pub(crate) fn open_dir(root: &Path, real: &Path) -> Result<(File, PathBuf), Refusal> {
    let dir = File::open(real).map_err(io_refusal("server directory error"))?;
    opened_inside(root, &dir)?;
    #[cfg(target_os = "linux")]
    let by_fd = Some(PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())));
    #[cfg(not(target_os = "linux"))]
    let by_fd: Option<PathBuf> = None;
    let path = by_fd.filter(|p| p.is_dir()).unwrap_or_else(|| real.to_path_buf());
    Ok((dir, path))
}

/// Resolve `name` under `root` for reading: it must exist, be a regular file,
/// and lie inside `root` after following links.
pub(crate) fn resolve_for_read(root: &Path, name: &str) -> Result<PathBuf, Refusal> {
    resolve_existing(root, name, ("no such file", "not a regular file"), Path::is_file)
}

/// Resolve `name` under `root`: it must exist (else NOT_FOUND, `why.0`), lie
/// inside `root` after following links, and there be what `is_kind` accepts
/// (else BAD_NAME, `why.1`).
fn resolve_existing(
    root: &Path,
    name: &str,
    why: (&str, &str),
    is_kind: fn(&Path) -> bool,
) -> Result<PathBuf, Refusal> {
    let (root, target) = checked_target(root, name)?;
    if !target.exists() {
        return Err(refuse(status::NOT_FOUND, why.0));
    }
    let real = confined(&root, &target)?;
    if !is_kind(&real) {
        return Err(refuse(status::BAD_NAME, why.1));
    }
    Ok(real)
}

/// Open `path` (from [`resolve_for_read`], or a committed upload) for reading,
/// checked to be inside `root` after the open.
pub(crate) fn open_read(root: &Path, path: &Path) -> Result<File, Refusal> {
    let file = File::open(path).map_err(io_refusal("server file error"))?;
    opened_inside(root, &file).map(|()| file)
}

/// The metadata of `path`, followed to where it leads, which must be inside `root`.
pub(crate) fn metadata_inside(root: &Path, path: &Path) -> Result<fs::Metadata, Refusal> {
    let real = confined(&real_root(root)?, path)?;
    fs::metadata(real).map_err(io_refusal("server file error"))
}

/// Refuse an open file that is not inside `root` after all: a directory on
/// its way was swapped for a symbolic link between the checks and the open.
/// The kernel says where the descriptor is (`/proc/self/fd/N`, Linux only;
/// elsewhere, or without `/proc`, the checks before the open stand alone).
pub(crate) fn opened_inside(root: &Path, file: &File) -> Result<(), Refusal> {
    #[cfg(target_os = "linux")]
    if let Ok(real) = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        && !real.starts_with(real_root(root)?)
    {
        let msg = "the name leads outside the files directory (a directory on its way was \
                   replaced by a symbolic link)";
        return Err(refuse(status::BAD_NAME, msg));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (root, file);
    Ok(())
}

/// Refuse a files directory that others can change under the server, or
/// that holds what a client must never reach: `protected` (the server's key,
/// its `authorized_keys`, the home holding them). A files directory inside
/// the home is fine: names cannot leave it.
pub(crate) fn check_files_dir(dir: &Path, protected: &[&Path]) -> Result<(), String> {
    let shown = escape_control(&dir.display().to_string());
    let real = dir.canonicalize().map_err(|e| format!("files directory {shown}: {e}"))?;
    let meta = fs::metadata(&real).map_err(|e| format!("files directory {shown}: {e}"))?;
    if !meta.is_dir() {
        return Err(format!("files directory {shown}: not a directory"));
    }
    #[cfg(unix)]
    if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o022 != 0 {
        return Err(format!(
            "the files directory {shown} can be written by group or others: a local user could \
             swap what it holds for symbolic links while the server works; fix it with: \
             chmod go-w {shown}"
        ));
    }
    if let Some(path) = protected.iter().find(|p| resolved(p).starts_with(&real)) {
        let p = escape_control(&path.display().to_string());
        return Err(format!(
            "the files directory {shown} contains {p}: clients could download or replace it; \
             serve files from a directory of their own"
        ));
    }
    Ok(())
}

/// Where `path` is, resolved as far as it exists (a file need not exist yet).
fn resolved(path: &Path) -> PathBuf {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let beside = || Some(parent.canonicalize().ok()?.join(path.file_name()?));
    let given = || std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    path.canonicalize().ok().or_else(beside).unwrap_or_else(given)
}

/// Whether two files' metadata are of the same file (where std can tell).
#[cfg(unix)]
pub(crate) fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
pub(crate) fn same_file(_: &fs::Metadata, _: &fs::Metadata) -> bool {
    true
}

fn confined(root: &Path, path: &Path) -> Result<PathBuf, Refusal> {
    let real = path.canonicalize().map_err(io_refusal("cannot resolve path"))?;
    if real.starts_with(root) {
        Ok(real)
    } else {
        Err(refuse(status::BAD_NAME, "the name leads outside the files directory (symlink)"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
            "invoice\u{202e}fdp.exe",
            "a\u{200b}b",
            "a\u{2028}b",
            "a\u{2066}b/c",
            "\u{feff}a",
            ".x.ovtp-part",
            "dir/.y.ovtp-part",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a.txt", "dir/sub/file.bin", "..a", "a..", "ünïcode name.txt"] {
            assert!(check_name(good).is_ok(), "{good:?} refused");
        }
        assert!(check_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
        // The partial file `.NAME.ovtp-part` must fit in a 255-byte component.
        assert!(check_name_for_write(&format!("d/{}", "a".repeat(244))).is_ok());
        assert!(check_name_for_write(&format!("d/{}", "a".repeat(245))).is_err());
        assert!(check_name(&"a".repeat(245)).is_ok(), "reading needs no partial file");
    }

    /// A fresh directory `root` (with `root/d`) and a directory `outside` beside it.
    #[cfg(target_os = "linux")]
    pub(crate) fn race_dirs(tag: &str) -> (PathBuf, PathBuf, PathBuf) {
        let base = std::env::temp_dir().join(format!("ovtp-race-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (root, outside) = (base.join("root"), base.join("outside"));
        fs::create_dir_all(root.join("d")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        (base, root.canonicalize().unwrap(), outside)
    }

    /// What a local user who can write the files directory does between the
    /// server's checks and its open: `root/d` becomes a link to `outside`.
    #[cfg(target_os = "linux")]
    pub(crate) fn swap(root: &Path, outside: &Path) {
        let _ = fs::remove_dir_all(root.join("d.old"));
        fs::rename(root.join("d"), root.join("d.old")).unwrap();
        std::os::unix::fs::symlink(outside, root.join("d")).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_listed_directory_swapped_for_a_link_is_refused_or_read_where_it_was_checked() {
        let (base, root, outside) = race_dirs("list");
        fs::write(root.join("d/public"), b"").unwrap();
        fs::write(outside.join("secret"), b"").unwrap();
        let names = |p: &Path| -> Vec<String> {
            let entries = fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name());
            entries.map(|n| n.into_string().unwrap()).collect()
        };
        // Swapped after the checks, before the open: refused.
        let real = resolve_dir(&root, "d").unwrap();
        swap(&root, &outside);
        assert!(matches!(open_dir(&root, &real), Err((status::BAD_NAME, _))));
        // Swapped after the open: what is read is the directory that was checked.
        fs::remove_file(root.join("d")).unwrap();
        fs::rename(root.join("d.old"), root.join("d")).unwrap();
        let real = resolve_dir(&root, "d").unwrap();
        let (_dir, path) = open_dir(&root, &real).unwrap();
        swap(&root, &outside);
        assert_eq!(names(&path), ["public"]);
        assert_eq!(names(&real), ["secret"], "the plain path now leads outside");
        fs::remove_dir_all(base).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_directory_swapped_for_a_link_after_the_checks_is_caught_after_the_open() {
        let (base, root, outside) = race_dirs("read");
        fs::write(root.join("d/f"), b"public").unwrap();
        fs::write(outside.join("f"), b"secret").unwrap();
        let path = resolve_for_read(&root, "d/f").unwrap();
        swap(&root, &outside);
        let opened = open_read(&root, &path).map(|f| std::io::read_to_string(f).unwrap());
        assert!(matches!(&opened, Err((status::BAD_NAME, _))), "{opened:?}");
        fs::remove_dir_all(base).unwrap();
    }
}
