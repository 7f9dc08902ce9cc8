//! The models' migrations, in the order they were written: what
//! `repobox migrate` runs (see [`repobox_orm::migrate`]).

use repobox_orm::migrate::{Migration, Step};

use crate::Job;

/// Every migration of the models, oldest first.
pub fn migrations() -> Vec<&'static dyn Migration> {
    vec![&JobExitCode]
}

/// The migration named `name`, if there is one.
pub fn migration(name: &str) -> Option<&'static dyn Migration> {
    migrations().into_iter().find(|m| m.name() == name)
}

/// Rewrites the jobs written before `exit` became `exit_code`: each such
/// hash gets `exit_code` with the value of `exit`, and loses `exit` (a job
/// that has both keeps its `exit_code`). Reads did not need it (the field's
/// alias reads `exit`); other-language clients that read `exit_code` only do.
#[derive(Debug, Clone, Copy)]
pub struct JobExitCode;

impl Migration for JobExitCode {
    fn name(&self) -> &'static str {
        "2026-12-job-exit-code"
    }

    fn description(&self) -> &'static str {
        "store the exit code of jobs written before the rename under `exit_code`, not `exit`"
    }

    fn steps(&self) -> repobox_orm::Result<Vec<Step>> {
        Ok(vec![Step::transform::<Job>("exit to exit_code", |hash, out| {
            match (hash.get("exit_code"), hash.get("exit")) {
                (None, Some(exit)) => out.set("exit_code", exit.to_vec()),
                (Some(_), Some(_)) => out.delete("exit"),
                _ => {}
            }
            Ok(())
        })])
    }
}
