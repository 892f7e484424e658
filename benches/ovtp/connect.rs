//! Section `connect`: new connections (handshake + one message), one at a
//! time and from two client threads at once.

use crate::Opts;
use crate::harness::{BenchResult, Report, Stats, err, ms, sample};
use crate::servers::{KeySet, LocalServer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

pub fn bench_connect(opts: &Opts, keys: &KeySet, r: &mut Report) -> BenchResult<()> {
    let server = LocalServer::start(keys)?;
    new_connection(&server, keys)?; // warm-up
    connect_latency(opts, &server, keys, r)?;
    handshake_rate(opts, &server, keys, r);
    Ok(())
}

/// Connect, send one message, check its echo.
fn new_connection(server: &LocalServer, keys: &KeySet) -> BenchResult<()> {
    let mut c = server.connect(keys)?;
    let reply = c.send_message("ping").map_err(err("send_message"))?;
    if reply.body != b"ping" {
        return Err("bad echo reply".into());
    }
    Ok(())
}

/// New connections one after the other, and the RSA private-key operations
/// each side does per handshake.
fn connect_latency(
    opts: &Opts,
    server: &LocalServer,
    keys: &KeySet,
    r: &mut Report,
) -> BenchResult<()> {
    let bits = keys.bits;
    let (c0, s0) = (keys.client.private_operations(), keys.server.private_operations());
    let st = Stats::of(sample(opts.budget(5.0, 1.2, 200), || new_connection(server, keys))?);
    let per = |now: u64, before: u64| (now - before) as f64 / st.n as f64;
    let (cops, sops) =
        (per(keys.client.private_operations(), c0), per(keys.server.private_operations(), s0));
    let key = format!("connect{bits}");
    r.value(format!("{key}.median_ms"), ms(st.median));
    r.value(format!("{key}.p90_ms"), ms(st.p90));
    r.value(format!("{key}.n"), st.n as f64);
    r.value(format!("{key}.client_private_ops"), cops);
    r.value(format!("{key}.server_private_ops"), sops);
    r.row_note(
        "connect",
        format!("new connection + handshake + 1 message, RSA-{bits}"),
        format!("median {:.1} ms, p90 {:.1} ms", ms(st.median), ms(st.p90)),
        format!(
            "n={}; RSA private-key ops per handshake: client {cops:.1}, server {sops:.1}",
            st.n
        ),
    );
    Ok(())
}

/// Two client threads, each connecting + one message in a loop.
fn handshake_rate(opts: &Opts, server: &LocalServer, keys: &KeySet, r: &mut Report) {
    let bits = keys.bits;
    let b = opts.budget(6.0, 1.2, 2_000);
    let done = AtomicUsize::new(0);
    let failures = AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let _ = sample(b, || {
                    match new_connection(server, keys) {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failures.fetch_add(1, Ordering::Relaxed),
                    };
                    Ok(())
                });
            });
        }
    });
    let elapsed = t0.elapsed();
    let (n, failed) = (done.into_inner(), failures.into_inner());
    let rate = n as f64 / elapsed.as_secs_f64();
    r.value(format!("handshakes{bits}.per_s"), rate);
    r.row_note(
        "connect",
        format!("handshakes/s, 2 client threads, one server, RSA-{bits}"),
        format!("{rate:.1} /s"),
        format!(
            "{n} in {:.1} s, {failed} failed; clients and server share the cores",
            elapsed.as_secs_f64()
        ),
    );
}
