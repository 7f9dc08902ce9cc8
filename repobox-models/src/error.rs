//! The models' error: the ORM's, or a domain rule that refused a change.

/// A `Result` whose error is the models' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in a model operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The data layer failed (Redis, a missing entity, bad data...).
    #[error(transparent)]
    Orm(#[from] repobox_orm::Error),
    /// A state change that the model forbids (a job going from succeeded back to running).
    #[error("`{key}`: cannot go from {from} to {to}")]
    InvalidTransition {
        /// The entity's key.
        key: String,
        /// The current state.
        from: String,
        /// The refused state.
        to: String,
    },
    /// A run wrote to a job that it no longer holds: its lease expired and
    /// another run took the job over (or the job left `running`). Nothing
    /// was written.
    #[error("`{key}`: this run no longer holds the job (its lease expired and another run took it over)")]
    LeaseLost {
        /// The job's key.
        key: String,
    },
}

impl Error {
    /// The ORM's error, when this is one.
    pub fn orm(&self) -> Option<&repobox_orm::Error> {
        match self {
            Error::Orm(e) => Some(e),
            Error::InvalidTransition { .. } | Error::LeaseLost { .. } => None,
        }
    }

    /// Whether this error says that the entity is absent.
    pub fn is_not_found(&self) -> bool {
        self.orm().is_some_and(repobox_orm::Error::is_not_found)
    }
}

impl From<repobox_orm::redis::RedisError> for Error {
    fn from(err: repobox_orm::redis::RedisError) -> Self {
        Error::Orm(err.into())
    }
}
