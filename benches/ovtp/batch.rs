//! Section `messages`, the batch row: 100 B messages with `Client::send_batch`.

use crate::Opts;
use crate::harness::{
    BenchResult, Budget, Report, Stats, err, ms, process_cpu, sample, thousands, us,
};
use crate::servers::{KeySet, LocalServer};
use ovtp::Outgoing;
use std::time::Duration;

/// Messages of 100 B with `Client::send_batch` on one open connection (pipelined).
pub fn bench_batch(opts: &Opts, keys: &KeySet, r: &mut Report) -> BenchResult<()> {
    const SIZE: usize = 100;
    const PER_BATCH: usize = 1_000;
    let batches = if opts.quick { 5 } else { 20 };
    let server = LocalServer::start(keys)?;
    let mut client = server.connect(keys)?;
    let msg = vec![0x42u8; SIZE];
    let items = vec![Outgoing::Data(&msg); PER_BATCH];
    let mut batch = || -> BenchResult<()> {
        let replies = client.send_batch(&items).map_err(err("send_batch"))?;
        if replies.len() != PER_BATCH || replies.iter().any(|r| !r.is_ok() || r.body.len() != SIZE)
        {
            return Err("bad batch replies".into());
        }
        Ok(())
    };
    batch()?; // warm-up
    let cpu0 = process_cpu();
    let st = Stats::of(sample(Budget { time: Duration::from_secs(60), max: batches }, &mut batch)?);
    let cpu = process_cpu().zip(cpu0).map_or(Duration::ZERO, |(a, b)| a.saturating_sub(b));
    let n = st.n * PER_BATCH;
    let rate = n as f64 / st.total.as_secs_f64();
    let cpu_us = us(cpu) / n as f64;
    r.value("batch100.per_s", rate);
    r.value("batch100.n", n as f64);
    r.value("batch100.cpu_us", cpu_us);
    r.row_note(
        "messages",
        format!("100 B messages, send_batch of {}, one connection", thousands(PER_BATCH as f64)),
        format!("{} msg/s", thousands(rate)),
        format!(
            "{} messages echoed in {} batches; median batch {:.1} ms; CPU {cpu_us:.1} µs per message, both ends; \
             issue 6 target: >= 30,000/s",
            thousands(n as f64),
            st.n,
            ms(st.median)
        ),
    );
    Ok(())
}
