//! Sends each record to the port named for the value of one JSON field (a
//! branch step), as the saga pattern branches commands by their type.
//!
//! ```yaml
//! config:
//!   field: type
//!   routes: { OrderCreated: orders, PaymentRequested: payments }
//!   default: unknown        # optional; without it unmatched records are dropped
//! ```
//! The ports are the route targets (in order of first appearance) then the
//! default; the pipeline wires each port to a sink or a step.

use serde::Deserialize;
use weir_sdk::json::{self, raw_to_text};
use weir_sdk::{Config, Error, Record, Router};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    field: json::Path,
    routes: serde_json::Map<String, serde_json::Value>,
    default: Option<String>,
}

pub struct FieldRouter {
    field: json::Path,
    ports: Vec<String>,
    routes: Vec<(String, usize)>,
    default: Option<usize>,
}

impl FieldRouter {
    fn port(ports: &mut Vec<String>, name: &str) -> usize {
        match ports.iter().position(|p| p == name) {
            Some(i) => i,
            None => {
                ports.push(name.to_string());
                ports.len() - 1
            }
        }
    }
}

impl Router for FieldRouter {
    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        if s.routes.is_empty() {
            return Err("`routes` must name at least one route".into());
        }
        let mut ports = Vec::new();
        let mut routes = Vec::new();
        for (value, target) in &s.routes {
            let target = target
                .as_str()
                .ok_or_else(|| format!("route `{value}` must name a port (a string)"))?;
            routes.push((value.clone(), Self::port(&mut ports, target)));
        }
        let default = s.default.as_deref().map(|d| Self::port(&mut ports, d));
        Ok(FieldRouter {
            field: s.field,
            ports,
            routes,
            default,
        })
    }

    fn ports(&self) -> Vec<String> {
        self.ports.clone()
    }

    fn route(&mut self, record: &Record<'_>) -> Result<Option<usize>, Error> {
        let value = record
            .value()
            .ok_or_else(|| Error::poison("tombstone has no JSON value"))?;
        let Some(raw) = self.field.find(value)? else {
            return Ok(self.default);
        };
        let text = raw_to_text(raw)?;
        Ok(self
            .routes
            .iter()
            .find(|(v, _)| *v == text)
            .map(|(_, p)| *p)
            .or(self.default))
    }
}

weir_sdk::export_router!(FieldRouter);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::{Outcome, TestRecord, run_router};

    #[test]
    fn routes_by_field_with_default() {
        let cfg =
            r#"{"field":"type","routes":{"A":"left","B":"right","C":"left"},"default":"other"}"#;
        let inputs: Vec<_> = [
            r#"{"type":"A"}"#,
            r#"{"type":"B"}"#,
            r#"{"type":"C"}"#,
            r#"{"type":"Z"}"#,
            "{}",
        ]
        .iter()
        .map(|v| TestRecord::new().value(*v))
        .collect();
        let ports: Vec<String> = run_router::<FieldRouter>(cfg, &inputs)
            .unwrap()
            .into_iter()
            .map(|o| match o {
                Outcome::Records(r) => r[0].0.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ports, ["left", "right", "left", "other", "other"]);
    }
}
