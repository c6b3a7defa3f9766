//! Thanos' and Prometheus' names for TLS versions, cipher suites and curves, mapped onto
//! rustls' ring provider.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::{self, kx_group};
use rustls::{SupportedProtocolVersion, version};

use super::TlsError;

/// Versions from a minimum and a maximum: Thanos' `1.0`..`1.3` or Prometheus' `TLS10`..`TLS13`
/// (an empty maximum is 1.3). rustls speaks 1.2 and 1.3 only, so a lower minimum means 1.2.
pub fn versions(
    min: &str,
    max: &str,
) -> Result<&'static [&'static SupportedProtocolVersion], TlsError> {
    static BOTH: &[&SupportedProtocolVersion] = &[&version::TLS13, &version::TLS12];
    static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&version::TLS13];
    static TLS12_ONLY: &[&SupportedProtocolVersion] = &[&version::TLS12];
    let min13 = match min {
        "" | "1.0" | "1.1" | "1.2" | "TLS10" | "TLS11" | "TLS12" => false,
        "1.3" | "TLS13" => true,
        other => {
            return Err(TlsError::Option(format!(
                "unknown TLS version {other:?} (1.0, 1.1, 1.2 or 1.3)"
            )));
        }
    };
    let max12 = match max {
        "" | "1.3" | "TLS13" => false,
        "1.2" | "TLS12" => true,
        other => {
            return Err(TlsError::Option(format!(
                "TLS maximum version {other:?} is not supported (1.2 or 1.3)"
            )));
        }
    };
    match (min13, max12) {
        (true, true) => Err(TlsError::Option(format!(
            "TLS minimum version {min} is above the maximum {max}"
        ))),
        (true, false) => Ok(TLS13_ONLY),
        (false, true) => Ok(TLS12_ONLY),
        (false, false) => Ok(BOTH),
    }
}

/// The ring provider restricted to `ciphers` (Go/IANA names; they select TLS 1.2 suites, as in
/// Go, where TLS 1.3 suites are not configurable) and `curves` (in preference order).
pub fn provider(ciphers: &[String], curves: &[String]) -> Result<Arc<CryptoProvider>, TlsError> {
    let mut provider = ring::default_provider();
    if !ciphers.is_empty() {
        let mut chosen: Vec<_> = provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &version::TLS13)
            .copied()
            .collect();
        for name in ciphers {
            let found = provider
                .cipher_suites
                .iter()
                .find(|s| suite_names(s.suite()).iter().any(|n| n == name))
                .ok_or_else(|| {
                    TlsError::Option(format!(
                        "cipher suite {name} is unknown or not supported (supported: {})",
                        supported_suites(&provider)
                    ))
                })?;
            if !chosen.iter().any(|c| c.suite() == found.suite()) {
                chosen.push(*found);
            }
        }
        provider.cipher_suites = chosen;
    }
    if !curves.is_empty() {
        provider.kx_groups = curves
            .iter()
            .map(|c| match c.as_str() {
                "X25519" => Ok(kx_group::X25519),
                "CurveP256" | "P256" => Ok(kx_group::SECP256R1),
                "CurveP384" | "P384" => Ok(kx_group::SECP384R1),
                other => Err(TlsError::Option(format!(
                    "curve {other} is unknown or not supported (supported: X25519, CurveP256, CurveP384)"
                ))),
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(Arc::new(provider))
}

/// The names a suite goes by: its IANA name, and for TLS 1.3 Go's (`TLS_AES_128_GCM_SHA256`),
/// plus Go's short names of the ChaCha suites.
fn suite_names(suite: rustls::CipherSuite) -> Vec<String> {
    let iana = suite.as_str().unwrap_or_default().to_owned();
    let mut names = vec![iana.clone()];
    if let Some(rest) = iana.strip_prefix("TLS13_") {
        names.push(format!("TLS_{rest}"));
    }
    if let Some(short) = iana.strip_suffix("_POLY1305_SHA256") {
        names.push(format!("{short}_POLY1305"));
    }
    names
}

fn supported_suites(provider: &CryptoProvider) -> String {
    provider
        .cipher_suites
        .iter()
        .filter_map(|s| s.suite().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_thanos_and_prometheus_names() {
        assert_eq!(versions("1.3", "").unwrap(), &[&version::TLS13]);
        assert_eq!(versions("TLS12", "").unwrap().len(), 2);
        assert_eq!(versions("1.0", "").unwrap().len(), 2);
        assert_eq!(versions("TLS12", "TLS12").unwrap(), &[&version::TLS12]);
        assert!(versions("1.4", "").is_err());
        assert!(versions("TLS13", "TLS12").is_err());
        assert!(versions("TLS12", "TLS11").is_err());
    }

    #[test]
    fn ciphers_select_tls12_suites_and_keep_tls13() {
        let p = provider(
            &["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()],
            &["CurveP256".into(), "X25519".into()],
        )
        .unwrap();
        let names: Vec<_> = p
            .cipher_suites
            .iter()
            .map(|s| s.suite().as_str().unwrap())
            .collect();
        assert!(names.contains(&"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"));
        assert!(names.contains(&"TLS13_AES_128_GCM_SHA256"));
        assert!(!names.contains(&"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"));
        let groups: Vec<_> = p.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(
            groups,
            [rustls::NamedGroup::secp256r1, rustls::NamedGroup::X25519]
        );
        // Go's name for a TLS 1.3 suite and its short ChaCha names are understood.
        assert!(provider(&["TLS_AES_128_GCM_SHA256".into()], &[]).is_ok());
        assert!(provider(&["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305".into()], &[]).is_ok());
        let err = provider(&["TLS_RSA_WITH_AES_128_CBC_SHA".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
        assert!(provider(&[], &["CurveP521".into()]).is_err());
    }
}
