//! Online migrations of stored data, declared in Rust next to the models
//! and run by the library ([`migrate`]) or the CLI (`repobox migrate`).
//!
//! A [`Migration`] is a name and a list of [`Step`]s: backfill an index added
//! to an entity that already has data ([`Step::backfill_index`]), drop the
//! keys of an index that was removed ([`Step::drop_index`]), rewrite a field
//! with a Rust function ([`Step::transform`]), move every entity from its
//! previous key to its key ([`Step::rekey`], for
//! `#[key("...", previous = "...")]`). Each step walks the keyspace
//! (`SCAN` for its key template, over every primary of a cluster) batch by
//! batch while the application keeps reading and writing; every change it
//! makes to an entity is a compare-and-set write, atomic with the entity's
//! index entries and keeping its TTL, so a write of the application between
//! the step's read and its write is never lost (the step reads again).
//!
//! After every batch the run records where it is in a checkpoint hash,
//! `repobox:migration:{<name>}`, so that a run stopped by Ctrl-C, a crash or
//! `kill -9` resumes where it stopped: the work after the last checkpoint
//! (one batch) is looked at again, and finds nothing left to do, because
//! every step only changes what still needs it (a transform must leave its
//! own result unchanged, which the run checks on every entity). A finished
//! migration is not run again. At the end the run checks the indexes of the
//! entities it changed ([`check_indexes`](crate::check_indexes)).

mod checkpoint;
mod rekey;
mod steps;
mod transform;

use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::BoxFuture;

pub use self::checkpoint::MigrationState;
use self::checkpoint::{Checkpoint, Claim};
pub use self::steps::Step;
pub use self::transform::{Changes, Fields};
use crate::engine::sweep::{IndexReport, Walk, keys_of, scan, scan_pattern};
use crate::engine::write::BULK_CHUNK;
use crate::error::Result;
use crate::store::Store;

/// A migration: a stable name and the steps it runs, in order.
///
/// ```no_run
/// use repobox_orm::migrate::{Migration, Step};
/// # use repobox_orm::prelude::*;
/// # use repobox_orm::meta::IndexKind;
/// # #[derive(RedisEntity)] #[key("job:<id>")] #[index(set = "jobs:status:<status>")]
/// # struct Job { id: String, status: String, #[redis(alias = "exit")] exit_code: Option<i32> }
///
/// struct IndexJobsByStatus;
///
/// impl Migration for IndexJobsByStatus {
///     fn name(&self) -> &'static str { "2026-12-jobs-by-status" }
///     fn description(&self) -> &'static str { "index every job by status; drop the old per-day index" }
///     fn steps(&self) -> repobox_orm::Result<Vec<Step>> {
///         Ok(vec![
///             Step::backfill_index::<Job>("by_status")?,
///             Step::drop_index::<Job>("jobs:day:<day>", IndexKind::Set)?,
///             Step::transform::<Job>("fill exit_code from exit", |hash, out| {
///                 if let (None, Some(exit)) = (hash.get("exit_code"), hash.get("exit")) {
///                     out.set("exit_code", exit.to_vec());
///                 }
///                 Ok(())
///             }),
///         ])
///     }
/// }
///
/// # async fn run(store: &mut Store) -> repobox_orm::Result<()> {
/// let report = repobox_orm::migrate::migrate(store, &IndexJobsByStatus, &Default::default()).await?;
/// assert!(report.is_complete() && report.is_verified());
/// # Ok(()) }
/// ```
pub trait Migration: Send + Sync {
    /// The migration's name: its checkpoint is kept under it, so it never
    /// changes once the migration has run anywhere. A key part: letters,
    /// digits and punctuation other than `:`, braces and glob characters.
    fn name(&self) -> &'static str;

    /// What it does, in one line (`repobox migrate list`).
    fn description(&self) -> &'static str;

    /// Its steps, in the order they run. The checkpoint records them: a run
    /// refuses to resume one written for other steps (see
    /// [`MigrateOptions::restart`]).
    ///
    /// # Errors
    ///
    /// Whatever building a step refuses (an index the entity does not
    /// declare, a template that is not one).
    fn steps(&self) -> Result<Vec<Step>>;
}

/// How a migration runs: its walk (progress and rate), a dry run, a restart,
/// the final verification and a way to stop it.
#[derive(Clone, Copy, Default)]
pub struct MigrateOptions<'a> {
    walk: Walk<'a>,
    dry_run: bool,
    restart: bool,
    skip_verify: bool,
    stop: Option<&'a AtomicBool>,
}

impl std::fmt::Debug for MigrateOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateOptions")
            .field("walk", &self.walk)
            .field("dry_run", &self.dry_run)
            .field("restart", &self.restart)
            .field("skip_verify", &self.skip_verify)
            .field("stop", &self.stop.is_some())
            .finish()
    }
}

impl<'a> MigrateOptions<'a> {
    /// Tells `walk`'s progress how far each step has come, and goes no
    /// faster than its rate (keys looked at per second).
    pub fn walk(mut self, walk: Walk<'a>) -> Self {
        self.walk = walk;
        self
    }

    /// Counts what each step would change, and changes nothing (not even
    /// the checkpoint).
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }

    /// Forgets the checkpoint and runs the migration from its first step,
    /// even when it has finished: for a migration whose steps changed, or
    /// one to run again on data written since. Every step only changes what
    /// still needs it, so running one again is safe.
    pub fn restart(mut self, yes: bool) -> Self {
        self.restart = yes;
        self
    }

    /// Skips the index check of the changed entities at the end.
    pub fn skip_verify(mut self, yes: bool) -> Self {
        self.skip_verify = yes;
        self
    }

    /// Stops after the batch in progress once `stop` is set (Ctrl-C): the
    /// checkpoint is written, and the next run resumes there.
    pub fn stop_when(mut self, stop: &'a AtomicBool) -> Self {
        self.stop = Some(stop);
        self
    }

    fn stopping(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// How a run of a migration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEnd {
    /// Every step ran to its end.
    Finished,
    /// It had finished before: nothing ran.
    AlreadyDone,
    /// Stopped as asked; the checkpoint says where, the next run resumes.
    Stopped,
    /// Another run took the checkpoint over; this one stopped.
    TakenOver,
    /// A dry run: counted, changed nothing.
    DryRun,
}

/// What one step did (over every run of the migration, for a resumed one).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StepReport {
    /// What the step does (`backfill Job::by_status`).
    pub step: String,
    /// Keys looked at.
    pub looked: u64,
    /// Entities or keys changed (a dry run: that would change).
    pub changed: u64,
    /// Entities left for a person: a unique value another entity holds, a
    /// hash that does not decode, an entity that kept changing.
    pub problems: u64,
    /// What the problems were (at most 100 messages per run).
    pub messages: Vec<String>,
}

/// The index check of one entity after the migration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    /// The entity (`Job`).
    pub entity: &'static str,
    /// What the check found, per index.
    pub indexes: Vec<IndexReport>,
}

/// What a run of [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationReport {
    /// The migration's name.
    pub name: &'static str,
    /// How the run ended.
    pub end: RunEnd,
    /// Whether it resumed from a checkpoint an earlier run left.
    pub resumed: bool,
    /// Per step, in order.
    pub steps: Vec<StepReport>,
    /// The index check of every entity a step changed (empty when skipped,
    /// and for a run that did not finish).
    pub verification: Vec<Verification>,
}

impl MigrationReport {
    /// Whether the migration has run to its end (now or before).
    pub fn is_complete(&self) -> bool {
        matches!(self.end, RunEnd::Finished | RunEnd::AlreadyDone)
    }

    /// Whether the final index check found nothing to repair and nothing for a person.
    pub fn is_verified(&self) -> bool {
        self.verification
            .iter()
            .flat_map(|v| &v.indexes)
            .all(|r| r.needs_repair() == 0 && r.conflicts == 0 && r.bad == 0)
    }

    /// Problems the steps left for a person, over every step.
    pub fn problems(&self) -> u64 {
        self.steps.iter().map(|s| s.problems).fold(0, u64::saturating_add)
    }
}

/// The index check of one entity type, as a step names it for the end of a run.
pub(crate) type VerifyFn = for<'a> fn(&'a mut Store, &'a Walk<'a>) -> BoxFuture<'a, Result<Vec<IndexReport>>>;

/// Runs `migration` on `store`: resumes it from its checkpoint, or starts
/// it; runs every step to its end (or until `options` stops it); checks
/// the indexes of the entities it changed.
///
/// # Errors
///
/// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a name
/// that is not a key part, a step that cannot be built, a transform that
/// changes its own result again, or a checkpoint written for other steps
/// (without [`MigrateOptions::restart`]);
/// [`Error::Redis`](crate::Error::Redis) and the other I/O errors of the
/// store when Redis fails (the checkpoint keeps what was done);
/// [`Error::WrongType`](crate::Error::WrongType) when the checkpoint key
/// holds something else.
pub async fn migrate(
    store: &mut Store,
    migration: &dyn Migration,
    options: &MigrateOptions<'_>,
) -> Result<MigrationReport> {
    let name = migration.name();
    let key = checkpoint::key(name)?;
    let steps = migration.steps()?;
    crate::store::scan::ensure_whole_keyspace(store).await?;
    let mut report = MigrationReport {
        name,
        end: RunEnd::DryRun,
        resumed: false,
        steps: steps
            .iter()
            .map(|s| StepReport {
                step: s.what.clone(),
                ..StepReport::default()
            })
            .collect(),
        verification: Vec::new(),
    };
    if options.dry_run {
        for (i, step) in steps.iter().enumerate() {
            run_step(store, step, 0, options, true, &mut report.steps[i], None).await?;
        }
        return Ok(report);
    }
    let mut checkpoint = match Checkpoint::claim(store, key, &steps, options.restart).await? {
        Claim::Done(counts) => {
            counts.into_reports(&mut report.steps);
            report.end = RunEnd::AlreadyDone;
            return Ok(report);
        }
        Claim::Owned(checkpoint) => checkpoint,
    };
    report.resumed = checkpoint.resumed();
    checkpoint.counts().clone().into_reports(&mut report.steps);
    for (i, step) in steps.iter().enumerate().skip(checkpoint.step()) {
        let from = if i == checkpoint.step() { checkpoint.cursor() } else { 0 };
        let end = run_step(
            store,
            step,
            from,
            options,
            false,
            &mut report.steps[i],
            Some((&mut checkpoint, i)),
        )
        .await?;
        if let Some(end) = end {
            report.end = end;
            return Ok(report);
        }
    }
    if !checkpoint.finish(store).await? {
        report.end = RunEnd::TakenOver;
        return Ok(report);
    }
    report.end = RunEnd::Finished;
    if !options.skip_verify {
        let mut checked: Vec<&'static str> = Vec::new();
        for (entity, verify) in steps.iter().filter_map(|s| s.verify) {
            if checked.contains(&entity) {
                continue;
            }
            checked.push(entity);
            let indexes = verify(store, &options.walk).await?;
            report.verification.push(Verification { entity, indexes });
        }
    }
    Ok(report)
}

/// Walks one step from `cursor`, batch by batch, adding what it did to
/// `report` and, unless a dry run, recording each batch in the checkpoint.
/// `Some(end)` when the run must stop there (asked to, or taken over).
async fn run_step(
    store: &mut Store,
    step: &Step,
    mut cursor: u64,
    options: &MigrateOptions<'_>,
    dry_run: bool,
    report: &mut StepReport,
    mut checkpoint: Option<(&mut Checkpoint, usize)>,
) -> Result<Option<RunEnd>> {
    let walk = &options.walk;
    let pattern = scan_pattern(step.keys);
    let mut pace = walk.begin_scan(store, &step.what).await?;
    loop {
        if options.stopping() {
            return Ok(Some(RunEnd::Stopped));
        }
        let (next, keys) = scan(store, cursor, &pattern, walk, &mut pace).await?;
        let (typed, _) = keys_of(store, step.keys, step.redis_type, keys).await?;
        report.looked = report.looked.saturating_add(typed.len() as u64);
        for chunk in typed.chunks(BULK_CHUNK) {
            let tally = step.work.batch(store, chunk, dry_run).await?;
            report.changed = report.changed.saturating_add(tally.changed);
            report.problems = report.problems.saturating_add(tally.problems);
            let room = PROBLEMS_KEPT.saturating_sub(report.messages.len());
            report.messages.extend(tally.messages.into_iter().take(room));
        }
        if let Some((checkpoint, i)) = checkpoint.as_mut() {
            let (at_step, at) = if next == 0 { (*i + 1, 0) } else { (*i, next) };
            if !checkpoint.record(store, at_step, at, *i, report).await? {
                return Ok(Some(RunEnd::TakenOver));
            }
        }
        if next == 0 {
            return Ok(None);
        }
        cursor = next;
    }
}

/// How many problem messages a step's report keeps.
const PROBLEMS_KEPT: usize = 100;

/// What one batch of a step did.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub changed: u64,
    pub problems: u64,
    pub messages: Vec<String>,
}

/// The state of every migration in `migrations` (`repobox migrate list`):
/// its checkpoint, read without changing it.
///
/// # Errors
///
/// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a name that
/// is not a key part; the store's errors when Redis fails.
pub async fn states(store: &mut Store, migrations: &[&dyn Migration]) -> Result<Vec<MigrationState>> {
    let mut out = Vec::with_capacity(migrations.len());
    for m in migrations {
        out.push(checkpoint::state(store, m.name()).await?);
    }
    Ok(out)
}
