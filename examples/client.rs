//! The original's `client/main.py`: send one message and print the reply.
//!
//! ```text
//! cargo run --example client [-- MESSAGE [SERVER_ADDR]]   (default 127.0.0.1:8888)
//! ```
//!
//! For the demo, the client generates a throwaway key in `$TMPDIR/ovtp-demo/`,
//! authorizes itself in the server's `authorized_keys` there (on a real
//! deployment an operator does that with `ovtp authorize`), and records the
//! server's key on first contact (accept-new) in `known_hosts` there.

use ovtp::{AuthorizedKeys, Client, HostTrust, KeyPair, KnownHosts};

fn main() -> ovtp::Result<()> {
    let message = std::env::args().nth(1).unwrap_or_else(|| "my_cool_message".into());
    let server = std::env::args().nth(2).unwrap_or_else(|| "127.0.0.1:8888".into());
    let dir = std::env::temp_dir().join("ovtp-demo");
    std::fs::create_dir_all(&dir)?;
    let key_path = dir.join("client_key");
    let keys = if key_path.exists() {
        KeyPair::load(&key_path)?
    } else {
        let keys = KeyPair::generate(3072)?;
        keys.save(&key_path, false)?;
        eprintln!("generated a throwaway client key: {}", key_path.display());
        keys
    };
    if AuthorizedKeys::new(dir.join("authorized_keys")).add(keys.public(), "demo client")? {
        eprintln!("authorized the demo client key in {}", dir.join("authorized_keys").display());
    }
    let trust = HostTrust::AcceptNew(KnownHosts::new(dir.join("known_hosts")));
    let mut client = Client::connect(&server, keys, trust)?;
    let reply = client.send_message(&message)?;
    println!("status: {}, response: {}", reply.status, ovtp::escape_control(&reply.text()));
    Ok(())
}
