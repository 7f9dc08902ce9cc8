//! A job's output, from its pipe to `job:<id>:output`: read line by line with
//! each line capped, invalid UTF-8 replaced, the total capped, and written in
//! batches (one round trip for every line that arrived while the last write
//! was in flight, never one per line).

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::mpsc;

use crate::Output;

/// Most lines one write carries.
const BATCH_LINES: usize = 5_000;
/// Most bytes one write carries (a line longer than this goes alone).
const BATCH_BYTES: usize = 1 << 20;
/// Lines read but not yet written: the pipe waits (and so does the program)
/// when the writer is this far behind.
pub(crate) const QUEUED_LINES: usize = 16_384;

/// How output is cut.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    /// Bytes of one line kept; the rest is dropped and the line marked.
    pub line_bytes: usize,
    /// Lines kept; the rest are counted and said in a final line.
    pub lines: u64,
}

/// Reads lines of at most `max` bytes (without their end) from `inner`,
/// whatever their length: the rest of a longer line is skipped, not held.
pub(crate) struct LineReader<R> {
    inner: R,
    max: usize,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub(crate) fn new(inner: R, max: usize) -> Self {
        LineReader { inner, max }
    }

    /// The next line, valid UTF-8, marked if it was cut; `None` at the end.
    pub(crate) async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        let mut kept = Vec::new();
        let mut cut: u64 = 0;
        let mut any = false;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(any.then(|| finish(kept, cut)));
            }
            any = true;
            let end = available.iter().position(|&b| b == b'\n');
            let chunk = &available[..end.unwrap_or(available.len())];
            let take = self.max.saturating_sub(kept.len()).min(chunk.len());
            kept.extend_from_slice(&chunk[..take]);
            cut = cut.saturating_add(u64::try_from(chunk.len() - take).unwrap_or(u64::MAX));
            let consumed = end.map_or(available.len(), |i| i + 1);
            self.inner.consume(consumed);
            if end.is_some() {
                return Ok(Some(finish(kept, cut)));
            }
        }
    }
}

/// A line's bytes as text: a `\r` before the end dropped, a character that
/// the cut split dropped whole, invalid UTF-8 replaced with U+FFFD, and a
/// cut line marked with what was cut.
fn finish(mut kept: Vec<u8>, mut cut: u64) -> String {
    if cut == 0 && kept.last() == Some(&b'\r') {
        kept.pop();
    }
    if cut > 0
        && let Err(e) = std::str::from_utf8(&kept)
        && e.error_len().is_none()
    {
        let partial = kept.len() - e.valid_up_to();
        kept.truncate(e.valid_up_to());
        cut = cut.saturating_add(u64::try_from(partial).unwrap_or(0));
    }
    let mut line = String::from_utf8_lossy(&kept).into_owned();
    if cut > 0 {
        line.push_str(&format!(" [repobox: line cut, {cut} more bytes dropped]"));
    }
    line
}

/// Reads every line of `reader` into `lines`, keeping the first
/// `caps.lines`; the others are read (so the program never blocks on a full
/// pipe) and counted, and a last line says how many were dropped.
pub(crate) async fn pump<R: AsyncBufRead + Unpin>(reader: R, caps: Caps, lines: mpsc::Sender<String>) {
    let mut reader = LineReader::new(reader, caps.line_bytes);
    let mut read: u64 = 0;
    let mut failed = None;
    loop {
        match reader.next_line().await {
            Ok(Some(line)) => {
                read = read.saturating_add(1);
                // A writer that stopped (its run lost the lease) takes nothing more.
                if read <= caps.lines && lines.send(line).await.is_err() {
                    failed = Some("the output could not be written".to_owned());
                }
            }
            Ok(None) => break,
            Err(e) => {
                failed = Some(format!("reading the output failed: {e}"));
                break;
            }
        }
    }
    if read > caps.lines {
        let dropped = read - caps.lines;
        let _ = lines
            .send(format!(
                "[repobox: {dropped} more lines dropped: the output is capped at {} lines]",
                caps.lines
            ))
            .await;
    }
    if let Some(why) = failed {
        tracing::debug!(why, "the output pump stopped early");
    }
}

/// Writes what `lines` receives to `output` in batches until the pump is
/// done. A write that fails is tried again (the run's lease fences it: once
/// the lease may have passed, the rest is dropped and the runner stops the
/// run); [`Output`] counts what was written.
pub(crate) async fn write(output: &Output, mut lines: mpsc::Receiver<String>) {
    let mut batch: Vec<String> = Vec::new();
    let mut failures = 0u32;
    while let Some(first) = lines.recv().await {
        let mut bytes = first.len();
        batch.push(first);
        while batch.len() < BATCH_LINES && bytes < BATCH_BYTES {
            match lines.try_recv() {
                Ok(line) => {
                    bytes += line.len();
                    batch.push(line);
                }
                Err(_) => break,
            }
        }
        loop {
            match output.lines(&batch).await {
                Ok(()) => {
                    failures = 0;
                    break;
                }
                Err(repobox_models::Error::LeaseLost { .. }) => {
                    // Not the run's to write any more: drain and drop.
                    while lines.recv().await.is_some() {}
                    return;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::debug!(job = %output.job_id(), error = %e, "could not write output lines; retrying");
                    let wait = std::time::Duration::from_millis(100u64.saturating_mul(u64::from(failures.min(20))));
                    tokio::time::sleep(wait).await;
                }
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8], max: usize) -> Vec<String> {
        let mut reader = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn lines_are_cut_marked_and_made_valid() {
        assert_eq!(lines_of(b"a\nb\r\n\nlast", 8).await, ["a", "b", "", "last"]);
        assert_eq!(lines_of(b"", 8).await, Vec::<String>::new());
        assert_eq!(
            lines_of(b"0123456789\nok\n", 4).await,
            ["0123 [repobox: line cut, 6 more bytes dropped]", "ok"]
        );
        assert_eq!(lines_of(b"\xff\xfeok\n", 8).await, ["\u{fffd}\u{fffd}ok"]);
        // "é" is two bytes: a cut through it drops it whole.
        assert_eq!(
            lines_of("abcé!\n".as_bytes(), 4).await,
            ["abc [repobox: line cut, 3 more bytes dropped]"]
        );
    }
}
