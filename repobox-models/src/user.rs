use std::sync::LazyLock;

use repobox_orm::prelude::{ConnectionLike, EntityField, RedisEntity};
use repobox_orm::redis::Script;
use repobox_orm::script;

use crate::Result;

/// Deletes a session only if it belongs to the user: KEYS[1] the session,
/// ARGV[1] the user id, ARGV[2] the session's `user_id` hash field. Answers
/// 1 deleted, 0 absent, -1 another user's (left alone).
/// The call of `revoke_owned_session.lua` for the session hash `key` of
/// user `user_id`: `ARGV` is the user id and the `user_id` field's name.
fn revoke_call(key: &str, user_id: &str) -> repobox_orm::redis::Cmd {
    let mut cmd = script::evalsha(&REVOKE_OWNED, &[key]);
    cmd.arg(user_id).arg(crate::SessionField::UserId.name());
    cmd
}

static REVOKE_OWNED: LazyLock<Script> =
    LazyLock::new(|| script::with_shared_lua(include_str!("scripts/revoke_owned_session.lua")));

/// What [`User::delete_with_sessions`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserDeleted {
    /// Whether the user existed (and is deleted now).
    pub existed: bool,
    /// Sessions of the user deleted.
    pub sessions_revoked: usize,
    /// Members of the user's set of sessions that belong to another user (a
    /// planted or mixed-up member): left alone.
    pub not_its_own: usize,
}

/// A user of the web app.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("user:<id>")]
#[index(unique = "user:email:<email>")]
pub struct User {
    /// The user's id.
    pub id: String,
    /// Unique across users (`user:email:<email>`).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Unix millis.
    pub created_at: i64,
    /// Unix millis of the last login.
    pub last_login_at: Option<i64>,
    /// Whether the user may administer the instance.
    #[redis(default)]
    pub is_admin: bool,
}

impl User {
    /// Deletes the user, its email claim and its set of sessions in one
    /// atomic write, then revokes every session the set named that belongs
    /// to this user: each is checked inside a script (its `user_id` is this
    /// user's) before it is deleted, so a session of another user planted in
    /// the set is left alone and counted in
    /// [`not_its_own`](UserDeleted::not_its_own). `existed` is `false` if the
    /// user was absent.
    ///
    /// A session created while this runs, or one this misses, is refused by
    /// [`Session::get_valid`](crate::Session::get_valid) and
    /// [`extend`](crate::Session::extend): it belongs to an incarnation of
    /// the user that no longer exists, even once the id is created again. A
    /// plain `User::delete` revokes the sessions that way too; this call also
    /// removes them at once. Three round trips.
    pub async fn delete_with_sessions<C: ConnectionLike + Send>(conn: &mut C, id: &str) -> Result<UserDeleted> {
        let set = crate::Session::index_key_by_user_id(id)?;
        let digests: Vec<String> = repobox_orm::redis::cmd("SMEMBERS").arg(&set).query_async(conn).await?;
        let existed = User::delete_with(conn, id, std::slice::from_ref(&set)).await?;
        let keys: Vec<String> = digests
            .iter()
            .filter_map(|d| crate::Session::key_for(d.as_str()).ok())
            .collect();
        let mut deleted = UserDeleted {
            existed,
            ..UserDeleted::default()
        };
        if keys.is_empty() {
            return Ok(deleted);
        }
        let calls: Vec<repobox_orm::redis::Cmd> = keys.iter().map(|key| revoke_call(key, id)).collect();
        let answers: Vec<i64> = script::pipeline(conn, &REVOKE_OWNED, &calls)
            .await?
            .into_iter()
            .map(|reply| repobox_orm::redis::from_redis_value(reply).map_err(repobox_orm::redis::RedisError::from))
            .collect::<std::result::Result<_, _>>()?;
        for answer in answers {
            match answer {
                1 => deleted.sessions_revoked += 1,
                -1 => deleted.not_its_own += 1,
                _ => {}
            }
        }
        Ok(deleted)
    }

    /// Records a login at `at` (unix millis); `Err(NotFound)` if the user is gone.
    pub async fn update_last_login<C: ConnectionLike + Send>(conn: &mut C, id: &str, at: i64) -> Result<()> {
        let patch = UserPatch {
            last_login_at: Some(Some(at)),
            ..Default::default()
        };
        Ok(User::update(conn, id, &patch).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revoke_call_is_laid_out_as_the_script_reads_it() {
        let sha = REVOKE_OWNED.get_hash();
        let want = format!(
            "*6\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n$1\r\n1\r\n$9\r\nsession:d\r\n$2\r\nu1\r\n$7\r\nuser_id\r\n"
        );
        assert_eq!(
            String::from_utf8(revoke_call("session:d", "u1").get_packed_command()).unwrap(),
            want
        );
        let lua = include_str!("scripts/revoke_owned_session.lua");
        assert!(lua.contains("local USER_ID = ARGV[2]"));
        assert!(lua.contains("refused_as_other_type"));
    }
}
