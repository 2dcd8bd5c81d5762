//! What `weir run` says when a run ends: one summary line (records in,
//! out, dead-lettered and where they went, skipped, instance restarts,
//! time), preceded, when the run did not finish, by where each source
//! stopped. Written to stderr whether or not it is a terminal, so a
//! script's log shows it too.

use std::fmt::Write as _;
use std::time::Duration;

use super::{RunReport, SourceReport, StopPosition};

/// How a run ended, as the summary says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every input was read to its end and everything processed.
    Finished,
    /// An error stopped it (reported before the summary).
    Failed,
    /// A signal stopped it; the signal's name (`SIGINT`, `SIGTERM`).
    Interrupted(&'static str),
}

/// The summary's lines, the summary line last: where each source stopped
/// (only when the run did not finish), then the counts.
pub fn summary_lines(report: &RunReport, ending: Ending) -> Vec<String> {
    let mut lines = Vec::new();
    if ending != Ending::Finished {
        lines.extend(report.sources.iter().map(stop_line));
    }
    lines.push(counts_line(report, ending));
    lines
}

fn counts_line(report: &RunReport, ending: Ending) -> String {
    let c = &report.counts;
    let took = seconds(report.elapsed);
    let mut line = match ending {
        Ending::Finished => format!("weir: finished in {took}"),
        Ending::Failed => format!("weir: failed after {took}"),
        Ending::Interrupted(signal) => format!("weir: interrupted by {signal} after {took}"),
    };
    if c.dead_lettered > 0 {
        let to = report
            .dead_letter
            .as_deref()
            .unwrap_or("the dead-letter sink");
        let _ = write!(
            line,
            ", and {} dead-lettered to {to}",
            records(c.dead_lettered)
        );
    }
    let mut parts = vec![
        format!("{} in", records(c.records_in)),
        format!("{} out", c.records_out),
        format!("{} dead-lettered", c.dead_lettered),
        format!("{} skipped", c.skipped),
    ];
    if c.dropped > 0 {
        parts.push(format!(
            "{} dropped (null key or value, as Kafka Streams drops them)",
            records(c.dropped)
        ));
    }
    if c.late > 0 || c.late_windows > 0 {
        parts.push(format!(
            "{} late (every window of theirs had closed; {} closed windows skipped)",
            records(c.late),
            c.late_windows
        ));
    }
    if c.partition_times > 0 {
        parts.push(format!(
            "{} given their partition's time (no valid time of their own)",
            records(c.partition_times)
        ));
    }
    if c.rejected_lines > 0 {
        parts.push(format!("{} not records", lines(c.rejected_lines, "input")));
    }
    let blank: u64 = report.sources.iter().map(|s| s.blank_lines).sum();
    if blank > 0 {
        parts.push(format!("{} skipped", lines(blank, "blank")));
    }
    parts.push(format!("{} instance restarts", c.restarts));
    if report.interrupted || c.not_processed > 0 {
        parts.push(format!(
            "{} not processed{}",
            c.not_processed,
            not_processed_fate(report)
        ));
    }
    format!("{line}: {}", parts.join(", "))
}

/// What becomes of the records an interrupted run did not process, by the
/// kinds of its sources.
fn not_processed_fate(report: &RunReport) -> String {
    if report.counts.not_processed == 0 {
        return String::new();
    }
    let mut fates = Vec::new();
    let any = |f: fn(&SourceReport) -> bool| report.sources.iter().any(f);
    if any(|s| matches!(s.stopped_at, StopPosition::Committed(_))) {
        fates.push("from Kafka: not committed, read again at the next start");
    }
    if any(|s| s.input == "stdin") {
        fates.push("from stdin: lost");
    }
    if any(|s| s.input != "stdin" && !matches!(s.stopped_at, StopPosition::Committed(_))) {
        fates.push("from files: read again by the next run");
    }
    format!(" ({})", fates.join("; "))
}

/// Where one source stopped.
fn stop_line(s: &SourceReport) -> String {
    let name = format!("weir: source `{}` ({})", s.name, s.input);
    match &s.stopped_at {
        StopPosition::Lines { lines, bytes } if s.input == "stdin" => {
            format!("{name} stopped after reading {lines} lines ({bytes} bytes)")
        }
        StopPosition::Lines { lines, bytes } => format!(
            "{name} stopped after line {lines}: the next unread record is at line {}, byte {bytes}",
            lines + 1
        ),
        StopPosition::Committed(offsets) if offsets.is_empty() => {
            format!("{name} stopped having committed no offset")
        }
        StopPosition::Committed(offsets) => {
            let each: Vec<String> = offsets
                .iter()
                .map(|(topic, partition, offset)| format!("{topic}[{partition}] at {offset}"))
                .collect();
            format!(
                "{name} stopped with offsets committed (the next to read): {}",
                each.join(", ")
            )
        }
        StopPosition::Unknown => format!("{name} stopped on an error"),
    }
}

/// `1 blank line`, `2 blank lines`.
fn lines(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what} line")
    } else {
        format!("{n} {what} lines")
    }
}

fn records(n: u64) -> String {
    if n == 1 {
        "1 record".to_string()
    } else {
        format!("{n} records")
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Snapshot;

    fn report(counts: Snapshot, sources: Vec<SourceReport>) -> RunReport {
        RunReport {
            counts,
            elapsed: Duration::from_millis(1234),
            sources,
            dead_letter: Some("`rejected` (out/rejected.jsonl)".into()),
            ..RunReport::default()
        }
    }

    fn file(lines: u64, bytes: u64) -> SourceReport {
        SourceReport {
            name: "in".into(),
            input: "in.jsonl".into(),
            stopped_at: StopPosition::Lines { lines, bytes },
            blank_lines: 0,
        }
    }

    #[test]
    fn a_finished_run_is_one_line_and_names_where_dead_letters_went() {
        let counts = Snapshot {
            records_in: 6,
            records_out: 4,
            dead_lettered: 2,
            ..Snapshot::default()
        };
        assert_eq!(
            summary_lines(&report(counts, vec![file(6, 120)]), Ending::Finished),
            vec![
                "weir: finished in 1.23s, and 2 records dead-lettered to `rejected` (out/rejected.jsonl): \
                 6 records in, 4 out, 2 dead-lettered, 0 skipped, 0 instance restarts"
            ]
        );
        let clean = Snapshot {
            records_in: 1,
            records_out: 1,
            ..Snapshot::default()
        };
        assert_eq!(
            summary_lines(&report(clean, vec![file(1, 20)]), Ending::Finished),
            vec![
                "weir: finished in 1.23s: 1 record in, 1 out, 0 dead-lettered, 0 skipped, 0 instance restarts"
            ]
        );
        let one = SourceReport {
            blank_lines: 1,
            ..file(2, 16)
        };
        assert_eq!(
            summary_lines(&report(clean, vec![one]), Ending::Finished),
            vec![
                "weir: finished in 1.23s: 1 record in, 1 out, 0 dead-lettered, 0 skipped, \
                 1 blank line skipped, 0 instance restarts"
            ]
        );
        let blanks = SourceReport {
            blank_lines: 2,
            ..file(3, 24)
        };
        assert_eq!(
            summary_lines(&report(clean, vec![blanks]), Ending::Finished),
            vec![
                "weir: finished in 1.23s: 1 record in, 1 out, 0 dead-lettered, 0 skipped, \
                 2 blank lines skipped, 0 instance restarts"
            ]
        );
    }

    #[test]
    fn an_interrupted_run_says_where_each_source_stopped_and_what_was_not_processed() {
        let counts = Snapshot {
            records_in: 6,
            records_out: 2,
            not_processed: 4,
            ..Snapshot::default()
        };
        let stdin = SourceReport {
            name: "live".into(),
            input: "stdin".into(),
            stopped_at: StopPosition::Lines {
                lines: 3,
                bytes: 42,
            },
            blank_lines: 0,
        };
        let kafka = SourceReport {
            name: "orders".into(),
            input: "topic `orders`".into(),
            stopped_at: StopPosition::Committed(vec![
                ("orders".into(), 0, 10),
                ("orders".into(), 1, 7),
            ]),
            blank_lines: 0,
        };
        let mut r = report(counts, vec![file(6, 120), stdin, kafka]);
        r.interrupted = true;
        assert_eq!(
            summary_lines(&r, Ending::Interrupted("SIGINT")),
            vec![
                "weir: source `in` (in.jsonl) stopped after line 6: the next unread record is at line 7, byte 120",
                "weir: source `live` (stdin) stopped after reading 3 lines (42 bytes)",
                "weir: source `orders` (topic `orders`) stopped with offsets committed (the next to read): \
                 orders[0] at 10, orders[1] at 7",
                "weir: interrupted by SIGINT after 1.23s: 6 records in, 2 out, 0 dead-lettered, 0 skipped, \
                 0 instance restarts, 4 not processed (from Kafka: not committed, read again at the next \
                 start; from stdin: lost; from files: read again by the next run)",
            ]
        );
    }
}
