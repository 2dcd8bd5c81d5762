//! The few HTTP requests the CLI makes to a running pipeline's admin API:
//! one request per connection, over loopback, so a plain `TcpStream`
//! serves (no HTTP client crate needed). A request may carry a body (a
//! swap's component and config).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::{AdminError, Token};

/// How long a call may take before the CLI gives up on it.
const TIMEOUT: Duration = Duration::from_secs(10);

/// How long the CLI waits for the server's go-ahead (`100 Continue`)
/// before it sends a body anyway, as curl does.
const CONTINUE_WAIT: Duration = Duration::from_secs(1);

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

/// `METHOD path` to the admin API at `addr`, with `token` as the bearer
/// token when given, carrying `upload` when given.
///
/// A body goes with `Expect: 100-continue`: it is sent once the server
/// says go on, so a refusal that comes first (a wrong token, a body over
/// the limit) arrives whole instead of after a large upload, or as a
/// reset connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&Token>,
    upload: Option<Upload<'_>>,
) -> Result<Reply, AdminError> {
    let connect = |cause| AdminError::Connect { addr, cause };
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(connect)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(connect)?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {}\r\n", t.secret()))
        .unwrap_or_default();
    let body = match upload {
        Some(u) => format!(
            "Content-Type: {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n",
            u.content_type,
            u.bytes.len()
        ),
        None => "Content-Length: 0\r\n".to_string(),
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{body}Connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).map_err(connect)?;
    let mut raw = Vec::new();
    if let Some(u) = upload {
        stream
            .set_read_timeout(Some(CONTINUE_WAIT))
            .map_err(connect)?;
        match interim(&mut stream).map_err(connect)? {
            // Go on (or no word in time): send the body.
            Interim::Continue | Interim::Silent => {
                stream.write_all(u.bytes).map_err(connect)?;
                stream.set_read_timeout(Some(u.wait)).map_err(connect)?;
            }
            // The final answer came first: the body is not wanted.
            Interim::Final(head) => {
                stream.set_read_timeout(Some(TIMEOUT)).map_err(connect)?;
                raw = head;
            }
        }
    }
    stream.read_to_end(&mut raw).map_err(connect)?;
    parse(&raw).map_err(|reason| AdminError::BadReply { addr, reason })
}

/// What the server said before a body was sent.
enum Interim {
    /// `100 Continue`.
    Continue,
    /// Nothing within the wait.
    Silent,
    /// A final answer's head, read so far.
    Final(Vec<u8>),
}

/// Reads a response head (up to its blank line) if one comes within the
/// stream's read timeout.
fn interim(stream: &mut impl std::io::Read) -> std::io::Result<Interim> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e)
                if head.is_empty()
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                return Ok(Interim::Silent);
            }
            Err(e) => return Err(e),
        }
    }
    if head.starts_with(b"HTTP/1.1 100") || head.starts_with(b"HTTP/1.0 100") {
        Ok(Interim::Continue)
    } else {
        Ok(Interim::Final(head))
    }
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
