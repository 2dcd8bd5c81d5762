//! Event sourcing with an aggregator: each account's state is the fold of
//! its domain events (the seed's `state.apply(event)` per entity). The host
//! keeps the state per key (the account id) and emits it after every event,
//! so the output is the account's history of states.
//!
//! ```yaml
//! - name: accounts
//!   id: accounts
//!   kind: aggregate
//!   plugin: account-state
//!   config: { overdraft: 0 }       # optional: how far below zero a balance may go
//! ```
//!
//! Events (JSON values, keyed by account id):
//! `{"type": "AccountOpened", "owner": "ann"}`, `{"type": "Deposited",
//! "amount": 100}`, `{"type": "Withdrawn", "amount": 30}`,
//! `{"type": "Closed"}`. Amounts are integers (cents). State:
//! `{"owner": "ann", "balance": 70, "status": "open", "version": 3}`, where
//! `version` counts the events applied. An event that is invalid for the
//! state (a deposit before the account is opened, a withdrawal past the
//! overdraft, anything after `Closed`, an unknown type) is poison: it goes
//! to the error policy and the state stays as it was.

use serde::{Deserialize, Serialize};
use weir_sdk::{Config, Error, JsonAggregator, Record};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Open,
    Closed,
}

/// An account's state after its events so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub owner: String,
    pub balance: i64,
    pub status: Status,
    pub version: u64,
}

/// One domain event.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    AccountOpened { owner: String },
    Deposited { amount: i64 },
    Withdrawn { amount: i64 },
    Closed,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    overdraft: i64,
}

pub struct AccountState {
    overdraft: i64,
}

impl AccountState {
    /// The state after `event`, or why the event cannot apply to `state`.
    pub fn apply(&self, state: Option<Account>, event: Event) -> Result<Account, String> {
        let open = |s: Option<Account>| match s {
            Some(a) if a.status == Status::Open => Ok(a),
            Some(_) => Err("the account is closed".to_string()),
            None => Err("the account is not opened".to_string()),
        };
        let positive = |amount: i64| {
            if amount > 0 {
                Ok(amount)
            } else {
                Err(format!("amount must be positive, not {amount}"))
            }
        };
        let mut next = match event {
            Event::AccountOpened { owner } => match state {
                Some(_) => return Err("the account is already opened".into()),
                None => Account {
                    owner,
                    balance: 0,
                    status: Status::Open,
                    version: 0,
                },
            },
            Event::Deposited { amount } => {
                let mut a = open(state)?;
                a.balance = a
                    .balance
                    .checked_add(positive(amount)?)
                    .ok_or("the balance overflows")?;
                a
            }
            Event::Withdrawn { amount } => {
                let mut a = open(state)?;
                let balance = a.balance - positive(amount)?;
                if balance < -self.overdraft {
                    return Err(format!(
                        "insufficient funds: balance {}, withdrawal {amount}, overdraft {}",
                        a.balance, self.overdraft
                    ));
                }
                a.balance = balance;
                a
            }
            Event::Closed => {
                let mut a = open(state)?;
                a.status = Status::Closed;
                a
            }
        };
        next.version += 1;
        Ok(next)
    }
}

impl JsonAggregator for AccountState {
    type State = Account;

    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = if config.is_null() {
            Settings::default()
        } else {
            config.parse()?
        };
        if s.overdraft < 0 {
            return Err(format!(
                "overdraft must not be negative, not {}",
                s.overdraft
            ));
        }
        Ok(AccountState {
            overdraft: s.overdraft,
        })
    }

    fn add(
        &mut self,
        _key: &[u8],
        state: Option<Account>,
        record: &Record<'_>,
    ) -> Result<Option<Account>, Error> {
        let event: Event = record.value_json()?;
        self.apply(state, event).map(Some).map_err(Error::poison)
    }
}

weir_sdk::export_json_aggregator!(AccountState);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_sdk::testing::{AggregateOutcome, TestGroup, TestRecord, run_json_aggregator};

    use super::*;

    fn ev(v: serde_json::Value) -> TestRecord {
        TestRecord::new().json(&v)
    }

    fn history(config: &str, events: &[serde_json::Value]) -> Vec<AggregateOutcome> {
        let group = events
            .iter()
            .fold(TestGroup::new("acct-1"), |g, e| g.record(ev(e.clone())));
        run_json_aggregator::<AccountState>(config, &[group]).unwrap()
    }

    #[test]
    fn events_fold_into_the_account_state() {
        let out = history(
            "null",
            &[
                json!({"type": "AccountOpened", "owner": "ann"}),
                json!({"type": "Deposited", "amount": 100}),
                json!({"type": "Withdrawn", "amount": 30}),
                json!({"type": "Closed"}),
            ],
        );
        let states: Vec<_> = out.iter().map(|o| o.json().unwrap()).collect();
        assert_eq!(
            states,
            vec![
                json!({"owner": "ann", "balance": 0, "status": "open", "version": 1}),
                json!({"owner": "ann", "balance": 100, "status": "open", "version": 2}),
                json!({"owner": "ann", "balance": 70, "status": "open", "version": 3}),
                json!({"owner": "ann", "balance": 70, "status": "closed", "version": 4}),
            ]
        );
    }

    #[test]
    fn an_invalid_event_is_poison_and_the_state_stays() {
        let out = history(
            "null",
            &[
                json!({"type": "Deposited", "amount": 5}),
                json!({"type": "AccountOpened", "owner": "bob"}),
                json!({"type": "Withdrawn", "amount": 1}),
                json!({"type": "Refunded"}),
                json!({"type": "Deposited", "amount": 9}),
                json!({"type": "Closed"}),
                json!({"type": "Deposited", "amount": 1}),
            ],
        );
        let poison = |i: usize| match &out[i] {
            AggregateOutcome::Poison(m) => m.clone(),
            other => panic!("{i}: {other:?}"),
        };
        assert_eq!(poison(0), "the account is not opened");
        assert!(poison(2).starts_with("insufficient funds: balance 0"));
        assert!(poison(3).contains("Refunded"), "{}", poison(3));
        assert_eq!(
            out[4].json().unwrap(),
            json!({"owner": "bob", "balance": 9, "status": "open", "version": 2})
        );
        assert_eq!(poison(6), "the account is closed");
    }

    #[test]
    fn the_overdraft_comes_from_the_config() {
        let out = history(
            r#"{"overdraft": 50}"#,
            &[
                json!({"type": "AccountOpened", "owner": "cy"}),
                json!({"type": "Withdrawn", "amount": 50}),
                json!({"type": "Withdrawn", "amount": 1}),
            ],
        );
        assert_eq!(out[1].json().unwrap()["balance"], -50);
        assert!(matches!(out[2], AggregateOutcome::Poison(_)));
        let refused = run_json_aggregator::<AccountState>(r#"{"overdraft": -1}"#, &[]);
        assert_eq!(
            refused.unwrap_err(),
            "overdraft must not be negative, not -1"
        );
    }
}
