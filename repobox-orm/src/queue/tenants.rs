//! At most so many of a tenant's entries running at once, across every
//! runner: a *slot* per running entry, a lease by Redis's clock (a runner
//! that dies gives its slots back when their leases pass). An entry whose
//! tenant has no free slot is *parked* (its delivery is acknowledged) and put
//! back on the stream when a slot frees, so it never holds up another
//! tenant's entries.
//!
//! Keys, for tenant `t` of stream `s`: `{s:tenant:t}:running` (member ->
//! lease expiry) and `{s:tenant:t}:parked` (member -> when parked), in one
//! slot; `s:parked`, the tenants that may have parked members (tenant ->
//! when one was last parked), for the sweep that finds slots freed by
//! runners that died.

use futures_util::future::BoxFuture;
use std::time::Duration;

use redis::aio::ConnectionLike;

use super::Queue;
use crate::engine::pipeline;
use crate::error::Result;
use crate::meta::validate_key_part;
use crate::scripts::SLOTS;
use crate::scripts::slots::SlotOp;

/// What [`Queue::acquire_slot`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The member holds a slot (it already did, or took a free one).
    Taken,
    /// Every slot of the tenant is taken: the member is parked.
    Parked,
}

/// How many parked members one [`Queue::unpark`] puts back at most.
const UNPARK_BATCH: u64 = 100;

/// How long a tenant stays on the sweep's list after its last park with
/// nothing parked: longer than a park takes.
const TENANT_GRACE_MS: i64 = 10_000;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Queue {
    /// The running and parked sets of `tenant`; `Err(InvalidKeyPart)` for a
    /// tenant that cannot be a key part.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKeyPart`](crate::Error::InvalidKeyPart) for a part that could address
    /// another key (see [`validate_key_part`]); no I/O.
    pub fn tenant_keys(&self, tenant: &str) -> Result<(String, String)> {
        validate_key_part("{<stream>:tenant:<tenant>}", "tenant", tenant)?;
        let tag = format!("{{{}:tenant:{tenant}}}", self.stream);
        Ok((format!("{tag}:running"), format!("{tag}:parked")))
    }

    /// The tenants that may have parked members: `<stream>:parked`.
    pub fn parked_tenants_key(&self) -> String {
        format!("{}:parked", self.stream)
    }

    async fn slot_op<C: ConnectionLike + Send>(&self, conn: &mut C, tenant: &str, op: SlotOp<'_>) -> Result<u64> {
        let (running, parked) = self.tenant_keys(tenant)?;
        let reply = pipeline::send_loading(
            conn,
            &SLOTS,
            &op.command(&running, &parked),
            &mut pipeline::Reloads::default(),
        )
        .await?;
        SlotOp::parse(&running, reply)
    }

    /// Takes one of `tenant`'s `limit` slots for `member` for `lease`, or
    /// parks `member` when all are taken (then the caller acknowledges its
    /// delivery: [`unpark`](Self::unpark) puts it back on the stream).
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn acquire_slot<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        tenant: &str,
        member: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Slot> {
        // On the sweep's list first, so a member parked by a runner that
        // then dies is still found.
        let _: i64 = redis::cmd("ZADD")
            .arg(self.parked_tenants_key())
            .arg(crate::engine::write::outbox::now_ms())
            .arg(tenant)
            .query_async(conn)
            .await?;
        let op = SlotOp::Acquire {
            member,
            lease_ms: millis(lease),
            limit,
        };
        Ok(match self.slot_op(conn, tenant, op).await? {
            0 => Slot::Parked,
            _ => Slot::Taken,
        })
    }

    /// Lengthens `member`'s slot to `lease` from now; `false` if it held none.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn renew_slot<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        tenant: &str,
        member: &str,
        lease: Duration,
    ) -> Result<bool> {
        let op = SlotOp::Renew {
            member,
            lease_ms: millis(lease),
        };
        Ok(self.slot_op(conn, tenant, op).await? > 0)
    }

    /// Gives `member`'s slot back; `false` if it held none.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn release_slot<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        tenant: &str,
        member: &str,
    ) -> Result<bool> {
        Ok(self.slot_op(conn, tenant, SlotOp::Release { member }).await? > 0)
    }

    /// Puts as many of `tenant`'s parked members back on the stream as it
    /// has free slots under `limit` (at most 100), oldest first, each with the entry
    /// `entry(member)`: the stream it goes to (`None`: this queue's) and its
    /// fields; returns them. Appended first, then taken out of the
    /// parked set: a crash between the two appends a member twice (its
    /// runs are kept to one by the job's lease), never loses it.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn unpark<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        tenant: &str,
        limit: u32,
        entry: impl Fn(&str) -> BoxFuture<'static, (Option<String>, Vec<(String, String)>)>,
    ) -> Result<Vec<String>> {
        let free = self.slot_op(conn, tenant, SlotOp::Free { limit }).await?;
        if free == 0 {
            return Ok(Vec::new());
        }
        let (_, parked) = self.tenant_keys(tenant)?;
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(&parked)
            .arg(0)
            .arg(free.min(UNPARK_BATCH).saturating_sub(1))
            .query_async(conn)
            .await?;
        for member in &members {
            let (stream, fields) = entry(member).await;
            let _: String = redis::cmd("XADD")
                .arg(stream.as_deref().unwrap_or(&self.stream))
                .arg("*")
                .arg(fields)
                .query_async(conn)
                .await?;
            let _: i64 = redis::cmd("ZREM").arg(&parked).arg(member).query_async(conn).await?;
        }
        Ok(members)
    }

    /// How many members are parked, over the first 1,000 tenants on the
    /// sweep's list.
    ///
    /// # Errors
    ///
    /// Fails as every call to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn parked<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<u64> {
        let tenants: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.parked_tenants_key())
            .arg(0)
            .arg(999)
            .query_async(conn)
            .await?;
        let mut parked = 0u64;
        for tenant in tenants {
            let Ok((_, key)) = self.tenant_keys(&tenant) else {
                continue;
            };
            let n: u64 = redis::cmd("ZCARD").arg(key).query_async(conn).await?;
            parked = parked.saturating_add(n);
        }
        Ok(parked)
    }

    /// The sweep: [`unpark`](Self::unpark) for up to `tenants` tenants on
    /// the list, and takes off the list those with nothing parked that
    /// parked nothing lately. Returns how many members went back.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn unpark_all<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        limit: u32,
        tenants: usize,
        entry: impl Fn(&str, &str) -> BoxFuture<'static, (Option<String>, Vec<(String, String)>)>,
    ) -> Result<usize> {
        let list = self.parked_tenants_key();
        let on_list: Vec<(String, i64)> = redis::cmd("ZRANGE")
            .arg(&list)
            .arg(0)
            .arg(tenants.saturating_sub(1))
            .arg("WITHSCORES")
            .query_async(conn)
            .await?;
        let cutoff = i64::try_from(crate::engine::write::outbox::now_ms())
            .unwrap_or(i64::MAX)
            .saturating_sub(TENANT_GRACE_MS);
        let mut back = 0;
        for (tenant, last_parked) in on_list {
            let Ok((_, parked)) = self.tenant_keys(&tenant) else {
                // Not a tenant any runner would write: off the list.
                let _: i64 = redis::cmd("ZREM").arg(&list).arg(&tenant).query_async(conn).await?;
                continue;
            };
            back += self.unpark(conn, &tenant, limit, |m| entry(&tenant, m)).await?.len();
            let left: u64 = redis::cmd("ZCARD").arg(&parked).query_async(conn).await?;
            if left == 0 && last_parked < cutoff {
                let _: i64 = redis::cmd("ZREM").arg(&list).arg(&tenant).query_async(conn).await?;
            }
        }
        Ok(back)
    }
}
