//! Counting the members of an index whose entity exists.

use redis::Value;
use redis::aio::ConnectionLike;

use super::verify::{Action, Member, Repair, check_fields, run_repair};
use crate::engine::pipeline;
use crate::engine::rekey;
use crate::engine::write::BULK_CHUNK;
use crate::entity::RedisEntity;
use crate::error::Result;
use crate::meta::IndexMeta;

/// How many of `members` have a hash (`EXISTS`, pipelined per chunk); those
/// without one are removed on the way.
pub(crate) async fn count_existing<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    members: Vec<Member>,
) -> Result<u64> {
    let fields = check_fields(index);
    let mut alive = 0;
    let keyed: Vec<(String, String)> = members
        .iter()
        .filter_map(|m| {
            let id = std::str::from_utf8(&m.raw).ok()?;
            Some((id.to_owned(), rekey::member_key(E::META, id).ok()?.0))
        })
        .collect();
    for chunk in keyed.chunks(BULK_CHUNK) {
        let cmds: Vec<redis::Cmd> = chunk
            .iter()
            .map(|(_, key)| {
                let mut cmd = redis::cmd("EXISTS");
                cmd.arg(key);
                cmd
            })
            .collect();
        let mut exists: Vec<i64> = pipeline::query(conn, &cmds)
            .await?
            .into_iter()
            .map(|v| if matches!(v, Value::Int(1)) { 1 } else { 0 })
            .collect();
        if E::META.previous.is_some() {
            rekey::exists_at_previous(conn, E::META, chunk, &mut exists).await?;
        }
        alive += exists.iter().filter(|e| **e == 1).count() as u64;
        let gone: Vec<Repair> = chunk
            .iter()
            .zip(&exists)
            .filter(|(_, e)| **e == 0)
            .map(|((id, key), _)| Repair {
                id: id.clone(),
                hash_key: key.clone(),
                action: Action::Gone,
                seen: vec![None; fields.len()],
            })
            .collect();
        if !gone.is_empty()
            && let Err(e) = run_repair(conn, index, index_key, &fields, &gone, 0).await
        {
            // A count repairs on the side; on a replica it still counts.
            tracing::warn!(index = index.name, key = index_key, error = %e, "could not repair an index while counting it");
        }
    }
    Ok(alive)
}
