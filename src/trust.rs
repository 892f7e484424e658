//! Trust files: which client keys a server accepts (`authorized_keys`) and
//! which key each server must present (`known_hosts`).
//!
//! Both are UTF-8 text, one entry per line. Blank lines and lines whose first
//! non-space character is `#` are ignored; any other line that does not parse
//! is an error naming the file and the line number (a typo must not silently
//! drop a key). Fields are separated by spaces or tabs. Files larger than 1 MiB
//! are refused.
//!
//! `authorized_keys`:
//!
//! ```text
//! # comment
//! ovtp-rsa <standard base64, with padding, of the SPKI DER> [comment, rest of line]
//! ```
//!
//! `known_hosts`:
//!
//! ```text
//! <host>:<port> SHA256:<fingerprint> [comment, rest of line]
//! ```
//!
//! The host is stored as given, lowercased; an IPv6 address is written in
//! brackets, as in `[::1]:888`. A host may appear on several lines (for
//! example during a key rotation done by hand); it matches if any line has the
//! presented fingerprint.

use crate::error::{Error, Result, escape_control};
use crate::keys::{
    Fingerprint, PublicKey, io_error, open_mode, parse_key_file, read_capped, with_path,
    write_atomic,
};
use crate::store::listing::meta_of;
use crate::store::locks::lock;
use base64ct::{Base64, Encoding};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::result::Result as StdResult;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Largest trust file read.
const MAX_TRUST_FILE: u64 = 1024 * 1024;

/// The key type word that starts each `authorized_keys` line.
const KEY_TYPE: &str = "ovtp-rsa";

/// Parse, trimmed, each line that carries an entry (not blank, not a `#`
/// comment) with `parse`; an error names the line, numbered from 1.
fn parse_entries<T>(text: &str, parse: fn(&str) -> StdResult<T, String>) -> Result<Vec<T>> {
    let numbered = text.lines().map(str::trim).zip(1..);
    let entries = numbered.filter(|(line, _)| !line.is_empty() && !line.starts_with('#'));
    entries
        .map(|(line, n)| parse(line).map_err(|m| Error::TrustFile(format!("line {n}: {m}"))))
        .collect()
}

/// Split off the first whitespace-delimited field; the rest is trimmed.
fn split_field(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

/// Parse one `authorized_keys` entry.
fn parse_key_line(line: &str) -> StdResult<(PublicKey, String), String> {
    let (kind, rest) = split_field(line);
    if kind != KEY_TYPE {
        return Err(format!(
            "expected \"{KEY_TYPE} <base64 key> [comment]\", found \"{}\"",
            escape_control(kind)
        ));
    }
    let (b64, comment) = split_field(rest);
    let der = Base64::decode_vec(b64).map_err(|_| "the key is not valid base64".to_string())?;
    let key = PublicKey::from_der(&der).map_err(|e| e.to_string())?;
    Ok((key, comment.to_owned()))
}

/// Parse the text of an `authorized_keys` file into keys and their comments.
pub fn parse_authorized_keys(text: &str) -> Result<Vec<(PublicKey, String)>> {
    parse_entries(text, parse_key_line)
}

/// The `authorized_keys` line for a key (without the newline). Control
/// characters in the comment become spaces, so a comment can never start a
/// new line.
pub fn authorized_key_line(key: &PublicKey, comment: &str) -> String {
    let comment: String = comment.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let comment = comment.trim();
    let b64 = Base64::encode_string(key.to_der());
    if comment.is_empty() {
        format!("{KEY_TYPE} {b64}")
    } else {
        format!("{KEY_TYPE} {b64} {comment}")
    }
}

/// A trust file's text (`None`: the file does not exist) and its entries,
/// parsed by `parse`; a parse error names the file.
fn load<T>(path: &Path, parse: fn(&str) -> Result<Vec<T>>) -> Result<(Option<String>, Vec<T>)> {
    let not_utf8 = || Error::TrustFile(format!("{}: not UTF-8 text", path.display()));
    let text = match read_capped(path, MAX_TRUST_FILE, Error::TrustFile, false) {
        Err(Error::Io(e)) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
        Ok(bytes) => Some(std::str::from_utf8(&bytes).map_err(|_| not_utf8())?.to_owned()),
    };
    let entries = text.as_deref().map_or(Ok(Vec::new()), parse).map_err(|e| with_path(path, e))?;
    Ok((text, entries))
}

/// Append `line` to the trust file at `path`, whose current text is
/// `existing` (`None`: missing). Creates the file with `mode` and its parent
/// directory (mode 0700) if needed. Never glues the line to an unterminated
/// last line.
fn append_line(path: &Path, existing: Option<&str>, line: &str, mode: u32) -> Result<()> {
    let glue = existing.is_some_and(|t| !t.is_empty() && !t.ends_with('\n'));
    let data = format!("{}{line}\n", if glue { "\n" } else { "" });
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|e| io_error(dir, e))?;
    }
    let file = open_mode(fs::OpenOptions::new().append(true).create(true), mode, path);
    // One write of the whole line, so concurrent appenders do not interleave.
    file.and_then(|mut f| f.write_all(data.as_bytes())).map_err(|e| io_error(path, e))
}

/// What identifies a version of a file without reading it: (mtime, length, inode).
type Stamp = (Option<SystemTime>, u64, u64);

fn stamp(meta: &fs::Metadata) -> Stamp {
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0;
    (meta.modified().ok(), meta.len(), inode)
}

/// The parsed file and the stamp of the version it was parsed from
/// (`None`: the file did not exist).
struct Cache {
    stamp: Option<Stamp>,
    keys: Arc<Vec<(PublicKey, String)>>,
}

/// The server's `authorized_keys` file: the client keys allowed to connect.
///
/// The file is read again whenever it changes, so keys added or removed (by
/// this process, another process or an editor) take effect for new
/// connections without a restart.
pub struct AuthorizedKeys {
    path: PathBuf,
    // Also serializes add and remove within this process. The cache is only
    // ever replaced whole, so a panic elsewhere cannot leave it half-updated.
    cache: Mutex<Option<Cache>>,
}

/// The result of adding one key file with [`AuthorizedKeys::add_from_path`].
#[derive(Debug)]
pub struct AddOutcome {
    /// The file the key was read from.
    pub source: PathBuf,
    /// The key's fingerprint and whether it was added (`false`: already present).
    pub result: Result<(Fingerprint, bool)>,
}

impl AuthorizedKeys {
    /// Use the `authorized_keys` file at `path` (it need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        AuthorizedKeys { path: path.into(), cache: Mutex::new(None) }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current keys: re-reads the file when its (mtime, len, inode)
    /// changed since the last read. A missing file means no keys.
    fn current(&self, cache: &mut Option<Cache>) -> Result<Arc<Vec<(PublicKey, String)>>> {
        // Stat before reading: if the file changes during the read, the next call sees a new stamp.
        let stamp = match fs::metadata(&self.path) {
            Ok(meta) => Some(stamp(&meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(&self.path, e)),
        };
        if let Some(c) = cache.as_ref().filter(|c| c.stamp == stamp) {
            return Ok(c.keys.clone());
        }
        let keys = Arc::new(load(&self.path, parse_authorized_keys)?.1);
        *cache = Some(Cache { stamp, keys: keys.clone() });
        Ok(keys)
    }

    /// Whether `key` is authorized. Re-reads the file when it changed since the
    /// last read, so adding or removing a key takes effect for new connections
    /// without a restart. A missing file means no keys.
    pub fn contains(&self, key: &PublicKey) -> Result<bool> {
        Ok(self.current(&mut lock(&self.cache))?.iter().any(|(k, _)| k == key))
    }

    /// All authorized keys with their comments, in file order.
    pub fn keys(&self) -> Result<Vec<(PublicKey, String)>> {
        Ok(self.current(&mut lock(&self.cache))?.as_ref().clone())
    }

    /// Appends `key` unless it is already present (compared by DER); returns
    /// whether it was added. Ensures the existing file ends with a newline
    /// before appending. Creates the file (mode 0600) and its parent directory
    /// if missing.
    pub fn add(&self, key: &PublicKey, comment: &str) -> Result<bool> {
        let mut cache = lock(&self.cache);
        let (text, keys) = load(&self.path, parse_authorized_keys)?;
        if keys.iter().any(|(k, _)| k == key) {
            return Ok(false);
        }
        append_line(&self.path, text.as_deref(), &authorized_key_line(key, comment), 0o600)?;
        *cache = None;
        Ok(true)
    }

    /// `--add-keys`: add the public key in a PEM file, or, for a directory,
    /// from each of its regular files whose name ends in `.pub` or `.pem`
    /// (sorted by name; other files are skipped). A private key is refused,
    /// never added. One outcome per file; an error for the whole call only if
    /// `path` itself cannot be read.
    pub fn add_from_path(&self, path: impl AsRef<Path>) -> Result<Vec<AddOutcome>> {
        let path = path.as_ref();
        let meta = fs::metadata(path).map_err(|e| io_error(path, e))?;
        let files = if meta.is_dir() {
            let entries = fs::read_dir(path).and_then(|dir| dir.map(|e| Ok(e?.path())).collect());
            let mut files: Vec<PathBuf> = entries.map_err(|e| io_error(path, e))?;
            files.retain(|file| {
                let name = file.file_name().unwrap_or_default().to_string_lossy();
                // `fs::metadata` follows symlinks: a link to a key file counts.
                (name.ends_with(".pub") || name.ends_with(".pem"))
                    && fs::metadata(file).is_ok_and(|m| m.is_file())
            });
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        Ok(files.into_iter().map(|p| AddOutcome { result: self.add_file(&p), source: p }).collect())
    }

    fn add_file(&self, path: &Path) -> Result<(Fingerprint, bool)> {
        // Read into a buffer wiped after use, in case the file is a private key.
        let key = parse_key_file(path, false, |text| {
            // Checked on the text, so that a private key is never even parsed here.
            if text.contains("PRIVATE KEY-----") {
                return Err(Error::Key(format!(
                    "this is a PRIVATE key; it is never added to authorized_keys. \
                     Give the public key instead (openssl pkey -in {} -pubout)",
                    path.display()
                )));
            }
            PublicKey::from_pem(text)
        })?;
        let comment = path.file_stem().unwrap_or_default().to_string_lossy();
        Ok((key.fingerprint(), self.add(&key, &comment)?))
    }

    /// Removes the key with this fingerprint by rewriting the file atomically
    /// (temporary file and rename; other lines and comments are kept as they
    /// are). Returns whether it was present.
    pub fn remove(&self, fp: &Fingerprint) -> Result<bool> {
        let mut cache = lock(&self.cache);
        // Every line parses (or the error names it) before anything is written.
        let (Some(text), keys) = load(&self.path, parse_authorized_keys)? else { return Ok(false) };
        if !keys.iter().any(|(key, _)| key.fingerprint() == *fp) {
            return Ok(false);
        }
        // Comments and blank lines never parse as a key line, so they are kept;
        // `split_inclusive` keeps each line's own ending, so kept lines are byte-identical.
        let ours =
            |raw: &str| parse_key_line(raw.trim()).is_ok_and(|(k, _)| k.fingerprint() == *fp);
        let kept: String = text.split_inclusive('\n').filter(|raw| !ours(raw)).collect();
        // The rewritten file keeps the permission bits of the old one.
        let meta = fs::metadata(&self.path).map_err(|e| io_error(&self.path, e))?;
        write_atomic(&self.path, kept.as_bytes(), meta_of(&meta).mode, true)?;
        *cache = None;
        Ok(true)
    }
}

impl fmt::Debug for AuthorizedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizedKeys").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Validate a `host:port` and lowercase it.
fn normalize_host(host: &str) -> StdResult<String, String> {
    let bad = |why: &str| format!("\"{}\" is not a host:port ({why})", escape_control(host));
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '#') {
        return Err(bad("empty, or contains spaces, control characters or #"));
    }
    let (name, port) = host.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    port.parse::<u16>().map_err(|_| bad("bad port"))?;
    if name.is_empty() {
        return Err(bad("no host"));
    }
    if name.contains(':') && !(name.starts_with('[') && name.ends_with(']')) {
        return Err(bad("write IPv6 addresses as [addr]:port"));
    }
    Ok(host.to_lowercase())
}

/// Parse one `known_hosts` entry.
fn parse_host_line(line: &str) -> StdResult<(String, Fingerprint, String), String> {
    let (host, rest) = split_field(line);
    let (fp, comment) = split_field(rest);
    let bad_fp = || format!("\"{}\" is not a SHA256: fingerprint", escape_control(fp));
    let host = normalize_host(host)?;
    Ok((host, fp.parse::<Fingerprint>().map_err(|_| bad_fp())?, comment.to_owned()))
}

/// Parse the text of a `known_hosts` file into (host:port, fingerprint, comment).
pub fn parse_known_hosts(text: &str) -> Result<Vec<(String, Fingerprint, String)>> {
    parse_entries(text, parse_host_line)
}

/// What [`KnownHosts::check`] found for a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCheck {
    /// The server presented a recorded key.
    Match,
    /// The host is not recorded.
    Unknown,
    /// The host is recorded with another key.
    Changed {
        /// The fingerprint recorded.
        expected: Fingerprint,
    },
}

/// The client's `known_hosts` file: the key fingerprint of each server.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    /// Use the `known_hosts` file at `path` (it need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KnownHosts { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Look up `host` (`host:port`) and compare its recorded fingerprint with
    /// `fp`. A missing file means every host is unknown.
    pub fn check(&self, host: &str, fp: &Fingerprint) -> Result<HostCheck> {
        let host = normalize_host(host).map_err(Error::InvalidInput)?;
        let (_, entries) = load(&self.path, parse_known_hosts)?;
        let mut recorded = entries.into_iter().filter(|(h, ..)| *h == host).map(|(_, f, _)| f);
        // A match on any line; otherwise the first line recorded is the one reported.
        let Some(first) = recorded.next() else { return Ok(HostCheck::Unknown) };
        if first == *fp || recorded.any(|f| f == *fp) {
            return Ok(HostCheck::Match);
        }
        Ok(HostCheck::Changed { expected: first })
    }

    /// Record `host` (`host:port`) with `fp`, appending a line (the file is
    /// created with mode 0644, and its parent directory, if missing). Recording
    /// a known pair again does nothing; a host recorded with another key is
    /// refused: changed keys are never overwritten silently.
    pub fn add(&self, host: &str, fp: &Fingerprint) -> Result<()> {
        let host = normalize_host(host).map_err(Error::InvalidInput)?;
        let (text, entries) = load(&self.path, parse_known_hosts)?;
        if entries.iter().any(|(h, f, _)| *h == host && f == fp) {
            return Ok(());
        }
        if let Some((_, old, _)) = entries.iter().find(|(h, _, _)| *h == host) {
            return Err(Error::TrustFile(format!(
                "{p}: {host} is already recorded with key {old}; refusing to record {fp} for it. \
                 A changed key is never replaced silently: if the change is legitimate, \
                 delete the old line from {p} first",
                p = self.path.display()
            )));
        }
        append_line(&self.path, text.as_deref(), &format!("{host} {fp}"), 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyPair;
    use crate::keys::test_util::{TempDir, keys};

    #[test]
    fn parses_authorized_keys_with_comments_and_blank_lines() {
        let [a, b, _] = keys();
        let text = format!(
            "# servers allowed in\n\n   \n{}\n  # indented comment\n\t{}\n",
            authorized_key_line(a.public(), "alice@host  laptop"),
            authorized_key_line(b.public(), ""),
        );
        let keys = parse_authorized_keys(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(&keys[0].0, a.public());
        assert_eq!(keys[0].1, "alice@host  laptop");
        assert_eq!(&keys[1].0, b.public());
        assert_eq!(keys[1].1, "");

        let bad = format!("{text}ssh-rsa AAAA\n");
        let e = parse_authorized_keys(&bad).unwrap_err();
        assert!(matches!(&e, Error::TrustFile(m) if m.starts_with("line 7:")), "{e}");
        let e = parse_authorized_keys("ovtp-rsa !!!!\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("base64"), "{e}");
        let e = parse_authorized_keys("\novtp-rsa AAAA\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn comments_cannot_break_lines() {
        let line = authorized_key_line(keys()[0].public(), "evil\novtp-rsa AAAA\r\u{7}x");
        assert!(!line.chars().any(char::is_control));
        assert_eq!(parse_authorized_keys(&line).unwrap().len(), 1);
    }

    #[test]
    fn add_contains_and_remove() {
        let dir = TempDir::new();
        let path = dir.join("sub/authorized_keys");
        let [a, b, c] = keys();
        let ak = AuthorizedKeys::new(&path);
        assert!(!ak.contains(a.public()).unwrap());
        assert!(ak.keys().unwrap().is_empty());
        assert!(ak.add(a.public(), "alice").unwrap());
        assert!(!ak.add(a.public(), "alice again").unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(ak.contains(a.public()).unwrap());
        assert!(!ak.contains(b.public()).unwrap());

        // Another instance (another process, say) adds a key: seen without restart.
        let other = AuthorizedKeys::new(&path);
        assert!(other.add(b.public(), "bob").unwrap());
        assert!(ak.contains(b.public()).unwrap());

        // A hand-written comment and a file that lacks its final newline.
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("# keep me\n");
        text.push_str(&authorized_key_line(c.public(), "carol"));
        fs::write(&path, &text).unwrap();
        assert!(ak.add(keys()[0].public(), "dup").is_ok());
        let d = KeyPair::generate(2048).unwrap();
        assert!(ak.add(d.public(), "dave").unwrap());
        let names: Vec<String> = ak.keys().unwrap().into_iter().map(|(_, c)| c).collect();
        assert_eq!(names, ["alice", "bob", "carol", "dave"]);

        assert!(ak.remove(&b.fingerprint()).unwrap());
        assert!(!ak.remove(&b.fingerprint()).unwrap());
        assert!(!other.contains(b.public()).unwrap());
        assert!(other.contains(c.public()).unwrap());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("# keep me\n"));
        assert_eq!(text.lines().count(), 4);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // No temporary files left behind.
        assert_eq!(fs::read_dir(dir.join("sub")).unwrap().count(), 1);

        // A broken line is reported with file and line number.
        fs::write(&path, format!("{text}garbage\n")).unwrap();
        let e = ak.contains(a.public()).unwrap_err().to_string();
        assert!(e.contains("authorized_keys: line 5"), "{e}");
        assert!(ak.remove(&a.fingerprint()).is_err());
    }

    #[test]
    fn add_from_directory() {
        let dir = TempDir::new();
        let keydir = dir.join("incoming");
        fs::create_dir(&keydir).unwrap();
        let [a, b, c] = keys();
        a.public().save(keydir.join("b-alice.pub")).unwrap();
        b.public().save(keydir.join("a-bob.pem")).unwrap();
        c.save(keydir.join("c-carol.pem"), false).unwrap();
        fs::write(keydir.join("README"), "not a key").unwrap();
        fs::create_dir(keydir.join("d.pub")).unwrap();

        let ak = AuthorizedKeys::new(dir.join("authorized_keys"));
        let out = ak.add_from_path(&keydir).unwrap();
        let names: Vec<_> = out.iter().map(|o| o.source.file_name().unwrap()).collect();
        assert_eq!(names, ["a-bob.pem", "b-alice.pub", "c-carol.pem"]);
        assert_eq!(out[0].result.as_ref().unwrap(), &(b.fingerprint(), true));
        assert_eq!(out[1].result.as_ref().unwrap(), &(a.fingerprint(), true));
        let e = out[2].result.as_ref().unwrap_err().to_string();
        assert!(e.contains("PRIVATE key"), "{e}");
        assert!(!ak.contains(c.public()).unwrap());
        let comments: Vec<_> = ak.keys().unwrap().into_iter().map(|(_, c)| c).collect();
        assert_eq!(comments, ["a-bob", "b-alice"]);

        // A single file; again: already present.
        let out = ak.add_from_path(keydir.join("b-alice.pub")).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].result.as_ref().unwrap(), &(a.fingerprint(), false));
        assert!(ak.add_from_path(dir.join("nothing-here")).is_err());
    }

    #[test]
    fn oversized_trust_file_is_refused() {
        let dir = TempDir::new();
        let path = dir.join("authorized_keys");
        fs::write(&path, vec![b'#'; MAX_TRUST_FILE as usize + 1]).unwrap();
        let e = AuthorizedKeys::new(&path).contains(keys()[0].public()).unwrap_err();
        assert!(matches!(e, Error::TrustFile(_)), "{e}");
    }

    #[test]
    fn known_hosts_check_and_add() {
        let dir = TempDir::new();
        let kh = KnownHosts::new(dir.join("client/known_hosts"));
        let [a, b, _] = keys();
        let (fa, fb) = (a.fingerprint(), b.fingerprint());
        assert_eq!(kh.check("Server.example:888", &fa).unwrap(), HostCheck::Unknown);
        kh.add("Server.example:888", &fa).unwrap();
        kh.add("server.example:888", &fa).unwrap(); // same pair again: nothing to do
        kh.add("[::1]:888", &fb).unwrap();
        assert_eq!(kh.check("server.EXAMPLE:888", &fa).unwrap(), HostCheck::Match);
        assert_eq!(kh.check("server.example:889", &fa).unwrap(), HostCheck::Unknown);
        assert_eq!(
            kh.check("server.example:888", &fb).unwrap(),
            HostCheck::Changed { expected: fa.clone() }
        );
        assert_eq!(kh.check("[::1]:888", &fb).unwrap(), HostCheck::Match);

        let e = kh.add("server.example:888", &fb).unwrap_err();
        assert!(matches!(&e, Error::TrustFile(m) if m.contains("refusing")), "{e}");
        assert_eq!(
            kh.check("server.example:888", &fb).unwrap(),
            HostCheck::Changed { expected: fa.clone() }
        );

        let text = fs::read_to_string(kh.path()).unwrap();
        assert_eq!(text, format!("server.example:888 {fa}\n[::1]:888 {fb}\n"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(kh.path()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644);
        }

        for bad in ["server.example", "::1:888", "a b:1", "h:99999", ":888", "h:"] {
            assert!(matches!(kh.add(bad, &fa), Err(Error::InvalidInput(_))), "{bad}");
        }
    }

    #[test]
    fn a_host_on_several_lines_matches_any_and_reports_its_first() {
        let dir = TempDir::new();
        let kh = KnownHosts::new(dir.join("known_hosts"));
        let [a, b, c] = keys();
        let (fa, fb, fc) = (a.fingerprint(), b.fingerprint(), c.fingerprint());
        // Two keys for one host can only come from editing the file by hand.
        fs::write(kh.path(), format!("h:1 {fa}\nother:1 {fc}\nh:1 {fb}\n")).unwrap();
        assert_eq!(kh.check("h:1", &fa).unwrap(), HostCheck::Match);
        assert_eq!(kh.check("h:1", &fb).unwrap(), HostCheck::Match, "a later line matches");
        assert_eq!(kh.check("h:1", &fc).unwrap(), HostCheck::Changed { expected: fa });
    }

    #[test]
    fn known_hosts_parsing() {
        let fa = keys()[0].fingerprint();
        let text = format!("# hosts\n\nfoo:1 {fa} the foo server\n");
        let parsed = parse_known_hosts(&text).unwrap();
        assert_eq!(parsed, [("foo:1".to_string(), fa.clone(), "the foo server".to_string())]);
        let e = parse_known_hosts(&format!("{text}foo:1 MD5:aa\n")).unwrap_err().to_string();
        assert!(e.contains("line 4"), "{e}");
        assert!(parse_known_hosts(&format!("foo {fa}\n")).is_err());

        // Appending to a file without a final newline keeps the lines apart.
        let dir = TempDir::new();
        let kh = KnownHosts::new(dir.join("known_hosts"));
        fs::write(kh.path(), format!("foo:1 {fa}")).unwrap();
        kh.add("bar:2", &fa).unwrap();
        assert_eq!(parse_known_hosts(&fs::read_to_string(kh.path()).unwrap()).unwrap().len(), 2);
    }
}
