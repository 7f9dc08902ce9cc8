//! Dead letters put back on their stream.

use redis::aio::ConnectionLike;

use super::{Entry, Queue};
use crate::engine::write::route;
use crate::error::Result;

impl Queue {
    /// Puts dead letters back on the stream with their original fields and
    /// removes them from the dead letters, each atomically (`MULTI`); `ids`
    /// empty means every dead letter. Returns the requeued letters. On a
    /// cluster (two slots) the entry is appended first and the letter removed
    /// after it: a crash between them leaves the letter to requeue again.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn requeue_dead<C: ConnectionLike + Send>(&self, conn: &mut C, ids: &[String]) -> Result<Vec<Entry>> {
        let letters = self.dead_letters(conn, "-", usize::MAX).await?;
        let chosen: Vec<Entry> = letters
            .into_iter()
            .filter(|e| ids.is_empty() || ids.contains(&e.id))
            .collect();
        for letter in &chosen {
            self.requeue_letter(conn, letter).await?;
        }
        Ok(chosen)
    }

    /// Puts one dead letter back on the stream (its original fields, not the
    /// bookkeeping) and deletes it from the dead letters: atomically where
    /// the two streams share a slot, else in that order.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn requeue_letter<C: ConnectionLike + Send>(&self, conn: &mut C, letter: &Entry) -> Result<()> {
        const BOOKKEEPING: [&str; 5] = ["original_id", "reason", "deliveries", "consumer", "dead_at"];
        let mut fields: Vec<(&String, &String)> = letter
            .fields
            .iter()
            .filter(|(k, _)| !BOOKKEEPING.contains(&k.as_str()))
            .collect();
        fields.sort();
        let mut add = redis::cmd("XADD");
        add.arg(&self.stream).arg("*").arg(&fields);
        let mut del = redis::cmd("XDEL");
        del.arg(&self.dead).arg(&letter.id);
        if !route::splits(conn, [self.stream.as_str(), self.dead.as_str()]) {
            let mut pipe = redis::pipe();
            pipe.atomic()
                .add_command(add.clone())
                .ignore()
                .add_command(del.clone())
                .ignore();
            match pipe.query_async::<()>(conn).await {
                Err(e) if crate::engine::pipeline::is_refused_across_slots(&e) => {}
                other => return Ok(other?),
            }
        }
        // In different slots: appended first, so a crash between the two
        // leaves a duplicate, never a lost entry.
        let _: String = add.query_async(conn).await?;
        let _: i64 = del.query_async(conn).await?;
        Ok(())
    }
}
