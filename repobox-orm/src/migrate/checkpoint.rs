//! A migration's checkpoint: the hash `repobox:migration:{<name>}`, one key
//! (one cluster slot), which says which step a run is at, where its walk of
//! the keyspace is (the `SCAN` cursor), what each step did so far and
//! whether the migration has finished. It is written after every batch, by
//! the run that owns it only (`checkpoint.lua`): a second run takes it over,
//! and the first stops at its next batch.

use std::collections::HashMap;

use redis::Value;

use super::{StepReport, steps::Step};
use crate::error::{Error, Result};
use crate::meta::validate_key_part;
use crate::scripts::checkpoint;
use crate::store::Store;

const TEMPLATE: &str = "repobox:migration:{<name>}";

/// The checkpoint key of the migration `name`.
pub(super) fn key(name: &'static str) -> Result<String> {
    validate_key_part(TEMPLATE, "name", name)?;
    Ok(format!("repobox:migration:{{{name}}}"))
}

/// Per step: keys looked at, changed, problems.
#[derive(Debug, Clone, Default)]
pub(super) struct Counts(Vec<[u64; 3]>);

impl Counts {
    fn read(hash: &HashMap<String, String>, steps: usize) -> Counts {
        let n = |i: usize, what: &str| {
            hash.get(&format!("s{i}:{what}"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Counts(
            (0..steps)
                .map(|i| [n(i, "looked"), n(i, "changed"), n(i, "problems")])
                .collect(),
        )
    }

    /// Adds what earlier runs did to `reports`.
    pub(super) fn into_reports(self, reports: &mut [StepReport]) {
        for (report, [looked, changed, problems]) in reports.iter_mut().zip(self.0) {
            report.looked = looked;
            report.changed = changed;
            report.problems = problems;
        }
    }
}

/// What a run found when it claimed the checkpoint.
pub(super) enum Claim {
    /// The migration had finished: what its runs did.
    Done(Counts),
    /// The run owns the checkpoint now.
    Owned(Checkpoint),
}

/// The checkpoint a run owns.
#[derive(Debug)]
pub(super) struct Checkpoint {
    key: String,
    owner: String,
    step: usize,
    cursor: u64,
    counts: Counts,
    resumed: bool,
}

/// The steps as the checkpoint records them, one per line.
fn plan_of(steps: &[Step]) -> String {
    steps.iter().map(|s| s.what.as_str()).collect::<Vec<_>>().join("\n")
}

async fn read(store: &mut Store, key: &str) -> Result<HashMap<String, String>> {
    let reply: Value = redis::cmd("HGETALL").arg(key).query_async(store).await?;
    if let Value::ServerError(e) = &reply
        && e.code() == "WRONGTYPE"
    {
        return Err(Error::WrongType { key: key.to_owned() });
    }
    Ok(redis::from_redis_value(reply).map_err(redis::RedisError::from)?)
}

fn corrupt(key: &str, field: &str) -> Error {
    Error::InvalidArgument {
        name: "checkpoint",
        reason: format!("`{key}` has no valid `{field}`: run the migration with a restart to start over"),
    }
}

impl Checkpoint {
    /// Reads the checkpoint at `key` (after deleting it when `restart`) and
    /// takes it over, unless the migration has finished.
    pub(super) async fn claim(store: &mut Store, key: String, steps: &[Step], restart: bool) -> Result<Claim> {
        if restart {
            let _: i64 = redis::cmd("DEL").arg(&key).query_async(store).await?;
        }
        let hash = read(store, &key).await?;
        let plan = plan_of(steps);
        let (step, cursor, resumed) = if hash.is_empty() {
            (0, 0, false)
        } else {
            if hash.get("plan") != Some(&plan) {
                return Err(Error::InvalidArgument {
                    name: "migration",
                    reason: format!(
                        "`{key}` was written for other steps ({:?}, now {plan:?}): run it with a restart to start over",
                        hash.get("plan").map(String::as_str).unwrap_or("none"),
                    ),
                });
            }
            if hash.get("done").map(String::as_str) == Some("1") {
                return Ok(Claim::Done(Counts::read(&hash, steps.len())));
            }
            let step: usize = hash
                .get("step")
                .and_then(|v| v.parse().ok())
                .filter(|s| *s <= steps.len())
                .ok_or_else(|| corrupt(&key, "step"))?;
            let cursor: u64 = hash
                .get("cursor")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| corrupt(&key, "cursor"))?;
            (step, cursor, true)
        };
        let owner = crate::random_id("a migration run")?;
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&key).arg("owner").arg(&owner).arg("plan").arg(&plan);
        if !resumed {
            cmd.arg("step").arg(0).arg("cursor").arg(0).arg("done").arg(0);
        }
        let _: i64 = cmd.query_async(store).await?;
        tracing::info!(checkpoint = %key, step, cursor, resumed, "migration run claimed its checkpoint");
        Ok(Claim::Owned(Checkpoint {
            counts: Counts::read(&hash, steps.len()),
            key,
            owner,
            step,
            cursor,
            resumed,
        }))
    }

    /// The step the run starts at.
    pub(super) fn step(&self) -> usize {
        self.step
    }

    /// Where the walk of that step starts.
    pub(super) fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Whether an earlier run left the checkpoint.
    pub(super) fn resumed(&self) -> bool {
        self.resumed
    }

    /// What earlier runs did.
    pub(super) fn counts(&self) -> &Counts {
        &self.counts
    }

    async fn write(&self, store: &mut Store, fields: &[(&str, String)]) -> Result<bool> {
        let cmd = checkpoint::command(&self.key, &self.owner, fields);
        let reply = crate::engine::pipeline::run::<Value, _>(store, &crate::scripts::CHECKPOINT, &cmd).await?;
        checkpoint::parse(&self.key, reply)
    }

    /// Records that the run is at `step`, `cursor`, and what step `i` has
    /// done in all (`report`). `false` when another run has taken the
    /// checkpoint over (nothing written).
    pub(super) async fn record(
        &mut self,
        store: &mut Store,
        step: usize,
        cursor: u64,
        i: usize,
        report: &StepReport,
    ) -> Result<bool> {
        self.step = step;
        self.cursor = cursor;
        self.write(
            store,
            &[
                ("step", step.to_string()),
                ("cursor", cursor.to_string()),
                (&format!("s{i}:looked"), report.looked.to_string()),
                (&format!("s{i}:changed"), report.changed.to_string()),
                (&format!("s{i}:problems"), report.problems.to_string()),
            ],
        )
        .await
    }

    /// Records that the migration has finished; `false` when another run
    /// has taken the checkpoint over.
    pub(super) async fn finish(&mut self, store: &mut Store) -> Result<bool> {
        self.write(store, &[("done", "1".into()), ("cursor", "0".into())]).await
    }
}

/// Where a migration is, as its checkpoint says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationState {
    /// The migration's name.
    pub name: &'static str,
    /// `not_started`, `in_progress` (a run is at it, or stopped and will
    /// resume) or `done`.
    pub state: &'static str,
    /// The step a run is at (counted from 0), while in progress.
    pub step: Option<u64>,
    /// When a run last wrote the checkpoint, unix ms by Redis's clock.
    pub updated_at: Option<i64>,
}

/// The state of the migration `name`, from its checkpoint.
pub(super) async fn state(store: &mut Store, name: &'static str) -> Result<MigrationState> {
    let key = key(name)?;
    let hash = read(store, &key).await?;
    let state = if hash.is_empty() {
        "not_started"
    } else if hash.get("done").map(String::as_str) == Some("1") {
        "done"
    } else {
        "in_progress"
    };
    Ok(MigrationState {
        name,
        state,
        step: (state == "in_progress")
            .then(|| hash.get("step").and_then(|s| s.parse().ok()))
            .flatten(),
        updated_at: hash.get("updated_at").and_then(|v| v.parse().ok()),
    })
}
