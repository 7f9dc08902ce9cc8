//! How far a long walk has come (`index check|repair`, `queue purge`), on
//! stderr: a progress bar with rate and ETA (indicatif) on a terminal, a
//! plain line at each pass and every few seconds otherwise (a cron job's
//! log), nothing under `--json` (stdout carries the result alone).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use repobox_orm::WalkProgress;

/// How often a line is printed within a pass when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// The progress of one command's walk.
pub struct Progress {
    /// What runs (`index check`), at the start of every line.
    label: &'static str,
    /// What a unit is (`keys`, `jobs`).
    unit: &'static str,
    shown: Shown,
    passes: AtomicU64,
    units: AtomicU64,
    began: Instant,
}

enum Shown {
    Quiet,
    Bar(ProgressBar),
    Lines(Mutex<Lines>),
}

/// Where the current pass is, for the plain lines, and where they go.
struct Lines {
    out: Box<dyn Write + Send>,
    every: Duration,
    what: String,
    total: u64,
    done: u64,
    began: Instant,
    printed: Instant,
}

impl Progress {
    /// The progress of the command `label`, counted in `unit`s: a bar when
    /// stderr is a terminal, lines when not, nothing with `json`.
    pub fn new(label: &'static str, unit: &'static str, json: bool) -> Self {
        let shown = if json {
            Shown::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix} {wide_msg} [{bar:30}] {human_pos}/~{human_len} {per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            Shown::Bar(bar)
        } else {
            return Progress::lines(label, unit, Box::new(std::io::stderr()), LINE_EVERY);
        };
        Progress::with(label, unit, shown)
    }

    /// Plain lines to `out`: one at each pass, and one within a pass when
    /// `every` has passed since the last.
    fn lines(label: &'static str, unit: &'static str, out: Box<dyn Write + Send>, every: Duration) -> Self {
        let now = Instant::now();
        let lines = Lines {
            out,
            every,
            what: String::new(),
            total: 0,
            done: 0,
            began: now,
            printed: now,
        };
        Progress::with(label, unit, Shown::Lines(Mutex::new(lines)))
    }

    fn with(label: &'static str, unit: &'static str, shown: Shown) -> Self {
        Progress {
            label,
            unit,
            shown,
            passes: AtomicU64::new(0),
            units: AtomicU64::new(0),
            began: Instant::now(),
        }
    }

    /// The walk is over (`done`: it got to its end, else it failed and its
    /// error says so): the bar goes, a last line says what was walked.
    pub fn finish(&self, done: bool) {
        match &self.shown {
            Shown::Quiet => {}
            Shown::Bar(bar) => bar.finish_and_clear(),
            Shown::Lines(_) if !done => {}
            Shown::Lines(lines) => {
                let mut lines = lines.lock().unwrap_or_else(|e| e.into_inner());
                let text = format!(
                    "{}: done: {} pass(es), {} {} in {:.1} s",
                    self.label,
                    self.passes.load(Ordering::Relaxed),
                    self.units.load(Ordering::Relaxed),
                    self.unit,
                    self.began.elapsed().as_secs_f64()
                );
                lines.line(&text);
            }
        }
    }
}

impl WalkProgress for Progress {
    fn pass(&self, what: &str, units: u64) {
        let pass = self.passes.fetch_add(1, Ordering::Relaxed) + 1;
        match &self.shown {
            Shown::Quiet => {}
            Shown::Bar(bar) => {
                bar.set_prefix(format!("{} pass {pass}", self.label));
                bar.set_message(what.to_owned());
                bar.set_length(units.max(1));
                bar.reset();
            }
            Shown::Lines(lines) => {
                let mut lines = lines.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                lines.what = what.to_owned();
                (lines.total, lines.done, lines.began, lines.printed) = (units, 0, now, now);
                let text = format!("{}: pass {pass}: {what} (about {units} {})", self.label, self.unit);
                lines.line(&text);
            }
        }
    }

    fn advance(&self, units: u64) {
        self.units.fetch_add(units, Ordering::Relaxed);
        match &self.shown {
            Shown::Quiet => {}
            Shown::Bar(bar) => {
                // `SCAN`'s count is an estimate: the bar never runs past its end.
                let left = bar.length().unwrap_or(0).saturating_sub(bar.position());
                bar.inc(units.min(left));
            }
            Shown::Lines(lines) => {
                let mut lines = lines.lock().unwrap_or_else(|e| e.into_inner());
                lines.done = lines.done.saturating_add(units).min(lines.total);
                if lines.printed.elapsed() >= lines.every {
                    lines.printed = Instant::now();
                    let secs = lines.began.elapsed().as_secs_f64().max(0.001);
                    let text = format!(
                        "{}: {}: {} of about {} {}, {:.0}/s",
                        self.label,
                        lines.what,
                        lines.done,
                        lines.total,
                        self.unit,
                        lines.done as f64 / secs
                    );
                    lines.line(&text);
                }
            }
        }
    }
}

impl Lines {
    /// One line; a closed stderr is not the walk's problem.
    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A `Write` whose bytes the test reads afterwards.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn without_a_terminal_a_line_per_pass_and_one_whenever_its_interval_passed() {
        let out = Captured::default();
        let progress = Progress::lines("index check", "keys", Box::new(out.clone()), Duration::ZERO);
        progress.pass("index jobs:user:<user_id>", 1000);
        progress.advance(400);
        progress.advance(600);
        progress.pass("hashes job:<id>", 1000);
        progress.finish(true);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "index check: pass 1: index jobs:user:<user_id> (about 1000 keys)"
        );
        assert!(
            lines[1].starts_with("index check: index jobs:user:<user_id>: 400 of about 1000 keys, "),
            "{text}"
        );
        assert!(
            lines[2].starts_with("index check: index jobs:user:<user_id>: 1000 of about 1000 keys, "),
            "{text}"
        );
        assert_eq!(lines[3], "index check: pass 2: hashes job:<id> (about 1000 keys)");
        assert!(
            lines[4].starts_with("index check: done: 2 pass(es), 1000 keys in "),
            "{text}"
        );
        assert_eq!(lines.len(), 5, "{text}");
    }

    #[test]
    fn a_long_interval_prints_the_passes_alone_and_a_failed_walk_no_done_line() {
        let out = Captured::default();
        let progress = Progress::lines("queue purge", "jobs", Box::new(out.clone()), Duration::from_secs(3600));
        progress.pass("failed jobs", 10);
        progress.advance(10);
        progress.finish(false);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "queue purge: pass 1: failed jobs (about 10 jobs)\n");
    }
}
