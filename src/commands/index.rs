//! `repobox index [check|repair]`: every index of every model.

use repobox_orm::{IndexReport, Store};
use serde_json::json;

use crate::cli::{IndexArgs, IndexCommand};
use crate::output::{clean, json_line, render};

pub async fn index(store: &Store, args: IndexArgs, json: bool) -> anyhow::Result<()> {
    let repair = args.action == Some(IndexCommand::Repair);
    let mut conn = store.clone();
    let reports = repobox_models::sweep_indexes(&mut conn, repair).await?;
    if json {
        let out: Vec<_> = reports
            .iter()
            .map(|(model, r)| json!({ "model": model, "report": r }))
            .collect();
        println!("{}", json_line(&out));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = reports.iter().map(|(model, r)| row(model, r)).collect();
    print!(
        "{}",
        render(
            &[
                "INDEX",
                "KEYS",
                "MEMBERS",
                "GONE",
                "MISMATCHED",
                "RESCORED",
                "BAD",
                "SKIPPED"
            ],
            &rows
        )
    );
    for (model, r) in &reports {
        for problem in &r.problems {
            println!("{model}::{}: {}", r.index, clean(problem));
        }
    }
    let pending: u64 = reports.iter().map(|(_, r)| r.gone + r.mismatched + r.rescored).sum();
    if repair {
        println!("repaired {pending} member(s)");
    } else if pending > 0 {
        println!("{pending} member(s) need a repair: run `repobox index repair`");
    }
    Ok(())
}

fn row(model: &str, r: &IndexReport) -> Vec<String> {
    vec![
        format!("{model}::{}", r.index),
        r.keys.to_string(),
        r.members.to_string(),
        r.gone.to_string(),
        r.mismatched.to_string(),
        r.rescored.to_string(),
        r.bad.to_string(),
        r.skipped.to_string(),
    ]
}
