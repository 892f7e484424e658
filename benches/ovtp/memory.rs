//! Section `memory`: peak RSS of this process, and of a server and a client
//! process exchanging 1 MiB data messages.

use crate::Opts;
use crate::child::{ServerProcess, lookup};
use crate::harness::{
    BenchResult, Budget, RECORD, Report, Stats, err, mib, peak_memory_kib, sample, thousands,
};
use crate::servers::KeySet;
use ovtp::Client;
use std::time::Duration;

pub fn bench_memory(opts: &Opts, keys: &KeySet, r: &mut Report) -> BenchResult<()> {
    // Peak RSS so far of this process (all sections run before, client and
    // in-process servers together).
    if let Some(k) = peak_memory_kib() {
        r.value("memory.bench_process_so_far.kib", k as f64);
        r.row_note(
            "memory",
            "peak RSS of this bench process so far (VmHWM)",
            mib(k),
            "client and in-process servers together",
        );
    }

    // Per side: server and client each in a child process, 1 MiB data messages echoed.
    let server = ServerProcess::start(keys, Duration::from_secs(120))?;
    let out = server.run_client("echo1m", opts.budget(4.0, 1.0, 2_000));
    let server_kib = server.finish();
    let out = out?;
    let get = |k: &str| lookup(&out, k).ok_or(format!("client job did not report {k}"));
    let (n, total, median) = (get("n")?, get("total_s")?, get("median_s")?);
    let rate = 2.0 * RECORD as f64 * n / total / 1e6;
    r.value("memory.msg1m.mbps_both_ways", rate);
    r.row_note(
        "memory",
        "1 MiB data messages echoed, server and client processes",
        format!("{} MB/s (up + down)", thousands(rate)),
        format!("n={n}; median round trip {:.2} ms", median * 1e3),
    );
    if let Some(k) = server_kib {
        r.value("memory.msg1m.server.kib", k as f64);
        r.row_note("memory", "  peak RSS, server process", mib(k), "VmHWM");
    }
    let k = get("vmhwm_kib")? as u64;
    r.value("memory.msg1m.client.kib", k as f64);
    r.row_note("memory", "  peak RSS, client process", mib(k), "VmHWM");
    Ok(())
}

/// The client job `echo1m` (in the client process): 1 MiB data messages,
/// echoed, for the budget `b`.
pub fn echo_job(client: &mut Client, b: Budget) -> BenchResult<()> {
    let msg = vec![0x33u8; RECORD];
    let st = Stats::of(sample(b, || {
        let reply = client.send_data(&msg).map_err(err("send_data"))?;
        if reply.body.len() != RECORD {
            return Err("bad echo reply".into());
        }
        Ok(())
    })?);
    println!("n {}", st.n);
    println!("total_s {}", st.total.as_secs_f64());
    println!("median_s {}", st.median.as_secs_f64());
    Ok(())
}
