use std::fmt;
use std::time::Duration;

use repobox_orm::prelude::{ConnectionLike, EntityField, RedisEntity};
use repobox_orm::redis::{self, Value};
use repobox_orm::{Error as OrmError, RawHash, script};

use crate::{Result, User, redis_now};

mod calls;
mod token;

use self::calls::{EXTEND, GET, extend_call, get_call};
pub use self::token::SessionToken;

/// How much longer than an extension the user's set of sessions is made to
/// live on a cluster, where it is lengthened before the session (by its own
/// clock reading, not the script's).
const SET_SLACK_MS: u64 = 60_000;

/// A login session; the hash expires with the session (`Session::TTL`, seven
/// days), and no session lives past [`Session::MAX_LIFETIME`] from its creation.
#[derive(RedisEntity, Clone, PartialEq)]
#[key("session:<id>", secret)]
#[ttl(days = 7)]
#[index(set = "sessions:user:<user_id>")]
pub struct Session {
    /// The lowercase hex SHA-256 digest of the session's token; the token
    /// itself is never stored.
    pub id: String,
    /// The user it belongs to.
    pub user_id: String,
    /// The `created_at` of the user it was issued to: which incarnation of
    /// `user_id` it belongs to. A user deleted and created again under the
    /// same id (re-registration, an id from an OAuth provider, a restore) is
    /// another incarnation, and the old sessions are refused. A session
    /// without it (written by a client that does not set it) is refused.
    pub user_created_at: Option<i64>,
    /// Unix millis, by Redis's clock.
    pub created_at: i64,
    /// Unix millis after which the session is invalid, by Redis's clock.
    pub expires_at: i64,
    /// The browser's user agent.
    pub user_agent: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &format_args!("{}…", &self.id[..self.id.len().min(8)]))
            .field("user_id", &self.user_id)
            .field("user_created_at", &self.user_created_at)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("user_agent", &self.user_agent)
            .field("ip", &self.ip)
            .finish()
    }
}

/// `now + by` in unix millis; `Err(InvalidArgument)` where it would overflow.
fn after(now: i64, by: Duration) -> Result<i64> {
    i64::try_from(by.as_millis())
        .ok()
        .and_then(|by| now.checked_add(by))
        .ok_or_else(|| {
            OrmError::InvalidArgument {
                name: "expiry",
                reason: format!("{now} ms + {by:?} is past the largest timestamp"),
            }
            .into()
        })
}

impl Session {
    /// The longest a session lives from its creation, however often it is extended: 30 days.
    pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

    /// The longest duration session arithmetic takes (100 years): longer
    /// extensions and lifetimes count as this long, so that no sum of
    /// timestamps and durations can overflow, in Rust or in Redis's Lua.
    pub const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

    /// Creates a session for a new login of `user_id`, dated by Redis's clock
    /// and bound to the user's current incarnation (its `created_at`).
    /// Returns the token for the browser (given out this once, never stored)
    /// and the session. `Err(NotFound)` if the user does not exist.
    pub async fn create_user_session<C: ConnectionLike + Send>(
        conn: &mut C,
        user_id: &str,
        user_agent: Option<String>,
        ip: Option<String>,
    ) -> Result<(SessionToken, Session)> {
        let Some(user) = User::get(conn, user_id).await? else {
            return Err(OrmError::NotFound {
                key: User::key_for(user_id)?,
            }
            .into());
        };
        let incarnation = user.created_at;
        let token = SessionToken::generate()?;
        let now = redis_now(conn).await?;
        let session = Session {
            id: token.digest(),
            user_id: user_id.to_owned(),
            user_created_at: Some(incarnation),
            created_at: now,
            expires_at: after(now, Session::TTL.unwrap_or_default())?,
            user_agent,
            ip,
        };
        Session::create(conn, &session).await?;
        Ok((token, session))
    }

    /// The session of `token` if it is valid: it exists, its `expires_at` is
    /// ahead of Redis's clock (judged inside a script), and it belongs to the
    /// user's current incarnation (the user exists and its `created_at` is
    /// the session's `user_created_at`). A session that fails the last two,
    /// or whose `expires_at` is not a timestamp, is revoked on the way (the
    /// latter with a warning). Two round trips (three to revoke).
    pub async fn get_valid<C: ConnectionLike + Send>(conn: &mut C, token: &SessionToken) -> Result<Option<Session>> {
        let key = Session::key_for(token.digest())?;
        let shown = <Session as RedisEntity>::META.key.shown(&key);
        let read = get_call(&key)?;
        let reply: Vec<Value> = script::invoke(conn, &GET, &read).await?;
        let tag = match reply.first() {
            Some(Value::BulkString(b)) => b.as_slice(),
            _ => b"",
        };
        match tag {
            b"missing" => return Ok(None),
            b"expired" => {
                Session::delete(conn, token.digest().as_str()).await?;
                return Ok(None);
            }
            b"corrupt" => {
                tracing::warn!(session = %token.fingerprint(), "a session's expires_at is not a timestamp in range; it is treated as expired and revoked");
                Session::delete(conn, token.digest().as_str()).await?;
                return Ok(None);
            }
            b"ok" => {}
            _ => {
                return Err(OrmError::UnexpectedReply {
                    key: shown.into_owned(),
                    detail: "reading the session answered something else".into(),
                }
                .into());
            }
        }
        let fields = Value::Array(reply[1..].to_vec());
        let hash = RawHash::from_reply(&shown, &fields)?;
        let session = Session::read_fields(&shown, &hash)?;
        if !session.is_of_current_user(conn).await? {
            Session::delete(conn, session.id.as_str()).await?;
            return Ok(None);
        }
        Ok(Some(session))
    }

    /// Whether the session's user exists and is the incarnation it was
    /// issued to.
    async fn is_of_current_user<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<bool> {
        let current = user_incarnation(conn, &self.user_id).await?;
        Ok(current.is_some() && current == self.user_created_at)
    }

    /// Moves the session's expiry to `by` from now (by Redis's clock), never
    /// past [`MAX_LIFETIME`](Self::MAX_LIFETIME) from its creation; see
    /// [`extend_within`](Self::extend_within).
    pub async fn extend<C: ConnectionLike + Send>(
        conn: &mut C,
        token: &SessionToken,
        by: Duration,
    ) -> Result<Option<Session>> {
        Session::extend_within(conn, token, by, Session::MAX_LIFETIME).await
    }

    /// Moves the session's expiry to `by` from now by Redis's clock, and its
    /// TTL with it, atomically, never past `max_lifetime` from its creation
    /// and never earlier than it was (unless it was past that cap: another
    /// writer's value, brought back to it). A session past its `expires_at`, whose
    /// lifetime is used up, whose stored times are not timestamps in range,
    /// or whose user is gone or another incarnation, is not brought back: it
    /// is revoked and `None` returned; so is an absent one. A zero `by` or
    /// `max_lifetime` is `Err(InvalidArgument)`; durations past
    /// [`LONGEST`](Self::LONGEST) count as that long (an expiry is capped,
    /// never wrapped).
    pub async fn extend_within<C: ConnectionLike + Send>(
        conn: &mut C,
        token: &SessionToken,
        by: Duration,
        max_lifetime: Duration,
    ) -> Result<Option<Session>> {
        if by.is_zero() || max_lifetime.is_zero() {
            return Err(OrmError::InvalidArgument {
                name: "duration",
                reason: "a session is extended by a positive duration, within a positive lifetime".into(),
            }
            .into());
        }
        let max_lifetime = max_lifetime.min(Session::LONGEST);
        let by = by.min(max_lifetime);
        let (by_ms, max_ms) = (millis(by)?, millis(max_lifetime)?);
        let digest = token.digest();
        let stamps = [SessionField::CreatedAt.name(), SessionField::ExpiresAt.name()];
        let read = match Session::get(conn, digest.as_str()).await {
            Err(OrmError::Decode { field, .. }) if stamps.contains(&field) => None,
            other => Some(other?),
        };
        let Some(read) = read else {
            tracing::warn!(session = %token.fingerprint(), "a session's created_at or expires_at is not a timestamp; it is treated as expired and revoked");
            Session::delete(conn, digest.as_str()).await?;
            return Ok(None);
        };
        let Some(mut session) = read else {
            return Ok(None);
        };
        if !session.is_of_current_user(conn).await? {
            Session::delete(conn, digest.as_str()).await?;
            return Ok(None);
        }
        let set = Session::index_key_by_user_id(&session.user_id)?;
        let key = Session::key_for(digest.as_str())?;
        let both = extend_call(&[&key, &set], by_ms, max_ms, &session.user_id);
        let reply: Vec<String> = match script::invoke_together(conn, &EXTEND, &both, &[&key, &set]).await? {
            Some(reply) => reply,
            // On a cluster the set is in another slot: it is lengthened first
            // (to outlive any expiry the script can set), then the session.
            None => {
                let _: i64 = redis::cmd("PEXPIRE")
                    .arg(&set)
                    .arg(by_ms.saturating_add(SET_SLACK_MS))
                    .arg("GT")
                    .query_async(conn)
                    .await?;
                let alone = extend_call(&[&key], by_ms, max_ms, &session.user_id);
                script::invoke(conn, &EXTEND, &alone).await?
            }
        };
        match reply.first().map(String::as_str) {
            Some("ok") => {
                session.expires_at = reply.get(1).and_then(|n| n.parse().ok()).unwrap_or(session.expires_at);
                Ok(Some(session))
            }
            Some("expired") => {
                Session::delete(conn, digest.as_str()).await?;
                Ok(None)
            }
            Some("corrupt") => {
                tracing::warn!(session = %token.fingerprint(), "a session's created_at or expires_at is not a timestamp in range; it is treated as expired and revoked");
                Session::delete(conn, digest.as_str()).await?;
                Ok(None)
            }
            Some("missing" | "changed") => Ok(None),
            other => Err(OrmError::UnexpectedReply {
                key: <Session as RedisEntity>::META
                    .key
                    .shown(&Session::key_for(digest.as_str())?)
                    .into_owned(),
                detail: format!("extending the session answered {other:?}"),
            }
            .into()),
        }
    }

    /// Logs the session out: deletes it and its index entry; `false` if it was gone.
    pub async fn revoke<C: ConnectionLike + Send>(conn: &mut C, token: &SessionToken) -> Result<bool> {
        Ok(Session::delete(conn, token.digest().as_str()).await?)
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
        let deleted = deleted.into_iter().collect::<repobox_orm::Result<Vec<bool>>>()?;
        Ok(deleted.into_iter().filter(|d| *d).count())
    }
}

/// The `created_at` of user `user_id` as stored (one `HGET`): which
/// incarnation of the id exists now; `None` if the user is absent or its
/// `created_at` is not an integer (no session can be checked against it).
async fn user_incarnation<C: ConnectionLike + Send>(conn: &mut C, user_id: &str) -> Result<Option<i64>> {
    let raw: Option<String> = redis::cmd("HGET")
        .arg(User::key_for(user_id)?)
        .arg(crate::UserField::CreatedAt.name())
        .query_async(conn)
        .await?;
    Ok(raw.and_then(|v| v.parse::<i64>().ok()))
}

fn millis(d: Duration) -> Result<u64> {
    u64::try_from(d.as_millis()).map_err(|_| {
        OrmError::InvalidArgument {
            name: "duration",
            reason: format!("{d:?} is longer than repobox counts"),
        }
        .into()
    })
}
