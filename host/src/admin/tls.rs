//! TLS for the admin API (rustls with the ring provider): the server's
//! certificate and key (`weir run --admin-tls-cert/--admin-tls-key`) and
//! the certificates the CLI trusts (`--admin-ca`).
//!
//! With TLS the API may listen on a non-loopback address: the bearer
//! token then crosses the network encrypted, to a server the CLI verified.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::AdminError;

/// The crypto provider both sides use: ring builds with the C compiler
/// alone (aws-lc-rs would want cmake and more).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side: a certificate chain and its private key, checked to
/// belong together.
#[derive(Clone)]
pub struct ServerTls {
    pub(super) config: Arc<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls(<certificate and key>)")
    }
}

impl ServerTls {
    /// The certificate chain in PEM file `cert` (the server's own first)
    /// and the private key in PEM file `key` (PKCS#8, PKCS#1 or SEC1). The
    /// key file is refused when its group or others have any access to it,
    /// as the token file is.
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, AdminError> {
        let certs = read_certificates(cert)?;
        let key_der = read_key(key)?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key_der))
            .map_err(|e| AdminError::TlsMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                cause: e.to_string(),
            })?;
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }
}

/// The certificates in PEM file `path`; at least one.
pub(super) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, AdminError> {
    let text = std::fs::read(path).map_err(|cause| AdminError::TlsFileRead {
        path: path.to_path_buf(),
        cause,
    })?;
    let bad = |reason: String| AdminError::TlsFileBad {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            "it holds no certificate (no `-----BEGIN CERTIFICATE-----` block)".into(),
        ));
    }
    Ok(certs)
}

/// The private key in PEM file `path`, which only its owner may access.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, AdminError> {
    let read = |cause| AdminError::TlsFileRead {
        path: path.to_path_buf(),
        cause,
    };
    let text = super::read_owner_only(path)
        .map_err(read)?
        .map_err(|mode| AdminError::TlsKeyExposed {
            path: path.to_path_buf(),
            mode,
        })?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| AdminError::TlsFileBad {
        path: path.to_path_buf(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "it holds no private key (no `-----BEGIN PRIVATE KEY-----`, \
                 `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)"
                    .to_string()
            }
            e => format!("not a PEM file: {e}"),
        },
    })
}

/// What the CLI trusts when it speaks HTTPS to an admin API.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// `--admin-ca FILE` and its certificates; none: Mozilla's roots
    /// (webpki-roots, built in).
    ca: Option<(PathBuf, Vec<CertificateDer<'static>>)>,
}

impl ClientTls {
    /// Trust the certificates in PEM file `ca` if given (a self-signed
    /// server certificate, or the CA that signed it), else Mozilla's roots.
    pub fn load(ca: Option<&Path>) -> Result<ClientTls, AdminError> {
        let ca = match ca {
            Some(path) => Some((path.to_path_buf(), read_certificates(path)?)),
            None => None,
        };
        Ok(ClientTls { ca })
    }

    /// What it trusts, as a refusal names it.
    pub fn trusted(&self) -> String {
        match &self.ca {
            Some((path, _)) => format!("--admin-ca {}", path.display()),
            None => "the built-in Mozilla roots (no --admin-ca given)".to_string(),
        }
    }

    pub(super) fn root_certs(&self) -> ureq::tls::RootCerts {
        match &self.ca {
            Some((_, certs)) => certs
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                .into(),
            None => ureq::tls::RootCerts::WebPki,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_certificate_and_its_key_load_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        write(&cert, &made.cert.pem(), 0o644);
        write(&key, &made.signing_key.serialize_pem(), 0o600);
        ServerTls::load(&cert, &key).unwrap();

        // A key others can read.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = ServerTls::load(&cert, &key).unwrap_err().to_string();
        assert!(err.contains("key.pem has mode 0640"), "{err}");
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

        // The key given as the certificate, and the certificate as the key.
        let err = ServerTls::load(&key, &key).unwrap_err().to_string();
        assert!(
            err.contains("key.pem") && err.contains("no certificate"),
            "{err}"
        );
        let exposed_cert = dir.path().join("cert-as-key.pem");
        write(&exposed_cert, &made.cert.pem(), 0o600);
        let err = ServerTls::load(&cert, &exposed_cert)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cert-as-key.pem") && err.contains("no private key"),
            "{err}"
        );

        // Another certificate's key.
        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let other_key = dir.path().join("other-key.pem");
        write(&other_key, &other.signing_key.serialize_pem(), 0o600);
        let err = ServerTls::load(&cert, &other_key).unwrap_err().to_string();
        assert!(
            err.contains("cert.pem") && err.contains("other-key.pem"),
            "{err}"
        );

        // A missing file.
        let err = ClientTls::load(Some(&dir.path().join("nope.pem")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.pem"), "{err}");
        assert!(ClientTls::load(Some(&cert)).is_ok());
    }
}
