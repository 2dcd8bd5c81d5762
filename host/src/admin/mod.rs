//! The admin API of a running `weir run`: an HTTP server on loopback that
//! reports the run's status and takes authenticated changing calls (a
//! graceful stop, swapping a step), the run file the CLI finds it by, and
//! the small client `weir status` and `weir swap` use.
//!
//! Plain HTTP only, so only loopback addresses are accepted: the bearer
//! token would otherwise cross the network in clear. TLS is not
//! implemented yet.

mod client;
mod runfile;
mod server;
mod status;
mod swap;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use client::{Reply, Upload, request};
pub use runfile::{RunFile, RunInfo, live_runs, run_dir};
pub use server::{AdminServer, AdminState};
pub use status::{RunStatus, Status, StatusSource, StepStatus, VersionInfo};
pub use swap::{
    COMPONENT_PART, CONFIG_PART, SWAP_BODY_LIMIT, SwapAnswer, refusal_body, refusal_status,
    swap_body, swap_path,
};
pub use token::{TOKEN_ENV, Token};

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
        "admin address {0} is not a loopback address: the admin API speaks plain HTTP, so its \
         token would cross the network in clear, and TLS is not implemented yet; serve it on \
         127.0.0.1 or [::1] (reach it from elsewhere through an SSH tunnel), or use --admin off"
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
    #[error("cannot write the run file {}: {cause}", path.display())]
    RunFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot reach the admin API at {addr}: {cause}")]
    Connect {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("the admin API at {addr} answered with something that is not HTTP: {reason}")]
    BadReply { addr: SocketAddr, reason: String },
}

/// `--admin ADDR`: `off` (no admin API) or a loopback `IP:PORT`.
pub fn parse_address(text: &str) -> Result<Option<SocketAddr>, AdminError> {
    if text == "off" {
        return Ok(None);
    }
    let addr: SocketAddr = text
        .parse()
        .map_err(|_| AdminError::BadAddress(text.to_string()))?;
    if !addr.ip().is_loopback() {
        return Err(AdminError::NotLoopback(addr));
    }
    Ok(Some(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_or_off_are_accepted() {
        assert_eq!(parse_address("off").unwrap(), None);
        assert_eq!(
            parse_address("127.0.0.1:0").unwrap(),
            Some("127.0.0.1:0".parse().unwrap())
        );
        assert!(parse_address("[::1]:7070").unwrap().is_some());
        let err = parse_address("0.0.0.0:7070").unwrap_err().to_string();
        assert!(
            err.contains("0.0.0.0:7070 is not a loopback address"),
            "{err}"
        );
        assert!(err.contains("TLS is not implemented yet"), "{err}");
        assert!(matches!(
            parse_address("localhost"),
            Err(AdminError::BadAddress(_))
        ));
    }
}
