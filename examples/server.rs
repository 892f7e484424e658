//! The original's `server/main.py`: print each message received and answer.
//!
//! ```text
//! cargo run --example server [-- LISTEN_ADDR]      (default 127.0.0.1:8888)
//! ```
//!
//! Keys live in `$TMPDIR/ovtp-demo/` (throwaway, generated on first run). The
//! demo client's key is authorized there by `examples/client.rs`.

use ovtp::{AuthorizedKeys, KeyPair, Payload, Reply, Request, Server, error::escape_control};
use std::path::Path;

fn load_or_generate(path: &Path) -> ovtp::Result<KeyPair> {
    if path.exists() {
        return KeyPair::load(path);
    }
    let keys = KeyPair::generate(3072)?;
    keys.save(path, false)?;
    keys.public().save(&path.with_extension("pub"))?;
    eprintln!(
        "generated a throwaway key pair: {} (and .pub)",
        path.display()
    );
    Ok(keys)
}

fn main() -> ovtp::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8888".into());
    let dir = std::env::temp_dir().join("ovtp-demo");
    std::fs::create_dir_all(&dir)?;
    let keys = load_or_generate(&dir.join("server_key"))?;
    let authorized = AuthorizedKeys::new(dir.join("authorized_keys"));

    let server = Server::bind(&listen, keys, authorized, |request: Request<'_>| {
        match &request.payload {
            Payload::Text(text) => {
                println!("message from {}: {}", request.client, escape_control(text))
            }
            Payload::Data(data) => println!("data from {}: {} bytes", request.client, data.len()),
            _ => {}
        }
        Reply::ok("ok")
    })?;
    eprintln!(
        "ovtp server on {} (key {}), files in {}",
        server.local_addr()?,
        server.fingerprint(),
        dir.display()
    );
    server.run()
}
