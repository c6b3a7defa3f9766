//! `--http.config`: the Prometheus web configuration file (TLS, basic auth, response headers)
//! for the operational HTTP port, as Thanos reads it. Relative paths are relative to the file.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use parking_lot::Mutex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{ClientAuth, ServerOptions, TlsError};

/// The parts of a web configuration this receiver honours.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    http_server_config: HttpServerConfig,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert_file: String,
    key_file: String,
    #[serde(default)]
    client_auth_type: String,
    #[serde(default)]
    client_ca_file: String,
    #[serde(default)]
    client_allowed_sans: Vec<String>,
    #[serde(default)]
    min_version: String,
    #[serde(default)]
    max_version: String,
    #[serde(default)]
    cipher_suites: Vec<String>,
    #[serde(default)]
    curve_preferences: Vec<String>,
    /// rustls always prefers the server's order.
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "accepted for compatibility; rustls prefers the server's order"
    )]
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerConfig {
    /// HTTP/2 is not served on this port (HTTP/1.1 only); accepted for compatibility.
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "accepted for compatibility; the port serves HTTP/1.1"
    )]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

impl WebConfig {
    /// Reads and checks the file.
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        let text = std::fs::read_to_string(path).map_err(|e| super::file_error(path, e))?;
        let mut config: WebConfig =
            serde_yaml::from_str(&text).map_err(|e| super::file_error(path, e))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(tls) = &mut config.tls_server_config {
            if !tls.client_allowed_sans.is_empty() {
                return Err(super::file_error(
                    path,
                    "client_allowed_sans is not supported: sign only the allowed clients with the client CA",
                ));
            }
            for file in [
                &mut tls.cert_file,
                &mut tls.key_file,
                &mut tls.client_ca_file,
            ] {
                if !file.is_empty() && Path::new(file.as_str()).is_relative() {
                    *file = dir.join(&*file).display().to_string();
                }
            }
        }
        for (user, hash) in &config.basic_auth_users {
            hash.parse::<bcrypt::HashParts>().map_err(|e| {
                super::file_error(
                    path,
                    format!("basic_auth_users.{user}: not a bcrypt hash: {e}"),
                )
            })?;
        }
        // Checked now so a bad value is a start-up error, not a failed handshake.
        if let Some(options) = config.tls_options()? {
            super::server_config(&options)?;
        }
        Ok(config)
    }

    /// The TLS listener settings, if the file asks for TLS.
    pub fn tls_options(&self) -> Result<Option<ServerOptions>, TlsError> {
        let Some(tls) = &self.tls_server_config else {
            return Ok(None);
        };
        let client_ca = (!tls.client_ca_file.is_empty()).then(|| tls.client_ca_file.clone().into());
        let client_auth = ClientAuth::from_web_config(&tls.client_auth_type)?;
        // As Prometheus' exporter-toolkit: a CA without a policy is a mistake, not "no mTLS".
        if client_ca.is_some() && client_auth == ClientAuth::None {
            return Err(TlsError::Option(
                "client_ca_file is set but client_auth_type is not: set RequireAndVerifyClientCert (or VerifyClientCertIfGiven)".into(),
            ));
        }
        Ok(Some(ServerOptions {
            what: "http.config".into(),
            cert: tls.cert_file.clone().into(),
            key: tls.key_file.clone().into(),
            client_ca,
            client_auth,
            min_version: if tls.min_version.is_empty() {
                "TLS12".into()
            } else {
                tls.min_version.clone()
            },
            max_version: tls.max_version.clone(),
            ciphers: tls.cipher_suites.clone(),
            curves: tls.curve_preferences.clone(),
            alpn: vec![b"http/1.1".to_vec()],
        }))
    }

    /// Basic auth, if the file lists users.
    pub fn basic_auth(&self) -> Option<Arc<BasicAuth>> {
        (!self.basic_auth_users.is_empty()).then(|| {
            let cost = self
                .basic_auth_users
                .values()
                .find_map(|h| h.parse::<bcrypt::HashParts>().ok())
                .map_or(bcrypt::DEFAULT_COST, |p| p.get_cost());
            Arc::new(BasicAuth {
                users: self.basic_auth_users.clone(),
                verified: Mutex::new(HashSet::new()),
                one_at_a_time: tokio::sync::Semaphore::new(1),
                dummy: bcrypt::hash("not a password", cost).unwrap_or_default(),
            })
        })
    }

    /// Headers added to every response.
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.http_server_config.headers
    }
}

/// Users and bcrypt hashes; checks `Authorization: Basic` headers.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// Digests of credentials already verified: bcrypt is slow by design, and probes and
    /// scrapes send the same credentials every few seconds.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// One bcrypt at a time: wrong passwords are not cached, and a flood of them must not take
    /// every core from the write path.
    one_at_a_time: tokio::sync::Semaphore,
    /// A hash with the users' cost, checked for unknown users so the answer takes as long as for
    /// a known one and does not tell which users exist.
    dummy: String,
}

/// Most verified credentials remembered.
const VERIFIED_CAP: usize = 1024;

impl BasicAuth {
    /// Whether an `Authorization` header value names a user with the right password.
    pub async fn allows(self: &Arc<Self>, header: Option<&str>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let known = self.users.get(&user).cloned();
        let hash = known.clone().unwrap_or_else(|| self.dummy.clone());
        let digest: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        if known.is_some() && self.verified.lock().contains(&digest) {
            return true;
        }
        let Ok(_permit) = self.one_at_a_time.acquire().await else {
            return false;
        };
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
                && known.is_some();
        if ok {
            let mut verified = self.verified.lock();
            if verified.len() >= VERIFIED_CAP {
                verified.clear();
            }
            verified.insert(digest);
        }
        ok
    }
}

fn parse_basic(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn basic_auth_checks_bcrypt_hashes() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, format!("basic_auth_users:\n  alice: {hash}\n")).unwrap();
        let config = WebConfig::load(&path).unwrap();
        assert!(config.tls_options().unwrap().is_none());
        let auth = config.basic_auth().unwrap();
        let header = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert!(auth.allows(Some(&header("alice", "s3cret"))).await);
        // Again, from the cache.
        assert!(auth.allows(Some(&header("alice", "s3cret"))).await);
        assert!(!auth.allows(Some(&header("alice", "wrong"))).await);
        assert!(!auth.allows(Some(&header("bob", "s3cret"))).await);
        assert!(!auth.allows(Some("Bearer x")).await);
        assert!(!auth.allows(None).await);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        for (text, want) in [
            ("basic_auth_users:\n  alice: plain\n", "not a bcrypt hash"),
            (
                "tls_server_config:\n  cert_file: a.pem\n  key_file: b.pem\n",
                "a.pem",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n",
                "client_allowed_sans",
            ),
            ("unknown_section: {}\n", "unknown field"),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca\n",
                "client_auth_type",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = WebConfig::load(&path).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
