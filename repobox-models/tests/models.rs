//! The models behave as the web app's repositories did, on the shared key layout.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use repobox_models::*;
use repobox_orm::Store;
use repobox_orm::prelude::{Error, Page};
use repobox_orm::testing::CountingConnection;

// Every test here runs twice: on a single server, and on a 3-primary
// cluster of its own, where User, Session and Job (whose keys are in
// several slots) are written by ordered steps instead of one script.
repobox_orm::on_both_backends!(
    users,
    sessions,
    sessions_of_deleted_users_are_refused,
    jobs,
    concurrent_status_updates_never_skip_the_state_machine,
    git_providers_and_repo_cache,
    a_second_language_client_shares_the_hashes,
    hostile_inputs_and_other_writers,
    a_job_the_web_app_wrote_is_read_and_updated_without_a_second_field,
    generated_index_keys_are_the_keys_the_entries_are_written_under,
    bulk_writes_keep_unique_values_and_refuse_keys_of_another_type
);

fn user(id: &str, email: &str) -> User {
    User {
        id: id.into(),
        email: email.into(),
        name: format!("User {id}"),
        created_at: 1_700_000_000_000,
        last_login_at: None,
        is_admin: false,
    }
}

async fn users(mut conn: Store) {
    let u = user("u1", "ann@example.com");
    User::create(&mut conn, &u).await.unwrap();
    assert!(User::exists(&mut conn, "u1").await.unwrap());
    assert_eq!(
        User::by_email(&mut conn, "ann@example.com").await.unwrap(),
        Some(u.clone())
    );
    assert!(matches!(
        User::create(&mut conn, &user("u2", "ann@example.com")).await,
        Err(Error::UniqueViolation { index: "by_email", .. })
    ));
    User::update_last_login(&mut conn, "u1", 42).await.unwrap();
    assert_eq!(
        User::get(&mut conn, "u1").await.unwrap().unwrap().last_login_at,
        Some(42)
    );
    assert!(
        User::update_last_login(&mut conn, "ghost", 42)
            .await
            .unwrap_err()
            .is_not_found()
    );
    User::update(
        &mut conn,
        "u1",
        &UserPatch {
            email: Some("ann@new.example".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(User::by_email(&mut conn, "ann@example.com").await.unwrap(), None);
    assert_eq!(
        User::by_email(&mut conn, "ann@new.example").await.unwrap().unwrap().id,
        "u1"
    );
    assert!(User::delete(&mut conn, "u1").await.unwrap());
    User::create(&mut conn, &user("u2", "ann@new.example")).await.unwrap();
    assert!(matches!(
        User::by_email(&mut conn, "with space@x").await,
        Err(Error::InvalidKeyPart { .. })
    ));
}

async fn sessions(mut conn: Store) {
    for id in ["u1", "u2"] {
        User::create(&mut conn, &user(id, &format!("{id}@x.io"))).await.unwrap();
    }
    let (token, s) = Session::create_user_session(&mut conn, "u1", Some("curl".into()), None)
        .await
        .unwrap();
    assert_eq!(token.expose().len(), 64, "256 bits as hex");
    assert_eq!(s.id, token.digest(), "the session is keyed by the digest");
    let (other_token, other) = Session::create_user_session(&mut conn, "u1", None, None).await.unwrap();
    assert_ne!(s.id, other.id);
    assert_eq!(Session::get_valid(&mut conn, &token).await.unwrap(), Some(s.clone()));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("session:{}", s.id))
        .query_async(&mut conn)
        .await
        .unwrap();
    let session_ttl = Session::TTL.unwrap();
    assert_eq!(session_ttl, Duration::from_secs(7 * 24 * 3600));
    assert!(ttl > session_ttl.as_millis() as i64 - 10_000 && ttl <= session_ttl.as_millis() as i64);
    let set_ttl: i64 = redis::cmd("PTTL")
        .arg("sessions:user:u1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(set_ttl >= ttl - 1_000, "the set follows its sessions");

    // Extend moves expires_at and the TTL together, capped at the lifetime.
    let extended = Session::extend(&mut conn, &token, Duration::from_secs(20 * 24 * 3600))
        .await
        .unwrap()
        .unwrap();
    assert!(extended.expires_at > s.expires_at);
    assert_eq!(Session::get(&mut conn, s.id.as_str()).await.unwrap().unwrap(), extended);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("session:{}", s.id))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 19 * 24 * 3600 * 1000);
    let set_ttl: i64 = redis::cmd("PTTL")
        .arg("sessions:user:u1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(set_ttl >= ttl - 1_000);
    let capped = Session::extend(&mut conn, &token, Duration::from_secs(365 * 24 * 3600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        capped.expires_at,
        s.created_at + Session::MAX_LIFETIME.as_millis() as i64
    );
    assert_eq!(
        Session::extend(&mut conn, &SessionToken::from_cookie("gone"), Duration::from_secs(1))
            .await
            .unwrap(),
        None
    );

    // Past its expires_at (by Redis's clock), a session is refused, revoked and not brought back.
    let _: () = conn
        .hset(format!("session:{}", other.id), "expires_at", 1)
        .await
        .unwrap();
    assert_eq!(
        Session::extend(&mut conn, &other_token, Duration::from_secs(60))
            .await
            .unwrap(),
        None
    );
    assert!(!Session::exists(&mut conn, other.id.as_str()).await.unwrap());
    let (late_token, late) = Session::create_user_session(&mut conn, "u1", None, None).await.unwrap();
    let _: () = conn
        .hset(format!("session:{}", late.id), "expires_at", 1)
        .await
        .unwrap();
    assert_eq!(Session::get_valid(&mut conn, &late_token).await.unwrap(), None);
    assert!(!Session::exists(&mut conn, late.id.as_str()).await.unwrap());
    assert_eq!(Session::count_by_user_id(&mut conn, "u1").await.unwrap(), 1);

    // Revoked: gone.
    let (t2, _) = Session::create_user_session(&mut conn, "u1", None, None).await.unwrap();
    assert!(Session::revoke(&mut conn, &t2).await.unwrap());
    assert_eq!(Session::get_valid(&mut conn, &t2).await.unwrap(), None);

    // Log out everywhere.
    Session::create_user_session(&mut conn, "u1", None, None).await.unwrap();
    Session::create_user_session(&mut conn, "u2", None, None).await.unwrap();
    assert_eq!(Session::delete_all_for_user(&mut conn, "u1").await.unwrap(), 2);
    assert_eq!(Session::count_by_user_id(&mut conn, "u1").await.unwrap(), 0);
    assert_eq!(Session::count_by_user_id(&mut conn, "u2").await.unwrap(), 1);
}

async fn sessions_of_deleted_users_are_refused(mut conn: Store) {
    for id in ["u1", "u2"] {
        User::create(&mut conn, &user(id, &format!("{id}@x.io"))).await.unwrap();
    }
    let (a, _) = Session::create_user_session(&mut conn, "u1", None, None).await.unwrap();
    let (b, _) = Session::create_user_session(&mut conn, "u1", None, None).await.unwrap();
    // Deleting the user revokes its sessions in the same write.
    let deleted = User::delete_with_sessions(&mut conn, "u1").await.unwrap();
    assert_eq!(
        (deleted.existed, deleted.sessions_revoked, deleted.not_its_own),
        (true, 2, 0)
    );
    for t in [&a, &b] {
        assert!(!Session::exists(&mut conn, t.digest().as_str()).await.unwrap());
        assert_eq!(Session::get_valid(&mut conn, t).await.unwrap(), None);
    }
    assert!(!conn.exists::<_, bool>("sessions:user:u1").await.unwrap());
    assert!(!conn.exists::<_, bool>("user:email:u1@x.io").await.unwrap());
    // A user deleted by another client: its sessions are refused and revoked on read.
    let (c, _) = Session::create_user_session(&mut conn, "u2", None, None).await.unwrap();
    let _: () = conn.del("user:u2").await.unwrap();
    assert_eq!(Session::get_valid(&mut conn, &c).await.unwrap(), None);
    assert!(!Session::exists(&mut conn, c.digest().as_str()).await.unwrap());
}

/// A writer for the test's log lines.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn no_token_or_digest_reaches_redis_errors_or_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let _server = repobox_orm::testing::RedisServer::start();
    let mut conn = _server.connection().await;
    User::create(&mut conn, &user("u1", "u1@x.io")).await.unwrap();
    let (token, session) = Session::create_user_session(&mut conn, "u1", None, None).await.unwrap();
    Session::get_valid(&mut conn, &token).await.unwrap().unwrap();
    Session::extend(&mut conn, &token, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let digest = token.digest();
    // Errors that name the session's key: a corrupt field, a refused create, a ghost in the index.
    let mut errors = Vec::new();
    errors.push(Session::create(&mut conn, &session).await.unwrap_err().to_string());
    let _: () = conn
        .hset(format!("session:{digest}"), "created_at", "soon")
        .await
        .unwrap();
    errors.push(Session::get(&mut conn, digest.as_str()).await.unwrap_err().to_string());
    errors.push(Session::get_valid(&mut conn, &token).await.unwrap_err().to_string());
    let listing = Session::by_user_id(&mut conn, "u1").await.unwrap();
    errors.extend(listing.errors.iter().map(ToString::to_string));
    let _: () = conn
        .sadd("sessions:user:u1", "not-a-digest-but-a-secret:x")
        .await
        .unwrap();
    let listing = Session::by_user_id(&mut conn, "u1").await.unwrap();
    errors.extend(listing.errors.iter().map(ToString::to_string));
    assert!(errors.len() >= 4, "{errors:?}");
    errors.push(format!("{token:?} {token} {session:?}"));
    for e in &errors {
        assert!(!e.contains(token.expose()), "the token in: {e}");
        assert!(!e.contains(&digest), "the digest in: {e}");
        assert!(!e.contains("secret"), "a bad member in: {e}");
    }
    assert!(errors[0].contains(&token.fingerprint()), "{}", errors[0]);

    // Redis holds the digest, never the token.
    let keys: Vec<String> = conn.keys("*").await.unwrap();
    for key in &keys {
        assert!(!key.contains(token.expose()), "{key}");
        let dump: Vec<u8> = redis::cmd("DUMP").arg(key).query_async(&mut conn).await.unwrap();
        let dump = String::from_utf8_lossy(&dump);
        assert!(!dump.contains(token.expose()), "the token in {key}");
    }
    let members: Vec<String> = conn.smembers("sessions:user:u1").await.unwrap();
    assert!(members.contains(&digest));

    Session::revoke(&mut conn, &token).await.unwrap();
    // A ghost, repaired on read: the repair is logged.
    let (ghost, _) = Session::create_user_session(&mut conn, "u1", None, None).await.unwrap();
    let _: () = conn.del(format!("session:{}", ghost.digest())).await.unwrap();
    let _ = Session::by_user_id(&mut conn, "u1").await.unwrap();
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("repairing index"), "the test saw no log line:\n{logs}");
    assert!(
        !logs.contains(&ghost.digest()) && !logs.contains(ghost.expose()),
        "{logs}"
    );
    assert!(!logs.contains(token.expose()), "the token in the logs");
    assert!(!logs.contains(&digest), "the digest in the logs:\n{logs}");
}

async fn jobs(conn: Store) {
    let mut conn = CountingConnection::new(conn);
    let now = now_millis();
    for i in 0..5 {
        let job = Job::new(format!("j{i}"), "u1", "https://example.com/r.git", now + i);
        Job::create_and_enqueue(&mut conn, &job, now).await.unwrap();
    }
    conn.take();
    let again = Job::create_and_enqueue(&mut conn, &Job::new("j0", "u1", "x", now), now).await;
    assert!(matches!(
        again,
        Err(repobox_models::Error::Orm(Error::AlreadyExists { .. }))
    ));
    // On a single server: one script. On a cluster, routed ordered before
    // anything is sent: the outbox record, the index claim (the entry is
    // there already, so there is nothing to release), the hash (refused),
    // and the outbox record cleared.
    let trips = if conn.inner().is_cluster() { 4 } else { 1 };
    assert_eq!(
        conn.take(),
        trips,
        "create + index + enqueue is one round trip on one server"
    );
    let len: u64 = conn.xlen(JOBS_STREAM).await.unwrap();
    assert_eq!(len, 5, "a job id is never enqueued twice");
    let entries: redis::streams::StreamRangeReply = conn.xrange_all(JOBS_STREAM).await.unwrap();
    let first = &entries.ids[0];
    assert_eq!(first.get::<String>("job_id").as_deref(), Some("j0"));
    assert_eq!(first.get::<String>("user_id").as_deref(), Some("u1"));
    assert_eq!(first.get::<i64>("enqueued_at"), Some(now));

    let page = Job::user_jobs(&mut conn, "u1", Page::newest(3))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(
        page.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        vec!["j4", "j3", "j2"]
    );
    assert_eq!(Job::user_job_count(&mut conn, "u1").await.unwrap(), 5);

    let running = Job::update_status(&mut conn, "j0", JobStatus::Running, now + 10, JobOutcome::default())
        .await
        .unwrap();
    assert_eq!(running.started_at, Some(now + 10));
    let done = Job::update_status(
        &mut conn,
        "j0",
        JobStatus::Succeeded,
        now + 20,
        JobOutcome {
            exit_code: Some(0),
            error: None,
        },
    )
    .await
    .unwrap();
    assert_eq!((done.finished_at, done.exit_code), (Some(now + 20), Some(0)));
    let statuses: Vec<JobStatus> = done.history.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        vec![JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded]
    );
    assert_eq!(Job::get(&mut conn, "j0").await.unwrap().unwrap(), done);
    let err = Job::update_status(&mut conn, "j0", JobStatus::Running, now, JobOutcome::default())
        .await
        .unwrap_err();
    assert!(matches!(err, repobox_models::Error::InvalidTransition { .. }), "{err}");
    assert_eq!(err.to_string(), "`job:j0`: cannot go from succeeded to running");
    assert!(
        Job::update_status(&mut conn, "nope", JobStatus::Running, now, JobOutcome::default())
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Output: RPUSH + TTL atomically in one round trip, then its event.
    conn.take();
    assert_eq!(
        Job::append_output(&mut conn, "j1", &["line 1", "line 2"])
            .await
            .unwrap(),
        2
    );
    assert_eq!(conn.take(), 2);
    Job::append_output(&mut conn, "j1", &["line 3"]).await.unwrap();
    assert_eq!(
        Job::output(&mut conn, "j1", OutputRange::ALL).await.unwrap(),
        vec!["line 1", "line 2", "line 3"]
    );
    assert_eq!(
        Job::output(&mut conn, "j1", OutputRange::last(1)).await.unwrap(),
        vec!["line 3"]
    );
    assert_eq!(Job::output_count(&mut conn, "j1").await.unwrap(), 3);
    let ttl: i64 = redis::cmd("PTTL")
        .arg("job:j1:output")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > JOB_OUTPUT_TTL.as_millis() as i64 - 10_000);

    assert!(Job::delete_with_output(&mut conn, "j1").await.unwrap());
    assert!(!conn.exists::<_, bool>("job:j1:output").await.unwrap());
    assert!(!Job::exists(&mut conn, "j1").await.unwrap());
    assert_eq!(Job::user_job_count(&mut conn, "u1").await.unwrap(), 4);
}

async fn concurrent_status_updates_never_skip_the_state_machine(conn: Store) {
    let mut c = conn.clone();
    Job::create(&mut c, &Job::new("j", "u", "r", 1)).await.unwrap();
    // Ten runners race to start the same job, then to finish it two ways.
    let mut handles = Vec::new();
    for i in 0..10 {
        let mut conn = conn.clone();
        handles.push(tokio::spawn(async move {
            let to = if i % 2 == 0 {
                JobStatus::Succeeded
            } else {
                JobStatus::Cancelled
            };
            let _ = Job::update_status(&mut conn, "j", JobStatus::Running, 2, JobOutcome::default()).await;
            Job::update_status(&mut conn, "j", to, 3, JobOutcome::default())
                .await
                .is_ok()
        }));
    }
    let mut finished = 0;
    for h in handles {
        finished += usize::from(h.await.unwrap());
    }
    assert_eq!(finished, 1, "exactly one runner may finish the job");
}

/// `E::index_key_by_x` names the key each index's entries are written
/// under, as the key layout has it.
async fn generated_index_keys_are_the_keys_the_entries_are_written_under(mut conn: Store) {
    User::create(&mut conn, &user("u1", "ann@example.com")).await.unwrap();
    let email_key = User::index_key_by_email("ann@example.com").unwrap();
    assert_eq!(email_key, "user:email:ann@example.com");
    let claimed: Option<String> = conn.get(&email_key).await.unwrap();
    assert_eq!(claimed.as_deref(), Some("u1"));

    let (_, session) = Session::create_user_session(&mut conn, "u1", None, None).await.unwrap();
    let sessions_key = Session::index_key_by_user_id("u1").unwrap();
    assert_eq!(sessions_key, "sessions:user:u1");
    assert!(conn.sismember::<_, _, bool>(&sessions_key, &session.id).await.unwrap());

    let job = Job::new("j1", "u1", "https://example.com/r.git", 1_700_000_000_000);
    Job::create(&mut conn, &job).await.unwrap();
    let jobs_key = Job::index_key_by_user_id("u1").unwrap();
    assert_eq!(jobs_key, "jobs:user:u1");
    let score: Option<i64> = conn.zscore(&jobs_key, "j1").await.unwrap();
    assert_eq!(score, Some(job.created_at));

    // A bad part is refused as the index's own reads and writes refuse it.
    assert!(matches!(
        Job::index_key_by_user_id("a:b"),
        Err(Error::InvalidKeyPart {
            template: "jobs:user:<user_id>",
            placeholder: "user_id",
            ..
        })
    ));
}

async fn git_providers_and_repo_cache(mut conn: Store) {
    assert!(GitProviders::add(&mut conn, "u1", GitProvider::GitHub).await.unwrap());
    assert!(!GitProviders::add(&mut conn, "u1", GitProvider::GitHub).await.unwrap());
    GitProviders::add(&mut conn, "u1", GitProvider::Bitbucket)
        .await
        .unwrap();
    assert_eq!(
        GitProviders::list(&mut conn, "u1").await.unwrap(),
        vec![GitProvider::Bitbucket, GitProvider::GitHub]
    );
    let raw: Vec<String> = conn.smembers("git_providers:u1").await.unwrap();
    assert!(raw.contains(&"github".to_owned()));
    assert!(
        GitProviders::remove(&mut conn, "u1", GitProvider::Bitbucket)
            .await
            .unwrap()
    );
    assert!(
        !GitProviders::has(&mut conn, "u1", GitProvider::Bitbucket)
            .await
            .unwrap()
    );
    assert!(GitProviders::list(&mut conn, "a:b").await.is_err());

    let cache = RepoCache {
        user_id: "u1".into(),
        provider: GitProvider::GitLab,
        repos: vec![RepoSummary {
            full_name: "ann/site".into(),
            clone_url: "https://gitlab.com/ann/site.git".into(),
            default_branch: "main".into(),
            private: false,
        }],
        fetched_at: 5,
    };
    RepoCache::save(&mut conn, &cache).await.unwrap();
    assert_eq!(cache.key().unwrap(), "repo_cache:u1:gitlab");
    assert_eq!(
        RepoCache::get(&mut conn, "u1", GitProvider::GitLab).await.unwrap(),
        Some(cache)
    );
    let ttl = RepoCache::ttl(&mut conn, "u1", GitProvider::GitLab)
        .await
        .unwrap()
        .unwrap();
    let cache_ttl = RepoCache::TTL.unwrap();
    assert_eq!(cache_ttl, Duration::from_secs(300));
    assert!(ttl <= cache_ttl && ttl > cache_ttl - Duration::from_secs(10));
}

/// The TypeScript app writes plain hashes; the models read them, and it reads theirs.
async fn a_second_language_client_shares_the_hashes(mut conn: Store) {
    // As ioredis would: HSET of snake_case fields, booleans as true/false, millis.
    let _: () = redis::cmd("HSET")
        .arg("user:ts1")
        .arg(&[
            "id",
            "ts1",
            "email",
            "ts@example.com",
            "name",
            "From TS",
            "created_at",
            "1700000000000",
        ])
        .arg(&["is_admin", "true", "avatar_url", "https://x/a.png"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = conn.set("user:email:ts@example.com", "ts1").await.unwrap();
    let u = User::by_email(&mut conn, "ts@example.com").await.unwrap().unwrap();
    assert_eq!(
        (u.id.as_str(), u.is_admin, u.created_at, u.last_login_at),
        ("ts1", true, 1_700_000_000_000, None)
    );

    let _: () = redis::cmd("HSET")
        .arg("job:ts-job")
        .arg(&[
            "id",
            "ts-job",
            "user_id",
            "ts1",
            "repo_url",
            "r",
            "status",
            "running",
            "created_at",
            "5",
            "exit_code",
            "3",
        ])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = conn.zadd("jobs:user:ts1", "ts-job", 5).await.unwrap();
    let jobs = Job::user_jobs(&mut conn, "ts1", Page::newest(10))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].status, jobs[0].exit_code, jobs[0].retries, jobs[0].env.len()),
        (JobStatus::Running, Some(3), 0, 0)
    );

    // What the models write, read back as plain fields.
    let mut job = Job::new("rs-job", "ts1", "https://example.com/r.git", 1_700_000_000_001);
    job.exit_code = Some(1);
    job.env = vec![("CI".into(), "1".into())];
    Job::create(&mut conn, &job).await.unwrap();
    let raw: HashMap<String, String> = conn.hgetall("job:rs-job").await.unwrap();
    let want: HashMap<String, String> = [
        ("id", "rs-job"),
        ("user_id", "ts1"),
        ("repo_url", "https://example.com/r.git"),
        ("status", "queued"),
        ("created_at", "1700000000001"),
        ("exit_code", "1"),
        ("retries", "0"),
        ("env", r#"[["CI","1"]]"#),
        ("history", r#"[{"status":"queued","at":1700000000001}]"#),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(raw, want);
    User::update_last_login(&mut conn, "ts1", 7).await.unwrap();
    let raw: HashMap<String, String> = conn.hgetall("user:ts1").await.unwrap();
    assert_eq!(raw["last_login_at"], "7");
    assert_eq!(raw["avatar_url"], "https://x/a.png", "fields the app added are kept");
}

/// Every key with its `DUMP`; `SCAN` through the store walks every primary of a cluster.
async fn hostile_inputs_and_other_writers(mut conn: Store) {
    let now = now_millis();
    for id in ["uA", "uB"] {
        User::create(&mut conn, &user(id, &format!("{id}@x.io"))).await.unwrap();
    }
    // Logging uA out everywhere never touches uB's session, whatever uA's set holds.
    let (_, a) = Session::create_user_session(&mut conn, "uA", None, None).await.unwrap();
    let (b_token, b) = Session::create_user_session(&mut conn, "uB", None, None).await.unwrap();
    let _: () = conn.sadd("sessions:user:uA", &b.id).await.unwrap();
    assert_eq!(Session::delete_all_for_user(&mut conn, "uA").await.unwrap(), 1);
    assert_eq!(Session::get(&mut conn, a.id.as_str()).await.unwrap(), None);
    assert_eq!(Session::get(&mut conn, b.id.as_str()).await.unwrap(), Some(b.clone()));

    // A huge extension is capped at the session's lifetime; so is a lifetime
    // past what can be counted (at 100 years), never wrapped.
    let capped = Session::extend(&mut conn, &b_token, Duration::MAX)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        capped.expires_at,
        b.created_at + Session::MAX_LIFETIME.as_millis() as i64
    );
    let longest = Session::extend_within(&mut conn, &b_token, Duration::MAX, Duration::MAX)
        .await
        .unwrap()
        .unwrap();
    assert!(longest.expires_at > capped.expires_at);
    assert!(longest.expires_at <= b.created_at + Session::LONGEST.as_millis() as i64);

    // A stored value that decodes is a value the status machine can compare with.
    let job = Job::new("j-odd", "u1", "https://example.com/r.git", now);
    Job::create(&mut conn, &job).await.unwrap();
    Job::update_status(&mut conn, "j-odd", JobStatus::Running, now, JobOutcome::default())
        .await
        .unwrap();
    let started: String = conn.hget("job:j-odd", "started_at").await.unwrap();
    let _: () = conn
        .hset("job:j-odd", "started_at", format!("+00{started}"))
        .await
        .unwrap();
    let _: () = conn.hset("job:j-odd", "retries", u32::MAX).await.unwrap();
    let done = Job::update_status(
        &mut conn,
        "j-odd",
        JobStatus::Succeeded,
        now + 1,
        JobOutcome {
            exit_code: Some(0),
            error: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    let again = Job::update_status(&mut conn, "j-odd", JobStatus::Running, now + 2, JobOutcome::default()).await;
    assert!(matches!(again, Err(repobox_models::Error::InvalidTransition { .. })));
    assert_eq!(OutputRange::last(usize::MAX).start, isize::MIN);
}

async fn a_job_the_web_app_wrote_is_read_and_updated_without_a_second_field(mut conn: Store) {
    // The web app's `toHash` turns its camelCase fields into snake_case.
    let _: () = redis::cmd("HSET")
        .arg("job:web-1")
        .arg(&[
            ("id", "web-1"),
            ("user_id", "u1"),
            ("repo_url", "https://example.com/r.git"),
            ("status", "running"),
            ("created_at", "5"),
            ("started_at", "6"),
            ("exit_code", "3"),
        ])
        .query_async(&mut conn)
        .await
        .unwrap();
    let job = Job::get(&mut conn, "web-1").await.unwrap().unwrap();
    assert_eq!(job.exit_code, Some(3));
    Job::update_status(
        &mut conn,
        "web-1",
        JobStatus::Failed,
        7,
        JobOutcome {
            exit_code: Some(1),
            error: Some("boom".into()),
        },
    )
    .await
    .unwrap();
    let raw: HashMap<String, String> = conn.hgetall("job:web-1").await.unwrap();
    assert_eq!(raw.get("exit_code").map(String::as_str), Some("1"));
    assert!(!raw.contains_key("exit"), "a second field for the same value: {raw:?}");
    let schema = <Job as repobox_orm::RedisEntity>::META.schema();
    let names: Vec<&str> = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"exit_code") && !names.contains(&"exit"), "{names:?}");
}

/// Unique values inside one bulk call, and keys of another type, answered
/// alike on one server (one script per write) and on a cluster (ordered
/// steps, a batch per call): a value two writes of the batch want goes to
/// the first; a chain of moves in one batch goes through in either order;
/// a key of another type refuses the write with nothing written.
async fn bulk_writes_keep_unique_values_and_refuse_keys_of_another_type(mut conn: Store) {
    let created = User::create_many(&mut conn, &[user("bk1", "bk-same@x.io"), user("bk2", "bk-same@x.io")])
        .await
        .unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    assert!(matches!(created[1], Err(Error::UniqueViolation { .. })), "{created:?}");
    assert_eq!(User::get(&mut conn, "bk2").await.unwrap(), None);
    let saved = User::save_many(&mut conn, &[user("bk3", "bk-other@x.io"), user("bk4", "bk-other@x.io")])
        .await
        .unwrap();
    assert!(saved[0].is_ok(), "{saved:?}");
    assert!(matches!(saved[1], Err(Error::UniqueViolation { .. })), "{saved:?}");
    assert_eq!(
        User::by_email(&mut conn, "bk-other@x.io").await.unwrap().unwrap().id,
        "bk3"
    );

    // A chain of moves: the second write takes the first's old value.
    User::create_many(&mut conn, &[user("ch1", "ch-a@x.io"), user("ch2", "ch-b@x.io")])
        .await
        .unwrap();
    let moved = User::save_many(&mut conn, &[user("ch2", "ch-c@x.io"), user("ch1", "ch-b@x.io")])
        .await
        .unwrap();
    assert!(moved.iter().all(Result::is_ok), "{moved:?}");
    // ...and in the other order: the first takes a value the second gives up.
    let moved = User::save_many(&mut conn, &[user("ch2", "ch-b2@x.io"), user("ch1", "ch-c@x.io")])
        .await
        .unwrap();
    assert!(moved.iter().all(Result::is_ok), "{moved:?}");
    assert_eq!(User::by_email(&mut conn, "ch-c@x.io").await.unwrap().unwrap().id, "ch1");
    assert_eq!(
        User::by_email(&mut conn, "ch-b2@x.io").await.unwrap().unwrap().id,
        "ch2"
    );
    assert_eq!(User::by_email(&mut conn, "ch-a@x.io").await.unwrap(), None);
    assert_eq!(User::by_email(&mut conn, "ch-b@x.io").await.unwrap(), None);
    let reports = repobox_orm::check_indexes::<User, _>(&mut conn).await.unwrap();
    let problems: u64 = reports
        .iter()
        .map(|r| r.gone + r.mismatched + r.rescored + r.missing + r.bad + r.conflicts)
        .sum();
    assert_eq!(problems, 0, "{reports:#?}");

    // The hash key holds a list: a write that must read it first is refused.
    let _: () = conn.rpush("user:wt1", "x").await.unwrap();
    let moving = UserPatch {
        email: Some("wt-new@x.io".into()),
        ..Default::default()
    };
    for err in [
        User::update(&mut conn, "wt1", &moving).await.unwrap_err(),
        User::delete(&mut conn, "wt1").await.unwrap_err(),
    ] {
        assert!(matches!(&err, Error::WrongType { key } if key == "user:wt1"), "{err:?}");
    }
    assert_eq!(conn.llen::<_, i64>("user:wt1").await.unwrap(), 1);
    assert_eq!(User::by_email(&mut conn, "wt-new@x.io").await.unwrap(), None);

    // The old e-mail's key holds a list: an update that moves the e-mail is
    // refused before anything is written.
    User::create(&mut conn, &user("wt2", "wt-old@x.io")).await.unwrap();
    let _: () = conn.del("user:email:wt-old@x.io").await.unwrap();
    let _: () = conn.rpush("user:email:wt-old@x.io", "x").await.unwrap();
    let moving = UserPatch {
        email: Some("wt-moved@x.io".into()),
        ..Default::default()
    };
    let err = User::update(&mut conn, "wt2", &moving).await.unwrap_err();
    assert!(
        matches!(&err, Error::WrongType { key } if key == "user:email:wt-old@x.io"),
        "{err:?}"
    );
    assert_eq!(User::get(&mut conn, "wt2").await.unwrap().unwrap().email, "wt-old@x.io");
    assert_eq!(User::by_email(&mut conn, "wt-moved@x.io").await.unwrap(), None);

    // The stream holds a string: a create with a stream entry writes nothing.
    let _: () = conn.set("wt:stream", "not a stream").await.unwrap();
    let job = Job::new("wt-job", "wt-user", "https://x/r.git", 1);
    let err = Job::create_and_append(&mut conn, &job, "wt:stream", &[("job_id", "wt-job")])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::WrongType { key } if key == "wt:stream"),
        "{err:?}"
    );
    assert_eq!(Job::get(&mut conn, "wt-job").await.unwrap(), None);
    assert!(!conn.exists::<_, bool>("wt:stream:outbox").await.unwrap());
}
