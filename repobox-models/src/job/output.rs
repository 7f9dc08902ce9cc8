//! A job's output: the list `job:<id>:output`, which lives 24 hours after its last line.

use repobox_orm::prelude::ConnectionLike;
use repobox_orm::redis;

use super::{JOB_OUTPUT_TTL_MS, Job};
use crate::Result;

/// Which output lines to read: `start..=end`, negative counting from the end (as `LRANGE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputRange {
    /// First line (0-based; -1 is the last).
    pub start: isize,
    /// Last line, inclusive.
    pub end: isize,
}

impl OutputRange {
    /// Every line.
    pub const ALL: OutputRange = OutputRange { start: 0, end: -1 };

    /// The last `n` lines.
    pub fn last(n: usize) -> Self {
        OutputRange {
            start: isize::try_from(n).map_or(isize::MIN, |n| -n),
            end: -1,
        }
    }
}

impl Job {
    /// The key template of a job's output list, `job:<id>:output`: its key
    /// part is checked by the rules of the job's own key.
    pub const OUTPUT_KEY: repobox_orm::meta::KeyTemplate = repobox_orm::meta::KeyTemplate {
        source: "job:<id>:output",
        segments: &[
            repobox_orm::meta::Segment::Lit("job:"),
            repobox_orm::meta::Segment::Field {
                placeholder: "id",
                field: "id",
            },
            repobox_orm::meta::Segment::Lit(":output"),
        ],
        max_part_len: repobox_orm::meta::DEFAULT_MAX_KEY_PART_LEN,
        secret: false,
    };

    /// The key of the job's output list.
    pub fn output_key(id: &str) -> repobox_orm::Result<String> {
        Job::key_for(id)?;
        Job::OUTPUT_KEY.build(&[id])
    }

    /// Deletes the job, its index entry and its output list atomically.
    pub async fn delete_with_output<C: ConnectionLike + Send>(conn: &mut C, id: &str) -> Result<bool> {
        let output = Job::output_key(id)?;
        Ok(Job::delete_with(conn, id, &[output]).await?)
    }

    /// [`delete_with_output`](Self::delete_with_output), only while the job
    /// is still in `status`: `Err(Conflict)` when it moved on (a retry, a
    /// requeue), and nothing deleted.
    pub async fn delete_with_output_in<C: ConnectionLike + Send>(
        conn: &mut C,
        id: &str,
        status: super::JobStatus,
    ) -> Result<bool> {
        let output = Job::output_key(id)?;
        let expected = super::JobPatch {
            status: Some(status),
            ..Default::default()
        };
        Ok(Job::delete_if(conn, id, &[output], &expected).await?)
    }

    /// Appends output lines and resets the list's 24-hour TTL, atomically in
    /// one round trip, then an `output` event to `jobs:events`; returns the
    /// list's new length.
    pub async fn append_output<C: ConnectionLike + Send, S: AsRef<str>>(
        conn: &mut C,
        id: &str,
        lines: &[S],
    ) -> Result<u64> {
        let key = Job::output_key(id)?;
        if lines.is_empty() {
            return Job::output_count(conn, id).await;
        }
        let mut pipe = repobox_orm::redis::pipe();
        pipe.atomic()
            .cmd("RPUSH")
            .arg(&key)
            .arg(lines.iter().map(|l| l.as_ref()).collect::<Vec<_>>())
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(JOB_OUTPUT_TTL_MS)
            .ignore();
        let (len,): (u64,) = pipe.query_async(conn).await?;
        // Followers (`jobs tail -f`) wake on it; the lines are in already,
        // so a lost event only delays them until they look anyway.
        let lines = len.to_string();
        let at = crate::now_millis().to_string();
        let event: redis::RedisResult<String> = repobox_orm::redis::cmd("XADD")
            .arg(super::JOB_EVENTS)
            .arg("*")
            .arg(&[
                ("job_id", id),
                ("kind", "output"),
                ("lines", lines.as_str()),
                ("at", at.as_str()),
            ])
            .query_async(conn)
            .await;
        if let Err(e) = event {
            tracing::debug!(job = %id, error = %e, "could not append an output event");
        }
        Ok(len)
    }

    /// Output lines in `range`.
    pub async fn output<C: ConnectionLike + Send>(conn: &mut C, id: &str, range: OutputRange) -> Result<Vec<String>> {
        let key = Job::output_key(id)?;
        Ok(repobox_orm::redis::cmd("LRANGE")
            .arg(&key)
            .arg(range.start)
            .arg(range.end)
            .query_async(conn)
            .await?)
    }

    /// How many output lines the job has.
    pub async fn output_count<C: ConnectionLike + Send>(conn: &mut C, id: &str) -> Result<u64> {
        let key = Job::output_key(id)?;
        Ok(repobox_orm::redis::cmd("LLEN").arg(&key).query_async(conn).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_key_template_spells_its_source() {
        assert_eq!(Job::output_key("7").unwrap(), "job:7:output");
        assert_eq!(Job::OUTPUT_KEY.parse_key("job:7:output"), Some(vec!["7"]));
        assert!(Job::output_key("a b").is_err());
    }
}
