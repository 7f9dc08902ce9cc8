//! One capped stream of what happens to jobs, `jobs:events`, that the CLI's
//! `jobs tail -f`, the runners' cancellation and any dashboard follow with
//! blocking reads instead of polling each job.
//!
//! Entries: `job_id`, `kind` (`status`, `cancel`, `progress`, `output`),
//! `at` (unix millis) and, by kind, `status` (the status entered),
//! `progress` (0-100) and `message`, or `lines` (how many output lines the
//! job has). A status change, a cancellation request and a progress report
//! append their event in the same write as the job's hash (atomic on one
//! server; through the stream's outbox on a cluster); output events follow
//! their lines. A promotion to `queued` appends to `jobs:stream` instead
//! and has no event. The runners' housekeeping trims the stream to about
//! [`EVENTS_KEPT`] entries.

use std::collections::HashMap;
use std::time::Duration;

use repobox_orm::prelude::ConnectionLike;
use repobox_orm::redis;

use crate::Result;

/// The events stream.
pub const JOB_EVENTS: &str = "jobs:events";
/// About how many events the stream keeps.
pub const EVENTS_KEPT: u64 = 10_000;

/// One event of `jobs:events`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobEvent {
    /// The stream entry id.
    pub id: String,
    /// The job's id.
    pub job_id: String,
    /// `status`, `cancel`, `progress` or `output`.
    pub kind: String,
    /// The other fields (`at`, `status`, `progress`, `message`, `lines`).
    pub fields: HashMap<String, String>,
}

impl JobEvent {
    /// A field of the event.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// The events after `after` (an entry id; `$`: from now on), up to
    /// `count`, waiting up to `block` for one (`None`: return at once).
    /// Blocking reads belong on a connection of their own
    /// ([`Store::dedicated`](repobox_orm::Store::dedicated)). Entries that
    /// are not text, or have no `job_id`, are skipped.
    pub async fn read<C: ConnectionLike + Send>(
        conn: &mut C,
        after: &str,
        block: Option<Duration>,
        count: usize,
    ) -> Result<Vec<JobEvent>> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(count.max(1));
        if let Some(block) = block {
            cmd.arg("BLOCK")
                .arg(u64::try_from(block.as_millis().max(1)).unwrap_or(u64::MAX));
        }
        cmd.arg("STREAMS").arg(JOB_EVENTS).arg(after);
        let reply: Option<redis::streams::StreamReadReply> = cmd.query_async(conn).await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .filter_map(|entry| {
                let mut fields: HashMap<String, String> = entry
                    .map
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), redis::from_redis_value_ref::<String>(v).ok()?)))
                    .collect();
                let job_id = fields.remove("job_id")?;
                let kind = fields.remove("kind").unwrap_or_default();
                Some(JobEvent {
                    id: entry.id,
                    job_id,
                    kind,
                    fields,
                })
            })
            .collect())
    }

    /// The id of the newest event (`0-0` when there is none): reading after
    /// it sees what comes next.
    pub async fn last_id<C: ConnectionLike + Send>(conn: &mut C) -> Result<String> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(JOB_EVENTS)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await?;
        Ok(reply.ids.into_iter().next().map_or_else(|| "0-0".to_owned(), |e| e.id))
    }

    /// Trims the stream to about [`EVENTS_KEPT`] entries; returns how many went.
    pub async fn trim<C: ConnectionLike + Send>(conn: &mut C) -> Result<u64> {
        Ok(redis::cmd("XTRIM")
            .arg(JOB_EVENTS)
            .arg("MAXLEN")
            .arg("~")
            .arg(EVENTS_KEPT)
            .query_async(conn)
            .await?)
    }
}

impl super::Job {
    /// Stores how far the job is (`percent`, capped at 100) and `message` on
    /// the job with a `progress` event, in one write, if run `run_id` holds
    /// it; `Err(LeaseLost)` if it does not. A message longer than 1,000
    /// characters is cut.
    pub async fn report_progress<C: ConnectionLike + Send>(
        conn: &mut C,
        id: &str,
        run_id: &str,
        percent: u8,
        message: Option<&str>,
    ) -> Result<()> {
        let percent = percent.min(100);
        let message: Option<String> = message.map(|m| m.chars().take(1000).collect());
        let patch = super::JobPatch {
            progress: Some(Some(percent)),
            progress_message: Some(message.clone()),
            ..Default::default()
        };
        let expected = super::JobPatch {
            status: Some(super::JobStatus::Running),
            run_id: Some(Some(run_id.to_owned())),
            ..Default::default()
        };
        let at = crate::now_millis().to_string();
        let shown = percent.to_string();
        let mut event = vec![
            ("job_id", id),
            ("kind", "progress"),
            ("progress", shown.as_str()),
            ("at", at.as_str()),
        ];
        if let Some(m) = &message {
            event.push(("message", m.as_str()));
        }
        match super::Job::update_if_and_append(conn, id, &patch, &expected, JOB_EVENTS, &event).await {
            Ok(_) => Ok(()),
            Err(repobox_orm::Error::Conflict { .. } | repobox_orm::Error::NotFound { .. }) => {
                Err(crate::Error::LeaseLost {
                    key: super::Job::key_for(id)?,
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The compare-and-set of a move to `to` at `at` with its `status` event on
/// `jobs:events`, acknowledging the delivery `ack` (queue, entry id) in the
/// same write when there is one.
pub(crate) async fn write_status<C: ConnectionLike + Send>(
    conn: &mut C,
    id: &str,
    patch: &super::JobPatch,
    expected: &super::JobPatch,
    to: super::JobStatus,
    at: i64,
    ack: Option<(&repobox_orm::Queue, &str)>,
) -> repobox_orm::Result<()> {
    let at = at.to_string();
    let event = status_event(id, to, &at);
    match ack {
        None => super::Job::update_if_and_append(conn, id, patch, expected, JOB_EVENTS, &event)
            .await
            .map(drop),
        Some((queue, entry)) => {
            super::Job::update_if_and_ack(conn, id, patch, expected, Some((JOB_EVENTS, &event)), queue, entry)
                .await
                .map(drop)
        }
    }
}

/// The `jobs:events` entry of job `id` entering `status` at `at`.
pub(crate) fn status_event<'a>(id: &'a str, status: super::JobStatus, at: &'a str) -> [(&'static str, &'a str); 4] {
    use repobox_orm::RedisValue;
    [
        ("job_id", id),
        ("kind", "status"),
        ("status", status.as_str()),
        ("at", at),
    ]
}
