//! TLS flags, with Thanos' names and defaults (an empty path means off).

use std::path::PathBuf;

use crate::tls::{CertificateField, ClientAuth, ClientOptions, ServerOptions};

/// TLS of the gRPC and remote-write listeners, of forwards to peers, and `--http.config`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// TLS certificate of the gRPC server; empty: plaintext.
    #[arg(long = "grpc-server-tls-cert", default_value = "")]
    pub grpc_cert: String,
    /// TLS key of the gRPC server.
    #[arg(long = "grpc-server-tls-key", default_value = "")]
    pub grpc_key: String,
    /// CA that must sign gRPC clients' certificates (mTLS); empty: no client certificates.
    #[arg(long = "grpc-server-tls-client-ca", default_value = "")]
    pub grpc_client_ca: String,
    /// Lowest TLS version of the gRPC server (1.0, 1.1, 1.2, 1.3; rustls' lowest is 1.2).
    #[arg(long = "grpc-server-tls-min-version", default_value = "1.3")]
    pub grpc_min_version: String,
    /// TLS 1.2 cipher suites of the gRPC server, comma-separated Go names; empty: defaults.
    #[arg(long = "grpc-server-tls-ciphers", default_value = "")]
    pub grpc_ciphers: String,
    /// Key-exchange curves of the gRPC server in preference order (X25519, CurveP256, CurveP384).
    #[arg(long = "grpc-server-tls-curves", default_value = "")]
    pub grpc_curves: String,

    /// TLS certificate of the remote-write server; empty: plaintext.
    #[arg(long = "remote-write.server-tls-cert", default_value = "")]
    pub rw_cert: String,
    /// TLS key of the remote-write server.
    #[arg(long = "remote-write.server-tls-key", default_value = "")]
    pub rw_key: String,
    /// CA that must sign remote-write clients' certificates (mTLS).
    #[arg(long = "remote-write.server-tls-client-ca", default_value = "")]
    pub rw_client_ca: String,
    /// Lowest TLS version of the remote-write server.
    #[arg(long = "remote-write.server-tls-min-version", default_value = "1.3")]
    pub rw_min_version: String,
    /// TLS 1.2 cipher suites of the remote-write server, comma-separated.
    #[arg(long = "remote-write.server-tls-ciphers", default_value = "")]
    pub rw_ciphers: String,
    /// Key-exchange curves of the remote-write server, comma-separated.
    #[arg(long = "remote-write.server-tls-curves", default_value = "")]
    pub rw_curves: String,

    /// Forward to peers over TLS (plaintext without it, as Thanos).
    #[arg(
        long = "remote-write.client-tls-secure",
        num_args = 0..=1,
        default_missing_value = "true",
        default_value = "false",
        action = clap::ArgAction::Set
    )]
    pub client_secure: bool,
    /// Certificate presented to peers.
    #[arg(long = "remote-write.client-tls-cert", default_value = "")]
    pub client_cert: String,
    /// Key of that certificate.
    #[arg(long = "remote-write.client-tls-key", default_value = "")]
    pub client_key: String,
    /// CA that signs the peers' server certificates; empty: the system's roots.
    #[arg(long = "remote-write.client-tls-ca", default_value = "")]
    pub client_ca: String,
    /// Accept any peer certificate.
    #[arg(
        long = "remote-write.client-tls-skip-verify",
        num_args = 0..=1,
        default_missing_value = "true",
        default_value = "false",
        action = clap::ArgAction::Set
    )]
    pub client_skip_verify: bool,
    /// Name checked in peers' certificates instead of their endpoint's host.
    #[arg(long = "remote-write.client-server-name", default_value = "")]
    pub client_server_name: String,
    /// Lowest TLS version of forwards.
    #[arg(long = "remote-write.client-tls-min-version", default_value = "1.3")]
    pub client_min_version: String,

    /// Prometheus web configuration (TLS, basic auth) of the operational HTTP port.
    #[arg(long = "http.config", default_value = "")]
    pub http_config: String,

    /// Take the tenant from this field of the client certificate (remote-write mTLS), not the
    /// header: `organization`, `organizationalUnit` or `commonName`.
    #[arg(long = "receive.tenant-certificate-field", value_enum)]
    pub tenant_certificate_field: Option<CertificateField>,
}

fn path(s: &str) -> Option<PathBuf> {
    (!s.is_empty()).then(|| PathBuf::from(s))
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One server's flags as listener options; `None` when it has no certificate.
#[allow(clippy::too_many_arguments, reason = "one argument per Thanos flag")]
fn server(
    what: &str,
    cert: &str,
    key: &str,
    client_ca: &str,
    min_version: &str,
    ciphers: &str,
    curves: &str,
    alpn: &[u8],
) -> Result<Option<ServerOptions>, String> {
    match (path(cert), path(key)) {
        (None, None) if client_ca.is_empty() => Ok(None),
        (Some(cert), Some(key)) => {
            let client_ca = path(client_ca);
            Ok(Some(ServerOptions {
                what: what.into(),
                cert,
                key,
                client_auth: if client_ca.is_some() {
                    ClientAuth::Require
                } else {
                    ClientAuth::None
                },
                client_ca,
                min_version: min_version.into(),
                max_version: String::new(),
                ciphers: list(ciphers),
                curves: list(curves),
                alpn: vec![alpn.to_vec()],
            }))
        }
        _ => Err(format!(
            "the {what} server needs both a TLS certificate and a key (a client CA alone does nothing)"
        )),
    }
}

impl TlsArgs {
    /// TLS of the gRPC listener.
    pub fn grpc_server(&self) -> Result<Option<ServerOptions>, String> {
        server(
            "gRPC",
            &self.grpc_cert,
            &self.grpc_key,
            &self.grpc_client_ca,
            &self.grpc_min_version,
            &self.grpc_ciphers,
            &self.grpc_curves,
            b"h2",
        )
    }

    /// TLS of the remote-write listener.
    pub fn remote_write_server(&self) -> Result<Option<ServerOptions>, String> {
        server(
            "remote-write",
            &self.rw_cert,
            &self.rw_key,
            &self.rw_client_ca,
            &self.rw_min_version,
            &self.rw_ciphers,
            &self.rw_curves,
            b"http/1.1",
        )
    }

    /// TLS of forwards to peers, when `--remote-write.client-tls-secure` is set.
    pub fn client(&self) -> Option<ClientOptions> {
        self.client_secure.then(|| ClientOptions {
            cert: path(&self.client_cert),
            key: path(&self.client_key),
            ca: path(&self.client_ca),
            skip_verify: self.client_skip_verify,
            server_name: (!self.client_server_name.is_empty())
                .then(|| self.client_server_name.clone()),
            min_version: self.client_min_version.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_needs_cert_and_key_and_a_client_ca_means_mtls() {
        let mut a = TlsArgs::default();
        assert!(a.grpc_server().unwrap().is_none());
        a.grpc_cert = "c.pem".into();
        assert!(a.grpc_server().is_err());
        a.grpc_key = "k.pem".into();
        a.grpc_client_ca = "ca.pem".into();
        a.grpc_ciphers = "A, B".into();
        let o = a.grpc_server().unwrap().unwrap();
        assert_eq!(o.client_auth, ClientAuth::Require);
        assert_eq!(o.ciphers, ["A", "B"]);
        assert_eq!(o.alpn, [b"h2".to_vec()]);
        assert!(a.client().is_none());
        a.client_secure = true;
        assert_eq!(a.client().unwrap().server_name, None);
    }
}
