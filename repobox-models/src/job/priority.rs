//! A job's priority: which of its queue's streams it waits on. `normal` is
//! the queue's stream itself (`jobs:stream`, what the web app writes); `high`
//! and `low` are `<stream>:high` and `<stream>:low`, each with the same
//! consumer group, dead letters and outbox of its own. Runners take `high`
//! first, then `normal`, then `low`, except that every so many reads they
//! take `low` first, so that no level starves (see
//! `RunnerConfig::fair_every`).

use std::borrow::Cow;

use repobox_orm::prelude::RedisValue;

/// How soon a waiting job runs next to others.
#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Before the others.
    High,
    /// The queue's own stream.
    #[default]
    Normal,
    /// After the others.
    Low,
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Priority {
    /// Every level, the first taken first.
    pub const LEVELS: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The stream of this level of the queue on `base`.
    pub fn stream(self, base: &str) -> Cow<'_, str> {
        match self {
            Priority::Normal => Cow::Borrowed(base),
            other => Cow::Owned(format!("{base}:{}", other.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_has_its_stream() {
        let streams: Vec<String> = Priority::LEVELS
            .iter()
            .map(|p| p.stream("jobs:stream").into_owned())
            .collect();
        assert_eq!(streams, ["jobs:stream:high", "jobs:stream", "jobs:stream:low"]);
    }
}
