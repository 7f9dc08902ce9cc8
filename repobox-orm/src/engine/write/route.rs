//! Where a write goes, decided once before anything is sent: **atomic** (one
//! script call changes the hash, its index entries and its TTL together) or
//! **ordered** (single-slot steps, for an entity whose keys a cluster keeps in
//! several slots; see `ordered`).
//!
//! The decision takes the entity's `META.co_located` (every key shares one
//! hash tag), the slots of the write's own keys and the connection's
//! topology. A [`Store`] says whether it talks to a cluster. A connection the
//! engine cannot see into (redis-rs's own cluster connection, a wrapper) is
//! taken for one server; if it then answers a call `CROSSSLOT` (nothing ran),
//! the [`Router`] learns that it is a cluster and the refused writes go
//! ordered. That answer is the only one the engine reads as a route.

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

use super::atomic::{self, BULK_CHUNK};
use super::ordered;
use super::plan::{Outcome, WritePlan};
use crate::engine::pipeline;
use crate::engine::rekey;
use crate::error::{Error, Result};
use crate::scripts::write_entity::Mode;
use crate::store::Store;
use crate::store::slot::key_slot;

/// Runs `plans`: each write's indexed fields learned where it must know
/// them (one pipeline for all), then each routed once, atomic or ordered.
/// Outcomes in the order of `plans`.
pub(crate) async fn run<C: ConnectionLike + Send>(
    conn: &mut C,
    plans: Vec<WritePlan<'_, '_>>,
) -> Result<Vec<Result<Outcome>>> {
    let mut router = Router::new(conn);
    run_routed(conn, &mut router, plans).await
}

/// [`run`] with a router that may already know the connection better.
pub(crate) async fn run_routed<C: ConnectionLike + Send>(
    conn: &mut C,
    router: &mut Router,
    mut plans: Vec<WritePlan<'_, '_>>,
) -> Result<Vec<Result<Outcome>>> {
    let mut results: Vec<Option<Result<Outcome>>> = (0..plans.len()).map(|_| None).collect();
    // An entity with a previous key is moved under its key first (`rekey`).
    move_first(conn, router, &plans, &mut results).await?;
    // In a batch, a save that will go ordered reads its indexed fields
    // first: one read per chunk is cheaper than a refused hash write (and
    // its released claims) for every entity that moved.
    if router.is_cluster() && plans.len() > 1 {
        for plan in plans.iter_mut().filter(|p| !p.co_located()) {
            plan.read_before_save();
        }
    }
    let lookups: Vec<(usize, Cmd)> = plans
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.lookup()?)))
        .collect();
    for chunk in lookups.chunks(BULK_CHUNK) {
        let cmds: Vec<Cmd> = chunk.iter().map(|(_, c)| c.clone()).collect();
        for ((i, _), reply) in chunk.iter().zip(pipeline::query(conn, &cmds).await?) {
            if let Err(e) = plans[*i].take_lookup(reply) {
                results[*i] = Some(Err(e));
            }
        }
    }
    let mut atomic = Vec::new();
    let mut ordered = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        // The keys are computed only where they can change the route.
        let route = match router.is_cluster() && !plan.co_located() {
            false => Route::Atomic,
            true => match plan.keys() {
                Ok(keys) => router.route(false, keys.iter().map(String::as_str)),
                Err(e) => {
                    results[i] = Some(Err(e));
                    continue;
                }
            },
        };
        match route {
            Route::Atomic => atomic.push(i),
            Route::Ordered => ordered.push(i),
        }
    }
    // A connection that refused a call across slots is a cluster: the
    // refused writes are routed again, and those it refuses again go ordered.
    let refused = atomic::run(conn, router, &mut plans, atomic, &mut results).await?;
    let (again, split): (Vec<usize>, Vec<usize>) = refused.into_iter().partition(|&i| {
        let plan = &plans[i];
        plan.co_located()
            || plan
                .keys()
                .is_ok_and(|keys| router.route(false, keys.iter().map(String::as_str)) == Route::Atomic)
    });
    ordered.extend(split);
    ordered.extend(atomic::run(conn, router, &mut plans, again, &mut results).await?);
    ordered.sort_unstable();
    for chunk in ordered.chunks(BULK_CHUNK) {
        ordered::run(conn, &mut plans, chunk.to_vec(), &mut results).await;
    }
    Ok(results
        .into_iter()
        .zip(&plans)
        .map(|(r, plan)| {
            r.unwrap_or_else(|| {
                Err(Error::UnexpectedReply {
                    key: plan.target.shown().into_owned(),
                    detail: "the write got no outcome".into(),
                })
            })
        })
        .collect())
}

/// Moves the entities of `plans` that have a previous key and are still
/// under it; on a cluster, deletes leave their tombstone (which a move
/// across slots that read the hash before the delete respects) before the
/// delete. A write whose move fails ends with that error.
async fn move_first<C: ConnectionLike + Send>(
    conn: &mut C,
    router: &mut Router,
    plans: &[WritePlan<'_, '_>],
    results: &mut [Option<Result<Outcome>>],
) -> Result<()> {
    let Some(meta) = plans.iter().map(|p| p.entity).find(|m| m.previous.is_some()) else {
        return Ok(());
    };
    let mut wanted = Vec::new();
    let mut of = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        match rekey::previous_key(plan.entity, &plan.target.key) {
            Some(Ok(old)) => {
                wanted.push(rekey::Wanted {
                    old,
                    new: Some(plan.target.key.clone()),
                });
                of.push(i);
            }
            Some(Err(e)) => results[i] = Some(Err(e)),
            None => {}
        }
    }
    for (&i, moved) in of.iter().zip(rekey::relocate(conn, router, meta, &wanted).await?) {
        if let Err(e) = moved {
            results[i] = Some(Err(e));
        }
    }
    if router.is_cluster() {
        let cmds: Vec<Cmd> = of
            .iter()
            .filter(|&&i| plans[i].mode == Mode::Delete && results[i].is_none())
            .map(|&i| rekey::tombstone_command(&plans[i].target.key))
            .collect();
        for reply in pipeline::query(conn, &cmds).await? {
            if let Value::ServerError(e) = reply {
                return Err(redis::RedisError::from(e).into());
            }
        }
    }
    Ok(())
}

/// Runs one write (a batch of one).
pub(crate) async fn run_one<C: ConnectionLike + Send>(conn: &mut C, plan: WritePlan<'_, '_>) -> Result<Outcome> {
    let key = plan.target.shown().into_owned();
    run(conn, vec![plan]).await?.pop().unwrap_or_else(|| {
        Err(Error::UnexpectedReply {
            key,
            detail: "the write got no outcome".into(),
        })
    })
}

/// What the engine knows of a connection's topology.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Topology {
    /// One server (or a [`Store`] on one): every write can be atomic.
    OneServer,
    /// A cluster: a write whose keys are in several slots goes ordered.
    Cluster,
    /// A connection that does not say: taken for one server until it
    /// refuses a call across slots.
    Unknown,
}

impl Topology {
    /// The topology of `conn`: a [`Store`] knows its own; any other
    /// connection is [`Topology::Unknown`].
    pub(crate) fn of<C>(conn: &C) -> Topology {
        match store_of(conn) {
            Some(store) if store.is_cluster() => Topology::Cluster,
            Some(_) => Topology::OneServer,
            None => Topology::Unknown,
        }
    }
}

/// The [`Store`] that `conn` is, if it is one (or the test kit's counter
/// around one).
pub(crate) fn store_of<C>(conn: &C) -> Option<&Store> {
    match castaway::cast!(conn, &Store) {
        Ok(store) => Some(store),
        // The test kit's round-trip counter shows the store it wraps.
        #[cfg(feature = "testing")]
        Err(conn) => castaway::cast!(conn, &crate::testing::CountingConnection<Store>)
            .ok()
            .map(crate::testing::CountingConnection::inner),
        #[cfg(not(feature = "testing"))]
        Err(_) => None,
    }
}

/// How one write goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Route {
    /// One script call: all its keys are in one slot, or there are no slots.
    Atomic,
    /// Single-slot steps.
    Ordered,
}

/// The route of every write of one call (one write, or a batch).
pub(crate) struct Router {
    topology: Topology,
}

impl Router {
    /// A router for writes sent on `conn`.
    pub(crate) fn new<C>(conn: &C) -> Router {
        Router {
            topology: Topology::of(conn),
        }
    }

    /// The route of a write whose script call has the keys `keys`;
    /// `co_located`: the entity's keys share one hash tag, and the write has
    /// no key besides them.
    pub(crate) fn route<'k>(&self, co_located: bool, keys: impl IntoIterator<Item = &'k str>) -> Route {
        if co_located || self.topology != Topology::Cluster {
            return Route::Atomic;
        }
        match one_slot(keys) {
            Some(_) => Route::Atomic,
            None => Route::Ordered,
        }
    }

    /// Whether writes on this connection may be split across slots.
    pub(crate) fn is_cluster(&self) -> bool {
        self.topology == Topology::Cluster
    }

    /// The group a write's call may be joined with in one call of a script
    /// of many: on a cluster, the slot of its keys (`None`: any call).
    pub(crate) fn join_group<'k>(&self, keys: impl IntoIterator<Item = &'k str>) -> Option<u16> {
        match self.topology {
            Topology::Cluster => one_slot(keys),
            Topology::OneServer | Topology::Unknown => None,
        }
    }

    /// Takes in the answer to an atomic call: `true` when the connection
    /// refused it across slots (nothing ran), and from then on this router
    /// routes as on a cluster.
    pub(crate) fn refused(&mut self, reply: &Value) -> bool {
        let refused = pipeline::is_cross_slot_reply(reply);
        if refused {
            self.topology = Topology::Cluster;
        }
        refused
    }
}

/// The one slot all of `keys` are in; `None` when they are in several (or
/// there is none).
fn one_slot<'k>(keys: impl IntoIterator<Item = &'k str>) -> Option<u16> {
    let mut keys = keys.into_iter();
    let first = key_slot(keys.next()?.as_bytes());
    keys.all(|k| key_slot(k.as_bytes()) == first).then_some(first)
}

/// Whether a call with the keys `keys` must be split on `conn`: it is a
/// [`Store`] on a cluster, and they are in several slots. (For the scripts
/// outside the write engine: an index repair, a dead letter.)
pub(crate) fn splits<'k, C>(conn: &C, keys: impl IntoIterator<Item = &'k str>) -> bool {
    Router::new(conn).route(false, keys) == Route::Ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(topology: Topology) -> Router {
        Router { topology }
    }

    #[test]
    fn only_a_known_cluster_routes_keys_in_several_slots_ordered() {
        let keys = ["user:1", "users:email:a@x.io"];
        assert_ne!(key_slot(keys[0].as_bytes()), key_slot(keys[1].as_bytes()));
        assert_eq!(router(Topology::Cluster).route(false, keys), Route::Ordered);
        assert_eq!(router(Topology::Cluster).route(true, keys), Route::Atomic);
        assert_eq!(
            router(Topology::Cluster).route(false, ["{u}:1", "{u}:2"]),
            Route::Atomic
        );
        assert_eq!(router(Topology::OneServer).route(false, keys), Route::Atomic);
        assert_eq!(router(Topology::Unknown).route(false, keys), Route::Atomic);
    }

    #[test]
    fn a_refusal_across_slots_teaches_the_router_the_cluster() {
        let mut r = router(Topology::Unknown);
        let keys = ["user:1", "users:email:a@x.io"];
        assert!(!r.refused(&Value::Int(1)));
        assert_eq!(r.join_group(keys), None);
        let refusal = redis::parse_redis_value(b"-CROSSSLOT Keys in request don't hash to the same slot\r\n").unwrap();
        assert!(r.refused(&refusal));
        assert_eq!(r.route(false, keys), Route::Ordered);
        assert_eq!(r.join_group(["{u}:1", "{u}:2"]), Some(key_slot(b"u")));
    }
}
