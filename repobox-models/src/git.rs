use repobox_orm::meta::{DEFAULT_MAX_KEY_PART_LEN, KeyTemplate, Segment};
use repobox_orm::prelude::{ConnectionLike, RedisEntity, RedisValue};

use crate::Result;

/// A git hosting provider a user has connected.
#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GitProvider {
    /// github.com
    #[redis(rename = "github")]
    GitHub,
    /// gitlab.com
    #[redis(rename = "gitlab")]
    GitLab,
    /// bitbucket.org
    Bitbucket,
}

/// The providers each user has connected: the set [`GitProviders::KEY`].
pub struct GitProviders;

impl GitProviders {
    /// The key of a user's set, `git_providers:<user_id>`; its key part is
    /// checked by the rules of every entity key. A set, not a hash: the
    /// template is written out as the derive writes an entity's.
    pub const KEY: KeyTemplate = KeyTemplate {
        source: "git_providers:<user_id>",
        segments: &[
            Segment::Lit("git_providers:"),
            Segment::Field {
                placeholder: "user_id",
                field: "user_id",
            },
        ],
        max_part_len: DEFAULT_MAX_KEY_PART_LEN,
        secret: false,
    };

    fn key(user_id: &str) -> Result<String> {
        Ok(Self::KEY.build(&[user_id])?)
    }

    /// Runs `SADD`, `SREM` or `SISMEMBER` of `provider` on the user's set; whether it answered 1.
    async fn member<C: ConnectionLike + Send>(
        conn: &mut C,
        command: &str,
        user_id: &str,
        provider: GitProvider,
    ) -> Result<bool> {
        let n: i64 = repobox_orm::redis::cmd(command)
            .arg(Self::key(user_id)?)
            .arg(provider.as_str())
            .query_async(conn)
            .await?;
        Ok(n == 1)
    }

    /// Connects `provider` for the user; `false` if it already was.
    pub async fn add<C: ConnectionLike + Send>(conn: &mut C, user_id: &str, provider: GitProvider) -> Result<bool> {
        Self::member(conn, "SADD", user_id, provider).await
    }

    /// Disconnects `provider`; `false` if it was not connected.
    pub async fn remove<C: ConnectionLike + Send>(conn: &mut C, user_id: &str, provider: GitProvider) -> Result<bool> {
        Self::member(conn, "SREM", user_id, provider).await
    }

    /// The user's providers, sorted. Members no provider is named after
    /// (written by a newer client) are skipped.
    pub async fn list<C: ConnectionLike + Send>(conn: &mut C, user_id: &str) -> Result<Vec<GitProvider>> {
        let names: Vec<String> = repobox_orm::redis::cmd("SMEMBERS")
            .arg(Self::key(user_id)?)
            .query_async(conn)
            .await?;
        let mut out: Vec<GitProvider> = names.iter().filter_map(|n| GitProvider::from_wire(n)).collect();
        out.sort_by_key(|p| p.as_str());
        Ok(out)
    }

    /// Whether the user connected `provider`.
    pub async fn has<C: ConnectionLike + Send>(conn: &mut C, user_id: &str, provider: GitProvider) -> Result<bool> {
        Self::member(conn, "SISMEMBER", user_id, provider).await
    }
}

/// One repository in a provider's listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RepoSummary {
    /// `owner/name`.
    pub full_name: String,
    /// The URL to clone.
    pub clone_url: String,
    /// The default branch.
    pub default_branch: String,
    /// Whether the repository is private.
    pub private: bool,
}

/// A user's repository listing from one provider, cached for five minutes (`RepoCache::TTL`).
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("repo_cache:<user_id>:<provider>")]
#[ttl(minutes = 5)]
pub struct RepoCache {
    /// The user.
    pub user_id: String,
    /// The provider listed.
    pub provider: GitProvider,
    /// The repositories.
    #[redis(json)]
    pub repos: Vec<RepoSummary>,
    /// Unix millis of the listing.
    pub fetched_at: i64,
}

/// A user's credentials for one git provider. The tokens are encrypted at
/// rest (`#[redis(encrypted)]`, AES-256-GCM with the process's key ring, see
/// `repobox_orm::crypto`); `Debug` never shows them.
#[derive(RedisEntity, Clone, PartialEq)]
#[key("git_credential:<user_id>:<provider>")]
pub struct GitCredential {
    /// The user.
    pub user_id: String,
    /// The provider the tokens are for.
    pub provider: GitProvider,
    /// The OAuth access token.
    #[redis(encrypted)]
    pub access_token: String,
    /// The OAuth refresh token, if the provider gave one.
    #[redis(encrypted)]
    pub refresh_token: Option<String>,
    /// Unix millis when the access token expires.
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for GitCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredential")
            .field("user_id", &self.user_id)
            .field("provider", &self.provider)
            .field("access_token", &"…")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "…"))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_providers_key_is_built_from_its_one_template() {
        // The segments and the source are the template written twice: filled
        // with its own placeholder, the segments give the source back.
        assert_eq!(
            GitProviders::KEY.build(&["<user_id>"]).unwrap(),
            GitProviders::KEY.source
        );
        assert_eq!(GitProviders::key("u1").unwrap(), "git_providers:u1");
        assert!(matches!(
            GitProviders::key("a:b"),
            Err(crate::Error::Orm(repobox_orm::Error::InvalidKeyPart { template, .. }))
                if template == GitProviders::KEY.source
        ));
    }
}
