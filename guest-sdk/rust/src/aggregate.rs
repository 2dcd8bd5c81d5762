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

    /// The version of the accumulators this code reads and writes. The
    /// host stores it with every accumulator; raise it when the
    /// accumulator changes shape, so that a hot swap from the older code
    /// keeps the step's state through [`Aggregator::upgrade`] (or is
    /// refused when it cannot).
    const STATE_VERSION: u32 = 1;

    /// Older versions [`Aggregator::upgrade`] converts from.
    const UPGRADES_FROM: &'static [u32] = &[];

    /// Older versions [`Aggregator::downgrade`] converts to: what lets a
    /// swap to this code be rolled back after it wrote state.
    const DOWNGRADES_TO: &'static [u32] = &[];

    /// `key`'s accumulator as written by version `from` (one of
    /// [`Aggregator::UPGRADES_FROM`]), converted to [`Aggregator::STATE_VERSION`].
    /// The host calls it when the key is next read after a swap, before the
    /// key's records are added. `Ok(None)` drops the accumulator (the key
    /// starts again from none); an `Err` fails the key's records and leaves
    /// the stored accumulator as it was.
    fn upgrade(
        &mut self,
        _from: u32,
        _key: &[u8],
        _accumulator: &[u8],
    ) -> Result<Option<Vec<u8>>, Error> {
        Err(Error::failed("this aggregator does not implement upgrade"))
    }

    /// `key`'s accumulator of this version converted to version `to` (one
    /// of [`Aggregator::DOWNGRADES_TO`]), for a rollback to the code that
    /// reads it.
    fn downgrade(
        &mut self,
        _to: u32,
        _key: &[u8],
        _accumulator: &[u8],
    ) -> Result<Option<Vec<u8>>, Error> {
        Err(Error::failed(
            "this aggregator does not implement downgrade",
        ))
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

    /// As [`Aggregator::STATE_VERSION`].
    const STATE_VERSION: u32 = 1;
    /// As [`Aggregator::UPGRADES_FROM`].
    const UPGRADES_FROM: &'static [u32] = &[];
    /// As [`Aggregator::DOWNGRADES_TO`].
    const DOWNGRADES_TO: &'static [u32] = &[];

    /// As [`Aggregator::upgrade`]: the older code's state, as JSON, turned
    /// into this code's state.
    fn upgrade(
        &mut self,
        _from: u32,
        _key: &[u8],
        _old: serde_json::Value,
    ) -> Result<Option<Self::State>, Error> {
        Err(Error::failed("this aggregator does not implement upgrade"))
    }

    /// As [`Aggregator::downgrade`]: this code's state turned into the
    /// older code's, as JSON.
    fn downgrade(
        &mut self,
        _to: u32,
        _key: &[u8],
        _state: Self::State,
    ) -> Result<Option<serde_json::Value>, Error> {
        Err(Error::failed(
            "this aggregator does not implement downgrade",
        ))
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

    const STATE_VERSION: u32 = T::STATE_VERSION;
    const UPGRADES_FROM: &'static [u32] = T::UPGRADES_FROM;
    const DOWNGRADES_TO: &'static [u32] = T::DOWNGRADES_TO;

    fn upgrade(
        &mut self,
        from: u32,
        key: &[u8],
        accumulator: &[u8],
    ) -> Result<Option<Vec<u8>>, Error> {
        let old = serde_json::from_slice(accumulator).map_err(|e| {
            Error::failed(format!(
                "the stored accumulator of version {from} is not JSON: {e}"
            ))
        })?;
        Self::bytes(self.0.upgrade(from, key, old)?)
    }

    fn downgrade(
        &mut self,
        to: u32,
        key: &[u8],
        accumulator: &[u8],
    ) -> Result<Option<Vec<u8>>, Error> {
        let state = Self::state(accumulator)?;
        self.0
            .downgrade(to, key, state)?
            .map(|v| serde_json::to_vec(&v))
            .transpose()
            .map_err(|e| Error::failed(format!("cannot serialize the state as JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::testing::{
        AggregateOutcome, TestGroup, TestRecord, run_aggregator, run_downgrade,
        run_json_aggregator, run_merge, run_subtract, run_upgrade,
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

    /// `Sum` with its state renamed: version 2, upgrading from and
    /// downgrading to version 1.
    struct SumV2;

    #[derive(Serialize, Deserialize)]
    struct TotalV2 {
        total: i64,
        count: u32,
    }

    impl JsonAggregator for SumV2 {
        type State = TotalV2;
        const STATE_VERSION: u32 = 2;
        const UPGRADES_FROM: &'static [u32] = &[1];
        const DOWNGRADES_TO: &'static [u32] = &[1];
        fn init(_: Config) -> Result<Self, String> {
            Ok(SumV2)
        }
        fn add(
            &mut self,
            _key: &[u8],
            state: Option<TotalV2>,
            record: &Record<'_>,
        ) -> Result<Option<TotalV2>, Error> {
            let event: Event = record.value_json()?;
            let mut t = state.unwrap_or(TotalV2 { total: 0, count: 0 });
            t.total += event.n;
            t.count += 1;
            Ok(Some(t))
        }
        fn upgrade(
            &mut self,
            _from: u32,
            _key: &[u8],
            old: serde_json::Value,
        ) -> Result<Option<TotalV2>, Error> {
            let old: Total = serde_json::from_value(old)
                .map_err(|e| Error::poison(format!("not a version 1 total: {e}")))?;
            Ok(Some(TotalV2 {
                total: old.sum,
                count: old.records,
            }))
        }
        fn downgrade(
            &mut self,
            _to: u32,
            _key: &[u8],
            state: TotalV2,
        ) -> Result<Option<serde_json::Value>, Error> {
            Ok(Some(json!({"sum": state.total, "records": state.count})))
        }
    }

    #[test]
    fn versions_upgrade_and_downgrade_stored_accumulators() {
        assert_eq!(<Json<Sum> as Aggregator>::STATE_VERSION, 1);
        assert_eq!(<Json<SumV2> as Aggregator>::UPGRADES_FROM, &[1]);
        let v1: &[u8] = br#"{"sum":7,"records":2}"#;
        let out = run_upgrade::<Json<SumV2>>("null", 1, &[(b"a", v1), (b"b", b"[]")]).unwrap();
        assert_eq!(out[0].json(), Some(json!({"total": 7, "count": 2})));
        assert!(
            matches!(&out[1], AggregateOutcome::Poison(m) if m.starts_with("not a version 1 total")),
            "{out:?}"
        );
        let v2: &[u8] = br#"{"total":7,"count":2}"#;
        let out = run_downgrade::<Json<SumV2>>("null", 1, &[(b"a", v2)]).unwrap();
        assert_eq!(out[0].json(), Some(json!({"sum": 7, "records": 2})));
        let out = run_upgrade::<Json<Sum>>("null", 1, &[(b"a", v1)]).unwrap();
        assert_eq!(
            out,
            vec![AggregateOutcome::Failed(
                "this aggregator does not implement upgrade".into()
            )]
        );
    }

    #[test]
    fn a_refused_config_is_an_init_error() {
        let err = run_aggregator::<Json<Sum>>("{\"x\":1}", &[]).unwrap_err();
        assert_eq!(err, "Sum takes no config");
    }
}
