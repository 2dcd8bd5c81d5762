//! Taking a task's inputs in timestamp order.
//!
//! A task with several inputs (two sources, later a stream and a table)
//! takes the next records from the input whose head record has the lowest
//! timestamp, as Kafka Streams' `PartitionGroup` does, with a fixed
//! tie-break (the input listed first wins). While an input is empty the task
//! waits for it: until it has records or ends when it is bounded (a file:
//! so a run over files is repeatable), else at most `max_idle` (Kafka
//! Streams' `max.task.idle.ms`), after which it goes on without it.
//!
//! A task with one input takes each batch whole, with no copy.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::io::ack::Ack;
use crate::io::batch::{Batch, InputId, Reject};
use crate::record::{Origin, Record};

/// Records to process next: a run of consecutive records of one batch.
pub struct Run {
    pub input: InputId,
    pub records: Vec<Record>,
    pub origins: Vec<Origin>,
    /// The batch's undecodable input (given with its first run).
    pub rejects: Vec<Reject>,
    /// The batch's ack, when its offsets are tracked.
    pub ack: Option<Arc<Ack>>,
    /// The run ends its batch: the task's hold on the ack can go.
    pub last_of_batch: bool,
}

struct Pending {
    batch: Batch,
    /// Records of the batch already taken.
    pos: usize,
}

struct InputQueue {
    input: InputId,
    batches: VecDeque<Pending>,
    ended: bool,
    bounded: bool,
    /// Since when the input has been empty while others had records.
    empty_since: Option<Instant>,
}

impl InputQueue {
    fn head_timestamp(&self) -> Option<i64> {
        self.batches
            .front()
            .and_then(|p| p.batch.records.get(p.pos))
            .map(|r| r.timestamp)
    }

    fn has_batch(&self) -> bool {
        !self.batches.is_empty()
    }
}

/// The inputs of one task.
pub struct InputMerge {
    queues: Vec<InputQueue>,
    max_idle: Option<Duration>,
}

impl InputMerge {
    /// `bounded[i]`: input `i` ends by itself (is waited for without limit).
    pub fn new(inputs: &[InputId], bounded: &[bool], max_idle: Option<Duration>) -> Self {
        InputMerge {
            queues: inputs
                .iter()
                .zip(bounded)
                .map(|(&input, &bounded)| InputQueue {
                    input,
                    batches: VecDeque::new(),
                    ended: false,
                    bounded,
                    empty_since: None,
                })
                .collect(),
            max_idle,
        }
    }

    fn queue(&mut self, input: InputId) -> &mut InputQueue {
        let i = self
            .queues
            .iter()
            .position(|q| q.input == input)
            .unwrap_or_else(|| panic!("{input:?} is not an input of this task"));
        &mut self.queues[i]
    }

    pub fn push(&mut self, batch: Batch) {
        let q = self.queue(batch.input);
        q.empty_since = None;
        if !batch.records.is_empty() || !batch.rejects.is_empty() || batch.ack.is_some() {
            q.batches.push_back(Pending { batch, pos: 0 });
        }
    }

    /// `input` will send nothing more.
    pub fn end(&mut self, input: InputId) {
        self.queue(input).ended = true;
    }

    /// Every input ended and everything was taken.
    pub fn all_ended(&self) -> bool {
        self.queues.iter().all(|q| q.ended && q.batches.is_empty())
    }

    /// Every one of `inputs` ended and everything it sent was taken.
    pub fn ended(&self, inputs: &[InputId]) -> bool {
        self.queues
            .iter()
            .filter(|q| inputs.contains(&q.input))
            .all(|q| q.ended && q.batches.is_empty())
    }

    /// Copies of what waits to be taken, batch by batch, in order (what a
    /// checkpoint of an exactly-once run saves of the task).
    pub fn held_batches(&self) -> Vec<Batch> {
        self.queues
            .iter()
            .flat_map(|q| &q.batches)
            .map(|p| {
                let b = &p.batch;
                let mut copy = Batch::new(b.input, b.records.len() - p.pos);
                copy.records.extend_from_slice(&b.records[p.pos..]);
                copy.origins.extend_from_slice(&b.origins[p.pos..]);
                copy.rejects.extend_from_slice(&b.rejects);
                copy
            })
            .collect()
    }

    /// Records waiting to be taken.
    pub fn held(&self) -> usize {
        self.queues
            .iter()
            .flat_map(|q| &q.batches)
            .map(|p| p.batch.records.len() - p.pos)
            .sum()
    }

    /// Nothing is waiting to be taken.
    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(|q| q.batches.is_empty())
    }

    /// When a live input's idle time runs out, if the merge waits on one.
    pub fn wake_at(&self) -> Option<Instant> {
        let idle = self.max_idle?;
        self.queues
            .iter()
            .filter_map(|q| q.empty_since)
            .min()
            .map(|since| since + idle)
    }

    /// The next run to process, or `None` when nothing may be taken yet.
    pub fn next_run(&mut self) -> Option<Run> {
        if self.queues.len() == 1 {
            let pending = self.queues[0].batches.pop_front()?;
            return Some(whole(pending));
        }
        let now = Instant::now();
        // Inputs that must be waited for.
        for q in &mut self.queues {
            if q.has_batch() || q.ended {
                continue;
            }
            if q.bounded {
                return None;
            }
            let since = *q.empty_since.get_or_insert(now);
            match self.max_idle {
                Some(idle) if now.duration_since(since) >= idle => {}
                _ => return None,
            }
        }
        // The input with the lowest head timestamp; the first listed wins a tie.
        let (chosen, _) = self
            .queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| {
                q.head_timestamp().map(|ts| (i, ts)).or_else(|| {
                    // A batch of rejects or an ack without records.
                    q.has_batch().then_some((i, i64::MIN))
                })
            })
            .min_by_key(|&(i, ts)| (ts, i))?;
        // Take records while they stay at or below every other head.
        let bounds: Vec<(usize, i64)> = self
            .queues
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != chosen)
            .filter_map(|(i, q)| q.head_timestamp().map(|ts| (i, ts)))
            .collect();
        let q = &mut self.queues[chosen];
        let pending = q.batches.front_mut().expect("chosen for its batch");
        let records = &pending.batch.records[pending.pos..];
        let take = records
            .iter()
            .take_while(|r| {
                bounds.iter().all(|&(i, ts)| {
                    if i > chosen {
                        r.timestamp <= ts
                    } else {
                        r.timestamp < ts
                    }
                })
            })
            .count()
            .max(1)
            .min(records.len());
        if pending.pos == 0 && take == records.len() {
            let pending = q.batches.pop_front().expect("front");
            return Some(whole(pending));
        }
        let start = pending.pos;
        pending.pos += take;
        let last = pending.pos == pending.batch.records.len();
        let run = Run {
            input: pending.batch.input,
            records: pending.batch.records[start..start + take].to_vec(),
            origins: pending.batch.origins[start..start + take].to_vec(),
            rejects: if start == 0 {
                std::mem::take(&mut pending.batch.rejects)
            } else {
                Vec::new()
            },
            ack: pending.batch.ack.clone(),
            last_of_batch: last,
        };
        if last {
            q.batches.pop_front();
        }
        Some(run)
    }
}

fn whole(pending: Pending) -> Run {
    let Pending { mut batch, pos } = pending;
    if pos > 0 {
        batch.records.drain(..pos);
        batch.origins.drain(..pos);
    }
    Run {
        input: batch.input,
        records: batch.records,
        origins: batch.origins,
        rejects: batch.rejects,
        ack: batch.ack,
        last_of_batch: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: InputId = InputId::Source(0);
    const B: InputId = InputId::Source(1);

    fn batch(input: InputId, timestamps: &[i64]) -> Batch {
        Batch::of_timestamps(input, timestamps)
    }

    fn order(m: &mut InputMerge) -> Vec<(InputId, Vec<i64>)> {
        std::iter::from_fn(|| m.next_run())
            .map(|r| (r.input, r.records.iter().map(|r| r.timestamp).collect()))
            .collect()
    }

    #[test]
    fn two_inputs_are_taken_by_lowest_head_timestamp_with_the_first_winning_ties() {
        let mut m = InputMerge::new(&[A, B], &[true, true], None);
        m.push(batch(A, &[1, 5, 5, 9]));
        m.push(batch(B, &[2, 5, 6]));
        m.end(A);
        m.end(B);
        assert_eq!(
            order(&mut m),
            vec![
                (A, vec![1]),
                (B, vec![2]),
                (A, vec![5, 5]),
                (B, vec![5, 6]),
                (A, vec![9]),
            ]
        );
        assert!(m.all_ended());
    }

    #[test]
    fn a_bounded_input_is_waited_for_until_it_has_records_or_ends() {
        let mut m = InputMerge::new(&[A, B], &[true, true], None);
        m.push(batch(A, &[3]));
        assert!(m.next_run().is_none(), "B may still send earlier records");
        m.end(B);
        assert_eq!(order(&mut m), vec![(A, vec![3])]);
    }

    #[test]
    fn a_live_input_is_waited_for_at_most_max_idle() {
        let mut m = InputMerge::new(&[A, B], &[false, false], Some(Duration::from_millis(30)));
        m.push(batch(A, &[3]));
        assert!(m.next_run().is_none());
        assert!(m.wake_at().is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(order(&mut m), vec![(A, vec![3])]);
        let mut eager = InputMerge::new(&[A, B], &[false, false], Some(Duration::ZERO));
        eager.push(batch(B, &[7]));
        assert_eq!(order(&mut eager), vec![(B, vec![7])]);
    }

    #[test]
    fn one_input_takes_batches_whole() {
        let mut m = InputMerge::new(&[A], &[true], None);
        let mut b = batch(A, &[9, 1]);
        b.ack = Some(Ack::new());
        m.push(b);
        let run = m.next_run().unwrap();
        assert!(run.last_of_batch && run.ack.is_some());
        assert_eq!(run.records.len(), 2, "no reordering within an input");
        assert!(m.next_run().is_none());
    }
}
