//! The rounds' results: their medians, the Markdown table and the JSON.

use serde::Serialize;

use crate::model::{Measured, Scenario, Side};

/// How one run ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It ran; what it cost.
    Measured(Measured),
    /// The side cannot run the scenario, and why.
    NotApplicable(String),
    /// It failed, and why.
    Failed(String),
}

impl Outcome {
    /// The measurement, if the run was measured.
    fn measured(&self) -> Option<&Measured> {
        match self {
            Outcome::Measured(m) => Some(m),
            _ => None,
        }
    }
}

/// One run of one side in one round.
#[derive(Debug, Clone)]
pub struct Run {
    /// The scenario run.
    pub scenario: Scenario,
    /// The side that ran it.
    pub side: Side,
    /// The round, from 1.
    pub round: usize,
    /// How it ended.
    pub outcome: Outcome,
}

/// A run as the JSON has it.
#[derive(Debug, Serialize)]
struct RunJson<'r> {
    scenario: String,
    side: Side,
    round: usize,
    #[serde(flatten)]
    measured: Option<&'r Measured>,
    jobs_per_sec: Option<f64>,
    cpu_us_per_job: Option<f64>,
    commands_per_job: Option<f64>,
    error: Option<&'r str>,
    not_applicable: Option<&'r str>,
}

/// The medians of one side in one scenario over its rounds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Medians {
    /// Jobs per second.
    pub jobs_per_sec: f64,
    /// Server CPU microseconds per job.
    pub cpu_us_per_job: f64,
    /// Server commands per job.
    pub commands_per_job: f64,
}

/// What one side shows in one scenario's row.
#[derive(Debug, Clone)]
enum Cell {
    /// The side was not selected (`--only`).
    Skipped,
    /// Some round failed.
    Failed,
    /// The side cannot run the scenario.
    NotApplicable,
    /// Every round ran.
    Ok(Medians),
}

/// The median of `values` (the mean of the two middle ones for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The cell of `side` in `scenario`.
fn cell(runs: &[Run], scenario: Scenario, side: Side) -> Cell {
    let mine: Vec<&Run> = runs
        .iter()
        .filter(|r| r.scenario == scenario && r.side == side)
        .collect();
    if mine.is_empty() {
        return Cell::Skipped;
    }
    if mine.iter().any(|r| matches!(r.outcome, Outcome::Failed(_))) {
        return Cell::Failed;
    }
    let Some(ok) = mine.iter().map(|r| r.outcome.measured()).collect::<Option<Vec<_>>>() else {
        return Cell::NotApplicable;
    };
    Cell::Ok(Medians {
        jobs_per_sec: median(ok.iter().map(|m| m.jobs_per_sec()).collect()),
        cpu_us_per_job: median(ok.iter().map(|m| m.cpu_us_per_job()).collect()),
        commands_per_job: median(ok.iter().map(|m| m.commands_per_job()).collect()),
    })
}

/// `12345.6` as `12,346`.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A cell's text for one metric.
fn show(cell: &Cell, metric: impl Fn(&Medians) -> String) -> String {
    match cell {
        Cell::Skipped => "–".into(),
        Cell::Failed => "failed".into(),
        Cell::NotApplicable => "n/a".into(),
        Cell::Ok(m) => metric(m),
    }
}

/// repobox's jobs/s over another side's, as `1.23×`.
fn ratio(ours: &Cell, theirs: &Cell) -> String {
    match (ours, theirs) {
        (Cell::Ok(a), Cell::Ok(b)) => format!("{:.2}×", a.jobs_per_sec / b.jobs_per_sec),
        (Cell::Failed, _) | (_, Cell::Failed) => "failed".into(),
        (Cell::NotApplicable, _) | (_, Cell::NotApplicable) => "n/a".into(),
        _ => "–".into(),
    }
}

/// The Markdown table of the medians, one row per scenario.
pub fn table(runs: &[Run], scenarios: &[Scenario]) -> String {
    let mut out = String::from(
        "| scenario | repobox jobs/s | BullMQ jobs/s | apalis jobs/s | repobox/BullMQ | repobox/apalis \
         | server CPU µs/job (repobox / BullMQ / apalis) | commands/job (repobox / BullMQ / apalis) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for &scenario in scenarios {
        let [r, b, a] = Side::ALL.map(|side| cell(runs, scenario, side));
        let rate = |c: &Cell| show(c, |m| thousands(m.jobs_per_sec));
        let cpu = |c: &Cell| show(c, |m| format!("{:.1}", m.cpu_us_per_job));
        let cmds = |c: &Cell| show(c, |m| format!("{:.2}", m.commands_per_job));
        out.push_str(&format!(
            "| {scenario} | {} | {} | {} | {} | {} | {} / {} / {} | {} / {} / {} |\n",
            rate(&r),
            rate(&b),
            rate(&a),
            ratio(&r, &b),
            ratio(&r, &a),
            cpu(&r),
            cpu(&b),
            cpu(&a),
            cmds(&r),
            cmds(&b),
            cmds(&a),
        ));
    }
    for (why, whom) in notes(runs) {
        out.push_str(&format!("\nn/a: {whom}: {why}\n"));
    }
    out
}

/// The reasons for `n/a`, each with the side and scenarios it holds for.
fn notes(runs: &[Run]) -> Vec<(String, String)> {
    let mut notes: Vec<(String, Side, Vec<String>)> = Vec::new();
    for run in runs {
        let Outcome::NotApplicable(why) = &run.outcome else {
            continue;
        };
        let scenario = run.scenario.to_string();
        match notes.iter_mut().find(|(w, s, _)| w == why && *s == run.side) {
            Some((_, _, scenarios)) if scenarios.contains(&scenario) => {}
            Some((_, _, scenarios)) => scenarios.push(scenario),
            None => notes.push((why.clone(), run.side, vec![scenario])),
        }
    }
    notes
        .into_iter()
        .map(|(why, side, scenarios)| (why, format!("{} in {}", side.name(), scenarios.join(", "))))
        .collect()
}

/// The raw rounds and the medians as one JSON document.
pub fn json(runs: &[Run], scenarios: &[Scenario], context: serde_json::Value) -> serde_json::Value {
    let raw: Vec<RunJson<'_>> = runs
        .iter()
        .map(|r| {
            let m = r.outcome.measured();
            let (error, not_applicable) = match &r.outcome {
                Outcome::Measured(_) => (None, None),
                Outcome::Failed(e) => (Some(e.as_str()), None),
                Outcome::NotApplicable(why) => (None, Some(why.as_str())),
            };
            RunJson {
                scenario: r.scenario.to_string(),
                side: r.side,
                round: r.round,
                measured: m,
                jobs_per_sec: m.map(Measured::jobs_per_sec),
                cpu_us_per_job: m.map(Measured::cpu_us_per_job),
                commands_per_job: m.map(Measured::commands_per_job),
                error,
                not_applicable,
            }
        })
        .collect();
    let mut medians = Vec::new();
    for &scenario in scenarios {
        for side in Side::ALL {
            if let Cell::Ok(m) = cell(runs, scenario, side) {
                medians.push(serde_json::json!({
                    "scenario": scenario.to_string(),
                    "side": side,
                    "median": m,
                }));
            }
        }
    }
    serde_json::json!({ "context": context, "runs": raw, "medians": medians })
}
