//! Cancellation requests followed on `jobs:events`: one blocking read per
//! runner wakes the run of a job someone asked to cancel, instead of each
//! running job looking every 200 ms. (Each run still looks every 5 s, for a
//! request written without its event.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use repobox_models::JobEvent;
use repobox_orm::Store;
use tokio::sync::Notify;

use crate::{Phase, RunnerControl};

/// The runs this runner watches, by job id: woken on a cancel event.
pub(crate) type Cancels = Arc<Mutex<HashMap<String, Arc<Notify>>>>;

/// How long one read of the events waits.
const FOLLOW_BLOCK: Duration = Duration::from_secs(1);

/// How many events one read takes at most.
const FOLLOW_BATCH: usize = 1000;

/// How long the follower lets events gather after a read that found some
/// (and caught up): at most this much later a cancel wakes its run, and a
/// busy queue costs the follower about one read per this long instead of
/// one per event. A read that fills its batch is followed by the next at
/// once, so the follower never falls behind.
const FOLLOW_GATHER: Duration = Duration::from_millis(100);

/// Follows `jobs:events` from now on, waking the watched run of each job a
/// `cancel` event names, until the runner stops. A failed read is tried
/// again a second later (the runs' own looks cover the gap).
pub(crate) async fn follow(store: Store, cancels: Cancels, control: RunnerControl) {
    let mut conn = store.dedicated(Some(FOLLOW_BLOCK));
    let stop = control.reached(Phase::Stopping);
    tokio::pin!(stop);
    let mut after: Option<String> = None;
    loop {
        let step = async {
            let from = match &after {
                Some(id) => id.clone(),
                None => JobEvent::last_id(&mut conn).await?,
            };
            let events = JobEvent::read(&mut conn, &from, Some(FOLLOW_BLOCK), FOLLOW_BATCH).await?;
            Ok::<_, repobox_models::Error>((from, events))
        };
        tokio::select! {
            _ = &mut stop => return,
            read = step => match read {
                Ok((from, events)) => {
                    // A full batch: the follower is behind, and reads on at
                    // once until it has caught up.
                    let busy = !events.is_empty() && events.len() < FOLLOW_BATCH;
                    after = Some(events.last().map_or(from, |e| e.id.clone()));
                    for event in events.iter().filter(|e| e.kind == "cancel") {
                        if let Some(run) = cancels.lock().unwrap_or_else(|e| e.into_inner()).get(&event.job_id) {
                            run.notify_one();
                        }
                    }
                    // A busy queue writes events all the time: they are
                    // taken in batches, not a read per event.
                    if busy {
                        tokio::select! {
                            _ = &mut stop => return,
                            _ = tokio::time::sleep(FOLLOW_GATHER) => {}
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not read jobs:events; looking again in a second");
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
}
