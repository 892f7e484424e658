//! RSA keys: a party's key pair, the public keys of others, and fingerprints.
//!
//! Private keys are stored as unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`, as
//! `openssl genpkey -algorithm RSA` writes them) with mode 0600; PKCS#1
//! (`BEGIN RSA PRIVATE KEY`) is read too. Public keys are stored as SPKI PEM
//! (`BEGIN PUBLIC KEY`). Moduli from [`MIN_RSA_BITS`] to [`MAX_RSA_BITS`] are
//! accepted, from anyone, so that a stranger cannot make us work with a tiny or
//! huge key.
//!
//! Signatures are RSA-PSS with SHA-256 (salt 32 bytes); key transport is
//! RSA-OAEP with SHA-256 and an empty label. PKCS#1 v1.5 is never used.

use crate::constants::{MAX_PUBLIC_KEY_DER, MAX_RSA_BITS, MIN_RSA_BITS};
use crate::error::{Error, Result};
use crate::rand::Rng;
use base64ct::{Base64Unpadded, Encoding};
use cbc::cipher::zeroize::Zeroizing;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::der::pem;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest key file read; a 4096-bit private key PEM is about 3.3 KB.
pub(crate) const MAX_KEY_FILE: u64 = 64 * 1024;

/// Key sizes [`KeyPair::generate`] makes.
const GENERATE_BITS: [usize; 3] = [2048, 3072, 4096];

/// An RSA public key, kept together with its SPKI DER encoding.
///
/// Two keys are equal when their DER encodings are equal (compared first) and
/// so their keys; the encoding is canonical (checked on input).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    der: Vec<u8>,
    key: rsa::PublicKey,
}

impl PublicKey {
    /// Parse an SPKI DER public key, refusing oversized input, non-canonical
    /// encodings and moduli outside the accepted range.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        // Checked before parsing so that a stranger's hello cannot make us parse a huge blob.
        if der.len() > MAX_PUBLIC_KEY_DER {
            return Err(Error::Key(format!(
                "public key is {} bytes of DER, more than the {MAX_PUBLIC_KEY_DER} accepted",
                der.len()
            )));
        }
        let key = rsa::PublicKey::from_public_key_der(der)
            .map_err(key_err("not an RSA public key (SPKI DER)"))?;
        let parsed = Self::from_rsa(key)?;
        // The fingerprint hashes the DER, so one key must have exactly one encoding
        // (this also refuses, for example, the RSASSA-PSS algorithm identifier).
        if parsed.der != der {
            return Err(Error::Key(
                "public key DER is not in canonical form (SPKI, rsaEncryption)".into(),
            ));
        }
        Ok(parsed)
    }

    /// Wrap an `rsa` key after checking its size; computes the canonical DER.
    fn from_rsa(key: rsa::PublicKey) -> Result<Self> {
        let bits = key.n().bit_width_vartime() as usize;
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(Error::Key(format!(
                "RSA key has {bits} bits; ovtp accepts {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
            )));
        }
        let der = key.to_public_key_der().map_err(key_err("cannot encode public key"))?.into_vec();
        Ok(PublicKey { key, der })
    }

    /// The SPKI DER encoding.
    pub fn to_der(&self) -> &[u8] {
        &self.der
    }

    /// Parse a PEM public key: SPKI (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`).
    pub fn from_pem(pem: &str) -> Result<Self> {
        let pem = pem.trim();
        let label = pem::decode_label(pem.as_bytes()).map_err(key_err("not a PEM public key"))?;
        match label {
            "PUBLIC KEY" => {
                let (_, doc) =
                    rsa::pkcs8::Document::from_pem(pem).map_err(key_err("bad PEM public key"))?;
                Self::from_der(doc.as_bytes())
            }
            "RSA PUBLIC KEY" => rsa::PublicKey::from_pkcs1_pem(pem)
                .map_err(key_err("bad PKCS#1 public key"))
                .and_then(Self::from_rsa),
            l if l.contains("PRIVATE KEY") => {
                Err(Error::Key("this is a private key, where a public key is expected".into()))
            }
            other => Err(Error::Key(format!(
                "PEM type \"{other}\" is not a public key (expected BEGIN PUBLIC KEY)"
            ))),
        }
    }

    /// SPKI PEM (`BEGIN PUBLIC KEY`) with LF line endings and base64 lines of 64
    /// characters (RFC 7468).
    pub fn to_pem(&self) -> String {
        // Cannot fail: the label is valid and the DER is far below any length limit.
        pem::encode_string("PUBLIC KEY", LineEnding::LF, &self.der).expect("a key always encodes")
    }

    /// Read a PEM public key file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        parse_key_file(path.as_ref(), false, Self::from_pem)
    }

    /// Write the key as SPKI PEM, mode 0644, replacing the file atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), self.to_pem().as_bytes(), 0o644, true)
    }

    /// `SHA256:` + unpadded base64 of SHA-256 over the SPKI DER.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_der(&self.der)
    }

    /// Size of the modulus in bits.
    pub fn bits(&self) -> usize {
        self.key.n().bit_width_vartime() as usize
    }

    /// Verify an RSA-PSS (SHA-256, salt 32) signature over `msg`.
    pub(crate) fn verify_pss(&self, msg: &[u8], sig: &[u8]) -> Result<()> {
        if sig.len() != self.key.size() {
            return Err(Error::BadSignature);
        }
        self.key.pss_verify::<Sha256>(msg, sig).map_err(|_| Error::BadSignature)
    }

    /// Encrypt `msg` to this key with RSA-OAEP (SHA-256, empty label).
    pub(crate) fn oaep_encrypt(&self, rng: &mut Rng, msg: &[u8]) -> Result<Vec<u8>> {
        self.key
            .oaep_encrypt_with_rng::<Sha256, _>(rng, msg)
            .map_err(|e| Error::InvalidInput(format!("RSA-OAEP encryption failed: {e}")))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

/// A key fingerprint, `SHA256:` + unpadded standard base64 of SHA-256 over the
/// SPKI DER, exactly as OpenSSH prints fingerprints (50 characters).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of an SPKI DER public key.
    pub fn of_der(spki_der: &[u8]) -> Self {
        Fingerprint(format!("SHA256:{}", Base64Unpadded::encode_string(&Sha256::digest(spki_der))))
    }

    /// The text form, `SHA256:...`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Fingerprint {
    type Err = Error;

    /// Accepts exactly `SHA256:` + 43 base64 characters encoding 32 bytes.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidInput(format!(
                "\"{}\" is not a key fingerprint (expected SHA256: followed by 43 base64 characters)",
                crate::error::escape_control(s)
            ))
        };
        let b64 = s.strip_prefix("SHA256:").ok_or_else(bad)?;
        let mut digest = [0u8; 32];
        // base64ct refuses non-canonical trailing bits, so the text form is unique.
        match Base64Unpadded::decode(b64, &mut digest) {
            Ok(d) if d.len() == 32 && b64.len() == 43 => Ok(Fingerprint(s.to_owned())),
            _ => Err(bad()),
        }
    }
}

/// This party's RSA key pair.
///
/// Clones share the private key and the count of private-key operations.
#[derive(Clone)]
pub struct KeyPair {
    // Shared rather than copied, so that the secret exists once in memory
    // (`rsa::PrivateKey` zeroizes itself on drop).
    private: Arc<rsa::PrivateKey>,
    public: PublicKey,
    private_ops: Arc<AtomicU64>,
    /// The file it was loaded from: a server's files directory may not hold it.
    path: Option<Arc<Path>>,
}

impl KeyPair {
    /// Generate a key of 2048, 3072 or 4096 bits with the system random source.
    pub fn generate(bits: usize) -> Result<Self> {
        if !GENERATE_BITS.contains(&bits) {
            return Err(Error::Key(format!(
                "cannot generate a {bits}-bit key; choose 2048, 3072 or 4096"
            )));
        }
        let key = rsa::PrivateKey::new(&mut Rng::system(), bits);
        Self::from_rsa(key.map_err(key_err("key generation failed"))?)
    }

    fn from_rsa(private: rsa::PrivateKey) -> Result<Self> {
        let public = PublicKey::from_rsa(private.to_public_key())?;
        Ok(KeyPair { private: Arc::new(private), public, private_ops: Arc::default(), path: None })
    }

    /// Parse an unencrypted private key: PKCS#8 (`BEGIN PRIVATE KEY`) or
    /// PKCS#1 (`BEGIN RSA PRIVATE KEY`). Encrypted keys are refused.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let pem = pem.trim();
        // Both markers contain characters outside base64, so they cannot occur by chance.
        if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
            || pem.contains("Proc-Type: 4,ENCRYPTED")
        {
            return Err(Error::Key(
                "the private key is encrypted with a passphrase; ovtp needs an unencrypted key \
                 (protected by file permissions). Decrypt it with: openssl pkey -in KEY -out NEWKEY"
                    .into(),
            ));
        }
        let label = pem::decode_label(pem.as_bytes()).map_err(key_err("not a PEM private key"))?;
        // The decoders keep the decoded DER in zeroizing buffers.
        let key = match label {
            "PRIVATE KEY" => rsa::PrivateKey::from_pkcs8_pem(pem)
                .map_err(|e| format!("bad PKCS#8 RSA private key: {e}")),
            "RSA PRIVATE KEY" => rsa::PrivateKey::from_pkcs1_pem(pem)
                .map_err(|e| format!("bad PKCS#1 RSA private key: {e}")),
            l if l.contains("PUBLIC KEY") => {
                Err("this is a public key, where the private key is expected".into())
            }
            other => Err(format!(
                "PEM type \"{other}\" is not an RSA private key (expected BEGIN PRIVATE KEY)"
            )),
        };
        Self::from_rsa(key.map_err(Error::Key)?)
    }

    /// The private key as unencrypted PKCS#8 PEM (LF line endings).
    ///
    /// **This is the secret.** The returned string is wiped when dropped; do not
    /// copy it into ordinary `String`s, log it or send it anywhere.
    pub fn to_pem(&self) -> Zeroizing<String> {
        // `rsa` fails to encode only multi-prime keys or keys without CRT values.
        // Every KeyPair comes from `PrivateKey::new` or from PKCS#1/PKCS#8 decoding,
        // which yield two-prime keys with precomputed CRT values, so this cannot fail.
        self.private
            .to_pkcs8_pem(LineEnding::LF)
            .expect("a two-prime RSA key with CRT values always encodes")
    }

    /// Read a private key file, refusing it if group or others can access it.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let keys = parse_key_file(path, true, Self::from_pem)?;
        Ok(KeyPair { path: Some(path.into()), ..keys })
    }

    /// The file this key was [`load`](Self::load)ed from, if it was.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Write the private key (PKCS#8 PEM) with mode 0600, atomically. Refuses to
    /// replace an existing file unless `overwrite`. The public key is saved
    /// separately, with `public().save()`.
    pub fn save(&self, private_path: impl AsRef<Path>, overwrite: bool) -> Result<()> {
        let private_path = private_path.as_ref();
        if !overwrite && private_path.exists() {
            return Err(exists_error(private_path));
        }
        write_atomic(private_path, self.to_pem().as_bytes(), 0o600, overwrite)
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The fingerprint of the public half.
    pub fn fingerprint(&self) -> Fingerprint {
        self.public.fingerprint()
    }

    /// Number of RSA private-key operations done with this key (shared across clones).
    /// Test hook: proves strangers cost none.
    pub fn private_operations(&self) -> u64 {
        self.private_ops.load(Ordering::Relaxed)
    }

    /// Sign `msg` with RSA-PSS (SHA-256, salt 32). A private-key operation.
    pub(crate) fn sign_pss(&self, rng: &mut Rng, msg: &[u8]) -> Result<Vec<u8>> {
        self.private_ops.fetch_add(1, Ordering::Relaxed);
        self.private
            .pss_sign_with_rng::<Sha256, _>(rng, msg)
            .map_err(key_err("RSA-PSS signing failed"))
    }

    /// Decrypt an RSA-OAEP (SHA-256, empty label) ciphertext. A private-key
    /// operation, done only for ciphertexts of the modulus size.
    pub(crate) fn oaep_decrypt(&self, rng: &mut Rng, ct: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if ct.len() != self.public.key.size() {
            return Err(Error::Malformed("key transport"));
        }
        self.private_ops.fetch_add(1, Ordering::Relaxed);
        self.private
            .oaep_decrypt_with_rng::<Sha256, _>(rng, ct)
            .map(Zeroizing::new)
            // One opaque error whatever failed, so a peer learns nothing from it.
            .map_err(|_| Error::Malformed("key transport"))
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("fingerprint", &self.fingerprint().as_str())
            .finish_non_exhaustive()
    }
}

// ---- File helpers, shared with `trust`. ----

/// Maps a parser's or the `rsa` crate's error `e` to `Error::Key("{what}: {e}")`.
fn key_err<E: fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::Key(format!("{what}: {e}"))
}

/// An I/O error whose message names the file.
pub(crate) fn io_error(path: &Path, e: io::Error) -> Error {
    Error::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Prefix a key or trust-file error with the file it came from.
pub(crate) fn with_path(path: &Path, e: Error) -> Error {
    match e {
        Error::Key(m) => Error::Key(format!("{}: {m}", path.display())),
        Error::TrustFile(m) => Error::TrustFile(format!("{}: {m}", path.display())),
        other => other,
    }
}

fn exists_error(path: &Path) -> Error {
    Error::Key(format!(
        "{} already exists; refusing to overwrite a key. Use it as it is, \
         remove it first, or choose another path",
        path.display()
    ))
}

/// Read a key file (at most [`MAX_KEY_FILE`] bytes) and parse its text with
/// `parse`; parse errors name the file. With `secret` (a private key) see [`read_capped`].
pub(crate) fn parse_key_file<T>(
    path: &Path,
    secret: bool,
    parse: impl FnOnce(&str) -> Result<T>,
) -> Result<T> {
    let bytes = read_capped(path, MAX_KEY_FILE, Error::Key, secret)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::Key("not a PEM text file".into()));
    text.and_then(parse).map_err(|e| with_path(path, e))
}

/// Read a whole file of at most `limit` bytes into a buffer that is wiped
/// after use; larger files are an error (made by `kind`, e.g. `Error::Key`), so
/// that a huge file cannot exhaust memory. With `secret` (a private key), the
/// file is refused if group or others may access it.
pub(crate) fn read_capped(
    path: &Path,
    limit: u64,
    kind: fn(String) -> Error,
    secret: bool,
) -> Result<Zeroizing<Vec<u8>>> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    // Checked on the open file, so the file checked is the file read.
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(Error::Key(format!(
                "private key {p} is accessible by group or others (mode {mode:04o}); \
                 ovtp refuses to use it. Fix it with: chmod 600 {p}",
                p = path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = secret;
    // Allocate the final size up front: a growing Vec would leave unwiped copies behind.
    let mut buf = Zeroizing::new(Vec::with_capacity(meta.len().min(limit) as usize + 1));
    file.take(limit + 1).read_to_end(&mut buf).map_err(|e| io_error(path, e))?;
    if buf.len() as u64 > limit {
        let msg = format!("{} is larger than {limit} bytes; refusing to read it", path.display());
        return Err(kind(msg));
    }
    Ok(buf)
}

/// Open `path` with `options`; a file it creates has permission bits `mode`
/// (on Unix; elsewhere the default).
pub(crate) fn open_mode(opts: &mut fs::OpenOptions, mode: u32, path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    opts.open(path)
}

/// Write `contents` to `path` through a temporary file in the same directory,
/// created with `mode` from the start, synced, then moved into place; so the
/// final name never holds a partial file. Without `overwrite`, an existing
/// target is an error (the move is a hard link, which never replaces).
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32, overwrite: bool) -> Result<()> {
    // A fresh name beside `path` for the temporary file.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|s| s.to_string_lossy()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = open_mode(fs::OpenOptions::new().write(true).create_new(true), mode, &tmp);
    let result = result.and_then(|mut file| {
        // Exactly `mode`, whatever the umask (it can only have removed bits).
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()
    });
    let result = result.and_then(|()| match overwrite {
        true => fs::rename(&tmp, path),
        false => fs::hard_link(&tmp, path).and_then(|()| fs::remove_file(&tmp)),
    });
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        if e.kind() == io::ErrorKind::AlreadyExists && !overwrite {
            return Err(exists_error(path));
        }
        return Err(io_error(path, e));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;
    use std::path::PathBuf;
    use std::sync::OnceLock;

    /// Three 2048-bit keys, generated once per test binary from a fixed seed.
    pub(crate) fn keys() -> &'static [KeyPair; 3] {
        static KEYS: OnceLock<[KeyPair; 3]> = OnceLock::new();
        KEYS.get_or_init(|| {
            let mut rng = Rng::from_seed([42; 32]);
            let mut key = || rsa::PrivateKey::new(&mut rng, 2048).unwrap();
            [(); 3].map(|()| KeyPair::from_rsa(key()).unwrap())
        })
    }

    /// A directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new() -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("ovtp-unit-{}-{n}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        pub(crate) fn join(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{TempDir, keys};
    use super::*;

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn pem_der_and_fingerprint_round_trip() {
        let kp = &keys()[0];
        let pk = kp.public();
        assert_eq!(pk.bits(), 2048);
        assert_eq!(&PublicKey::from_der(pk.to_der()).unwrap(), pk);
        let pem = pk.to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(pem.ends_with("-----END PUBLIC KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(&PublicKey::from_pem(&pem).unwrap(), pk);

        let back = KeyPair::from_pem(&kp.to_pem()).unwrap();
        assert_eq!(back.public(), pk);
        assert!(kp.to_pem().starts_with("-----BEGIN PRIVATE KEY-----\n"));

        let fp = kp.fingerprint();
        assert!(fp.as_str().starts_with("SHA256:"));
        assert_eq!(fp.as_str().len(), 50);
        assert_eq!(fp, Fingerprint::of_der(pk.to_der()));
        assert_eq!(fp.as_str().parse::<Fingerprint>().unwrap(), fp);
        assert_ne!(fp, keys()[1].fingerprint());
        assert_eq!(format!("{pk:?}"), format!("PublicKey({fp})"));
        assert!(!format!("{kp:?}").contains("BEGIN"));
    }

    #[test]
    fn pkcs1_forms_are_accepted() {
        use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
        let kp = &keys()[0];
        let pem1 = kp.private.to_pkcs1_pem(LineEnding::LF).unwrap();
        assert!(pem1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert_eq!(KeyPair::from_pem(&pem1).unwrap().public(), kp.public());
        let pub1 = kp.public().key.to_pkcs1_pem(LineEnding::LF).unwrap();
        assert!(pub1.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
        assert_eq!(&PublicKey::from_pem(&pub1).unwrap(), kp.public());
        // The wrong kind of key is named as such.
        let e = KeyPair::from_pem(&kp.public().to_pem()).unwrap_err();
        assert!(e.to_string().contains("public key"), "{e}");
        let e = PublicKey::from_pem(&kp.to_pem()).unwrap_err();
        assert!(e.to_string().contains("private key"), "{e}");
    }

    #[test]
    fn fingerprint_parsing_is_strict() {
        let a = |n: usize| "A".repeat(n);
        assert!(format!("SHA256:{}", a(43)).parse::<Fingerprint>().is_ok());
        for bad in [
            String::new(),
            "SHA256:".into(),
            format!("sha256:{}", a(43)),
            format!("SHA256:{}", a(42)),
            format!("SHA256:{}", a(44)),
            format!("SHA256:{}=", a(42)),
            format!("SHA256:{}!", a(42)),
            format!(" SHA256:{}", a(43)),
            // Non-canonical: the last character carries bits beyond the 32 bytes.
            format!("SHA256:{}B", a(42)),
        ] {
            assert!(matches!(bad.parse::<Fingerprint>(), Err(Error::InvalidInput(_))), "{bad}");
        }
    }

    #[test]
    fn sign_verify_and_oaep_round_trip() {
        let kp = &keys()[1];
        let mut rng = Rng::system();
        let sig = kp.sign_pss(&mut rng, b"transcript").unwrap();
        assert_eq!(sig.len(), 256);
        kp.public().verify_pss(b"transcript", &sig).unwrap();
        assert!(matches!(kp.public().verify_pss(b"transcripT", &sig), Err(Error::BadSignature)));
        let mut tampered = sig.clone();
        tampered[100] ^= 1;
        assert!(matches!(
            kp.public().verify_pss(b"transcript", &tampered),
            Err(Error::BadSignature)
        ));
        assert!(matches!(
            kp.public().verify_pss(b"transcript", &sig[1..]),
            Err(Error::BadSignature)
        ));
        assert!(matches!(
            keys()[2].public().verify_pss(b"transcript", &sig),
            Err(Error::BadSignature)
        ));

        let ct = kp.public().oaep_encrypt(&mut rng, &[7; 32]).unwrap();
        assert_eq!(kp.oaep_decrypt(&mut rng, &ct).unwrap().as_slice(), &[7; 32]);
        let mut bad = ct.clone();
        bad[5] ^= 1;
        assert!(matches!(kp.oaep_decrypt(&mut rng, &bad), Err(Error::Malformed("key transport"))));
    }

    #[test]
    fn private_operation_counter_counts_only_private_operations() {
        let kp = KeyPair::generate(2048).unwrap();
        let clone = kp.clone();
        let mut rng = Rng::system();
        assert_eq!(kp.private_operations(), 0);
        let sig = kp.sign_pss(&mut rng, b"m").unwrap();
        kp.public().verify_pss(b"m", &sig).unwrap();
        let ct = kp.public().oaep_encrypt(&mut rng, b"secret").unwrap();
        let _ = kp.fingerprint();
        assert_eq!(clone.private_operations(), 1);
        // A ciphertext of the wrong size is refused before any private operation.
        assert!(kp.oaep_decrypt(&mut rng, &ct[1..]).is_err());
        assert_eq!(kp.private_operations(), 1);
        clone.oaep_decrypt(&mut rng, &ct).unwrap();
        assert_eq!(kp.private_operations(), 2);
    }

    #[test]
    fn key_sizes_outside_the_range_are_refused() {
        assert!(matches!(KeyPair::generate(1024), Err(Error::Key(_))));
        assert!(matches!(KeyPair::generate(2049), Err(Error::Key(_))));
        let mut rng = Rng::from_seed([1; 32]);
        let small = rsa::PrivateKey::new(&mut rng, 1024).unwrap();
        let pem = small.to_pkcs8_pem(LineEnding::LF).unwrap();
        let e = KeyPair::from_pem(&pem).unwrap_err();
        assert!(e.to_string().contains("1024 bits"), "{e}");
        let der = small.to_public_key().to_public_key_der().unwrap();
        let e = PublicKey::from_der(der.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("1024 bits"), "{e}");
        assert!(
            PublicKey::from_der(&[0x30; MAX_PUBLIC_KEY_DER + 1])
                .unwrap_err()
                .to_string()
                .contains("more than")
        );
    }

    #[test]
    fn generates_3072_bit_keys() {
        let kp = KeyPair::generate(3072).unwrap();
        assert_eq!(kp.public().bits(), 3072);
        let mut rng = Rng::system();
        let sig = kp.sign_pss(&mut rng, b"m").unwrap();
        assert_eq!(sig.len(), 384);
        kp.public().verify_pss(b"m", &sig).unwrap();
    }

    #[test]
    fn non_canonical_der_is_refused() {
        let der = keys()[0].public().to_der().to_vec();
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(PublicKey::from_der(&trailing).is_err());
        // The same key under the RSASSA-PSS algorithm identifier (no parameters):
        // `rsa` accepts it, but it is another encoding of the key, so we do not.
        assert_eq!(&der[4..19], b"\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00");
        let len = u16::from_be_bytes([der[2], der[3]]) - 2;
        let mut pss = vec![0x30, 0x82];
        pss.extend_from_slice(&len.to_be_bytes());
        pss.extend_from_slice(b"\x30\x0b\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0a");
        pss.extend_from_slice(&der[19..]);
        assert!(rsa::PublicKey::from_public_key_der(&pss).is_ok());
        let e = PublicKey::from_der(&pss).unwrap_err();
        assert!(e.to_string().contains("canonical"), "{e}");
    }

    #[test]
    fn encrypted_and_garbage_keys_are_refused_with_advice() {
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = KeyPair::from_pem(enc).unwrap_err().to_string();
        assert!(e.contains("unencrypted") && e.contains("openssl pkey"), "{e}");
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                      DEK-Info: AES-128-CBC,00\n\nMIIB\n-----END RSA PRIVATE KEY-----\n";
        assert!(KeyPair::from_pem(legacy).unwrap_err().to_string().contains("unencrypted"));
        assert!(KeyPair::from_pem("hello").is_err());
        assert!(PublicKey::from_pem("hello").is_err());
    }

    #[test]
    fn save_and_load_with_permissions() {
        let dir = TempDir::new();
        let kp = &keys()[0];
        let private = dir.join("id");
        let public = dir.join("id.pub");
        kp.save(&private, false).unwrap();
        kp.public().save(&public).unwrap();
        #[cfg(unix)]
        {
            assert_eq!(mode_of(&private), 0o600);
            assert_eq!(mode_of(&public), 0o644);
        }
        assert_eq!(KeyPair::load(&private).unwrap().public(), kp.public());
        assert_eq!(&PublicKey::load(&public).unwrap(), kp.public());

        // Overwriting is refused unless asked for, and the file is untouched.
        let other = &keys()[1];
        let e = other.save(&private, false).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(KeyPair::load(&private).unwrap().public(), kp.public());
        other.save(&private, true).unwrap();
        assert_eq!(KeyPair::load(&private).unwrap().public(), other.public());
        // No temporary files left behind.
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 2);

        let e = KeyPair::load(dir.join("missing")).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
        fs::write(dir.join("junk.pub"), "junk").unwrap();
        let e = PublicKey::load(dir.join("junk.pub")).unwrap_err().to_string();
        assert!(e.contains("junk.pub"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn private_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        let path = dir.join("id");
        keys()[0].save(&path, false).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = KeyPair::load(&path).unwrap_err();
        assert!(matches!(e, Error::Key(_)));
        let e = e.to_string();
        assert!(e.contains("chmod 600") && e.contains("mode 0644"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(KeyPair::load(&path).is_err());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(KeyPair::load(&path).is_ok());
    }
}
