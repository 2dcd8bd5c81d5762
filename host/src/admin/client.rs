//! The few HTTP requests the CLI makes to a running pipeline's admin API:
//! one request per connection, over loopback, so a plain `TcpStream`
//! serves (no HTTP client crate needed).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::{AdminError, Token};

/// How long a call may take before the CLI gives up on it.
const TIMEOUT: Duration = Duration::from_secs(10);

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

/// `METHOD path` to the admin API at `addr`, with `token` as the bearer
/// token when given.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&Token>,
) -> Result<Reply, AdminError> {
    let connect = |cause| AdminError::Connect { addr, cause };
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(connect)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(connect)?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {}\r\n", t.secret()))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).map_err(connect)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(connect)?;
    parse(&raw).map_err(|reason| AdminError::BadReply { addr, reason })
}

/// A whole HTTP/1.1 response (the connection closed after it).
fn parse(raw: &[u8]) -> Result<Reply, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("no end of the response head")?;
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("status line `{status_line}`"))?;
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:"))
    {
        return Err("a chunked body, which this client does not read".into());
    }
    Ok(Reply {
        status,
        body: body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_gives_its_status_and_body() {
        let reply = parse(
            b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 27\r\n\r\n{\"error\":\"wrong admin token\"}",
        )
        .unwrap();
        assert_eq!(reply.status, 401);
        assert_eq!(reply.error(), "wrong admin token");
        assert!(parse(b"garbage").is_err());
    }
}
