//! What the commands print: aligned tables for the terminal, and the JSON
//! shapes of `--json`.

use repobox_models::Job;
use serde_json::json;

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

/// Text from Redis made safe for a terminal: control characters are escaped.
pub fn clean(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
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
    }
}
