//! TLS on the three listeners and on forwards to peers, with Thanos' flags: certificates, keys
//! and CAs are reloaded from disk when they change (no restart), and a verified client
//! certificate can name the tenant (`--receive.tenant-certificate-field`).

mod identity;
mod options;
mod reload;
mod web_config;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;

pub use identity::{CertificateField, ClientIdentity};
pub use options::versions;
pub use reload::Reloading;
pub use web_config::{BasicAuth, WebConfig};

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds no usable PEM.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An option has a value rustls cannot honour.
    #[error("{0}")]
    Option(String),
    /// rustls refused the configuration (e.g. a key that does not match its certificate).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA holds no usable certificate.
    #[error("client CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Every certificate of a PEM file.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| file_error(path, e))?;
    }
    Ok(roots)
}

/// How a server treats client certificates (Prometheus' `client_auth_type` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate asked for.
    None,
    /// A certificate is verified against the client CA when the client sends one.
    VerifyIfGiven,
    /// Every client must present a certificate the client CA signed (mTLS).
    Require,
}

impl ClientAuth {
    /// From a Prometheus web config `client_auth_type`.
    pub fn from_web_config(name: &str) -> Result<Self, TlsError> {
        match name {
            "" | "NoClientCert" => Ok(ClientAuth::None),
            "VerifyClientCertIfGiven" => Ok(ClientAuth::VerifyIfGiven),
            "RequireAndVerifyClientCert" => Ok(ClientAuth::Require),
            "RequestClientCert" | "RequireAnyClientCert" => Err(TlsError::Option(format!(
                "client_auth_type {name} accepts unverified certificates, which is not supported: use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ))),
            other => Err(TlsError::Option(format!(
                "unknown client_auth_type {other:?}"
            ))),
        }
    }
}

/// A TLS listener's settings.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Listener name, for logs.
    pub what: String,
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA that signs client certificates.
    pub client_ca: Option<PathBuf>,
    /// Whether client certificates are asked for.
    pub client_auth: ClientAuth,
    /// Lowest TLS version.
    pub min_version: String,
    /// Highest TLS version; empty: 1.3.
    pub max_version: String,
    /// Allowed TLS 1.2 cipher suites; empty: rustls' defaults.
    pub ciphers: Vec<String>,
    /// Key-exchange groups in preference order; empty: rustls' defaults.
    pub curves: Vec<String>,
    /// ALPN protocols offered (`h2` for gRPC, `http/1.1` for HTTP).
    pub alpn: Vec<Vec<u8>>,
}

/// A listener's TLS configuration, following its files.
#[derive(Debug)]
pub struct ServerTls {
    config: Reloading<ServerConfig>,
}

impl ServerTls {
    /// Checks and loads `options` (an error here stops the start with the reason).
    pub fn new(options: ServerOptions) -> Result<Arc<Self>, TlsError> {
        let mut files = vec![options.cert.clone(), options.key.clone()];
        files.extend(options.client_ca.clone());
        let what = options.what.clone();
        let config = Reloading::new(what, files, move || server_config(&options))?;
        Ok(Arc::new(ServerTls { config }))
    }

    /// An acceptor with the configuration in force (reloaded first if the files changed).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.get())
    }
}

fn server_config(o: &ServerOptions) -> Result<ServerConfig, TlsError> {
    let provider = options::provider(&o.ciphers, &o.curves)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions(&o.min_version, &o.max_version)?)?;
    let builder = match (&o.client_ca, o.client_auth) {
        (_, ClientAuth::None) => builder.with_no_client_auth(),
        (Some(ca), auth) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider);
            let verifier = match auth {
                ClientAuth::VerifyIfGiven => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(verifier.build()?)
        }
        (None, _) => {
            return Err(TlsError::Option(
                "client certificates are verified against a client CA: none is set".into(),
            ));
        }
    };
    let mut config = builder.with_single_cert(load_certs(&o.cert)?, load_key(&o.key)?)?;
    config.alpn_protocols = o.alpn.clone();
    Ok(config)
}

/// TLS settings of forwards to peers (`--remote-write.client-tls-*`).
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Certificate presented to peers (mTLS).
    pub cert: Option<PathBuf>,
    /// Its key.
    pub key: Option<PathBuf>,
    /// CA that signs the peers' certificates; unset: the system's roots.
    pub ca: Option<PathBuf>,
    /// Accept any server certificate.
    pub skip_verify: bool,
    /// Name checked in the peers' certificates instead of the host of their endpoint.
    pub server_name: Option<String>,
    /// Lowest TLS version.
    pub min_version: String,
}

/// The client side of forwards, following its files.
#[derive(Debug)]
pub struct ClientTls {
    config: Reloading<ClientConfig>,
    server_name: Option<String>,
}

impl ClientTls {
    /// Checks and loads `options`.
    pub fn new(options: ClientOptions) -> Result<Arc<Self>, TlsError> {
        if options.cert.is_some() != options.key.is_some() {
            return Err(TlsError::Option(
                "--remote-write.client-tls-cert and --remote-write.client-tls-key go together"
                    .into(),
            ));
        }
        let files = [&options.cert, &options.key, &options.ca]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let server_name = options.server_name.clone();
        let config = Reloading::new("peer client", files, move || client_config(&options))?;
        Ok(Arc::new(ClientTls {
            config,
            server_name,
        }))
    }
}

fn client_config(o: &ClientOptions) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions(&o.min_version, "")?)?;
    let builder = if o.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
    } else {
        let roots = match &o.ca {
            Some(ca) => load_roots(ca)?,
            None => {
                let mut roots = RootCertStore::empty();
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                roots
            }
        };
        builder.with_root_certificates(roots)
    };
    let mut config = match (&o.cert, &o.key) {
        (Some(cert), Some(key)) => {
            builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?)?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// `--remote-write.client-tls-skip-verify`: any server certificate is accepted (signatures
/// are still checked, so the session keys are the server's).
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
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
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Opens TLS connections to peers for tonic: TCP, then a handshake with the client
/// configuration in force, so a rotated certificate is used by every new connection.
#[derive(Clone)]
pub struct PeerConnector(pub Arc<ClientTls>);

/// A TLS connection to a peer.
pub type PeerStream = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tonic::codegen::Service<tonic::codegen::http::Uri> for PeerConnector {
    type Response = PeerStream;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<PeerStream, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Self::Future {
        let tls = Arc::clone(&self.0);
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| std::io::Error::other("peer address without a host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = tls.server_name.clone().unwrap_or(host);
            let name = ServerName::try_from(name).map_err(std::io::Error::other)?;
            let connector = tokio_rustls::TlsConnector::from(tls.config.get());
            Ok(TokioIo::new(connector.connect(name, tcp).await?))
        })
    }
}
