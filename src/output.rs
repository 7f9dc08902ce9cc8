//! What the commands print: aligned tables for the terminal, and the JSON
//! shapes of `--json`. Text from Redis reaches the terminal only through
//! [`clean`], and JSON only through [`json_line`].

use std::io;

use repobox_models::Job;
use serde::Serialize;
use serde_json::json;
use serde_json::ser::{CompactFormatter, Formatter};

/// Renders rows under a header, each column as wide as its widest cell.
/// Cells are [`clean`]ed: what Redis holds cannot steer the terminal.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()).collect();
    let rows = &rows[..];
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// Text from Redis made safe for a terminal: control characters (C0, DEL,
/// C1) and bidi controls, which reorder what the terminal shows, are
/// escaped (`\u{1b}`, `\u{202e}`).
pub fn clean(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else if is_bidi_control(c) {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Unicode's `Bidi_Control` characters: marks, embeddings, overrides and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `value` as one line of JSON in which every character that could steer a
/// terminal is a `\uXXXX` escape: serde_json escapes C0 controls itself, and
/// this adds DEL, C1 controls and bidi controls. The text stays exact for any
/// JSON reader.
pub fn json_line(value: &impl Serialize) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, TerminalSafe);
    match value.serialize(&mut ser) {
        // The formatter writes only ASCII escapes and the input's own UTF-8.
        Ok(()) => String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        Err(e) => json!({ "error": format!("cannot write JSON: {e}") }).to_string(),
    }
}

/// serde_json's compact output, with string fragments escaped as [`json_line`] says.
struct TerminalSafe;

impl Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (at, c) in fragment.char_indices() {
            if c.is_control() || is_bidi_control(c) {
                writer.write_all(&fragment.as_bytes()[start..at])?;
                // Every such character is in the BMP: one `\uXXXX` each.
                write!(writer, "\\u{:04x}", u32::from(c))?;
                start = at + c.len_utf8();
            }
        }
        CompactFormatter.write_string_fragment(writer, &fragment[start..])
    }
}

/// `1.2 s`, `340 ms`, or `-` for nothing.
pub fn duration_ms(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms >= 1000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{ms} ms"),
    }
}

/// A job as `--json` prints it.
pub fn job_json(job: &Job) -> serde_json::Value {
    json!({
        "id": job.id,
        "user_id": job.user_id,
        "repo_url": job.repo_url,
        "status": job.status.to_string(),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "exit_code": job.exit_code,
        "error": job.error,
        "retries": job.retries,
        "history": job.history,
    })
}

/// Jobs as a table: id, status, exit code, time taken, repository; then a
/// row per job that could not be read, with the error (which names its key).
pub fn job_rows(jobs: &[Job], errors: &[repobox_orm::Error]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let took = j.started_at.zip(j.finished_at).and_then(|(s, f)| f.checked_sub(s));
            vec![
                j.id.clone(),
                j.status.to_string(),
                j.exit_code.map_or("-".into(), |c| c.to_string()),
                duration_ms(took),
                j.repo_url.clone(),
            ]
        })
        .chain(
            errors
                .iter()
                .map(|e| vec!["?".into(), "unreadable".into(), "-".into(), "-".into(), e.to_string()]),
        )
        .collect();
    render(&["ID", "STATUS", "EXIT", "TOOK", "REPOSITORY"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let out = render(
            &["ID", "STATUS"],
            &[vec!["a-long-id".into(), "ok".into()], vec!["b".into(), "failed".into()]],
        );
        assert_eq!(out, "ID         STATUS\na-long-id  ok\nb          failed\n");
        assert_eq!(duration_ms(Some(1500)), "1.5 s");
        assert_eq!(duration_ms(Some(15)), "15 ms");
        assert_eq!(duration_ms(None), "-");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            clean("a\u{1b}]0;title\u{7}\u{1b}[2Jb"),
            "a\\u{1b}]0;title\\u{7}\\u{1b}[2Jb"
        );
        assert_eq!(clean("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(clean("plain ünïcode"), "plain ünïcode");
        let table = render(&["A"], &[vec!["x\u{1b}[2J".into()]]);
        assert!(!table.contains('\u{1b}'), "{table:?}");
        assert_eq!(clean("a\u{7f}b\u{85}c"), "a\\u{7f}b\\u{85}c");
    }

    #[test]
    fn bidi_controls_are_escaped_for_the_terminal() {
        assert_eq!(clean("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        for c in [
            '\u{61c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202d}', '\u{2066}', '\u{2069}',
        ] {
            assert_eq!(clean(&format!("a{c}b")), format!("a\\u{{{:x}}}b", u32::from(c)));
        }
        // Other format characters and letters of right-to-left scripts stay.
        assert_eq!(clean("\u{5d0}\u{200d}"), "\u{5d0}\u{200d}");
    }

    #[test]
    fn json_escapes_what_could_steer_a_terminal_and_stays_exact() {
        let value = json!({ "s": "a\u{1b}b\u{7f}c\u{85}d\u{9f}e\u{202e}f\u{2066}g\"h\\ü" });
        let line = json_line(&value);
        assert_eq!(line, r#"{"s":"a\u001bb\u007fc\u0085d\u009fe\u202ef\u2066g\"h\\ü"}"#);
        assert!(line.is_ascii() || line.chars().all(|c| !c.is_control() && !is_bidi_control(c)));
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, value);
    }
}
