//! `repobox index [check|repair]`: every index of every model.

use repobox_orm::{IndexReport, Store, Walk};
use serde_json::json;

use crate::cli::{IndexArgs, IndexCommand};
use crate::output::{clean, json_line, render};
use crate::progress::Progress;

/// What `index check` found that needs a repair or a person, or what
/// `index repair` left for a person: the command exits with
/// [`Findings::EXIT_CODE`] so that a cron job can alert on it. The report
/// itself has been printed.
#[derive(Debug)]
pub struct Findings {
    /// Entries a repair would change (check) plus conflicts and bad members.
    pub count: u64,
}

impl Findings {
    /// The exit code of a check that found something, or a repair that left
    /// conflicts or bad members.
    pub const EXIT_CODE: u8 = 3;
}

impl std::fmt::Display for Findings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} index finding(s) need attention", self.count)
    }
}

impl std::error::Error for Findings {}

pub async fn index(store: &Store, args: IndexArgs, json: bool) -> anyhow::Result<()> {
    let repair = args.action == Some(IndexCommand::Repair);
    let mut conn = store.clone();
    let label = if repair { "index repair" } else { "index check" };
    let progress = Progress::new(label, "keys", json);
    let walk = Walk::new().progress(&progress).per_second(args.rate);
    let reports = repobox_models::sweep_indexes(&mut conn, repair, &walk).await;
    progress.finish(reports.is_ok());
    let reports = reports?;
    let sum = |f: fn(&IndexReport) -> u64| reports.iter().map(|(_, r)| f(r)).fold(0u64, u64::saturating_add);
    let to_repair = sum(IndexReport::needs_repair);
    let by_hand = sum(|r| r.conflicts).saturating_add(sum(|r| r.bad));
    let findings = if repair {
        by_hand
    } else {
        to_repair.saturating_add(by_hand)
    };
    if json {
        let out: Vec<_> = reports
            .iter()
            .map(|(model, r)| json!({ "model": model, "report": r }))
            .collect();
        println!("{}", json_line(&out));
    } else {
        print_table(&reports, repair, to_repair, by_hand);
    }
    if findings > 0 {
        return Err(Findings { count: findings }.into());
    }
    Ok(())
}

fn print_table(reports: &[(&str, IndexReport)], repair: bool, to_repair: u64, by_hand: u64) {
    let rows: Vec<Vec<String>> = reports.iter().map(|(model, r)| row(model, r)).collect();
    print!(
        "{}",
        render(
            &[
                "INDEX",
                "KIND",
                "KEYS",
                "MEMBERS",
                "GONE",
                "MISMATCHED",
                "RESCORED",
                "MISSING",
                "CONFLICTS",
                "BAD",
                "SKIPPED"
            ],
            &rows
        )
    );
    for (model, r) in reports {
        for problem in &r.problems {
            println!("{model}::{}: {}", r.index, clean(problem));
        }
    }
    let total = |f: fn(&IndexReport) -> u64| reports.iter().map(|(_, r)| f(r)).fold(0u64, u64::saturating_add);
    let (created, removed, rescored) = (
        total(|r| r.missing),
        total(|r| r.gone.saturating_add(r.mismatched)),
        total(|r| r.rescored),
    );
    if repair {
        println!("repaired {to_repair} entr(y/ies): created {created}, removed {removed}, re-scored {rescored}");
        for kind in ["sorted", "set", "unique"] {
            let of = |f: fn(&IndexReport) -> u64| {
                reports
                    .iter()
                    .filter(|(_, r)| r.kind == kind)
                    .map(|(_, r)| f(r))
                    .fold(0u64, u64::saturating_add)
            };
            let (c, d, s) = (
                of(|r| r.missing),
                of(|r| r.gone.saturating_add(r.mismatched)),
                of(|r| r.rescored),
            );
            if c + d + s > 0 {
                println!("  {kind} indexes: created {c}, removed {d}, re-scored {s}");
            }
        }
    } else if to_repair > 0 {
        println!(
            "{to_repair} entr(y/ies) need a repair (create {created}, remove {removed}, re-score {rescored}): run `repobox index repair`"
        );
    } else {
        println!("no entry needs a repair");
    }
    if by_hand > 0 {
        println!(
            "{by_hand} finding(s) need a person: {} unique conflict(s), {} bad member(s) (listed above)",
            total(|r| r.conflicts),
            total(|r| r.bad)
        );
    }
}

fn row(model: &str, r: &IndexReport) -> Vec<String> {
    vec![
        format!("{model}::{}", r.index),
        r.kind.to_owned(),
        r.keys.to_string(),
        r.members.to_string(),
        r.gone.to_string(),
        r.mismatched.to_string(),
        r.rescored.to_string(),
        r.missing.to_string(),
        r.conflicts.to_string(),
        r.bad.to_string(),
        r.skipped.to_string(),
    ]
}
