//! The admin API of a running `weir run`: an HTTP(S) server that reports
//! the run's status and takes authenticated changing calls (a graceful
//! stop, swapping a step), the run file the CLI finds it by, and the small
//! client `weir status` and `weir swap` use.
//!
//! Without TLS only loopback addresses are accepted: the bearer token
//! would otherwise cross the network in clear. With a certificate and key
//! ([`ServerTls`]) the API speaks HTTPS and may listen anywhere.

mod client;
mod runfile;
mod server;
mod status;
mod swap;
mod tls;
mod token;
mod url;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use client::{Reply, Upload, request};
pub use runfile::{RunFile, RunInfo, live_runs, run_dir};
pub use server::{AdminServer, AdminState};
pub use status::{RefusedInfo, RunStatus, Status, StatusSource, StepStatus, VersionInfo};
pub use swap::{
    COMPONENT_PART, CONFIG_PART, SWAP_BODY_LIMIT, SwapAnswer, refusal_body, refusal_status,
    swap_body, swap_path,
};
pub use tls::{ClientTls, ServerTls};
pub use token::{TOKEN_ENV, Token};
pub use url::AdminUrl;

/// The address `weir run` serves its admin API on unless told otherwise:
/// loopback, on a port the OS chooses (the run file says which).
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:0";

/// Why the admin API cannot start, or a call to it failed. An I/O error
/// is part of the message (a `cause`, not a `source`), so a report that
/// prints the chain does not say it twice.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "`{0}` is not an admin address: expected IP:PORT (e.g. 127.0.0.1:7070, [::1]:0) or `off`"
    )]
    BadAddress(String),
    #[error(
        "`{0}` is not an admin API address: expected IP:PORT (plain HTTP), http://HOST:PORT \
         or https://HOST:PORT"
    )]
    BadUrl(String),
    #[error(
        "admin address {0} is not a loopback address, and without TLS the admin API speaks \
         plain HTTP, so its token would cross the network in clear; give --admin-tls-cert FILE \
         and --admin-tls-key FILE (PEM) to serve it over HTTPS, serve it on 127.0.0.1 or [::1] \
         (reach it from elsewhere through an SSH tunnel), or use --admin off"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot serve the admin API on {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("cannot read the admin token file {}: {cause}", path.display())]
    TokenFileRead {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "admin token file {path} has mode {mode:04o}: its group or others can access it; \
         make it owner-only (chmod 600 {path})",
        path = path.display()
    )]
    TokenFileExposed { path: PathBuf, mode: u32 },
    #[error("the admin token from {0} is empty")]
    EmptyToken(String),
    #[error("cannot read the TLS file {}: {cause}", path.display())]
    TlsFileRead {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("TLS file {}: {reason}", path.display())]
    TlsFileBad { path: PathBuf, reason: String },
    #[error(
        "admin TLS key file {path} has mode {mode:04o}: its group or others can access it; \
         make it owner-only (chmod 600 {path})",
        path = path.display()
    )]
    TlsKeyExposed { path: PathBuf, mode: u32 },
    #[error(
        "the admin TLS certificate {} and key {} do not make a usable pair: {cause}",
        cert.display(),
        key.display()
    )]
    TlsMismatch {
        cert: PathBuf,
        key: PathBuf,
        cause: String,
    },
    #[error("cannot write the run file {}: {cause}", path.display())]
    RunFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "refusing to send the admin token in clear to {0}: plain HTTP is only for loopback; \
         serve the admin API with TLS and use an https:// address, or reach it through an \
         SSH tunnel on 127.0.0.1"
    )]
    TokenInClear(AdminUrl),
    #[error("cannot reach the admin API at {url}: {cause}")]
    Connect { url: AdminUrl, cause: String },
    #[error(
        "the admin API at {url} presented a certificate that {trusted} does not vouch for \
         ({cause}); pass the certificate that signed it (or the server's own, if \
         self-signed) as --admin-ca FILE, and reach it by a name or IP address the \
         certificate lists"
    )]
    Untrusted {
        url: AdminUrl,
        trusted: String,
        cause: String,
    },
    #[error("the admin API at {url} answered with something weir cannot read: {reason}")]
    BadReply { url: AdminUrl, reason: String },
}

/// `--admin ADDR`: `off` (no admin API) or `IP:PORT`, which must be a
/// loopback address unless the API speaks TLS (`tls`).
pub fn parse_address(text: &str, tls: bool) -> Result<Option<SocketAddr>, AdminError> {
    if text == "off" {
        return Ok(None);
    }
    let addr: SocketAddr = text
        .parse()
        .map_err(|_| AdminError::BadAddress(text.to_string()))?;
    if !tls && !addr.ip().is_loopback() {
        return Err(AdminError::NotLoopback(addr));
    }
    Ok(Some(addr))
}

/// The bytes of a file holding a secret (the token, the TLS key), read
/// only when no one but its owner may access it, as ssh does with private
/// keys: otherwise `Err(mode)`, its permission bits.
fn read_owner_only(path: &std::path::Path) -> std::io::Result<Result<Vec<u8>, u32>> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Ok(Err(mode));
    }
    std::fs::read(path).map(Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_tls_only_loopback_addresses_or_off_are_accepted() {
        assert_eq!(parse_address("off", false).unwrap(), None);
        assert_eq!(
            parse_address("127.0.0.1:0", false).unwrap(),
            Some("127.0.0.1:0".parse().unwrap())
        );
        assert!(parse_address("[::1]:7070", false).unwrap().is_some());
        let err = parse_address("0.0.0.0:7070", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("0.0.0.0:7070 is not a loopback address"),
            "{err}"
        );
        assert!(
            err.contains("--admin-tls-cert FILE and --admin-tls-key FILE"),
            "{err}"
        );
        assert!(matches!(
            parse_address("localhost", false),
            Err(AdminError::BadAddress(_))
        ));
    }

    #[test]
    fn with_tls_any_address_is_accepted() {
        assert_eq!(
            parse_address("0.0.0.0:7070", true).unwrap(),
            Some("0.0.0.0:7070".parse().unwrap())
        );
    }
}
