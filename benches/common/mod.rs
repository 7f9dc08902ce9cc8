//! What the benchmarks share: a server, sample data, and the hand-written
//! redis-rs code that repobox is measured against.

#![allow(dead_code)]

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, Script, Value};
use repobox_models::{Job, JobStatus, User};
use repobox_orm::RedisEntity;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn job(i: u64, user: &str) -> Job {
    let mut job = Job::new(
        format!("job-{i}"),
        user,
        format!("https://github.com/acme/repo-{i}.git"),
        1_700_000_000_000 + i as i64,
    );
    job.env = vec![("CI".into(), "true".into()), ("RUST_LOG".into(), "info".into())];
    job
}

pub fn user(i: u64) -> User {
    User {
        id: format!("user-{i}"),
        email: format!("user-{i}@example.com"),
        name: "Ada Lovelace".into(),
        created_at: 1_700_000_000_000,
        last_login_at: Some(1_700_000_100_000),
        is_admin: false,
    }
}

/// The Job hash as a careful engineer would write it by hand.
pub fn hand_encode_job(job: &Job) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(12);
    out.push(("id", job.id.clone()));
    out.push(("user_id", job.user_id.clone()));
    out.push(("repo_url", job.repo_url.clone()));
    out.push(("status", job.status.to_string()));
    out.push(("created_at", job.created_at.to_string()));
    if let Some(v) = job.started_at {
        out.push(("started_at", v.to_string()));
    }
    if let Some(v) = job.finished_at {
        out.push(("finished_at", v.to_string()));
    }
    if let Some(v) = job.exit_code {
        out.push(("exit_code", v.to_string()));
    }
    if let Some(v) = &job.error {
        out.push(("error", v.clone()));
    }
    out.push(("retries", job.retries.to_string()));
    out.push(("env", serde_json::to_string(&job.env).expect("json")));
    out.push(("history", serde_json::to_string(&job.history).expect("json")));
    out
}

fn status(s: &str) -> Option<JobStatus> {
    Some(match s {
        "queued" => JobStatus::Queued,
        "delayed" => JobStatus::Delayed,
        "retrying" => JobStatus::Retrying,
        "running" => JobStatus::Running,
        "succeeded" => JobStatus::Succeeded,
        "failed" => JobStatus::Failed,
        "cancelled" => JobStatus::Cancelled,
        _ => return None,
    })
}

/// Reads a Job from an HGETALL reply by hand (HashMap, then parse each field).
pub fn hand_decode_job(reply: &Value) -> Option<Job> {
    let map: HashMap<String, String> = HashMap::from_redis_value_ref(reply).ok()?;
    if map.is_empty() {
        return None;
    }
    Some(Job {
        id: map.get("id")?.clone(),
        user_id: map.get("user_id")?.clone(),
        repo_url: map.get("repo_url")?.clone(),
        status: status(map.get("status")?)?,
        created_at: map.get("created_at")?.parse().ok()?,
        started_at: map.get("started_at").and_then(|v| v.parse().ok()),
        finished_at: map.get("finished_at").and_then(|v| v.parse().ok()),
        exit_code: map.get("exit_code").and_then(|v| v.parse().ok()),
        error: map.get("error").cloned(),
        retries: map.get("retries").map_or(Some(0), |v| v.parse().ok())?,
        env: map
            .get("env")
            .map_or(Some(Vec::new()), |v| serde_json::from_str(v).ok())?,
        history: map
            .get("history")
            .map_or(Some(Vec::new()), |v| serde_json::from_str(v).ok())?,
        cancel_requested_at: map.get("cancel_requested_at").and_then(|v| v.parse().ok()),
        run_id: map.get("run_id").cloned(),
        run_entry: map.get("run_entry").cloned(),
        lease_until: map.get("lease_until").and_then(|v| v.parse().ok()),
        run_at: map.get("run_at").and_then(|v| v.parse().ok()),
        retry: match map.get("retry") {
            Some(v) => Some(serde_json::from_str(v).ok()?),
            None => None,
        },
        priority: match map.get("priority").map(String::as_str) {
            Some("high") => Some(repobox_models::Priority::High),
            Some("normal") => Some(repobox_models::Priority::Normal),
            Some("low") => Some(repobox_models::Priority::Low),
            Some(_) => return None,
            None => None,
        },
        progress: map.get("progress").and_then(|v| v.parse().ok()),
        progress_message: map.get("progress_message").cloned(),
    })
}

pub fn hand_encode_user(user: &User) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(6);
    out.push(("id", user.id.clone()));
    out.push(("email", user.email.clone()));
    out.push(("name", user.name.clone()));
    out.push(("created_at", user.created_at.to_string()));
    if let Some(v) = user.last_login_at {
        out.push(("last_login_at", v.to_string()));
    }
    out.push(("is_admin", user.is_admin.to_string()));
    out
}

pub fn hand_decode_user(reply: &Value) -> Option<User> {
    let map: HashMap<String, String> = HashMap::from_redis_value_ref(reply).ok()?;
    Some(User {
        id: map.get("id")?.clone(),
        email: map.get("email")?.clone(),
        name: map.get("name")?.clone(),
        created_at: map.get("created_at")?.parse().ok()?,
        last_login_at: map.get("last_login_at").and_then(|v| v.parse().ok()),
        is_admin: map.get("is_admin").is_some_and(|v| v == "true" || v == "1"),
    })
}

/// An HGETALL reply as the server sends it.
pub fn as_reply(fields: &[(&str, String)]) -> Value {
    Value::Array(
        fields
            .iter()
            .flat_map(|(k, v)| {
                [
                    Value::BulkString(k.as_bytes().to_vec()),
                    Value::BulkString(v.as_bytes().to_vec()),
                ]
            })
            .collect(),
    )
}

/// Hand-written create: the hash and its index entry, refused if the key
/// exists, in one script (what a careful engineer writes for the same contract).
pub static HAND_CREATE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
        redis.call('HSET', KEYS[1], unpack(ARGV, 3))
        redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
        return 1",
    )
});

/// Hand-written partial update that never re-creates a deleted hash.
pub static HAND_UPDATE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        redis.call('HSET', KEYS[1], unpack(ARGV))
        return 1",
    )
});

pub async fn hand_create(conn: &mut MultiplexedConnection, job: &Job) -> bool {
    let mut inv = HAND_CREATE.key(format!("job:{}", job.id));
    inv.key(format!("jobs:user:{}", job.user_id))
        .arg(job.created_at)
        .arg(&job.id);
    for (k, v) in hand_encode_job(job) {
        inv.arg(k).arg(v);
    }
    inv.invoke_async::<i64>(conn).await.expect("hand create") == 1
}

pub async fn hand_get(conn: &mut MultiplexedConnection, id: &str) -> Option<Job> {
    let reply: Value = redis::cmd("HGETALL")
        .arg(format!("job:{id}"))
        .query_async(conn)
        .await
        .expect("hgetall");
    hand_decode_job(&reply)
}

pub async fn hand_update_status(conn: &mut MultiplexedConnection, id: &str, status: JobStatus) -> bool {
    HAND_UPDATE
        .key(format!("job:{id}"))
        .arg("status")
        .arg(status.to_string())
        .invoke_async::<i64>(conn)
        .await
        .expect("hand update")
        == 1
}

/// The job's `user_id` (`HGET`), which decides its index key.
async fn owner(conn: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(key)
        .arg("user_id")
        .query_async(conn)
        .await
        .expect("hget")
}

/// Hand-written delete: learn the owner, then the hash and its entry in MULTI/EXEC.
pub async fn hand_delete(conn: &mut MultiplexedConnection, id: &str) -> bool {
    let key = format!("job:{id}");
    let Some(user) = owner(conn, &key).await else {
        return false;
    };
    let (deleted,): (i64,) = redis::pipe()
        .atomic()
        .cmd("DEL")
        .arg(&key)
        .cmd("ZREM")
        .arg(format!("jobs:user:{user}"))
        .arg(id)
        .ignore()
        .query_async(conn)
        .await
        .expect("multi");
    deleted == 1
}

/// Hand-written delete with repobox's guarantee: the owner read with
/// `HGET`, then one script that deletes only if the owner is still the same
/// (else the caller reads again), so that a concurrent move never leaves an
/// entry behind. (No check of the key's type: a careful engineer's script.)
pub static HAND_CHECKED_DELETE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
        local owner = redis.call('HGET', KEYS[1], 'user_id')
        if not owner then return 0 end
        if owner ~= ARGV[2] then return -1 end
        redis.call('ZREM', KEYS[2], ARGV[1])
        return redis.call('DEL', KEYS[1])",
    )
});

/// [`HAND_CHECKED_DELETE`] after reading the owner, again while it moves.
pub async fn hand_checked_delete(conn: &mut MultiplexedConnection, id: &str) -> bool {
    let key = format!("job:{id}");
    loop {
        let Some(user) = owner(conn, &key).await else {
            return false;
        };
        let deleted: i64 = HAND_CHECKED_DELETE
            .key(&key)
            .key(format!("jobs:user:{user}"))
            .arg(id)
            .arg(&user)
            .invoke_async(conn)
            .await
            .expect("hand checked delete");
        if deleted >= 0 {
            return deleted == 1;
        }
    }
}

/// Hand-written bulk create, the floor of any that keeps an index entry:
/// `HSET` + `ZADD` per job, pipelined 500 jobs at a time, checking nothing
/// (no existence, no types, no per-job answer).
pub async fn hand_bulk_create(conn: &mut MultiplexedConnection, jobs: &[Job]) {
    for chunk in jobs.chunks(500) {
        let mut pipe = redis::pipe();
        for j in chunk {
            pipe.cmd("HSET")
                .arg(format!("job:{}", j.id))
                .arg(hand_encode_job(j))
                .ignore();
            pipe.cmd("ZADD")
                .arg(format!("jobs:user:{}", j.user_id))
                .arg(j.created_at)
                .arg(&j.id)
                .ignore();
        }
        let () = pipe.query_async(conn).await.expect("pipeline");
    }
}

/// Hand-written bulk create in Lua: [`hand_bulk_create`]'s `HSET` and
/// `ZADD` per job, run by a script for 100 jobs per call, 500 jobs per
/// round trip, checking nothing.
pub async fn hand_lua_bulk_create(conn: &mut MultiplexedConnection, jobs: &[Job]) {
    hand_lua_bulk_create_with(conn, jobs, "").await
}

/// [`hand_lua_bulk_create`] with `check` (Lua, with `hkey` the job's key) run
/// before each job's writes.
pub async fn hand_lua_bulk_create_with(conn: &mut MultiplexedConnection, jobs: &[Job], check: &str) {
    let lua = format!(
        r"local a = 1
for j = 1, #KEYS, 2 do
  local n = tonumber(ARGV[a])
  local hkey = KEYS[j]
  {check}
  redis.call('ZADD', KEYS[j + 1], ARGV[a + 1], ARGV[a + 2])
  redis.call('HSET', hkey, unpack(ARGV, a + 3, a + 2 + 2 * n))
  a = a + 3 + 2 * n
end
return 0"
    );
    let script = redis::Script::new(&lua);
    let _: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(&lua)
        .query_async(conn)
        .await
        .expect("SCRIPT LOAD");
    for chunk in jobs.chunks(500) {
        let mut pipe = redis::pipe();
        for call in chunk.chunks(100) {
            let mut keys = Vec::with_capacity(call.len() * 2);
            let mut cmd = redis::cmd("EVALSHA");
            let mut args = redis::cmd("X");
            for j in call {
                keys.push(format!("job:{}", j.id));
                keys.push(format!("jobs:user:{}", j.user_id));
                let fields = hand_encode_job(j);
                args.arg(fields.len()).arg(j.created_at).arg(&j.id).arg(fields);
            }
            cmd.arg(script.get_hash()).arg(keys.len()).arg(&keys);
            for arg in args.args_iter().skip(1) {
                if let redis::Arg::Simple(bytes) = arg {
                    cmd.arg(bytes);
                }
            }
            pipe.add_command(cmd).ignore();
        }
        let () = pipe.query_async(conn).await.expect("pipeline");
    }
}

/// Hand-written bulk delete: the owners read in one pipeline of `HGET`s,
/// then `DEL` + `ZREM` per job in another, 500 jobs at a time, checking
/// nothing (a job moved between the two leaves its entry behind).
pub async fn hand_bulk_delete(conn: &mut MultiplexedConnection, ids: &[String]) {
    for chunk in ids.chunks(500) {
        let mut reads = redis::pipe();
        for id in chunk {
            reads.cmd("HGET").arg(format!("job:{id}")).arg("user_id");
        }
        let owners: Vec<Option<String>> = reads.query_async(conn).await.expect("pipeline");
        let mut pipe = redis::pipe();
        for (id, owner) in chunk.iter().zip(owners) {
            let Some(owner) = owner else { continue };
            pipe.cmd("DEL").arg(format!("job:{id}")).ignore();
            pipe.cmd("ZREM").arg(format!("jobs:user:{owner}")).arg(id).ignore();
        }
        let () = pipe.query_async(conn).await.expect("pipeline");
    }
}

/// Hand-written page: ZRANGE, then every hash in one pipeline.
pub async fn hand_page(conn: &mut MultiplexedConnection, user: &str, limit: usize) -> Vec<Job> {
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("jobs:user:{user}"))
        .arg(0)
        .arg(limit - 1)
        .arg("REV")
        .query_async(conn)
        .await
        .expect("zrange");
    hashes(conn, &ids).await.iter().filter_map(hand_decode_job).collect()
}

/// Every `job:<id>` hash of `ids`, in one pipeline.
async fn hashes(conn: &mut MultiplexedConnection, ids: &[String]) -> Vec<Value> {
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("HGETALL").arg(format!("job:{id}"));
    }
    pipe.query_async(conn).await.expect("pipeline")
}

/// Hand-written page with repobox's check: `ZRANGE ... WITHSCORES`, every
/// hash in one pipeline, and only the jobs whose `created_at` is their
/// member's score (a careful engineer's check against stale entries).
pub async fn hand_checked_page(conn: &mut MultiplexedConnection, user: &str, limit: usize) -> Vec<Job> {
    let scored: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(format!("jobs:user:{user}"))
        .arg(0)
        .arg(limit - 1)
        .arg("REV")
        .arg("WITHSCORES")
        .query_async(conn)
        .await
        .expect("zrange");
    let (ids, scores): (Vec<String>, Vec<f64>) = scored.into_iter().unzip();
    hashes(conn, &ids)
        .await
        .iter()
        .zip(scores)
        .filter_map(|(reply, score)| {
            hand_decode_job(reply).filter(|j| j.created_at as f64 == score && j.user_id == user)
        })
        .collect()
}

/// The N+1 pattern: ZRANGE, then one HGETALL round trip per id.
pub async fn n_plus_one_page(conn: &mut MultiplexedConnection, user: &str, limit: usize) -> Vec<Job> {
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("jobs:user:{user}"))
        .arg(0)
        .arg(limit - 1)
        .arg("REV")
        .query_async(conn)
        .await
        .expect("zrange");
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.extend(hand_get(conn, &id).await);
    }
    out
}

/// The server's main-thread CPU time so far, in µs (`INFO cpu`): what Redis
/// spent on parsing, commands, scripts and replies, whoever caused it.
pub async fn server_cpu_usec(conn: &mut MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await.unwrap();
    info.lines()
        .filter(|l| l.starts_with("used_cpu_sys_main_thread:") || l.starts_with("used_cpu_user_main_thread:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum::<f64>()
        * 1e6
}

/// The job shape with no index and no TTL: a bare hash, as redis-om's
/// `HashModel` stores one (`env` is the JSON text of a job's environment).
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("bare_job:<id>")]
pub struct BareJob {
    pub id: String,
    pub user_id: String,
    pub repo_url: String,
    pub status: JobStatus,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub retries: u32,
    pub env: String,
}

pub fn bare(i: u64) -> BareJob {
    let j = job(i, "bare");
    BareJob {
        id: j.id,
        user_id: j.user_id,
        repo_url: j.repo_url,
        status: j.status,
        created_at: j.created_at,
        started_at: None,
        finished_at: None,
        exit_code: None,
        error: None,
        retries: 0,
        env: serde_json::to_string(&j.env).unwrap(),
    }
}

/// A finished job: every optional field present, so that an exact save
/// needs no `HDEL` and repobox sends one `HSET`, as redis-om does.
pub fn finished(i: u64) -> BareJob {
    BareJob {
        started_at: Some(1_700_000_000_500),
        finished_at: Some(1_700_000_009_000),
        exit_code: Some(0),
        error: Some("none".into()),
        ..bare(i)
    }
}

/// Hand-written bare save under `<prefix>:<id>`: `HSET` of the present
/// fields, and `HDEL` of the absent ones in the same `MULTI`/`EXEC` (what
/// keeps a re-save exact).
pub async fn hand_bare_save(conn: &mut MultiplexedConnection, prefix: &str, job: &BareJob) {
    let key = format!("{prefix}:{}", job.id);
    let mut fields = vec![
        ("id", job.id.clone()),
        ("user_id", job.user_id.clone()),
        ("repo_url", job.repo_url.clone()),
        ("status", job.status.to_string()),
        ("created_at", job.created_at.to_string()),
        ("retries", job.retries.to_string()),
        ("env", job.env.clone()),
    ];
    let mut absent = Vec::new();
    for (name, value) in [
        ("started_at", job.started_at.map(|v| v.to_string())),
        ("finished_at", job.finished_at.map(|v| v.to_string())),
        ("exit_code", job.exit_code.map(|v| v.to_string())),
        ("error", job.error.clone()),
    ] {
        match value {
            Some(v) => fields.push((name, v)),
            None => absent.push(name),
        }
    }
    if absent.is_empty() {
        let () = redis::cmd("HSET")
            .arg(&key)
            .arg(fields)
            .query_async(conn)
            .await
            .unwrap();
        return;
    }
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("HSET")
        .arg(&key)
        .arg(fields)
        .ignore()
        .cmd("HDEL")
        .arg(&key)
        .arg(absent)
        .ignore();
    let () = pipe.query_async(conn).await.unwrap();
}
