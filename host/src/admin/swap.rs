//! The swap call's wire format, shared by the server and the CLI:
//! `POST /v1/steps/{step}/swap` with a `multipart/form-data` body.
//!
//! Parts (each optional, at least one of `component` and `config`):
//! - `component`: the new component's bytes (any content type; the CLI
//!   sends `application/wasm`). Without it the step keeps its component:
//!   a config-only swap.
//! - `config`: the new config as JSON text. Without it the step keeps its
//!   config.
//! - `options`: [`SwapOptions`] as JSON text, e.g. `{"rollback":
//!   {"records": 1000, "max_failure_rate": 0.05}}`. Without it, none.
//!
//! Multipart
//! rather than a raw body so that the component travels as bytes (no
//! base64) beside the other parts, and `curl -F component=@plugin.wasm -F
//! 'config={...}'` makes the call as the CLI does.
//!
//! Answers: 200 with [`SwapAnswer`]; refusals are JSON `{"error": ...}`
//! with the status [`refusal_status`] gives, plus `stage` when a check
//! refused the new version.

use axum::extract::Multipart;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::runtime::control::{RefusedAt, Rollback, SwapError, SwapOptions, SwapReport};

/// The largest swap request body the admin API takes: room for an 18 MB
/// Python component several times over. Larger ones get 413.
pub const SWAP_BODY_LIMIT: usize = 64 << 20;

/// The part holding the new component's bytes.
pub const COMPONENT_PART: &str = "component";
/// The part holding the new config, as JSON.
pub const CONFIG_PART: &str = "config";
/// The part holding the swap's [`SwapOptions`], as JSON.
pub const OPTIONS_PART: &str = "options";

/// The path of the swap call for `step` (a step name is a plain word in
/// the pipeline file; anything else is percent-encoded).
pub fn swap_path(step: &str) -> String {
    let mut encoded = String::new();
    for b in step.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("/v1/steps/{encoded}/swap")
}

/// A swap request's body and its content type (with the boundary).
pub fn swap_body(
    component: Option<&[u8]>,
    config: Option<&serde_json::Value>,
    options: Option<&SwapOptions>,
) -> (String, Vec<u8>) {
    let config = config.map(|c| c.to_string().into_bytes());
    let options = options.map(|o| serde_json::to_vec(o).expect("options serialize"));
    // A boundary must not occur in any part: count up until it does not.
    let mut n = 0u32;
    let boundary = loop {
        let candidate = format!("weir-swap-boundary-{n}");
        let inside = |part: &Option<&[u8]>| {
            part.is_some_and(|p| memchr::memmem::find(p, candidate.as_bytes()).is_some())
        };
        if !inside(&component) && !inside(&config.as_deref()) && !inside(&options.as_deref()) {
            break candidate;
        }
        n += 1;
    };
    let mut body = Vec::new();
    let mut part = |head: &str, bytes: &[u8]| {
        body.extend_from_slice(format!("--{boundary}\r\n{head}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    };
    if let Some(bytes) = component {
        part(
            &format!(
                "Content-Disposition: form-data; name=\"{COMPONENT_PART}\"; filename=\"plugin.wasm\"\r\n\
                 Content-Type: application/wasm"
            ),
            bytes,
        );
    }
    if let Some(bytes) = &config {
        part(
            &format!(
                "Content-Disposition: form-data; name=\"{CONFIG_PART}\"\r\n\
                 Content-Type: application/json"
            ),
            bytes,
        );
    }
    if let Some(bytes) = &options {
        part(
            &format!(
                "Content-Disposition: form-data; name=\"{OPTIONS_PART}\"\r\n\
                 Content-Type: application/json"
            ),
            bytes,
        );
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A swap request as the server read it.
#[derive(Debug, Default)]
pub(super) struct SwapParts {
    pub component: Option<Vec<u8>>,
    pub config: Option<serde_json::Value>,
    pub options: Option<SwapOptions>,
}

/// A request the server refuses before swapping anything: its status and
/// why.
pub(super) type Rejected = (StatusCode, String);

/// Reads the parts of a swap request; an unknown, repeated or unreadable
/// part, or neither a component nor a config, is refused (400), a body
/// over [`SWAP_BODY_LIMIT`] too (413).
pub(super) async fn read_parts(mut multipart: Multipart) -> Result<SwapParts, Rejected> {
    let unreadable = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(None)
        } else {
            (
                StatusCode::BAD_REQUEST,
                format!("unreadable multipart body: {}", e.body_text()),
            )
        }
    };
    let mut parts = SwapParts::default();
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_string();
        let repeated = || {
            (
                StatusCode::BAD_REQUEST,
                format!("the `{name}` part is given twice"),
            )
        };
        match name.as_str() {
            COMPONENT_PART => {
                if parts.component.is_some() {
                    return Err(repeated());
                }
                parts.component = Some(field.bytes().await.map_err(unreadable)?.to_vec());
            }
            CONFIG_PART => {
                if parts.config.is_some() {
                    return Err(repeated());
                }
                let text = field.bytes().await.map_err(unreadable)?;
                let config = serde_json::from_slice(&text).map_err(|e| {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("the `{CONFIG_PART}` part is not JSON: {e}"),
                    )
                })?;
                parts.config = Some(config);
            }
            OPTIONS_PART => {
                if parts.options.is_some() {
                    return Err(repeated());
                }
                let text = field.bytes().await.map_err(unreadable)?;
                let options = serde_json::from_slice(&text).map_err(|e| {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("the `{OPTIONS_PART}` part is not swap options: {e}"),
                    )
                })?;
                parts.options = Some(options);
            }
            _ => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown part `{name}`: a swap takes `{COMPONENT_PART}` (the new \
                         component's bytes), `{CONFIG_PART}` (its config, as JSON) and \
                         `{OPTIONS_PART}` (swap options, as JSON)"
                    ),
                ));
            }
        }
    }
    if parts.component.is_none() && parts.config.is_none() {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "nothing to swap: send a `{CONFIG_PART}` part, a `{COMPONENT_PART}` part, or both"
            ),
        ));
    }
    Ok(parts)
}

/// 413, saying the limit (and the body's size when it announced one).
pub(super) fn too_large(length: Option<u64>) -> Rejected {
    let size = length.map_or(String::new(), |n| format!(" ({n} bytes)"));
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the swap request body{size} is over the admin API's limit of {} MiB \
             ({SWAP_BODY_LIMIT} bytes)",
            SWAP_BODY_LIMIT >> 20
        ),
    )
}

/// The HTTP status a refused swap is answered with.
pub fn refusal_status(e: &SwapError) -> StatusCode {
    match e {
        SwapError::Busy | SwapError::Rebalancing => StatusCode::CONFLICT,
        SwapError::NotRunning
        | SwapError::Refused {
            stage: RefusedAt::Stopping,
            ..
        } => StatusCode::SERVICE_UNAVAILABLE,
        SwapError::UnknownStep(_) => StatusCode::NOT_FOUND,
        SwapError::InvalidOptions { .. } => StatusCode::BAD_REQUEST,
        // The disk or the control topic did not take the record: nothing
        // changed, and a later try may pass.
        SwapError::NotRecorded { .. } => StatusCode::SERVICE_UNAVAILABLE,
        SwapError::NotAPluginStep { .. } | SwapError::Refused { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        // The new version was checked but a task could not start it: the
        // run stops with that error.
        SwapError::Cutover { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A refused swap as JSON: `error`, and `stage` for a check that refused
/// the new version (`component`, `kind`, `init`, `ports`).
pub fn refusal_body(e: &SwapError) -> serde_json::Value {
    match e {
        SwapError::Refused { stage, .. } => {
            serde_json::json!({ "error": e.to_string(), "stage": stage.to_string() })
        }
        _ => serde_json::json!({ "error": e.to_string() }),
    }
}

/// What a swap answers with (200), as JSON: the [`SwapReport`], with
/// durations in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapAnswer {
    pub step: String,
    /// The version now running (1 is the pipeline file's).
    pub version: u32,
    /// SHA-256 of the component now running, and of the one before.
    pub digest: String,
    pub previous_digest: String,
    /// Compiling (or loading from the cache) and checking the new version.
    pub prepare_us: u64,
    /// Until every live task switched.
    pub cutover_us: u64,
    /// Tasks that switched.
    pub tasks: usize,
    /// The longest one task took to switch.
    pub slowest_task_us: u64,
    /// The trial the new version is on, when the swap asked for one.
    #[serde(default)]
    pub rollback: Option<Rollback>,
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl From<&SwapReport> for SwapAnswer {
    fn from(r: &SwapReport) -> Self {
        SwapAnswer {
            step: r.step.clone(),
            version: r.version,
            digest: r.digest.clone(),
            previous_digest: r.previous_digest.clone(),
            prepare_us: micros(r.prepare),
            cutover_us: micros(r.cutover),
            tasks: r.tasks,
            slowest_task_us: micros(r.slowest_task),
            rollback: r.rollback,
        }
    }
}

/// The first 12 hex digits of a digest, as `weir status` shows them.
pub(super) fn short(digest: &str) -> &str {
    &digest[..12.min(digest.len())]
}

/// Microseconds as milliseconds for a person: `0.4 ms`, `12 ms`.
pub(super) fn millis(us: u64) -> String {
    if us < 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{} ms", us / 1000)
    }
}

impl std::fmt::Display for SwapAnswer {
    /// The line `weir swap` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digests = if self.digest == self.previous_digest {
            format!("sha {}, same component", short(&self.digest))
        } else {
            format!(
                "sha {} -> {}",
                short(&self.previous_digest),
                short(&self.digest)
            )
        };
        let tasks = if self.tasks == 1 { "task" } else { "tasks" };
        write!(
            f,
            "step {}: v{} -> v{} ({digests}), prepared in {}, switched {} {tasks} in {}",
            self.step,
            self.version.saturating_sub(1),
            self.version,
            millis(self.prepare_us),
            self.tasks,
            millis(self.cutover_us),
        )?;
        if let Some(r) = &self.rollback {
            write!(
                f,
                "; on trial for its first {} records, rolled back if more than {}% of them fail",
                r.records,
                r.max_failure_rate * 100.0
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_reads_as_one_line() {
        let mut answer = SwapAnswer {
            step: "tag".into(),
            version: 2,
            digest: "9ab1c2d3e4f5a6b7".into(),
            previous_digest: "5f0c6e1a9b2d3c4e".into(),
            prepare_us: 12_345,
            cutover_us: 3_210,
            tasks: 4,
            slowest_task_us: 2_000,
            rollback: None,
        };
        assert_eq!(
            answer.to_string(),
            "step tag: v1 -> v2 (sha 5f0c6e1a9b2d -> 9ab1c2d3e4f5), prepared in 12 ms, \
             switched 4 tasks in 3.2 ms"
        );
        answer.previous_digest = answer.digest.clone();
        answer.version = 3;
        answer.tasks = 1;
        assert_eq!(
            answer.to_string(),
            "step tag: v2 -> v3 (sha 9ab1c2d3e4f5, same component), prepared in 12 ms, \
             switched 1 task in 3.2 ms"
        );
        answer.rollback = Some(Rollback {
            records: 1000,
            max_failure_rate: 0.05,
        });
        assert!(
            answer.to_string().ends_with(
                "; on trial for its first 1000 records, rolled back if more than 5% of them fail"
            ),
            "{answer}"
        );
    }

    #[test]
    fn the_body_holds_each_part_under_a_boundary_found_in_none() {
        // A component that happens to hold the first boundary tried.
        let component = b"\0asm--weir-swap-boundary-0\r\n".to_vec();
        let config = serde_json::json!({ "set": { "version": "v2" } });
        let (content_type, body) = swap_body(Some(&component), Some(&config), None);
        assert_eq!(
            content_type,
            "multipart/form-data; boundary=weir-swap-boundary-1"
        );
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with("--weir-swap-boundary-1\r\n"), "{text}");
        assert!(text.contains("name=\"component\""), "{text}");
        assert!(
            text.contains("name=\"config\"\r\nContent-Type: application/json\r\n\r\n{\"set\":{\"version\":\"v2\"}}\r\n"),
            "{text}"
        );
        assert!(text.ends_with("--weir-swap-boundary-1--\r\n"), "{text}");
        let (_, config_only) = swap_body(None, Some(&config), None);
        assert!(!String::from_utf8_lossy(&config_only).contains("component"));
    }

    #[test]
    fn a_step_name_is_encoded_in_the_path() {
        assert_eq!(swap_path("tag"), "/v1/steps/tag/swap");
        assert_eq!(swap_path("a b/c"), "/v1/steps/a%20b%2Fc/swap");
    }

    #[test]
    fn each_refusal_has_its_status() {
        assert_eq!(refusal_status(&SwapError::Busy), StatusCode::CONFLICT);
        assert_eq!(
            refusal_status(&SwapError::UnknownStep("x".into())),
            StatusCode::NOT_FOUND
        );
        let refused = SwapError::Refused {
            step: "tag".into(),
            stage: RefusedAt::Init,
            reason: "bad config".into(),
        };
        assert_eq!(refusal_status(&refused), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(refusal_body(&refused)["stage"], "init");
        assert_eq!(
            refusal_status(&SwapError::NotRunning),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let stopping = SwapError::Refused {
            step: "tag".into(),
            stage: RefusedAt::Stopping,
            reason: "interrupted".into(),
        };
        assert_eq!(refusal_status(&stopping), StatusCode::SERVICE_UNAVAILABLE);
    }
}
