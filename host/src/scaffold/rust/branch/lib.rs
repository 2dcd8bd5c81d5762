//! A weir plugin for `branch` steps: it sends records with a key to port
//! `keyed` and the rest to port `unkeyed`.
//!
//! A branch sends each record, unchanged, to one of the ports it names in
//! `ports` (or drops it); the pipeline wires each port to a step or a sink
//! as `from: STEP.PORT`.

use weir_sdk::{Config, Error, Record, Router};

pub struct Plugin;

impl Router for Plugin {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Plugin)
    }

    fn ports(&self) -> Vec<String> {
        vec!["keyed".into(), "unkeyed".into()]
    }

    fn route(&mut self, record: &Record<'_>) -> Result<Option<usize>, Error> {
        // An index into `ports`; `None` would drop the record.
        Ok(Some(if record.key().is_some() { 0 } else { 1 }))
    }
}

weir_sdk::export_router!(Plugin);

#[cfg(test)]
mod tests {
    use weir_sdk::testing::{Outcome, TestRecord, run_router};

    use super::Plugin;

    #[test]
    fn routes_by_whether_there_is_a_key() {
        let keyed = TestRecord::new().key("k").value("1");
        let unkeyed = TestRecord::new().value("2");
        let out = run_router::<Plugin>("null", &[keyed.clone(), unkeyed.clone()]).unwrap();
        assert_eq!(out[0], Outcome::Records(vec![("keyed".into(), keyed)]));
        assert_eq!(out[1], Outcome::Records(vec![("unkeyed".into(), unkeyed)]));
    }
}
