//! What may be committed: the per-partition book of batches handed to tasks
//! and the offsets their completion frees.
//!
//! Pure bookkeeping over [`Ack`]s, apart from any Kafka client, so it is unit
//! tested on its own and serves whichever [`CommitStrategy`] writes the
//! offsets (the group consumer's commit today, a transaction's offsets later).
//!
//! The rule is at-least-once: the offset after a batch is committed only once
//! that batch and every batch before it in its partition are done (processed,
//! and everything derived from them acknowledged). A batch whose output failed
//! never completes, so its partition's commits stop there; a batch that was
//! never handed over halts its partition, so no later batch can carry a
//! commit past it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::KafkaError;
use crate::io::ack::Ack;

/// A source partition: the index of the source (its topic) and the
/// partition number.
pub type PartitionKey = (u16, i32);

/// An offset ready to be committed: the next record to read in the
/// partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committable {
    pub partition: PartitionKey,
    pub offset: i64,
}

/// How committed offsets reach Kafka.
pub trait CommitStrategy {
    /// Commits `offsets`; `wait` blocks until the broker has them (on revoke
    /// and shutdown) rather than sending them in the background.
    fn commit(&self, offsets: &[Committable], wait: bool) -> Result<(), KafkaError>;
}

#[derive(Debug, Default)]
struct PartitionBook {
    /// Batches handed to a task: the offset after each, and its ack.
    in_flight: VecDeque<(i64, Arc<Ack>)>,
    /// The highest offset that may be committed (`None`: nothing yet).
    committable: Option<i64>,
    /// A batch was not handed over: nothing after it may be.
    halted: bool,
}

/// Offsets of every partition this consumer owns.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: BTreeMap<PartitionKey, PartitionBook>,
}

impl OffsetTracker {
    /// Whether batches of `key` may still be handed over.
    pub fn accepts(&self, key: PartitionKey) -> bool {
        self.partitions.get(&key).is_none_or(|p| !p.halted)
    }

    /// A batch of `key` ending before `next_offset` was handed to its task.
    pub fn handed_over(&mut self, key: PartitionKey, next_offset: i64, ack: Arc<Ack>) {
        let book = self.partitions.entry(key).or_default();
        debug_assert!(!book.halted, "nothing is handed over after a halt");
        book.in_flight.push_back((next_offset, ack));
    }

    /// A batch of `key` could not be handed over (the run is stopping, or
    /// its task is gone): it will be read again by whoever resumes, so no
    /// later batch of the partition may be handed over or committed.
    pub fn halt(&mut self, key: PartitionKey) {
        self.partitions.entry(key).or_default().halted = true;
    }

    /// Pops the finished batches at the front of each partition (of `only`,
    /// when given) and returns the offsets that may be committed now.
    pub fn committable(&mut self, only: Option<&[PartitionKey]>) -> Vec<Committable> {
        let mut out = Vec::new();
        for (key, book) in &mut self.partitions {
            if only.is_some_and(|keys| !keys.contains(key)) {
                continue;
            }
            while let Some((next, ack)) = book.in_flight.front() {
                if !ack.is_done() {
                    break;
                }
                book.committable = Some(book.committable.map_or(*next, |c| c.max(*next)));
                book.in_flight.pop_front();
            }
            if let Some(offset) = book.committable {
                out.push(Committable {
                    partition: *key,
                    offset,
                });
            }
        }
        out
    }

    /// Whether any batch of `keys` is still being processed or delivered
    /// (one whose output failed is not: it will never finish).
    pub fn busy(&self, keys: &[PartitionKey]) -> bool {
        keys.iter().any(|k| {
            self.partitions.get(k).is_some_and(|p| {
                p.in_flight
                    .iter()
                    .any(|(_, a)| !a.is_done() && a.failure().is_none())
            })
        })
    }

    /// Forgets `keys` (revoked: the next owner starts from their commits).
    pub fn forget(&mut self, keys: &[PartitionKey]) {
        for key in keys {
            self.partitions.remove(key);
        }
    }

    /// Every partition tracked.
    pub fn keys(&self) -> Vec<PartitionKey> {
        self.partitions.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P0: PartitionKey = (0, 0);
    const P1: PartitionKey = (0, 1);

    fn offsets(t: &mut OffsetTracker) -> Vec<(PartitionKey, i64)> {
        t.committable(None)
            .into_iter()
            .map(|c| (c.partition, c.offset))
            .collect()
    }

    /// An ack as a task holds it, plus one output on its way out.
    fn with_output() -> Arc<Ack> {
        let ack = Ack::new();
        ack.hold();
        ack
    }

    #[test]
    fn acks_finishing_out_of_order_commit_only_the_finished_prefix() {
        let mut t = OffsetTracker::default();
        let (a, b, c) = (with_output(), with_output(), with_output());
        t.handed_over(P0, 10, a.clone());
        t.handed_over(P0, 20, b.clone());
        t.handed_over(P0, 30, c.clone());
        // The last batch finishes first: nothing may be committed yet.
        c.release();
        c.release();
        assert!(offsets(&mut t).is_empty());
        a.release();
        a.release();
        assert_eq!(offsets(&mut t), vec![(P0, 10)]);
        b.release();
        b.release();
        assert_eq!(offsets(&mut t), vec![(P0, 30)], "b and then c");
        assert!(!t.busy(&[P0]));
    }

    #[test]
    fn a_failed_ack_stops_its_partition_for_good_but_not_others() {
        let mut t = OffsetTracker::default();
        let (bad, later, other) = (with_output(), with_output(), with_output());
        t.handed_over(P0, 5, bad.clone());
        t.handed_over(P0, 9, later.clone());
        t.handed_over(P1, 7, other.clone());
        bad.fail("delivery failed".into());
        for ack in [&bad, &later, &other] {
            ack.release();
            ack.release();
        }
        assert_eq!(offsets(&mut t), vec![(P1, 7)]);
        assert!(!t.busy(&[P0]), "a failed batch is not waited for");
        assert_eq!(offsets(&mut t), vec![(P1, 7)], "still nothing for P0");
    }

    #[test]
    fn a_batch_not_handed_over_halts_its_partition() {
        let mut t = OffsetTracker::default();
        let done = Ack::new();
        done.release();
        t.handed_over(P0, 3, done);
        assert!(t.accepts(P0));
        t.halt(P0);
        assert!(!t.accepts(P0));
        assert!(t.accepts(P1));
        // What finished before the halt is still committed.
        assert_eq!(offsets(&mut t), vec![(P0, 3)]);
    }

    #[test]
    fn revoking_during_a_blocked_flush_waits_only_for_the_revoked_partitions() {
        let mut t = OffsetTracker::default();
        let (stuck, revoked) = (with_output(), with_output());
        t.handed_over(P1, 4, stuck.clone());
        t.handed_over(P0, 8, revoked.clone());
        assert!(t.busy(&[P0]));
        revoked.release();
        revoked.release();
        assert!(!t.busy(&[P0]), "P1's stuck batch does not hold P0's revoke");
        let committed: Vec<_> = t.committable(Some(&[P0]));
        assert_eq!(
            committed,
            vec![Committable {
                partition: P0,
                offset: 8
            }]
        );
        t.forget(&[P0]);
        assert_eq!(t.keys(), vec![P1]);
        assert!(t.busy(&[P1]));
    }

    #[test]
    fn halting_under_fail_keeps_what_was_done_and_nothing_after() {
        // The `fail` policy: the task stops at a bad record; its batch never
        // completes (the task fails the ack), and batches queued behind it
        // are never taken.
        let mut t = OffsetTracker::default();
        let (good, bad) = (with_output(), Ack::new());
        t.handed_over(P0, 100, good.clone());
        t.handed_over(P0, 200, bad.clone());
        good.release();
        good.release();
        bad.fail("stopped by the `fail` policy".into());
        bad.release();
        t.halt(P0);
        assert_eq!(offsets(&mut t), vec![(P0, 100)]);
        assert!(!t.busy(&[P0]));
    }
}
