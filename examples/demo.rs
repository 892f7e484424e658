//! One command, a server and a client talking on defaults:
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! Starts a server on 127.0.0.1 (a free port), connects a client to it,
//! sends a message and some bytes, prints both sides, and stops. Throwaway
//! keys are generated in `$TMPDIR/ovtp-demo-<pid>/` and removed at the end.

use ovtp::{
    AuthorizedKeys, Client, HostTrust, KeyPair, KnownHosts, Payload, Reply, Request, Server,
};

fn main() -> ovtp::Result<()> {
    let dir = std::env::temp_dir().join(format!("ovtp-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!("throwaway keys and trust files go to {}", dir.display());

    let server_keys = KeyPair::generate(3072)?;
    server_keys.save(dir.join("server_key"), false)?;
    let client_keys = KeyPair::generate(3072)?;
    client_keys.save(dir.join("client_key"), false)?;
    let authorized = AuthorizedKeys::new(dir.join("authorized_keys"));
    authorized.add(client_keys.public(), "demo client")?;

    let server =
        Server::bind("127.0.0.1:0", server_keys, authorized, |req: Request<'_>| {
            match req.payload {
                Payload::Text(text) => {
                    println!(
                        "[server] message from {}: {}",
                        req.client,
                        ovtp::escape_control(&text)
                    );
                    Reply::ok(format!("received {} characters", text.chars().count()))
                }
                Payload::Data(data) => {
                    println!("[server] {} bytes from {}", data.len(), req.client);
                    Reply::ok(format!("received {} bytes", data.len()))
                }
                _ => Reply::new(1, "unsupported"),
            }
        })?;
    let addr = server.local_addr()?;
    println!("[server] listening on {addr}, key {}", server.fingerprint());
    let stopper = server.stopper()?;
    let thread = std::thread::spawn(move || server.run());

    let trust = HostTrust::AcceptNew(KnownHosts::new(dir.join("known_hosts")));
    let mut client = Client::connect(&addr.to_string(), client_keys, trust)?;
    println!("[client] connected; server key {}", client.server_fingerprint().expect("connected"));
    let reply = client.send_message("my_cool_message")?;
    println!("[client] status {}, response: {}", reply.status, reply.text());
    let reply = client.send_data(&[0u8, 1, 2, 255])?;
    println!("[client] status {}, response: {}", reply.status, reply.text());

    drop(client);
    stopper.stop();
    thread.join().expect("server thread")?;
    std::fs::remove_dir_all(&dir)?;
    println!("done; removed {}", dir.display());
    Ok(())
}
