//! TLS for both ends of the servers, on rustls (ring).
//!
//! - The client side, for `https://` upstreams: [`https_connector`] builds the proxy's connector,
//!   which still reaches `http://` upstreams exactly as before. It trusts the system's roots, plus
//!   a private CA ([`UpstreamTls::ca_file`]); or, with [`UpstreamTls::insecure`], any certificate
//!   at all (for self-signed test servers: the caller must say so loudly).
//! - The server side, for the listeners of the proxy and the demo upstream: [`server`] builds the
//!   [`ServerTls`] the accept loop wraps each connection in (`server::spawn_tls`), from PEM files,
//!   or from a throwaway CA and a certificate for `127.0.0.1`, `::1` and `localhost` it signs,
//!   generated here; the CA's certificate is written to a file clients can trust (`curl --cacert`).
//!
//! ALPN offers `h2` and `http/1.1` (see [`ALPN`]); clear-text listeners take HTTP/2 with prior
//! knowledge too.

use std::fmt;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio_rustls::TlsAcceptor;

/// The protocols a TLS listener offers in ALPN, in order of preference: HTTP/2 first.
pub const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The warning a caller prints (in a run's header, at a server's start) when upstream
/// certificates are not verified.
pub const INSECURE_WARNING: &str =
    "warning: upstream TLS certificates are NOT verified (insecure = true)";

/// How the proxy trusts an `https://` upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// A PEM file of CA certificates trusted besides the system's roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate, for any name: no verification at all.
    pub insecure: bool,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {problem}", path.display())]
    Pem { path: PathBuf, problem: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

impl From<TlsError> for std::io::Error {
    fn from(e: TlsError) -> Self {
        let kind = match &e {
            TlsError::Read { source, .. } | TlsError::Write { source, .. } => source.kind(),
            _ => std::io::ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, e)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client configuration for `tls`: the system's roots and `ca_file`, or no
/// verification with `insecure`.
pub fn client_config(tls: &UpstreamTls) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    if tls.insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    // A system without a readable store still has `ca_file`; unreadable entries are skipped.
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "cannot load a system root certificate");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = &tls.ca_file {
        let certs = read_certs(path)?;
        for cert in certs {
            roots.add(cert).map_err(|e| TlsError::Pem {
                path: path.clone(),
                problem: format!("not a usable CA certificate: {e}"),
            })?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The proxy's upstream connector: TCP with `TCP_NODELAY`, and TLS for `https://` URLs (SNI from
/// the URL's host), trusting as `tls` says. `http://` URLs go over plain TCP as before.
pub fn https_connector(tls: &UpstreamTls) -> Result<HttpsConnector<HttpConnector>, TlsError> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    // The TLS layer takes `https://` URLs; the TCP one must let them through.
    http.enforce_http(false);
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(client_config(tls)?)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}

/// [`https_connector`] for an HTTP/2-only client: over TLS it offers `h2` alone through ALPN, so
/// an `https://` upstream that cannot speak HTTP/2 fails the handshake instead of being spoken
/// to in a protocol it does not know. `http://` URLs go over plain TCP (HTTP/2 with prior
/// knowledge is the client's business).
pub fn https_connector_h2(tls: &UpstreamTls) -> Result<HttpsConnector<HttpConnector>, TlsError> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(client_config(tls)?)
        .https_or_http()
        .enable_http2()
        .wrap_connector(http))
}

/// Accepts every certificate for every name, and every signature: `insecure = true`.
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Where a TLS listener's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCert {
    /// A fresh CA and a certificate for `127.0.0.1`, `::1` and `localhost` it signs; the CA's
    /// certificate is written to `<dir>/ca.pem`.
    Generate { dir: PathBuf },
    /// The user's PEM files: the certificate chain (leaf first) and its private key.
    Files { cert: PathBuf, key: PathBuf },
}

/// A TLS listener's configuration: the acceptor, and the CA file clients should trust when the
/// certificate was generated.
#[derive(Clone)]
pub struct ServerTls {
    pub acceptor: TlsAcceptor,
    /// `Some` for a generated certificate: the PEM file of the CA that signed it.
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Builds a TLS listener's configuration from `cert`.
pub fn server(cert: &ServerCert) -> Result<ServerTls, TlsError> {
    let (chain, key, ca_file) = match cert {
        ServerCert::Generate { dir } => {
            let generated = generate()?;
            let path = dir.join("ca.pem");
            std::fs::write(&path, generated.ca_pem).map_err(|source| TlsError::Write {
                path: path.clone(),
                source,
            })?;
            (generated.chain, generated.key, Some(path))
        }
        ServerCert::Files { cert, key } => (read_certs(cert)?, read_key(key)?, None),
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("the certificate and key do not fit: {e}")))?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(ServerTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        ca_file,
    })
}

/// A generated CA and the leaf certificate it signed.
struct Generated {
    ca_pem: String,
    /// The leaf, then the CA.
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// A throwaway CA and a certificate for the loopback names, signed by it. The CA's key is dropped
/// here: nothing else can ever be signed by it.
fn generate() -> Result<Generated, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let failed = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "TraceForge throwaway CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(failed)?;
    let ca = ca_params.self_signed(&ca_key).map_err(failed)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let names = vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ];
    let mut leaf_params = CertificateParams::new(names).map_err(failed)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf_key = KeyPair::generate().map_err(failed)?;
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(failed)?;
    let key = PrivateKeyDer::try_from(leaf_key.serialize_der())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(Generated {
        ca_pem: ca.pem(),
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key,
    })
}

fn open(path: &Path) -> Result<BufReader<std::fs::File>, TlsError> {
    std::fs::File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// The certificates of a PEM file; at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            problem: format!("not a PEM file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            problem: "holds no `BEGIN CERTIFICATE` block".into(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    match rustls_pemfile::private_key(&mut open(path)?) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(TlsError::Pem {
            path: path.to_path_buf(),
            problem: "holds no private key (`BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`)".into(),
        }),
        Err(e) => Err(TlsError::Pem {
            path: path.to_path_buf(),
            problem: format!("not a PEM file: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_trusted_through_its_ca_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let tls = server(&ServerCert::Generate {
            dir: dir.path().to_path_buf(),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let ca_file = tls.ca_file.unwrap_or_else(|| panic!("no CA file"));
        assert!(ca_file.is_file());
        let client = client_config(&UpstreamTls {
            ca_file: Some(ca_file),
            insecure: false,
        });
        assert!(client.is_ok());
    }

    #[test]
    fn unusable_files_are_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let missing = dir.path().join("missing.pem");
        let e = read_certs(&missing)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with(&format!("cannot read {}", missing.display())),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap_or_else(|e| panic!("{e}"));
        let e = read_certs(&empty)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("no `BEGIN CERTIFICATE`"), "{e}");
        let e = read_key(&empty)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("no private key"), "{e}");
    }
}
