//! Section `messages`: 100 B and 16 KiB round trips on one open connection,
//! ovtp against raw TCP (and an optional external echo command).

use crate::Opts;
use crate::harness::{BenchResult, Budget, Report, Stats, err, process_cpu, sample, thousands, us};
use crate::servers::{KeySet, LocalServer};
use crate::tcp::{TcpEcho, command_echo};
use ovtp::Client;
use std::time::Duration;

/// Small message sizes of the round-trip rows.
const SMALL_SIZES: [usize; 2] = [100, 16 * 1024];

fn size_name(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn size_key(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("msg{}k", size / 1024)
    } else {
        format!("msg{size}")
    }
}

fn latency_value(s: &Stats) -> String {
    format!(
        "median {:.1} µs, p90 {:.1} µs, {} rt/s",
        us(s.median),
        us(s.p90),
        thousands(s.per_second())
    )
}

fn record_latency(r: &mut Report, key: &str, s: &Stats) {
    r.value(format!("{key}.median_us"), us(s.median));
    r.value(format!("{key}.p90_us"), us(s.p90));
    r.value(format!("{key}.per_s"), s.per_second());
    r.value(format!("{key}.n"), s.n as f64);
}

pub fn bench_messages(opts: &Opts, keys: &KeySet, r: &mut Report) -> BenchResult<()> {
    let server = LocalServer::start(keys)?;
    let mut client = server.connect(keys)?;
    for size in SMALL_SIZES {
        let m = interleaved(opts, &mut client, size)?;
        round_trip_rows(r, size, &m);
        if let Some(cmd) = &opts.echo_cmd {
            let (name, key) = (size_name(size), size_key(size));
            let e = Stats::of(command_echo(cmd, size, opts.budget(3.0, 0.6, 20_000))?);
            record_latency(r, &format!("{key}.echo"), &e);
            r.row_note(
                "messages",
                format!("{name} round trip through {}", opts.echo_label),
                latency_value(&e),
                format!("OVTP_BENCH_ECHO_CMD, n={}", e.n),
            );
        }
    }
    Ok(())
}

/// Round trips of one size, raw TCP and ovtp, with the CPU time (both ends)
/// per round trip of each.
struct RoundTrips {
    tcp: Stats,
    ovtp: Stats,
    tcp_cpu_us: f64,
    ovtp_cpu_us: f64,
}

/// Raw TCP and ovtp round trips of `size` bytes, measured in alternating
/// blocks, so that both see the same state of the machine (on a VM, round
/// trips vary several-fold with where the scheduler puts the two threads).
fn interleaved(opts: &Opts, client: &mut Client, size: usize) -> BenchResult<RoundTrips> {
    const BLOCKS: u32 = 6;
    let block = |full: f64, quick: f64, max: usize| {
        let b = opts.budget(full, quick, max);
        Budget { time: b.time / BLOCKS, max: b.max / BLOCKS as usize }
    };
    let mut tcp = TcpEcho::start(size)?;
    let msg = vec![0x42u8; size];
    let mut ovtp_round_trip = || -> BenchResult<()> {
        let reply = client.send_data(&msg).map_err(err("send_data"))?;
        if !reply.is_ok() || reply.body.len() != size {
            return Err("bad echo reply".into());
        }
        Ok(())
    };
    let warm_up = opts.budget(0.3, 0.1, 1_000);
    sample(warm_up, || tcp.round_trip())?;
    sample(warm_up, &mut ovtp_round_trip)?;
    let (mut tcp_t, mut ovtp_t) = (Vec::new(), Vec::new());
    // CPU time of the whole process (both ends) during each kind of block.
    let (mut tcp_cpu, mut ovtp_cpu) = (Duration::ZERO, Duration::ZERO);
    let cpu_since = |c0: Option<Duration>| {
        process_cpu().zip(c0).map_or(Duration::ZERO, |(a, b)| a.saturating_sub(b))
    };
    for _ in 0..BLOCKS {
        let c0 = process_cpu();
        tcp_t.extend(sample(block(3.0, 0.6, 300_000), || tcp.round_trip())?);
        tcp_cpu += cpu_since(c0);
        let c0 = process_cpu();
        ovtp_t.extend(sample(block(4.0, 0.8, 300_000), &mut ovtp_round_trip)?);
        ovtp_cpu += cpu_since(c0);
    }
    tcp.finish()?;
    let (tcp, ov) = (Stats::of(tcp_t), Stats::of(ovtp_t));
    let (tcp_cpu, ovtp_cpu) = (us(tcp_cpu) / tcp.n as f64, us(ovtp_cpu) / ov.n as f64);
    Ok(RoundTrips { tcp, ovtp: ov, tcp_cpu_us: tcp_cpu, ovtp_cpu_us: ovtp_cpu })
}

/// The raw TCP, ovtp and ratio rows of one size.
fn round_trip_rows(r: &mut Report, size: usize, m: &RoundTrips) {
    let (name, key) = (size_name(size), size_key(size));
    let (tcp, ov, tcp_cpu, ovtp_cpu) = (&m.tcp, &m.ovtp, m.tcp_cpu_us, m.ovtp_cpu_us);
    r.value(format!("{key}.tcp.cpu_us"), tcp_cpu);
    r.value(format!("{key}.ovtp.cpu_us"), ovtp_cpu);
    record_latency(r, &format!("{key}.tcp"), tcp);
    r.row_note(
        "messages",
        format!("{name} round trip, raw TCP ping-pong"),
        latency_value(tcp),
        format!("std sockets, nodelay, n={}; CPU {tcp_cpu:.1} µs per round trip, both ends", tcp.n),
    );
    record_latency(r, &format!("{key}.ovtp"), ov);
    r.row_note(
        "messages",
        format!("{name} round trip, ovtp send_data (echo)"),
        latency_value(ov),
        format!(
            "one open connection, n={}, interleaved with TCP; CPU {ovtp_cpu:.1} µs per round trip, both ends",
            ov.n
        ),
    );
    let ratio = us(ov.median) / us(tcp.median);
    r.value(format!("{key}.ratio"), ratio);
    r.row_note(
        "messages",
        format!("{name} ovtp / raw TCP, median"),
        format!("{ratio:.2}x"),
        format!("p90 {:.2}x; issue 6 target: <= 1.3x", us(ov.p90) / us(tcp.p90)),
    );
}
