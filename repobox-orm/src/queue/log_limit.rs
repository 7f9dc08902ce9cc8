//! Log lines that a flood of bad stream entries would repeat once per entry
//! (10,000 garbage entries made 11 MB of warnings): each kind is written at
//! most once per [`LOG_INTERVAL`], and the lines it held back are counted and
//! said, with its next line or by [`LogLimit::report_held_back`].

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::Level;

/// How often one kind of line is written at most.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One kind of log line that each stream entry may cause. The first is
/// always written; later ones only once [`LOG_INTERVAL`] has passed since the
/// last one written, saying how many were held back meanwhile.
///
/// ```
/// use repobox_orm::queue::LogLimit;
///
/// static MALFORMED: LogLimit = LogLimit::warn("malformed stream entry");
///
/// fn on_malformed(entry: &str) {
///     if let Some(held_back) = MALFORMED.admit() {
///         // "malformed stream entry (and 9,999 more like it in the last 10 s)"
///         tracing::warn!(entry, "malformed stream entry{held_back}");
///     }
/// }
/// ```
pub struct LogLimit {
    what: &'static str,
    level: Level,
    window: Mutex<Option<Window>>,
}

/// Since when a kind's last line was written, and how many were held back since.
struct Window {
    since: Instant,
    held_back: u64,
}

/// Every kind that has been written once, for [`LogLimit::report_held_back`].
static USED: Mutex<Vec<&'static LogLimit>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogLimit {
    /// A kind of warning; `what` is its message, as the held-back count names it.
    pub const fn warn(what: &'static str) -> Self {
        LogLimit {
            what,
            level: Level::WARN,
            window: Mutex::new(None),
        }
    }

    /// A kind of info line.
    pub const fn info(what: &'static str) -> Self {
        LogLimit {
            what,
            level: Level::INFO,
            window: Mutex::new(None),
        }
    }

    /// Whether to write this occurrence: `Some` with the count of those held
    /// back since the last one written (its `Display` is the text to append
    /// to the message: empty when there were none).
    pub fn admit(&'static self) -> Option<HeldBack> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&'static self, now: Instant) -> Option<HeldBack> {
        let mut window = lock(&self.window);
        match &mut *window {
            None => {
                *window = Some(Window {
                    since: now,
                    held_back: 0,
                });
                drop(window);
                lock(&USED).push(self);
                Some(HeldBack::NONE)
            }
            Some(w) if now.saturating_duration_since(w.since) >= LOG_INTERVAL => {
                let held = HeldBack {
                    count: w.held_back,
                    over: now.saturating_duration_since(w.since),
                };
                *w = Window {
                    since: now,
                    held_back: 0,
                };
                Some(held)
            }
            Some(w) => {
                w.held_back += 1;
                None
            }
        }
    }

    /// Takes what this kind held back, if it did and its last line is at
    /// least `age` old.
    fn take_held_back(&self, now: Instant, age: Duration) -> Option<HeldBack> {
        let mut window = lock(&self.window);
        let w = window.as_mut()?;
        let over = now.saturating_duration_since(w.since);
        if w.held_back == 0 || over < age {
            return None;
        }
        let held = HeldBack {
            count: w.held_back,
            over,
        };
        *w = Window {
            since: now,
            held_back: 0,
        };
        Some(held)
    }

    /// Writes, for every kind whose last line is [`LOG_INTERVAL`] old and
    /// that held lines back since, one line that counts them, so that the
    /// end of a flood is not left unsaid. A consumer's loop calls it.
    pub fn report_held_back() {
        Self::report(LOG_INTERVAL);
    }

    /// Writes what every kind held back, however recent its last line (a
    /// consumer that stops calls it).
    pub fn report_all_held_back() {
        Self::report(Duration::ZERO);
    }

    fn report(age: Duration) {
        let now = Instant::now();
        let used: Vec<&'static LogLimit> = lock(&USED).clone();
        for kind in used {
            let Some(held) = kind.take_held_back(now, age) else {
                continue;
            };
            let (what, count, secs) = (kind.what, Grouped(held.count), held.seconds());
            if kind.level == Level::WARN {
                tracing::warn!(
                    kind = what,
                    held_back = held.count,
                    "{count} more like \"{what}\" in the last {secs} s"
                );
            } else {
                tracing::info!(
                    kind = what,
                    held_back = held.count,
                    "{count} more like \"{what}\" in the last {secs} s"
                );
            }
        }
    }
}

/// How many lines of a kind were held back, and over how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBack {
    count: u64,
    over: Duration,
}

impl HeldBack {
    const NONE: HeldBack = HeldBack {
        count: 0,
        over: Duration::ZERO,
    };

    /// How many lines were held back.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The whole seconds they were held back over, at least one.
    fn seconds(&self) -> u64 {
        self.over.as_secs().max(1)
    }
}

/// ` (and 9,999 more like it in the last 10 s)`, or nothing.
impl fmt::Display for HeldBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return Ok(());
        }
        write!(
            f,
            " (and {} more like it in the last {} s)",
            Grouped(self.count),
            self.seconds()
        )
    }
}

/// A count with thousands separators: `9,999`.
struct Grouped(u64);

impl fmt::Display for Grouped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.to_string();
        for (i, d) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_those_held_back() {
        static KIND: LogLimit = LogLimit::warn("test kind");
        let t0 = Instant::now();
        assert_eq!(KIND.admit_at(t0).map(|h| h.to_string()).as_deref(), Some(""));
        for i in 1..10_000 {
            assert_eq!(KIND.admit_at(t0 + Duration::from_millis(i)), None);
        }
        let next = KIND.admit_at(t0 + LOG_INTERVAL).unwrap();
        assert_eq!(next.to_string(), " (and 9,999 more like it in the last 10 s)");
        assert_eq!(KIND.admit_at(t0 + LOG_INTERVAL + Duration::from_secs(1)), None);
        // Reported once its interval passed, then nothing is left.
        let later = t0 + LOG_INTERVAL + Duration::from_secs(5);
        assert_eq!(KIND.take_held_back(later, LOG_INTERVAL), None);
        let held = KIND.take_held_back(later, Duration::ZERO).unwrap();
        assert_eq!(held.count(), 1);
        assert_eq!(KIND.take_held_back(later, Duration::ZERO), None);
        assert!(lock(&USED).iter().any(|k| std::ptr::eq(*k, &KIND)));
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        for (n, text) in [(0, "0"), (999, "999"), (1_000, "1,000"), (1_234_567, "1,234,567")] {
            assert_eq!(Grouped(n).to_string(), text);
        }
    }
}
