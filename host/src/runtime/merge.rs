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
    /// A repartition taken in input-line order: what its upstream tasks
    /// sent, until it may go to `batches`.
    ordered: Option<Upstreams>,
}

/// The upstream tasks of a repartition an exactly-once run takes in the
/// order of the records' input lines (their origin offsets; one source),
/// whichever task sent them, so a replay takes them in the same order: a
/// record goes on once every other upstream task has sent a later line or
/// said it processed every line up to its own ([`InputMerge::progress`]),
/// ties going to the lower partition. Each upstream task sends its records
/// in line order, as it takes its own input in line order.
struct Upstreams {
    /// By upstream partition: records sent and not yet released.
    queues: Vec<VecDeque<(Record, Origin)>>,
    /// By upstream partition: the input line it processed everything up to.
    through: Vec<u64>,
}

impl Upstreams {
    /// The records that may go on now, in order (none: wait).
    fn release(&mut self, input: InputId) -> Option<Batch> {
        let mut out = Batch::new(input, 0);
        loop {
            let next = self
                .queues
                .iter()
                .enumerate()
                .filter_map(|(u, q)| q.front().map(|(_, o)| (o.offset, u)))
                .min();
            let Some((line, u)) = next else { break };
            let safe = self
                .queues
                .iter()
                .zip(&self.through)
                .enumerate()
                .all(|(v, (q, &through))| v == u || !q.is_empty() || through >= line);
            if !safe {
                break;
            }
            let (record, origin) = self.queues[u].pop_front().expect("a head");
            out.records.push(record);
            out.origins.push(origin);
        }
        (!out.records.is_empty()).then_some(out)
    }

    fn held(&self, input: InputId) -> Vec<Batch> {
        let mut held = Vec::new();
        for (u, q) in self
            .queues
            .iter()
            .enumerate()
            .filter(|(_, q)| !q.is_empty())
        {
            let mut batch = Batch::new(input, q.len());
            batch.from = Some(u as u32);
            for (record, origin) in q {
                batch.records.push(record.clone());
                batch.origins.push(*origin);
            }
            held.push(batch);
        }
        held
    }
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

    /// Moves what an ordered repartition may release to the batches taken.
    fn release_ordered(&mut self) {
        let input = self.input;
        if let Some(batch) = self.ordered.as_mut().and_then(|up| up.release(input)) {
            self.batches.push_back(Pending { batch, pos: 0 });
        }
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
                    ordered: None,
                })
                .collect(),
            max_idle,
        }
    }

    /// Takes repartition `input`, sent by `upstreams` tasks, in input-line
    /// order (see [`Upstreams`]).
    pub fn in_line_order(mut self, input: InputId, upstreams: u32) -> Self {
        self.queue(input).ordered = Some(Upstreams {
            queues: (0..upstreams).map(|_| VecDeque::new()).collect(),
            through: vec![0; upstreams as usize],
        });
        self
    }

    /// The upstream task of partition `from` processed every input line up
    /// to `through` (and sent what it re-partitioned from them).
    pub fn progress(&mut self, input: InputId, from: u32, through: u64) {
        let q = self.queue(input);
        if let Some(up) = &mut q.ordered {
            let seen = &mut up.through[from as usize];
            *seen = (*seen).max(through);
            q.release_ordered();
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
        if let (Some(up), Some(from)) = (&mut q.ordered, batch.from) {
            let queue = &mut up.queues[from as usize];
            queue.extend(batch.records.into_iter().zip(batch.origins));
            q.release_ordered();
            return;
        }
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
    /// checkpoint of an exactly-once run saves of the task): what may be
    /// taken, then what an ordered repartition's upstream tasks sent and it
    /// has not released (each with the task it came from).
    pub fn held_batches(&self) -> Vec<Batch> {
        let mut held: Vec<Batch> = self
            .queues
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
            .collect();
        for q in &self.queues {
            if let Some(up) = &q.ordered {
                held.extend(up.held(q.input));
            }
        }
        held
    }

    /// Records waiting to be taken.
    pub fn held(&self) -> usize {
        let unreleased: usize = self
            .queues
            .iter()
            .filter_map(|q| q.ordered.as_ref())
            .flat_map(|up| &up.queues)
            .map(VecDeque::len)
            .sum();
        self.queues
            .iter()
            .flat_map(|q| &q.batches)
            .map(|p| p.batch.records.len() - p.pos)
            .sum::<usize>()
            + unreleased
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
    fn an_ordered_repartition_goes_on_in_input_line_order_whoever_sent_it() {
        const R: InputId = InputId::Repartition(1);
        // Records at input lines `lines`, sent by upstream task `from`.
        let sent = |from: u32, lines: &[u64]| {
            let mut b = Batch::new(R, lines.len());
            b.from = Some(from);
            for &offset in lines {
                b.records.push(Record::default());
                b.origins.push(Origin {
                    source: 0,
                    partition: from,
                    offset,
                });
            }
            b
        };
        let taken = |m: &mut InputMerge| -> Vec<u64> {
            std::iter::from_fn(|| m.next_run())
                .flat_map(|r| r.origins.into_iter().map(|o| o.offset))
                .collect()
        };
        let mut m = InputMerge::new(&[R], &[true], None).in_line_order(R, 2);
        m.push(sent(1, &[2, 5]));
        assert!(taken(&mut m).is_empty(), "task 0 may still send line 1");
        m.progress(R, 0, 1);
        assert!(taken(&mut m).is_empty(), "task 0 may still send line 2");
        m.progress(R, 0, 3);
        assert_eq!(taken(&mut m), vec![2], "task 0 sent all up to line 3");
        m.push(sent(0, &[4, 5, 9]));
        // 4 (task 0), then line 5 from task 0 before task 1's (the lower
        // partition first); 9 waits for task 1.
        assert_eq!(taken(&mut m), vec![4, 5, 5]);
        assert_eq!(m.held(), 1);
        let held = m.held_batches();
        assert_eq!(
            (held.len(), held[0].from),
            (1, Some(0)),
            "kept with its sender"
        );
        m.progress(R, 1, u64::MAX);
        m.end(R);
        assert_eq!(taken(&mut m), vec![9]);
        assert!(m.all_ended());
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
