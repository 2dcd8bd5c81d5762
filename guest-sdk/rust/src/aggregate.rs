//! Aggregators: per-key state folded over a key's records, kept by the host.
//!
//! An [`Aggregator`] turns a key's accumulator (or none yet) and one record
//! into the accumulator after it. It never keeps the accumulator itself: the
//! host stores the bytes, passes them back with the key's next records, and
//! emits each new accumulator downstream. [`JsonAggregator`] does the same
//! with a serde state type, so an event-sourcing plugin is a `match` over
//! its events.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Config, Error, Record};

/// An optional function of the aggregator world. Each one an aggregator
/// implements is declared in its `CAPABILITIES`, so the host knows before
/// any `init` which steps it can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// [`Aggregator::subtract`]: removes a record's contribution (table
    /// aggregations, where an update retracts the old value).
    Subtract,
    /// [`Aggregator::merge`]: combines two accumulators of one key
    /// (session windows).
    Merge,
}

/// A `kind: aggregate` step's plugin, on raw accumulator bytes.
///
/// Whatever the accumulator is, it is also the value the step emits, so in a
/// pipeline with `value-format: json` it must be JSON text
/// ([`JsonAggregator`] takes care of that).
pub trait Aggregator: Sized + 'static {
    /// The optional functions implemented, e.g. `&[Capability::Subtract]`
    /// when [`Aggregator::subtract`] is. The host calls no other.
    const CAPABILITIES: &'static [Capability] = &[];

    /// Builds the aggregator from the step's `config`; an `Err` refuses it.
    fn init(config: Config) -> Result<Self, String>;

    /// The accumulator after `record`, given the key's accumulator before it
    /// (`None` for a key with none yet). Returning `Ok(None)` removes the
    /// key's accumulator (downstream sees a tombstone). An `Err` fails only
    /// this record: the key's next record starts from `accumulator` again.
    fn add(
        &mut self,
        key: &[u8],
        accumulator: Option<&[u8]>,
        record: &Record<'_>,
    ) -> Result<Option<Vec<u8>>, Error>;

    /// The accumulator with `record`'s contribution removed. Declare
    /// [`Capability::Subtract`] when implementing it.
    fn subtract(
        &mut self,
        _key: &[u8],
        _accumulator: Option<&[u8]>,
        _record: &Record<'_>,
    ) -> Result<Option<Vec<u8>>, Error> {
        Err(Error::failed("this aggregator does not implement subtract"))
    }

    /// Two accumulators of `key` combined into one. Declare
    /// [`Capability::Merge`] when implementing it.
    fn merge(
        &mut self,
        _key: &[u8],
        _left: &[u8],
        _right: &[u8],
    ) -> Result<Option<Vec<u8>>, Error> {
        Err(Error::failed("this aggregator does not implement merge"))
    }
}

/// An [`Aggregator`] whose accumulator is a serde type stored as JSON: the
/// SDK parses the stored accumulator before each call and serializes the
/// result. Export it with [`crate::export_json_aggregator!`].
///
/// ```ignore
/// #[derive(Serialize, Deserialize, Default)]
/// struct Count { n: u64 }
/// struct Counter;
/// impl JsonAggregator for Counter {
///     type State = Count;
///     fn init(_: Config) -> Result<Self, String> { Ok(Counter) }
///     fn add(&mut self, _key: &[u8], state: Option<Count>, _r: &Record<'_>) -> Result<Option<Count>, Error> {
///         let mut s = state.unwrap_or_default();
///         s.n += 1;
///         Ok(Some(s))
///     }
/// }
/// weir_sdk::export_json_aggregator!(Counter);
/// ```
pub trait JsonAggregator: Sized + 'static {
    /// The accumulator.
    type State: Serialize + DeserializeOwned;

    /// As [`Aggregator::CAPABILITIES`].
    const CAPABILITIES: &'static [Capability] = &[];

    /// Builds the aggregator from the step's `config`; an `Err` refuses it.
    fn init(config: Config) -> Result<Self, String>;

    /// The state after `record`, given the state before it (`None` for a
    /// key with none yet); `Ok(None)` removes the key's state.
    fn add(
        &mut self,
        key: &[u8],
        state: Option<Self::State>,
        record: &Record<'_>,
    ) -> Result<Option<Self::State>, Error>;

    /// As [`Aggregator::subtract`].
    fn subtract(
        &mut self,
        _key: &[u8],
        _state: Option<Self::State>,
        _record: &Record<'_>,
    ) -> Result<Option<Self::State>, Error> {
        Err(Error::failed("this aggregator does not implement subtract"))
    }

    /// As [`Aggregator::merge`].
    fn merge(
        &mut self,
        _key: &[u8],
        _left: Self::State,
        _right: Self::State,
    ) -> Result<Option<Self::State>, Error> {
        Err(Error::failed("this aggregator does not implement merge"))
    }
}

/// Runs a [`JsonAggregator`] as an [`Aggregator`] on JSON bytes.
pub struct Json<T>(T);

impl<T: JsonAggregator> Json<T> {
    /// The stored accumulator is the host's copy of what this plugin
    /// returned before: when it no longer parses (say, the state type
    /// changed incompatibly), the plugin is at fault, not the record.
    fn state(bytes: &[u8]) -> Result<T::State, Error> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::failed(format!(
                "the stored accumulator does not parse as the aggregator's state: {e}"
            ))
        })
    }

    fn bytes(state: Option<T::State>) -> Result<Option<Vec<u8>>, Error> {
        state
            .map(|s| serde_json::to_vec(&s))
            .transpose()
            .map_err(|e| Error::failed(format!("cannot serialize the state as JSON: {e}")))
    }
}

impl<T: JsonAggregator> Aggregator for Json<T> {
    const CAPABILITIES: &'static [Capability] = T::CAPABILITIES;

    fn init(config: Config) -> Result<Self, String> {
        T::init(config).map(Json)
    }

    fn add(
        &mut self,
        key: &[u8],
        accumulator: Option<&[u8]>,
        record: &Record<'_>,
    ) -> Result<Option<Vec<u8>>, Error> {
        let state = accumulator.map(Self::state).transpose()?;
        Self::bytes(self.0.add(key, state, record)?)
    }

    fn subtract(
        &mut self,
        key: &[u8],
        accumulator: Option<&[u8]>,
        record: &Record<'_>,
    ) -> Result<Option<Vec<u8>>, Error> {
        let state = accumulator.map(Self::state).transpose()?;
        Self::bytes(self.0.subtract(key, state, record)?)
    }

    fn merge(&mut self, key: &[u8], left: &[u8], right: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let (left, right) = (Self::state(left)?, Self::state(right)?);
        Self::bytes(self.0.merge(key, left, right)?)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::testing::{
        AggregateOutcome, TestGroup, TestRecord, run_aggregator, run_json_aggregator, run_merge,
        run_subtract,
    };

    /// Sums the `n` of each value; `{"n": "x"}` is poison, `{"close": true}`
    /// removes the key's sum.
    struct Sum;

    #[derive(Serialize, Deserialize)]
    struct Total {
        sum: i64,
        records: u32,
    }

    #[derive(Deserialize)]
    struct Event {
        #[serde(default)]
        n: i64,
        #[serde(default)]
        close: bool,
    }

    impl JsonAggregator for Sum {
        type State = Total;
        const CAPABILITIES: &'static [Capability] = &[Capability::Merge];
        fn init(config: Config) -> Result<Self, String> {
            if config.is_null() {
                Ok(Sum)
            } else {
                Err("Sum takes no config".into())
            }
        }
        fn add(
            &mut self,
            _key: &[u8],
            state: Option<Total>,
            record: &Record<'_>,
        ) -> Result<Option<Total>, Error> {
            let event: Event = record.value_json()?;
            if event.close {
                return Ok(None);
            }
            let mut t = state.unwrap_or(Total { sum: 0, records: 0 });
            t.sum += event.n;
            t.records += 1;
            Ok(Some(t))
        }
        fn merge(&mut self, _key: &[u8], l: Total, r: Total) -> Result<Option<Total>, Error> {
            Ok(Some(Total {
                sum: l.sum + r.sum,
                records: l.records + r.records,
            }))
        }
    }

    fn ev(v: serde_json::Value) -> TestRecord {
        TestRecord::new().json(&v)
    }

    fn sums(outcomes: &[AggregateOutcome]) -> Vec<Option<serde_json::Value>> {
        outcomes.iter().map(AggregateOutcome::json).collect()
    }

    #[test]
    fn accumulators_chain_per_key_and_a_poison_record_keeps_the_last_good_one() {
        let groups = [
            TestGroup::new("a")
                .record(ev(json!({"n": 1})))
                .record(ev(json!({"n": "x"})))
                .record(ev(json!({"n": 2}))),
            TestGroup::new("b")
                .accumulator(r#"{"sum":10,"records":1}"#)
                .record(ev(json!({"n": 5}))),
        ];
        let out = run_json_aggregator::<Sum>("null", &groups).unwrap();
        assert_eq!(out.len(), 4);
        assert!(matches!(&out[1], AggregateOutcome::Poison(m) if m.starts_with("invalid JSON")));
        assert_eq!(
            sums(&out),
            vec![
                Some(json!({"sum": 1, "records": 1})),
                None,
                Some(json!({"sum": 3, "records": 2})),
                Some(json!({"sum": 15, "records": 2})),
            ]
        );
    }

    #[test]
    fn a_removed_accumulator_starts_the_key_again_from_none() {
        let groups = [TestGroup::new("a")
            .accumulator(r#"{"sum":7,"records":3}"#)
            .record(ev(json!({"close": true})))
            .record(ev(json!({"n": 4})))];
        let out = run_json_aggregator::<Sum>("null", &groups).unwrap();
        assert_eq!(out[0], AggregateOutcome::Accumulator(None));
        assert_eq!(out[1].json(), Some(json!({"sum": 4, "records": 1})));
    }

    #[test]
    fn a_stored_accumulator_that_does_not_parse_fails_the_record_not_the_batch() {
        let groups = [
            TestGroup::new("a")
                .accumulator("not json")
                .record(ev(json!({"n": 1}))),
            TestGroup::new("b").record(ev(json!({"n": 1}))),
        ];
        let out = run_json_aggregator::<Sum>("null", &groups).unwrap();
        assert!(
            matches!(&out[0], AggregateOutcome::Failed(m) if m.contains("stored accumulator")),
            "{out:?}"
        );
        assert_eq!(out[1].json(), Some(json!({"sum": 1, "records": 1})));
    }

    #[test]
    fn capabilities_merge_and_the_unimplemented_subtract() {
        assert_eq!(
            <Json<Sum> as Aggregator>::CAPABILITIES,
            &[Capability::Merge]
        );
        let l = br#"{"sum":1,"records":1}"#;
        let r = br#"{"sum":2,"records":3}"#;
        let out = run_merge::<Json<Sum>>("null", &[(b"k", l, r)]).unwrap();
        assert_eq!(out[0].json(), Some(json!({"sum": 3, "records": 4})));
        let out =
            run_subtract::<Json<Sum>>("null", &[TestGroup::new("a").record(ev(json!({"n": 1})))])
                .unwrap();
        assert_eq!(
            out,
            vec![AggregateOutcome::Failed(
                "this aggregator does not implement subtract".into()
            )]
        );
    }

    #[test]
    fn a_refused_config_is_an_init_error() {
        let err = run_aggregator::<Json<Sum>>("{\"x\":1}", &[]).unwrap_err();
        assert_eq!(err, "Sum takes no config");
    }
}
