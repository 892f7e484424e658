//! The raw TCP baselines: one loopback stream (the ceiling row), a TCP echo
//! peer (the round-trip rows), and round trips through an external echo
//! command (`OVTP_BENCH_ECHO_CMD`).

use crate::child::Watchdog;
use crate::harness::{BenchResult, Budget, RECORD, err, mbps, process_cpu, sample};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Stream 1 MiB writes through one loopback connection; returns MB/s and CPU
/// nanoseconds per byte (both ends, from /proc/self/stat).
pub fn tcp_stream(b: Budget) -> BenchResult<(f64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(err("bind"))?;
    let addr = listener.local_addr().map_err(err("local_addr"))?;
    let received = Arc::new(AtomicU64::new(0));
    let rec = received.clone();
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = vec![0u8; RECORD];
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(()),
                n => rec.fetch_add(n as u64, Ordering::Relaxed),
            };
        }
    });
    let mut s = TcpStream::connect(addr).map_err(err("connect"))?;
    s.set_write_timeout(Some(Duration::from_secs(10))).map_err(err("timeout"))?;
    let chunk = vec![0xa5u8; RECORD];
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    let mut sent = 0u64;
    sample(b, || {
        s.write_all(&chunk).map_err(err("write"))?;
        sent += RECORD as u64;
        Ok(())
    })?;
    s.shutdown(Shutdown::Write).map_err(err("shutdown"))?;
    reader.join().map_err(|_| "reader thread panicked".to_string())?.map_err(err("reader"))?;
    let elapsed = t0.elapsed();
    let cpu = process_cpu().zip(cpu0).map(|(a, b)| a.saturating_sub(b)).unwrap_or_default();
    if received.load(Ordering::Relaxed) != sent {
        return Err("TCP stream lost bytes".into());
    }
    Ok((mbps(sent as f64, elapsed), cpu.as_secs_f64() * 1e9 / sent as f64))
}

/// A raw TCP echo peer over loopback: `size` bytes each way per round trip.
pub struct TcpEcho {
    stream: TcpStream,
    thread: JoinHandle<std::io::Result<()>>,
    out: Vec<u8>,
    back: Vec<u8>,
}

impl TcpEcho {
    pub fn start(size: usize) -> BenchResult<TcpEcho> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(err("bind"))?;
        let addr = listener.local_addr().map_err(err("local_addr"))?;
        let thread = std::thread::spawn(move || -> std::io::Result<()> {
            let (mut s, _) = listener.accept()?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            let mut buf = vec![0u8; size];
            loop {
                match s.read_exact(&mut buf) {
                    Ok(()) => s.write_all(&buf)?,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        });
        let stream = TcpStream::connect(addr).map_err(err("connect"))?;
        stream.set_nodelay(true).map_err(err("nodelay"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(err("timeout"))?;
        Ok(TcpEcho { stream, thread, out: vec![0x42u8; size], back: vec![0u8; size] })
    }

    pub fn round_trip(&mut self) -> BenchResult<()> {
        self.stream.write_all(&self.out).map_err(err("write"))?;
        self.stream.read_exact(&mut self.back).map_err(err("read"))
    }

    pub fn finish(self) -> BenchResult<()> {
        drop(self.stream);
        self.thread.join().map_err(|_| "echo thread panicked".to_string())?.map_err(err("echo"))
    }
}

/// Round trips through an external command that echoes its stdin (`ssh host cat`).
pub fn command_echo(cmd: &str, size: usize, b: Budget) -> BenchResult<Vec<Duration>> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {cmd}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(err("spawning OVTP_BENCH_ECHO_CMD"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    // The whole measurement, start-up included, is bounded by the watchdog.
    let watchdog = Watchdog::new(child, Instant::now() + b.time + Duration::from_secs(30));
    let out = vec![0x42u8; size];
    let mut back = vec![0u8; size];
    let mut round_trip = || -> BenchResult<()> {
        stdin.write_all(&out).map_err(err("echo command write"))?;
        stdin.flush().map_err(err("echo command flush"))?;
        stdout.read_exact(&mut back).map_err(err("echo command read"))?;
        Ok(())
    };
    let result = sample(Budget { time: Duration::from_millis(300), max: 100 }, &mut round_trip)
        .and_then(|_| sample(b, &mut round_trip));
    drop(stdin);
    watchdog.finish(Duration::from_secs(10));
    result
}
