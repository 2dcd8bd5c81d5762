//! Where an admin API answers, as the CLI and the run file give it:
//! `http://` or `https://`, a host and a port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::AdminError;

/// An admin API's base address: `https://127.0.0.1:7070`,
/// `https://weir.example.com:7070`, `http://[::1]:40113`. A bare
/// `IP:PORT` is plain HTTP (run files written before TLS hold those).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AdminUrl {
    /// `https` when true.
    pub tls: bool,
    /// An IP address or a DNS name (what a certificate is checked against).
    pub host: String,
    pub port: u16,
}

impl AdminUrl {
    /// How this machine reaches a server listening on `addr`: an
    /// unspecified address (`0.0.0.0`, `::`) is reached on loopback.
    pub fn served(addr: SocketAddr, tls: bool) -> AdminUrl {
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        AdminUrl {
            tls,
            host: ip.to_string(),
            port: addr.port(),
        }
    }
}

impl AdminUrl {
    /// Whether the host is this machine's loopback (`127.0.0.0/8`, `::1`,
    /// `localhost`), where plain HTTP does not leave the machine.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for AdminUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for AdminUrl {
    type Err = AdminError;

    fn from_str(text: &str) -> Result<AdminUrl, AdminError> {
        let bad = || AdminError::BadUrl(text.to_string());
        let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            let addr: SocketAddr = text.parse().map_err(|_| bad())?;
            return Ok(AdminUrl::served(addr, false));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<Ipv6Addr>().map_err(|_| bad())?.to_string(),
            None => host.to_string(),
        };
        let name_like = |h: &str| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        };
        if !name_like(&host) && host.parse::<Ipv6Addr>().is_err() {
            return Err(bad());
        }
        Ok(AdminUrl { tls, host, port })
    }
}

impl TryFrom<String> for AdminUrl {
    type Error = AdminError;

    fn try_from(text: String) -> Result<AdminUrl, AdminError> {
        text.parse()
    }
}

impl From<AdminUrl> for String {
    fn from(url: AdminUrl) -> String {
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_their_scheme_and_bare_addresses_are_http() {
        let url: AdminUrl = "https://weir.example.com:7070".parse().unwrap();
        assert!(url.tls);
        assert_eq!(url.host, "weir.example.com");
        assert_eq!(url.port, 7070);
        assert_eq!(url.to_string(), "https://weir.example.com:7070");
        assert!(!url.is_loopback());
        let url: AdminUrl = "127.0.0.1:40113".parse().unwrap();
        assert_eq!(url.to_string(), "http://127.0.0.1:40113");
        assert!(url.is_loopback());
        let url: AdminUrl = "https://[::1]:9/".parse().unwrap();
        assert_eq!(url.to_string(), "https://[::1]:9");
        assert!(url.is_loopback());
        for bad in [
            "weir.example.com:7070",
            "https://host",
            "ftp://h:1",
            "https://h:x",
            "https://a b:1",
        ] {
            assert!(bad.parse::<AdminUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_unspecified_address_is_reached_on_loopback() {
        let served = AdminUrl::served("0.0.0.0:7070".parse().unwrap(), true);
        assert_eq!(served.to_string(), "https://127.0.0.1:7070");
        let served = AdminUrl::served("[::]:7070".parse().unwrap(), false);
        assert_eq!(served.to_string(), "http://[::1]:7070");
        let json = serde_json::to_string(&served).unwrap();
        assert_eq!(json, "\"http://[::1]:7070\"");
        assert_eq!(serde_json::from_str::<AdminUrl>(&json).unwrap(), served);
    }
}
