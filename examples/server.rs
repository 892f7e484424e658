//! The original's `server/main.py`: print each message received and answer.
//!
//! ```text
//! cargo run --example server [-- LISTEN_ADDR [FILES_DIR]]   (default 127.0.0.1:8888)
//! ```
//!
//! It shows both kinds of handler. Without FILES_DIR, a closure: it answers
//! messages, and every upload and download is refused, whatever it returns.
//! With FILES_DIR, [`Archive`], a [`Handler`] that also decides files: it takes
//! uploads under 100 MB and serves every file of that directory.
//!
//! Keys live in `$TMPDIR/ovtp-demo/` (throwaway, generated on first run). The
//! demo client's key is authorized there by `examples/client.rs`.

use ovtp::{
    AuthorizedKeys, Handler, KeyPair, Payload, Reply, Request, Server, ServerConfig, escape_control,
};
use std::path::{Path, PathBuf};

/// Print a message and answer "ok".
fn print_message(request: Request<'_>) -> Reply {
    match &request.payload {
        Payload::Text(text) => {
            println!("message from {}: {}", request.client, escape_control(text))
        }
        Payload::Data(data) => println!("data from {}: {} bytes", request.client, data.len()),
        _ => {}
    }
    Reply::ok("ok")
}

/// Messages as above, and files: uploads under 100 MB, every download.
struct Archive;

impl Handler for Archive {
    fn message(&self, request: Request<'_>) -> Reply {
        print_message(request)
    }
    fn file_offer(&self, request: Request<'_>) -> Reply {
        match request.payload {
            Payload::FileOffer { size, .. } if size > 100_000_000 => Reply::new(1, "over 100 MB"),
            _ => Reply::ok(""),
        }
    }
    fn file_received(&self, request: Request<'_>) -> Reply {
        if let Payload::FileReceived { name, size, .. } = &request.payload {
            println!("stored {} ({size} bytes) from {}", escape_control(name), request.client);
        }
        Reply::ok("stored")
    }
    fn file_request(&self, _: Request<'_>) -> Reply {
        Reply::ok("")
    }
}

fn load_or_generate(path: &Path) -> ovtp::Result<KeyPair> {
    if path.exists() {
        return KeyPair::load(path);
    }
    let keys = KeyPair::generate(3072)?;
    keys.save(path, false)?;
    keys.public().save(path.with_extension("pub"))?;
    eprintln!("generated a throwaway key pair: {} (and .pub)", path.display());
    Ok(keys)
}

fn main() -> ovtp::Result<()> {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8888".into());
    let dir = std::env::temp_dir().join("ovtp-demo");
    std::fs::create_dir_all(&dir)?;
    let keys = load_or_generate(&dir.join("server_key"))?;
    let authorized = AuthorizedKeys::new(dir.join("authorized_keys"));

    let files: Option<PathBuf> = std::env::args().nth(2).map(PathBuf::from);
    let server = match files {
        None => Server::bind(&listen, keys, authorized, print_message)?,
        Some(dir) => {
            let config = ServerConfig { files_dir: Some(dir), ..ServerConfig::default() };
            Server::bind_with(&listen, keys, authorized, config, Archive)?
        }
    };
    eprintln!(
        "ovtp server on {} (key {}), keys in {}",
        server.local_addr()?,
        server.fingerprint(),
        dir.display()
    );
    server.run()
}
