//! Interoperability of key files and fingerprints with the `openssl` command.
//! Skipped (with a message) where `openssl` is not installed.

mod common;

use common::TempDir;
use ovtp::{KeyPair, PublicKey};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Run `openssl` with `args`, feeding `stdin`; panics unless it succeeds. Returns stdout.
fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl");
    // Small inputs: they fit in the pipe buffer, so writing before reading cannot deadlock.
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The fingerprint as OpenSSH computes it, by openssl alone, from a private key file.
fn openssl_fingerprint(private_key: &Path) -> String {
    let der = openssl(&["pkey", "-in", p(private_key), "-pubout", "-outform", "DER"], b"");
    let digest = openssl(&["dgst", "-sha256", "-binary"], &der);
    let b64 = openssl(&["base64", "-A"], &digest);
    let b64 = String::from_utf8(b64).unwrap();
    format!("SHA256:{}", b64.trim().trim_end_matches('='))
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(not(unix))]
fn chmod(_: &Path, _: u32) {}

#[test]
fn keys_interoperate_with_openssl() {
    if Command::new("openssl").arg("version").output().is_err() {
        println!("skipping: openssl not found");
        return;
    }
    let dir = TempDir::new("openssl");
    let path = |name: &str| dir.join(name);

    // A key made by openssl loads, in PKCS#8 and in PKCS#1 form.
    let k = path("openssl.key");
    openssl(
        &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", p(&k)],
        b"",
    );
    chmod(&k, 0o600);
    let theirs = KeyPair::load(&k).unwrap();
    assert_eq!(theirs.public().bits(), 2048);
    assert_eq!(theirs.fingerprint().as_str(), openssl_fingerprint(&k));

    let k1 = path("openssl-pkcs1.key");
    openssl(&["pkey", "-in", p(&k), "-traditional", "-out", p(&k1)], b"");
    chmod(&k1, 0o600);
    assert!(std::fs::read_to_string(&k1).unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert_eq!(KeyPair::load(&k1).unwrap().public(), theirs.public());

    let p1 = path("openssl-pkcs1.pub");
    openssl(&["rsa", "-in", p(&k), "-RSAPublicKey_out", "-out", p(&p1)], b"");
    assert_eq!(&PublicKey::load(&p1).unwrap(), theirs.public());

    // An encrypted key is refused with advice.
    let ke = path("encrypted.key");
    openssl(&["pkey", "-in", p(&k), "-aes256", "-passout", "pass:secret", "-out", p(&ke)], b"");
    chmod(&ke, 0o600);
    let e = KeyPair::load(&ke).unwrap_err().to_string();
    assert!(e.contains("unencrypted") && e.contains("openssl pkey"), "{e}");

    // Our files are accepted by openssl, and our fingerprint is openssl's.
    let ours = KeyPair::generate(2048).unwrap();
    let ok = path("ours.key");
    let op = path("ours.pub");
    ours.save(&ok, false).unwrap();
    ours.public().save(&op).unwrap();
    openssl(&["pkey", "-in", p(&ok), "-check", "-noout"], b"");
    openssl(&["pkey", "-pubin", "-in", p(&op), "-noout"], b"");
    assert_eq!(ours.fingerprint().as_str(), openssl_fingerprint(&ok));
    let der = openssl(&["pkey", "-pubin", "-in", p(&op), "-outform", "DER"], b"");
    assert_eq!(der, ours.public().to_der());
}
