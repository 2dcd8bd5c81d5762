//! The HTTP(S) requests the CLI makes to a running pipeline's admin API,
//! through ureq (rustls with ring for `https://`, checked against
//! [`ClientTls`]). A request may carry a body (a swap's component and
//! config).

use std::time::Duration;

use super::{AdminError, AdminUrl, ClientTls, Token};

/// How long a call may take before the CLI gives up on it.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The most of an answer the CLI reads.
const MAX_REPLY: u64 = 16 << 20;

/// A request body, and how long the server may take to act on it.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    pub content_type: &'a str,
    pub bytes: &'a [u8],
    /// How long to wait for the answer once the body is sent (a swap
    /// compiles a component first: that takes longer than a status).
    pub wait: Duration,
}

/// An answer: its HTTP status and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// The `error` an admin API refusal carries, else the whole body.
    pub fn error(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| self.body.clone())
    }
}

/// `METHOD path` to the admin API at `url` (over HTTPS when it says so,
/// trusting what `tls` trusts), with `token` as the bearer token when
/// given, carrying `upload` when given. Any status is a [`Reply`]; only
/// not getting one is an error. The token is never sent in clear beyond
/// this machine: a plain `http://` address that is not loopback is refused
/// when a token is given.
///
/// A body goes with `Expect: 100-continue` (ureq waits up to a second for
/// the go-ahead, then sends it anyway, as curl does): a refusal that comes
/// first (a wrong token, a body over the limit) then arrives whole instead
/// of after a large upload, or as a reset connection.
pub fn request(
    url: &AdminUrl,
    tls: &ClientTls,
    method: &str,
    path: &str,
    token: Option<&Token>,
    upload: Option<Upload<'_>>,
) -> Result<Reply, AdminError> {
    if token.is_some() && !url.tls && !url.is_loopback() {
        return Err(AdminError::TokenInClear(url.clone()));
    }
    let wait = upload.map_or(TIMEOUT, |u| TIMEOUT + u.wait);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(wait))
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(tls.root_certs())
                .build(),
        )
        .build()
        .into();
    let mut builder = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{url}{path}"));
    if let Some(token) = token {
        builder = builder.header("Authorization", format!("Bearer {}", token.secret()));
    }
    if let Some(u) = upload {
        builder = builder
            .header("Content-Type", u.content_type)
            .header("Expect", "100-continue");
    }
    let body = upload.map_or_else(Vec::new, |u| u.bytes.to_vec());
    let request = builder
        .body(body)
        .map_err(|e| AdminError::BadUrl(format!("{url}{path}: {e}")))?;
    let mut response = agent.run(request).map_err(|e| failed(url, tls, e))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_REPLY)
        .read_to_string()
        .map_err(|e| AdminError::BadReply {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    Ok(Reply { status, body })
}

/// Why no answer came: a certificate `tls` does not trust gets a message
/// of its own, since the fix (`--admin-ca`) differs.
fn failed(url: &AdminUrl, tls: &ClientTls, e: ureq::Error) -> AdminError {
    let rustls_error = match &e {
        ureq::Error::Rustls(inner) => Some(inner),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match rustls_error {
        Some(why @ rustls::Error::InvalidCertificate(_)) => AdminError::Untrusted {
            url: url.clone(),
            trusted: tls.trusted(),
            cause: why.to_string(),
        },
        _ => AdminError::Connect {
            url: url.clone(),
            cause: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_not_sent_in_clear_beyond_loopback() {
        let token = Token::new("s3cret", "the test").unwrap();
        let url: AdminUrl = "http://192.0.2.1:7070".parse().unwrap();
        let err = request(
            &url,
            &ClientTls::default(),
            "GET",
            "/v1/status",
            Some(&token),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("http://192.0.2.1:7070"), "{err}");
        assert!(err.contains("https://"), "{err}");
    }

    #[test]
    fn a_refusal_gives_its_error() {
        let reply = Reply {
            status: 401,
            body: "{\"error\":\"wrong admin token\"}".into(),
        };
        assert_eq!(reply.error(), "wrong admin token");
        let reply = Reply {
            status: 500,
            body: "oops".into(),
        };
        assert_eq!(reply.error(), "oops");
    }
}
