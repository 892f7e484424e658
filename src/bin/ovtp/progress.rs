//! The one-line progress display of `put` and `get` on standard error:
//! bytes done and total, percent, speed and time left, redrawn with `\r`
//! each time the library reports progress (at most every 100 ms). Nothing is
//! shown when standard error is not a terminal.

use ovtp::escape_control;
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Longest file name shown; longer names keep their end.
const LABEL_CHARS: usize = 28;
/// Speed is measured over this much recent time, so it is smoothed.
const WINDOW: Duration = Duration::from_secs(3);

/// The display of one transfer.
pub struct Display {
    label: String,
    created: Instant,
    /// Recent `(time, bytes done)` reports, oldest first, covering `WINDOW`.
    samples: VecDeque<(Instant, u64)>,
    /// The first report (a resumed transfer starts above 0).
    first: Option<(Instant, u64)>,
    /// Characters of the line last drawn (to blank a longer one); 0 if none.
    drawn: usize,
    /// For a tree: files done and total, and when the line was last drawn.
    files: Option<(u64, u64, Instant)>,
}

impl Display {
    /// A display for the file `name`, or `None` when standard error is not a terminal.
    pub fn new(name: &str) -> Option<Display> {
        std::io::stderr().is_terminal().then(|| Display::labelled(name))
    }

    fn labelled(name: &str) -> Display {
        let name = escape_control(name);
        let count = name.chars().count();
        let label = if count > LABEL_CHARS {
            let tail: String = name.chars().skip(count - (LABEL_CHARS - 1)).collect();
            format!("…{tail}")
        } else {
            name
        };
        let (created, samples) = (Instant::now(), VecDeque::new());
        Display { label, created, samples, first: None, drawn: 0, files: None }
    }

    /// Record a report from the library and redraw the line.
    pub fn update(&mut self, done: u64, total: u64) {
        let now = Instant::now();
        self.first.get_or_insert((now, done));
        self.samples.push_back((now, done));
        while self.samples.len() > 2 && now - self.samples[1].0 >= WINDOW {
            self.samples.pop_front();
        }
        let line = self.line(now, done, total);
        self.draw(&line);
    }

    /// Record a tree's progress and redraw the line (at most every 100 ms
    /// but for the last file: a tree of small files reports very often).
    pub fn update_tree(&mut self, p: &ovtp::TreeProgress) {
        let now = Instant::now();
        let last = self.files.map(|f| f.2);
        let finished = p.files_done >= p.files;
        if last.is_some_and(|t| now - t < Duration::from_millis(100)) && !finished {
            return;
        }
        self.files = Some((p.files_done, p.files, now));
        self.update(p.bytes_done, p.bytes);
    }

    /// End the line, if one was drawn (after success or failure alike).
    pub fn finish(&mut self) {
        if self.drawn > 0 {
            let _ = std::io::stderr().lock().write_all(b"\n");
            self.drawn = 0;
        }
    }

    fn draw(&mut self, line: &str) {
        let width = line.chars().count();
        let pad = " ".repeat(self.drawn.saturating_sub(width));
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}{pad}").and_then(|()| err.flush());
        self.drawn = width.max(1);
    }

    /// Bytes per second over the recent window, if it can be told yet.
    fn speed(&self) -> Option<f64> {
        let (&(t0, d0), &(t1, d1)) = (self.samples.front()?, self.samples.back()?);
        let secs = (t1 - t0).as_secs_f64();
        (secs >= 0.05).then(|| d1.saturating_sub(d0) as f64 / secs)
    }

    /// Bytes per second over the whole transfer, for the final line.
    fn average(&self, now: Instant, done: u64) -> Option<f64> {
        let (t0, d0) = self.first?;
        let (secs, bytes) = match (now - t0).as_secs_f64() {
            // Only one report (a small file): count from the start, from 0.
            s if s < 0.05 => (now.duration_since(self.created).as_secs_f64(), done),
            s => (s, done.saturating_sub(d0)),
        };
        (secs > 0.0).then(|| bytes as f64 / secs)
    }

    fn line(&self, now: Instant, done: u64, total: u64) -> String {
        let percent = match total {
            0 => 100,
            t => (u128::from(done.min(t)) * 100 / u128::from(t)) as u64,
        };
        let finished = done >= total;
        let (speed, time) = if finished {
            let elapsed = now.duration_since(self.created).as_secs_f64();
            (self.average(now, done), format!("in {}", clock(elapsed)))
        } else {
            let speed = self.speed();
            let left = speed.filter(|s| *s > 0.0).map(|s| (total - done) as f64 / s);
            let left = left.map_or("--:--".to_string(), clock);
            (speed, format!("{left} left"))
        };
        let speed = speed.map_or("-- MB/s".to_string(), mb_per_s);
        let files = self.files.map_or(String::new(), |(d, t, _)| format!("  {d}/{t} files"));
        format!(
            "{}{files}  {} / {}  {percent:>3}%  {speed}  {time}",
            self.label,
            bytes(done),
            bytes(total)
        )
    }
}

/// A byte count in decimal units: `999 B`, `12.3 kB`, `4.56 MB`, `1.20 GB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "";
    for u in UNITS {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    if v < 10.0 {
        format!("{v:.2} {unit}")
    } else if v < 100.0 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.0} {unit}")
    }
}

fn mb_per_s(bytes_per_s: f64) -> String {
    let mb = bytes_per_s / 1e6;
    if mb < 10.0 { format!("{mb:.2} MB/s") } else { format!("{mb:.1} MB/s") }
}

/// Seconds as `m:ss` or `h:mm:ss`.
fn clock(secs: f64) -> String {
    if !secs.is_finite() || secs >= 100.0 * 3600.0 {
        return "--:--".into();
    }
    let s = secs.round() as u64;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes_speeds_and_times() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_234), "1.23 kB");
        assert_eq!(bytes(3_000_000), "3.00 MB");
        assert_eq!(bytes(45_600_000), "45.6 MB");
        assert_eq!(bytes(1_200_000_000_000), "1.20 TB");
        assert_eq!(mb_per_s(5_200_000.0), "5.20 MB/s");
        assert_eq!(mb_per_s(123_456_789.0), "123.5 MB/s");
        assert_eq!(clock(3.4), "0:03");
        assert_eq!(clock(3723.0), "1:02:03");
        assert_eq!(clock(f64::INFINITY), "--:--");
    }

    #[test]
    fn the_line_shows_progress_and_escapes_the_name() {
        let mut d = Display::labelled("a\u{1b}[2Jb");
        let start = Instant::now();
        d.first = Some((start, 0));
        d.samples.push_back((start, 0));
        d.samples.push_back((start + Duration::from_secs(1), 2_000_000));
        let line = d.line(start + Duration::from_secs(1), 2_000_000, 10_000_000);
        assert_eq!(line, "a\\u{1b}[2Jb  2.00 MB / 10.0 MB   20%  2.00 MB/s  0:04 left");
        assert!(!line.chars().any(char::is_control));
        let long = Display::labelled(&"x".repeat(100));
        assert_eq!(long.label.chars().count(), LABEL_CHARS);
        assert!(long.label.starts_with('…'));
    }
}
