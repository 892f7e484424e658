//! What the sections measure against: key pairs, the echo handler, the
//! client and server settings, and an in-process echo server.

use crate::harness::{BenchResult, err, temp_dir};
use crate::tempdir::TempDir;
use ovtp::{
    AuthorizedKeys, Client, ClientConfig, HostTrust, KeyPair, Payload, Reply, Request, Server,
    ServerConfig, Stopper,
};
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

/// A server key and a client key of one size.
pub struct KeySet {
    pub bits: usize,
    pub server: KeyPair,
    pub client: KeyPair,
}

impl KeySet {
    pub fn generate(bits: usize) -> BenchResult<KeySet> {
        eprintln!("  (generating two RSA-{bits} keys)");
        Ok(KeySet {
            bits,
            server: KeyPair::generate(bits).map_err(err("key generation"))?,
            client: KeyPair::generate(bits).map_err(err("key generation"))?,
        })
    }
}

/// Echo handler: data and text come back unchanged; file offers, requests and
/// arrivals are accepted (the file rows).
pub fn echo(req: Request<'_>) -> Reply {
    match req.payload {
        Payload::Data(d) => Reply::ok(d),
        Payload::Text(t) => Reply::ok(t),
        Payload::FileOffer { .. } | Payload::FileRequest { .. } | Payload::FileReceived { .. } => {
            Reply::ok("")
        }
        _ => Reply::new(1, "unexpected payload"),
    }
}

pub fn client_config() -> ClientConfig {
    ClientConfig {
        handshake_timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(30),
        retries: 0,
        ..ClientConfig::default()
    }
}

pub fn server_config() -> ServerConfig {
    ServerConfig {
        handshake_timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        ..ServerConfig::default()
    }
}

/// An in-process echo server on 127.0.0.1:0; stopped and joined on drop.
pub struct LocalServer {
    addr: SocketAddr,
    trust: HostTrust,
    stopper: Stopper,
    thread: Option<JoinHandle<ovtp::Result<()>>>,
    _dir: TempDir,
}

impl LocalServer {
    pub fn start(keys: &KeySet) -> BenchResult<LocalServer> {
        let dir = temp_dir("srv")?;
        let ak = AuthorizedKeys::new(dir.join("authorized_keys"));
        ak.add(keys.client.public(), "bench client").map_err(err("authorized_keys"))?;
        let server =
            Server::bind_with("127.0.0.1:0", keys.server.clone(), ak, server_config(), echo)
                .map_err(err("bind"))?;
        let addr = server.local_addr().map_err(err("local_addr"))?;
        let stopper = server.stopper().map_err(err("stopper"))?;
        let trust = HostTrust::Fingerprint(server.fingerprint());
        let thread = Some(std::thread::spawn(move || server.run()));
        Ok(LocalServer { addr, trust, stopper, thread, _dir: dir })
    }

    pub fn connect(&self, keys: &KeySet) -> BenchResult<Client> {
        Client::connect_with(
            &self.addr.to_string(),
            keys.client.clone(),
            self.trust.clone(),
            client_config(),
        )
        .map_err(err("connect"))
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
