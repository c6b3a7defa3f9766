//! Write limits in the Thanos limits-file format (`--receive.limits-config-file`).
//!
//! ```yaml
//! write:
//!   global: {max_concurrency: 0, max_tenants: 0}
//!   default:
//!     request: {size_bytes_limit: 0, series_limit: 0, samples_limit: 0}
//!     head_series_limit: 0
//!   tenants:
//!     team-a: {request: {series_limit: 1000}, head_series_limit: 50000}
//! ```
//! Zero means unlimited; a tenant's unset field inherits the default.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

/// The whole limits file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Write-path limits.
    #[serde(default)]
    pub write: WriteLimitsConfig,
}

/// The `write` section.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteLimitsConfig {
    /// Process-wide settings.
    #[serde(default)]
    pub global: GlobalLimits,
    /// Limits for tenants not listed in `tenants`.
    #[serde(default)]
    pub default: TenantLimitsConfig,
    /// Per-tenant overrides.
    #[serde(default)]
    pub tenants: HashMap<String, TenantLimitsConfig>,
}

/// The `global` section.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalLimits {
    /// Most write requests served at once (0 = unlimited).
    #[serde(default)]
    pub max_concurrency: u64,
    /// Most tenants this receiver stores (0 = unlimited); writes for a new tenant beyond it get
    /// 429. Each tenant holds a head, a WAL and files, so an unbounded number is a way to
    /// exhaust memory and descriptors. An extension of the Thanos format.
    #[serde(default)]
    pub max_tenants: u64,
    /// Accepted for compatibility: this receiver counts head series itself instead of querying.
    #[serde(default)]
    pub meta_monitoring_url: Option<String>,
    /// Accepted for compatibility; unused for the same reason.
    #[serde(default)]
    pub meta_monitoring_limit_query: Option<String>,
    /// Accepted for compatibility; unused for the same reason.
    #[serde(default)]
    pub meta_monitoring_http_client: Option<serde_yaml::Value>,
}

/// Limits of one tenant; `None` inherits the default.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLimitsConfig {
    /// Per-request limits.
    #[serde(default)]
    pub request: RequestLimitsConfig,
    /// Most series the tenant's head may hold.
    pub head_series_limit: Option<u64>,
}

/// Per-request limits.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLimitsConfig {
    /// Largest body, compressed or decompressed, in bytes.
    pub size_bytes_limit: Option<u64>,
    /// Most series in one request.
    pub series_limit: Option<u64>,
    /// Most float samples in one request.
    pub samples_limit: Option<u64>,
}

/// The effective limits of one tenant; zero means unlimited.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TenantLimits {
    /// Largest body in bytes.
    pub size_bytes: u64,
    /// Most series per request.
    pub series: u64,
    /// Most samples per request.
    pub samples: u64,
    /// Most head series.
    pub head_series: u64,
}

/// Why a limits file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// The file cannot be read.
    #[error("limits file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid limits configuration.
    #[error("limits file {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Where and why.
        source: serde_yaml::Error,
    },
}

impl LimitsConfig {
    /// Reads and parses a limits file.
    pub fn load(path: &Path) -> Result<Self, LimitsError> {
        let text = std::fs::read_to_string(path).map_err(|source| LimitsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|source| LimitsError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// Parses limits YAML; an empty document means no limits.
    pub fn parse(text: &str) -> Result<Self, serde_yaml::Error> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text)
    }

    /// The limits in force for tenants the file does not list.
    pub fn for_tenant_defaults(&self) -> TenantLimits {
        self.limits_of(None)
    }

    /// The limits in force for `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> TenantLimits {
        self.limits_of(self.write.tenants.get(tenant))
    }

    fn limits_of(&self, t: Option<&TenantLimitsConfig>) -> TenantLimits {
        let d = &self.write.default;
        let pick =
            |f: fn(&TenantLimitsConfig) -> Option<u64>| t.and_then(f).or_else(|| f(d)).unwrap_or(0);
        TenantLimits {
            size_bytes: pick(|c| c.request.size_bytes_limit),
            series: pick(|c| c.request.series_limit),
            samples: pick(|c| c.request.samples_limit),
            head_series: pick(|c| c.head_series_limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_inherit_defaults() {
        let cfg = LimitsConfig::parse(
            r#"
write:
  global:
    max_concurrency: 10
    meta_monitoring_url: http://prom:9090
  default:
    request: {size_bytes_limit: 1000, series_limit: 5}
    head_series_limit: 100
  tenants:
    a:
      request: {series_limit: 50}
"#,
        )
        .unwrap();
        assert_eq!(
            cfg.for_tenant("a"),
            TenantLimits {
                size_bytes: 1000,
                series: 50,
                samples: 0,
                head_series: 100
            }
        );
        assert_eq!(cfg.for_tenant("b").series, 5);
        assert_eq!(cfg.write.global.max_concurrency, 10);
        assert_eq!(
            LimitsConfig::parse("").unwrap().for_tenant("x"),
            TenantLimits::default()
        );
    }

    #[test]
    fn broken_files_are_errors() {
        assert!(LimitsConfig::parse("write: [").is_err());
        assert!(LimitsConfig::parse("write: {default: {request: {series_limt: 1}}}").is_err());
    }
}
