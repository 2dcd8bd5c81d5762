//! One sink interface for the task: what happens to records that reach a
//! sink, whatever the medium.
//!
//! A task holds one [`SinkWriter`] per sink. Records are accepted as the
//! batch flows through the operators, and passed on at the end of the batch;
//! until then the `fail` policy can take back what a bad record and those
//! after it produced, on every branch of a fan-out. JSON-lines sinks encode
//! in the task (in parallel) and hand chunks to the sink's writer thread;
//! Kafka sinks produce at the end of the batch, in input order across all of
//! the task's Kafka sinks (see [`Task`](super::task::Task)), each record
//! holding its input batch's [`Ack`] until the broker has it. Changelog and
//! transactional sinks will be two more writers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use crossbeam_channel::Sender;

use super::RunError;
use crate::codec::{Format, LineFormat, format_gate, jsonl, lines, windowed_key};
use crate::io::ack::Ack;
use crate::io::kafka::producer::{KafkaProducer, SendError};
use crate::io::sink::SinkChunk;
use crate::metrics::Metrics;
use crate::pipeline::WindowedKey;
use crate::record::{Origin, Record};

/// Encoded bytes are handed to the writer thread once they reach this size.
const SINK_CHUNK: usize = 256 << 10;

/// A record the medium refused when it was passed on: the error policy
/// decides what becomes of it.
#[derive(Debug)]
pub struct Refused {
    pub record: Record,
    pub origin: Origin,
    pub reason: String,
}

/// What a task does with the records that reach one sink.
pub trait SinkWriter {
    /// Takes a record derived from the input record at `origin`. `Err` is
    /// why it cannot be written in the sink's formats (the error policy
    /// decides); nothing was kept then.
    fn accept(&mut self, record: &Record, origin: Origin) -> Result<(), String>;

    /// Under `fail`: drops what came from `cut` or later in its source
    /// partition and was not passed on yet.
    fn take_back(&mut self, cut: Origin);

    /// Where the next record to pass on came from, if one is waiting (the
    /// task passes records on in input order across its sinks).
    fn next_pending(&mut self) -> Option<Origin> {
        None
    }

    /// Passes on the next waiting record, holding `ack` until it is out.
    /// `Ok(Some(_))`: the medium refused that record.
    fn pass_next(&mut self, _ack: &Arc<Ack>) -> Result<Option<Refused>, RunError> {
        Ok(None)
    }

    /// The batch tracked by `ack` is processed and everything waiting was
    /// passed on. `tracked`: its input offsets wait on its outputs, which
    /// must then leave now; `idle`: nothing more is queued for the task.
    fn end_of_batch(&mut self, ack: &Arc<Ack>, tracked: bool, idle: bool) -> Result<(), RunError>;

    /// Hands over everything kept (end of the run, or a commit barrier).
    fn flush(&mut self) -> Result<(), RunError>;
}

/// The counter that records written to a sink go to.
pub fn counter(metrics: &Metrics, dead_letter: bool) -> &AtomicU64 {
    if dead_letter {
        &metrics.dead_lettered
    } else {
        &metrics.records_out
    }
}

/// A JSON-lines sink (file, stdout, `weir test` capture): the task encodes,
/// the sink's thread writes.
pub struct LinesWriter<'t> {
    name: &'t str,
    tx: Sender<SinkChunk>,
    /// What a line holds (the dead-letter sink's is the envelope).
    line_format: LineFormat,
    key_format: Format,
    value_format: Format,
    /// The dead-letter sink writes what it gets, whatever it holds.
    dead_letter: bool,
    chunk: SinkChunk,
    /// Per record in `chunk`: where its line ends, and where it came from,
    /// so the `fail` policy can take back what later records produced.
    marks: Vec<(usize, Origin)>,
    /// Whether `chunk` already holds the current batch's ack.
    holds_batch: bool,
    written: &'t AtomicU64,
}

impl<'t> LinesWriter<'t> {
    pub fn new(
        name: &'t str,
        tx: Sender<SinkChunk>,
        line_format: LineFormat,
        (key_format, value_format): (Format, Format),
        dead_letter: bool,
        written: &'t AtomicU64,
    ) -> Self {
        LinesWriter {
            name,
            tx,
            line_format,
            key_format,
            value_format,
            dead_letter,
            chunk: SinkChunk::default(),
            marks: Vec::new(),
            holds_batch: false,
            written,
        }
    }

    fn hand_over(&mut self) -> Result<(), RunError> {
        self.marks.clear();
        self.holds_batch = false;
        let chunk = std::mem::take(&mut self.chunk);
        if chunk.records == 0 {
            for ack in &chunk.acks {
                ack.release();
            }
            return Ok(());
        }
        let n = chunk.records;
        self.tx.send(chunk).map_err(|_| RunError::SinkGone {
            sink: self.name.to_string(),
        })?;
        Metrics::add(self.written, n);
        Ok(())
    }
}

impl SinkWriter for LinesWriter<'_> {
    fn accept(&mut self, record: &Record, origin: Origin) -> Result<(), String> {
        let bytes = &mut self.chunk.bytes;
        if self.dead_letter {
            jsonl::encode_lossless(record, self.key_format, self.value_format, bytes);
        } else {
            lines::encode(
                self.line_format,
                record,
                self.key_format,
                self.value_format,
                bytes,
            )
            .map_err(|e| e.0)?;
        }
        self.chunk.records += 1;
        self.marks.push((self.chunk.bytes.len(), origin));
        Ok(())
    }

    fn take_back(&mut self, cut: Origin) {
        let later = |o: &Origin| o.is_at_or_after(cut);
        if !self.marks.iter().any(|(_, o)| later(o)) {
            return;
        }
        // Those batches lost outputs: their offsets must not be committed.
        for ack in std::mem::take(&mut self.chunk.acks) {
            ack.fail("outputs taken back by the `fail` policy".into());
            ack.release();
        }
        self.holds_batch = false;
        let mut kept = SinkChunk::default();
        let mut start = 0;
        for (end, origin) in std::mem::take(&mut self.marks) {
            if !later(&origin) {
                kept.bytes.extend_from_slice(&self.chunk.bytes[start..end]);
                kept.records += 1;
                self.marks.push((kept.bytes.len(), origin));
            }
            start = end;
        }
        self.chunk = kept;
    }

    fn end_of_batch(&mut self, ack: &Arc<Ack>, tracked: bool, idle: bool) -> Result<(), RunError> {
        let fresh = !self.marks.is_empty() && !self.holds_batch;
        if tracked && fresh {
            // The batch's offsets wait until this chunk is written.
            ack.hold();
            self.chunk.acks.push(ack.clone());
            self.holds_batch = true;
        }
        // Outputs whose inputs' offsets wait on them go out with every
        // batch: a quiet sink must not hold commits.
        if idle || self.chunk.bytes.len() >= SINK_CHUNK || !self.chunk.acks.is_empty() {
            self.hand_over()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), RunError> {
        self.hand_over()
    }
}

/// A Kafka topic, through the pipeline's producer. Records wait in the task
/// until the end of their batch, so a record that fails later in the batch
/// (on any branch) can still take back what came after it.
pub struct KafkaWriter<'t> {
    producer: &'t KafkaProducer,
    topic: &'t str,
    key_format: Format,
    value_format: Format,
    dead_letter: bool,
    /// Keys go out in Kafka Streams' binary windowed form.
    windowed_key: Option<WindowedKey>,
    pending: InputOrder,
    stop: &'t AtomicBool,
    written: &'t AtomicU64,
}

impl<'t> KafkaWriter<'t> {
    /// Writes each record's windowed key in Kafka Streams' binary `form`
    /// (`windowed-key: kafka-streams`); a key that is not windowed is an
    /// encode failure for its record.
    pub fn with_windowed_key(mut self, form: Option<WindowedKey>) -> Self {
        self.windowed_key = form;
        self
    }

    pub fn new(
        producer: &'t KafkaProducer,
        topic: &'t str,
        (key_format, value_format): (Format, Format),
        dead_letter: bool,
        stop: &'t AtomicBool,
        written: &'t AtomicU64,
    ) -> Self {
        KafkaWriter {
            producer,
            topic,
            key_format,
            value_format,
            dead_letter,
            windowed_key: None,
            pending: InputOrder::default(),
            stop,
            written,
        }
    }
}

impl SinkWriter for KafkaWriter<'_> {
    fn accept(&mut self, record: &Record, origin: Origin) -> Result<(), String> {
        // Records go to Kafka as bytes; the dead-letter topic takes them
        // whatever they hold.
        if !self.dead_letter {
            format_gate::release(record, self.key_format, self.value_format)?;
        }
        let mut record = record.clone();
        if let (Some(form), Some(key)) = (self.windowed_key, &record.key) {
            record.key = Some(windowed_key::kafka_streams_key(key, form)?);
        }
        self.pending.push(record, origin);
        Ok(())
    }

    fn take_back(&mut self, cut: Origin) {
        self.pending.take_back(cut);
    }

    fn next_pending(&mut self) -> Option<Origin> {
        self.pending.front()
    }

    fn pass_next(&mut self, ack: &Arc<Ack>) -> Result<Option<Refused>, RunError> {
        let Some((record, origin)) = self.pending.pop_front() else {
            return Ok(None);
        };
        match self.producer.send(self.topic, &record, ack, self.stop) {
            Ok(()) => {
                Metrics::add(self.written, 1);
                Ok(None)
            }
            Err(SendError::Stopped) => Err(RunError::Stopped),
            Err(e @ SendError::Producer { .. }) => Err(RunError::Delivery(e.to_string())),
            Err(e @ SendError::Record { .. }) => Ok(Some(Refused {
                record,
                origin,
                reason: e.to_string(),
            })),
        }
    }

    fn end_of_batch(&mut self, _: &Arc<Ack>, _: bool, _: bool) -> Result<(), RunError> {
        debug_assert!(self.pending.is_empty(), "the task passes every record on");
        Ok(())
    }

    fn flush(&mut self) -> Result<(), RunError> {
        // Records still waiting belong to a batch that did not finish (the
        // run stopped in it): its offsets are not committed, so they are
        // read and produced again by whoever resumes.
        self.pending.clear();
        Ok(())
    }
}

/// Records waiting to be passed on, taken in the order of the input records
/// they came from (a sink fed by two branches gets the first branch's
/// outputs for a whole batch before the second's), outputs of one input in
/// the order they came. Then a record the medium refuses has nothing from
/// later input records out before it.
#[derive(Default)]
struct InputOrder {
    records: VecDeque<(Record, Origin)>,
    /// A record came in before one from an earlier input record.
    unsorted: bool,
}

impl InputOrder {
    fn key(o: &Origin) -> (u16, u32, u64) {
        (o.source, o.partition, o.offset)
    }

    fn push(&mut self, record: Record, origin: Origin) {
        if self
            .records
            .back()
            .is_some_and(|(_, last)| Self::key(last) > Self::key(&origin))
        {
            self.unsorted = true;
        }
        self.records.push_back((record, origin));
    }

    /// Where the next record came from, sorting first if needed (stable, so
    /// one input record's outputs keep their order).
    fn front(&mut self) -> Option<Origin> {
        if std::mem::take(&mut self.unsorted) {
            self.records
                .make_contiguous()
                .sort_by_key(|(_, o)| Self::key(o));
        }
        self.records.front().map(|(_, o)| *o)
    }

    fn pop_front(&mut self) -> Option<(Record, Origin)> {
        self.front()?;
        self.records.pop_front()
    }

    fn take_back(&mut self, cut: Origin) {
        self.records.retain(|(_, o)| !o.is_at_or_after(cut));
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn clear(&mut self) {
        self.records.clear();
        self.unsorted = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: u32, offset: u64) -> Origin {
        Origin {
            source: 0,
            partition,
            offset,
        }
    }

    #[test]
    fn taking_back_cuts_only_the_failed_partition_and_blocks_its_commits() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let written = AtomicU64::new(0);
        let mut w = LinesWriter::new(
            "out",
            tx,
            LineFormat::Envelope,
            (Format::String, Format::String),
            false,
            &written,
        );
        let value = |v: &str| Record {
            value: Some(bytes::Bytes::copy_from_slice(v.as_bytes())),
            ..Record::default()
        };
        w.accept(&value("a"), at(4, 200)).unwrap();
        w.accept(&value("b"), at(0, 100)).unwrap();
        w.accept(&value("c"), at(0, 101)).unwrap();
        let ack = Ack::new();
        // The batch's ack joins the chunk at its end: a tracked batch.
        w.chunk.acks.push({
            ack.hold();
            ack.clone()
        });
        ack.release();
        w.take_back(at(0, 101));
        assert_eq!(w.chunk.records, 2);
        assert!(w.chunk.acks.is_empty());
        assert!(!ack.is_done(), "the batch lost outputs: never committed");
        // What is left is still cut right by a later take-back.
        w.take_back(at(0, 100));
        assert_eq!(w.chunk.records, 1);
        w.flush().unwrap();
        let chunk = rx.try_recv().unwrap();
        assert_eq!(chunk.records, 1);
        assert!(String::from_utf8(chunk.bytes).unwrap().contains("\"a\""));
    }

    #[test]
    fn waiting_records_leave_in_input_order_and_one_inputs_outputs_keep_theirs() {
        let value = |v: &str| Record {
            value: Some(bytes::Bytes::copy_from_slice(v.as_bytes())),
            ..Record::default()
        };
        let mut q = InputOrder::default();
        // The first branch's outputs for offsets 1-3, then the second's.
        for (v, offset) in [
            ("a1", 1),
            ("a2", 2),
            ("a3", 3),
            ("b1", 1),
            ("b2", 2),
            ("b2'", 2),
        ] {
            q.push(value(v), at(0, offset));
        }
        q.take_back(at(0, 3));
        let mut out = Vec::new();
        while let Some((r, _)) = q.pop_front() {
            out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
        assert_eq!(out, ["a1", "b1", "a2", "b2", "b2'"]);
        assert!(q.is_empty());
    }
}
