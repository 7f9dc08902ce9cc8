use std::time::Duration;

use repobox_orm::prelude::{ConnectionLike, RedisEntity};

use crate::Result;

/// A login session; the hash expires with the session (`Session::TTL`, seven days).
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("session:<id>")]
#[ttl(days = 7)]
#[index(set = "sessions:user:<user_id>")]
pub struct Session {
    /// 128 random bits, hex.
    pub id: String,
    /// The user it belongs to.
    pub user_id: String,
    /// Unix millis.
    pub created_at: i64,
    /// Unix millis after which the session is invalid.
    pub expires_at: i64,
    /// The browser's user agent.
    pub user_agent: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
}

/// `now + by` in unix millis; `Err(InvalidArgument)` where it would overflow.
fn after(now: i64, by: Duration) -> Result<i64> {
    i64::try_from(by.as_millis())
        .ok()
        .and_then(|by| now.checked_add(by))
        .ok_or_else(|| {
            repobox_orm::Error::InvalidArgument {
                name: "expiry",
                reason: format!("{now} ms + {by:?} is past the largest timestamp"),
            }
            .into()
        })
}

/// A new session id: 128 bits from the operating system's random generator, as hex.
fn new_session_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| repobox_orm::Error::Encode {
        field: "id",
        message: format!("the OS random generator failed: {e}"),
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Session {
    /// Creates a session for a new login of `user_id` at `now` (unix millis).
    pub async fn create_user_session<C: ConnectionLike + Send>(
        conn: &mut C,
        user_id: &str,
        user_agent: Option<String>,
        ip: Option<String>,
        now: i64,
    ) -> Result<Session> {
        let session = Session {
            id: new_session_id()?,
            user_id: user_id.to_owned(),
            created_at: now,
            expires_at: after(now, Session::TTL.unwrap_or_default())?,
            user_agent,
            ip,
        };
        Session::create(conn, &session).await?;
        Ok(session)
    }

    /// Reads a session that is still valid at `now`; one whose `expires_at` is
    /// past is deleted and reported absent.
    pub async fn get_valid<C: ConnectionLike + Send>(conn: &mut C, id: &str, now: i64) -> Result<Option<Session>> {
        match Session::get(conn, id).await? {
            Some(s) if s.expires_at <= now => {
                Session::delete(conn, id).await?;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    /// Moves `expires_at` to `now + by` and the TTL with it; `Err(NotFound)` if the session is gone.
    pub async fn extend<C: ConnectionLike + Send>(conn: &mut C, id: &str, by: Duration, now: i64) -> Result<()> {
        let patch = SessionPatch {
            expires_at: Some(after(now, by)?),
            ..Default::default()
        };
        Ok(Session::update_and_expire(conn, id, patch, by).await?)
    }

    /// Logs the user out everywhere: deletes every session of `user_id`, each
    /// with its index entry, in a few pipelined round trips; returns how many.
    /// Only sessions whose `user_id` is this user's are deleted (the index read
    /// checks each one); a session that does not decode is left alone.
    pub async fn delete_all_for_user<C: ConnectionLike + Send>(conn: &mut C, user_id: &str) -> Result<usize> {
        let ids: Vec<String> = Session::by_user_id(conn, user_id)
            .await?
            .items
            .into_iter()
            .filter(|s| s.user_id == user_id)
            .map(|s| s.id)
            .collect();
        let deleted = Session::delete_many(conn, &ids).await?;
        Ok(deleted.into_iter().filter(|d| *d).count())
    }
}
