//! `repobox index repair`: sweeps every index of every model.

use repobox_models::{Job, RepoCache, Session, User};
use repobox_orm::{Store, SweepReport, sweep_indexes};
use serde_json::json;

use crate::cli::IndexCommand;
use crate::output::render;

/// Sweeps every index of each listed model, as `(model, report)` pairs.
macro_rules! sweep_models {
    ($conn:expr, $($model:ty),+ $(,)?) => {{
        let mut reports: Vec<(&'static str, SweepReport)> = Vec::new();
        $(
            for report in sweep_indexes::<$model, _>($conn).await? {
                reports.push((stringify!($model), report));
            }
        )+
        reports
    }};
}

pub async fn index(store: &Store, cmd: IndexCommand) -> anyhow::Result<()> {
    let IndexCommand::Repair { json } = cmd;
    let mut conn = store.clone();
    let reports = sweep_models!(&mut conn, Job, Session, User, RepoCache);
    if json {
        let out: Vec<_> = reports
            .iter()
            .map(|(entity, r)| json!({ "entity": entity, "index": r.index, "keys": r.keys, "entries": r.entries, "removed": r.removed }))
            .collect();
        println!("{}", serde_json::Value::Array(out));
    } else {
        let rows: Vec<Vec<String>> = reports
            .iter()
            .map(|(entity, r)| {
                vec![
                    format!("{entity}::{}", r.index),
                    r.keys.to_string(),
                    r.entries.to_string(),
                    r.removed.to_string(),
                ]
            })
            .collect();
        print!("{}", render(&["INDEX", "KEYS", "ENTRIES", "REMOVED"], &rows));
    }
    Ok(())
}
