use repobox_orm::prelude::{ConnectionLike, RedisEntity};

use crate::Result;

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
    /// Deletes the user, its email claim and every one of its sessions in one
    /// atomic write; `false` if the user was absent. A session created while
    /// this runs is refused by [`Session::get_valid`](crate::Session::get_valid),
    /// which checks that its user exists.
    pub async fn delete_with_sessions<C: ConnectionLike + Send>(conn: &mut C, id: &str) -> Result<bool> {
        let set = format!("sessions:user:{}", User::key_for(id)?.trim_start_matches("user:"));
        let digests: Vec<String> = repobox_orm::redis::cmd("SMEMBERS").arg(&set).query_async(conn).await?;
        let mut keys: Vec<String> = digests
            .iter()
            .filter_map(|d| crate::Session::key_for(d.as_str()).ok())
            .collect();
        keys.push(set);
        Ok(User::delete_with(conn, id, &keys).await?)
    }

    /// Records a login at `at` (unix millis); `Err(NotFound)` if the user is gone.
    pub async fn update_last_login<C: ConnectionLike + Send>(conn: &mut C, id: &str, at: i64) -> Result<()> {
        let patch = UserPatch {
            last_login_at: Some(Some(at)),
            ..Default::default()
        };
        Ok(User::update(conn, id, patch).await?)
    }
}
