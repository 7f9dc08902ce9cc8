//! The overview's chart: completed and failed runs per minute over the last
//! hour, drawn on the server as inline SVG (no script, no library).

use maud::{Markup, html};

const WIDTH: u64 = 600;
const HEIGHT: u64 = 120;

/// Two series of per-minute counts (oldest first) as lines over the same
/// axis; the scale's top is the largest count.
pub fn per_minute(succeeded: &[u64], failed: &[u64]) -> Markup {
    let top = succeeded.iter().chain(failed).copied().max().unwrap_or(0).max(1);
    let total = |s: &[u64]| s.iter().copied().fold(0u64, u64::saturating_add);
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {}", HEIGHT + 20))
            role="img" aria-label="completed and failed runs per minute, last hour" {
            title { "Runs per minute, last hour: " (total(succeeded)) " completed, " (total(failed)) " failed" }
            line x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) stroke="#999" stroke-width="1" {}
            polyline.succeeded fill="none" stroke="#2a7" stroke-width="2" points=(points(succeeded, top)) {}
            polyline.failed fill="none" stroke="#c33" stroke-width="2" points=(points(failed, top)) {}
            text x="0" y=(HEIGHT + 15) font-size="11" fill="#555" { "60 min ago" }
            text x=(WIDTH) y=(HEIGHT + 15) font-size="11" fill="#555" text-anchor="end" { "now" }
            text x="4" y="12" font-size="11" fill="#555" { "max " (top) "/min" }
        }
    }
}

/// The points of one series, spread over the width.
fn points(series: &[u64], top: u64) -> String {
    let steps = u64::try_from(series.len().saturating_sub(1)).unwrap_or(1).max(1);
    series
        .iter()
        .zip(0u64..)
        .map(|(n, i)| {
            let x = i.saturating_mul(WIDTH) / steps;
            let y = HEIGHT - (*n).min(top).saturating_mul(HEIGHT) / top;
            format!("{x},{y}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_count_reaches_the_top_and_zero_the_axis() {
        assert_eq!(points(&[0, 5, 10], 10), "0,120 300,60 600,0");
        let svg = per_minute(&[1, 2], &[0, 0]).into_string();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("3 completed, 0 failed"), "{svg}");
    }
}
