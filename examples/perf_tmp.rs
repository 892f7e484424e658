use ovtp::*;
use std::time::Instant;
fn main() -> Result<()> {
    let mb: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(1024);
    let dir = std::path::Path::new("/dev/shm/ovtp-perf");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("files"))?;
    let sk = KeyPair::generate(2048)?;
    let ck = KeyPair::generate(2048)?;
    let ak = AuthorizedKeys::new(dir.join("ak"));
    ak.add(ck.public(), "c")?;
    let cfg = ServerConfig {
        files_dir: Some(dir.join("files")),
        ..Default::default()
    };
    let server = Server::bind_with("127.0.0.1:0", sk.clone(), ak, cfg, |_r: Request<'_>| {
        Reply::ok("")
    })?;
    let addr = server.local_addr()?;
    let stop = server.stopper()?;
    let t = std::thread::spawn(move || server.run());
    let src = dir.join("src.bin");
    {
        let mut f = std::fs::File::create(&src)?;
        let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
        for _ in 0..mb {
            std::io::Write::write_all(&mut f, &chunk)?;
        }
    }
    let mut c = Client::connect(
        &addr.to_string(),
        ck,
        HostTrust::Fingerprint(sk.fingerprint()),
    )?;
    let t0 = Instant::now();
    c.send_file(&src, "up.bin")?;
    let up = t0.elapsed();
    let t0 = Instant::now();
    c.get_file("up.bin", dir.join("down.bin"))?;
    let down = t0.elapsed();
    let total = (mb as f64) * 1.048576;
    println!(
        "upload {:.0} MB/s, download {:.0} MB/s",
        total / up.as_secs_f64(),
        total / down.as_secs_f64()
    );
    let status = std::fs::read_to_string("/proc/self/status")?;
    for l in status.lines() {
        if l.starts_with("VmHWM") {
            println!("{l}");
        }
    }
    stop.stop();
    t.join().unwrap()?;
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
