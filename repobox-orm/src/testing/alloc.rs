//! [`PeakAlloc`]: a global allocator that counts the bytes a process holds
//! and the most it held, for tests and benches that bound memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting: install it with `#[global_allocator]`,
/// then [`reset_peak`](Self::reset_peak) before the work and
/// [`peak_above`](Self::peak_above) after it.
#[derive(Debug, Default)]
pub struct PeakAlloc {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl PeakAlloc {
    /// A counter at zero.
    pub const fn new() -> Self {
        PeakAlloc {
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Starts a new peak from what is held now; returns that.
    pub fn reset_peak(&self) -> usize {
        let now = self.now.load(Ordering::Relaxed);
        self.peak.store(now, Ordering::Relaxed);
        now
    }

    /// The most held since [`reset_peak`](Self::reset_peak), above `start`.
    pub fn peak_above(&self, start: usize) -> usize {
        self.peak.load(Ordering::Relaxed).saturating_sub(start)
    }
}

// SAFETY: every call goes to the system allocator unchanged; the counters
// only observe the sizes.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = self.now.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(p, layout) };
        self.now.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}
