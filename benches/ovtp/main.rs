//! The ovtp benchmark suite (std only, no harness).
//!
//! Run:   `cargo bench --bench ovtp`                   (about 1 minute on 2 cores)
//! Smoke: `OVTP_BENCH_QUICK=1 cargo bench --bench ovtp` (about 15 seconds; CI).
//! Run without `--bench` (as `cargo test --all-targets` does), it is always quick.
//!
//! Environment:
//! - `OVTP_BENCH_QUICK=1`: short time budgets (smoke test, noisy figures).
//! - `OVTP_BENCH_ONLY=ceiling,messages,connect,memory,files`: run only these sections.
//! - `OVTP_BENCH_TSV=path`: also write every figure as `key<TAB>value` lines
//!   (used by `bench/compare-scp.sh`).
//! - `OVTP_BENCH_ECHO_CMD="cmd"`: also time 100 B / 16 KiB round trips through a
//!   command that echoes its standard input (for example `ssh host cat`), with the
//!   same method as the ovtp rows (run with `sh -c`; `OVTP_BENCH_ECHO_LABEL`
//!   names it in the table).
//! - `OVTP_BENCH_FILE=path`: the file rows move this file (left in place)
//!   instead of making a random one (1 GiB; 128 MiB in quick mode).
//!
//! Every server binds 127.0.0.1:0. Every measuring loop stops at a count or a
//! time budget, whichever comes first; child processes have a deadline after
//! which they are killed.
//!
//! Units: MB/s is 10^6 bytes per second; sizes are binary (KiB, MiB, GiB).
//!
//! This file holds the options and the order of the sections; `harness` the
//! timing, /proc sampling, report and child processes; `servers` the keys and
//! servers the sections measure against; one module per section.

mod batch;
mod ceiling;
mod child;
mod connect;
mod files;
mod harness;
mod memory;
mod messages;
mod servers;
mod tcp;
// The tests' temp dir, one copy for both (`new` and `path` serve the tests only).
#[allow(dead_code)]
#[path = "../../tests/common/tempdir.rs"]
mod tempdir;

use harness::{BenchResult, Budget, Report, load_average, machine};
use servers::KeySet;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// RSA sizes of the connection rows.
const KEY_BITS: [usize; 2] = [2048, 3072];

pub struct Opts {
    pub quick: bool,
    pub only: Option<BTreeSet<String>>,
    pub tsv: Option<PathBuf>,
    pub echo_cmd: Option<String>,
    pub echo_label: String,
    pub file: Option<PathBuf>,
}

impl Opts {
    fn from_env() -> Opts {
        let nonempty = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Opts {
            // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
            // binary without it: then only the quick smoke run.
            quick: nonempty("OVTP_BENCH_QUICK").is_some_and(|v| v != "0")
                || !std::env::args().any(|a| a == "--bench"),
            only: nonempty("OVTP_BENCH_ONLY")
                .map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()).collect()),
            tsv: nonempty("OVTP_BENCH_TSV").map(PathBuf::from),
            echo_cmd: nonempty("OVTP_BENCH_ECHO_CMD"),
            echo_label: nonempty("OVTP_BENCH_ECHO_LABEL")
                .unwrap_or_else(|| "OVTP_BENCH_ECHO_CMD".into()),
            file: nonempty("OVTP_BENCH_FILE").map(PathBuf::from),
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.only.as_ref().is_none_or(|s| s.contains(section))
    }

    /// A loop budget: `full` seconds normally, `quick` seconds in quick mode,
    /// and never more than `max` iterations.
    pub fn budget(&self, full: f64, quick: f64, max: usize) -> Budget {
        Budget { time: Duration::from_secs_f64(if self.quick { quick } else { full }), max }
    }

    /// The mode line of the printed report.
    fn mode(&self) -> String {
        format!(
            "{}{}",
            if self.quick { "quick (OVTP_BENCH_QUICK=1; noisy)" } else { "full" },
            self.only
                .as_ref()
                .map(|s| format!(", sections: {}", s.iter().cloned().collect::<Vec<_>>().join(",")))
                .unwrap_or_default()
        )
    }
}

fn run(opts: &Opts) -> BenchResult<Report> {
    let mut r = Report::default();
    let started = Instant::now();
    eprintln!(
        "ovtp benchmarks ({} mode) on {}",
        if opts.quick { "quick" } else { "full" },
        machine()
    );
    let load = load_average().unwrap_or(0.0);
    r.value("machine.load_start", load);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    if load > 0.25 * cores {
        eprintln!("  WARNING: load average {load:.2} at start: other work will skew the figures");
    }
    if opts.wants("ceiling") {
        ceiling::bench_ceiling(opts, &mut r)?;
    }
    let needs_keys = ["messages", "connect", "memory", "files"].iter().any(|s| opts.wants(s));
    let mut keysets = Vec::new();
    if needs_keys {
        for bits in KEY_BITS {
            if bits == KEY_BITS[0] || opts.wants("connect") {
                keysets.push(KeySet::generate(bits)?);
            }
        }
    }
    if opts.wants("messages") {
        // Key size does not matter once the session is up.
        messages::bench_messages(opts, &keysets[0], &mut r)?;
        batch::bench_batch(opts, &keysets[0], &mut r)?;
    }
    if opts.wants("connect") {
        for ks in &keysets {
            connect::bench_connect(opts, ks, &mut r)?;
        }
    }
    if opts.wants("memory") {
        memory::bench_memory(opts, &keysets[0], &mut r)?;
    }
    if opts.wants("files") {
        files::bench_files(opts, &keysets[0], &mut r)?;
    }
    eprintln!("  (done in {:.1} s)", started.elapsed().as_secs_f64());
    r.value("machine.load_end", load_average().unwrap_or(0.0));
    Ok(r)
}

fn main() {
    if let Ok(role) = std::env::var(child::CHILD_ROLE) {
        if let Err(e) = child::run_role(&role) {
            eprintln!("bench child: {e}");
            std::process::exit(1);
        }
        return;
    }
    let opts = Opts::from_env();
    match run(&opts) {
        Ok(report) => {
            report.print_all(&opts.mode());
            if let Some(path) = &opts.tsv
                && let Err(e) = report.write_tsv(path)
            {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
