//! `repobox migrate [list|run NAME]`: the models' migrations
//! ([`repobox_models::migrations`]), run online and resumable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use repobox_orm::migrate::{MigrateOptions, MigrationReport, RunEnd};
use repobox_orm::{Store, Walk};
use serde_json::json;

use crate::cli::{MigrateCommand, MigrateRunArgs};
use crate::output::{clean, json_line, render};
use crate::progress::Progress;

/// A run that did not reach the end (stopped by a signal, or another run
/// took it over): exit code [`Unfinished::EXIT_CODE`], so that a deploy
/// script does not go on as if it had. The report has been printed.
#[derive(Debug)]
pub struct Unfinished;

impl Unfinished {
    /// The exit code of a run that stopped before its end.
    pub const EXIT_CODE: u8 = 5;
}

impl std::fmt::Display for Unfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the migration stopped before its end: run it again to resume")
    }
}

impl std::error::Error for Unfinished {}

pub async fn migrate(store: &Store, cmd: MigrateCommand, json: bool) -> anyhow::Result<()> {
    let mut conn = store.clone();
    match cmd {
        MigrateCommand::List => list(&mut conn, json).await,
        MigrateCommand::Run(args) => run(&mut conn, args, json).await,
    }
}

async fn list(conn: &mut Store, json: bool) -> anyhow::Result<()> {
    let migrations = repobox_models::migrations();
    let states = repobox_orm::migrate::states(conn, &migrations).await?;
    if json {
        let out: Vec<_> = migrations
            .iter()
            .zip(&states)
            .map(|(m, s)| json!({ "name": m.name(), "description": m.description(), "state": s }))
            .collect();
        println!("{}", json_line(&out));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = migrations
        .iter()
        .zip(&states)
        .map(|(m, s)| {
            vec![
                m.name().to_owned(),
                s.state.to_owned(),
                s.step.map(|n| n.to_string()).unwrap_or_default(),
                m.description().to_owned(),
            ]
        })
        .collect();
    print!("{}", render(&["NAME", "STATE", "STEP", "WHAT"], &rows));
    Ok(())
}

async fn run(conn: &mut Store, args: MigrateRunArgs, json: bool) -> anyhow::Result<()> {
    let Some(migration) = repobox_models::migration(&args.name) else {
        let known: Vec<&str> = repobox_models::migrations().iter().map(|m| m.name()).collect();
        anyhow::bail!(
            "no migration named {:?} (known: {})",
            clean(&args.name),
            known.join(", ")
        );
    };
    // Ctrl-C or SIGTERM: the batch in progress ends, the checkpoint is written.
    let stop = Arc::new(AtomicBool::new(false));
    let signal = tokio::spawn({
        let stop = stop.clone();
        async move {
            super::shutdown_signal().await;
            tracing::warn!("stopping after the batch in progress; run the migration again to resume");
            stop.store(true, Ordering::Relaxed);
        }
    });
    let progress = Progress::new("migrate", "keys", json);
    let walk = Walk::new().progress(&progress).per_second(args.rate);
    let options = MigrateOptions::default()
        .walk(walk)
        .dry_run(args.dry_run)
        .restart(args.restart)
        .skip_verify(args.no_verify)
        .stop_when(&stop);
    let report = repobox_orm::migrate::migrate(conn, migration, &options).await;
    signal.abort();
    progress.finish(report.is_ok());
    let report = report?;
    if json {
        println!("{}", json_line(&report));
    } else {
        print_report(&report);
    }
    if !matches!(report.end, RunEnd::Finished | RunEnd::AlreadyDone | RunEnd::DryRun) {
        return Err(Unfinished.into());
    }
    let findings = report
        .verification
        .iter()
        .flat_map(|v| &v.indexes)
        .map(|r| r.needs_repair().saturating_add(r.conflicts).saturating_add(r.bad))
        .fold(report.problems(), u64::saturating_add);
    if findings > 0 {
        return Err(super::index::Findings { count: findings }.into());
    }
    Ok(())
}

fn print_report(report: &MigrationReport) {
    let end = match report.end {
        RunEnd::Finished => "finished",
        RunEnd::AlreadyDone => "already done (nothing ran; --restart runs it again)",
        RunEnd::Stopped => "stopped: run it again to resume",
        RunEnd::TakenOver => "taken over by another run of it: this one stopped",
        RunEnd::DryRun => "dry run: nothing changed",
    };
    let resumed = if report.resumed { " (resumed)" } else { "" };
    println!("migration {}: {end}{resumed}", report.name);
    let changed = if report.end == RunEnd::DryRun {
        "WOULD CHANGE"
    } else {
        "CHANGED"
    };
    let rows: Vec<Vec<String>> = report
        .steps
        .iter()
        .map(|s| {
            vec![
                s.step.clone(),
                s.looked.to_string(),
                s.changed.to_string(),
                s.problems.to_string(),
            ]
        })
        .collect();
    print!("{}", render(&["STEP", "LOOKED", changed, "PROBLEMS"], &rows));
    for step in &report.steps {
        for message in &step.messages {
            println!("{}: {}", clean(&step.step), clean(message));
        }
    }
    for v in &report.verification {
        let (repair, by_hand) = v.indexes.iter().fold((0u64, 0u64), |(a, b), r| {
            (
                a.saturating_add(r.needs_repair()),
                b.saturating_add(r.conflicts).saturating_add(r.bad),
            )
        });
        if repair == 0 && by_hand == 0 {
            println!("verified {}: every index exact", v.entity);
        } else {
            println!(
                "verified {}: {repair} entr(y/ies) need a repair, {by_hand} finding(s) need a person: see `repobox index check`",
                v.entity
            );
        }
    }
}
