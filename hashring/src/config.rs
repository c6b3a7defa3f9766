//! The `hashrings.json` file: serde types, parsing and the change-detection hash.
//!
//! Decoding follows Go's `encoding/json` as Thanos uses it, so that a file accepted by Thanos
//! means the same here: unknown keys are ignored, keys match ASCII-case-insensitively, a
//! repeated key overrides the earlier one and `null` leaves a field at its default.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Port Thanos assumes for an endpoint's Cap'n Proto replication server when none is given.
pub const DEFAULT_CAPNPROTO_PORT: u16 = 19391;

/// Placement algorithm of a hashring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// `(hash + n) % len` over endpoints sorted by address.
    Hashmod,
    /// Consistent hashing with virtual sections per endpoint (Thanos ≥ v0.27).
    Ketama,
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::Hashmod => "hashmod",
            Algorithm::Ketama => "ketama",
        })
    }
}

/// How the `tenants` of a hashring are compared with a request's tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantMatcher {
    /// Byte-wise equality (`"exact"`, or `""` / absent).
    #[default]
    Exact,
    /// Go `filepath.Match` patterns (`"glob"`).
    Glob,
}

impl TenantMatcher {
    /// Whether this is the default matcher, which the file may leave out.
    pub fn is_exact(&self) -> bool {
        *self == TenantMatcher::Exact
    }
}

impl<'de> Deserialize<'de> for TenantMatcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Thanos treats "" like "exact"; an unknown value would make the ring match no tenant
        // at all there, which is never intended, so it is rejected here instead.
        match Option::<String>::deserialize(d)?.as_deref() {
            None | Some("" | "exact") => Ok(TenantMatcher::Exact),
            Some("glob") => Ok(TenantMatcher::Glob),
            Some(other) => Err(de::Error::custom(format_args!(
                "unknown tenant_matcher_type {other:?}, expected \"exact\" or \"glob\""
            ))),
        }
    }
}

/// One receiver in a hashring.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Endpoint {
    /// gRPC `host:port`; also the key the ketama sections are derived from.
    pub address: String,
    /// Availability zone, used by ketama to spread replicas; `None` when unset or empty.
    pub az: Option<String>,
    /// Cap'n Proto replication `host:port`; `None` means the Thanos default (see [`Endpoint::capnproto_address_or_default`]).
    pub capnproto_address: Option<String>,
}

impl Endpoint {
    /// An endpoint with only an address, written as a plain string in the file.
    pub fn new(address: impl Into<String>) -> Self {
        Endpoint {
            address: address.into(),
            ..Endpoint::default()
        }
    }

    /// The availability zone, `""` when none (Thanos does not distinguish the two).
    pub fn zone(&self) -> &str {
        self.az.as_deref().unwrap_or("")
    }

    /// The Cap'n Proto address, or Thanos' default: the text before the first `:` of `address` plus `:19391`.
    pub fn capnproto_address_or_default(&self) -> String {
        match self.capnproto_address.as_deref() {
            Some(addr) if !addr.is_empty() => addr.to_owned(),
            // Thanos cuts at the first ':' (so an IPv6 literal is mangled); kept identical so that
            // both implementations dial the same peer.
            _ => {
                let host = self.address.split(':').next().unwrap_or_default();
                format!("{host}:{DEFAULT_CAPNPROTO_PORT}")
            }
        }
    }

    /// Whether `addr` names this endpoint, by gRPC or (possibly defaulted) Cap'n Proto address.
    pub fn has_address(&self, addr: &str) -> bool {
        self.address == addr || self.capnproto_address_or_default() == addr
    }

    /// True when only `address` is set, i.e. the entry is written as a plain string.
    fn is_plain(&self) -> bool {
        self.zone().is_empty() && self.capnproto_address.as_deref().unwrap_or("").is_empty()
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_plain() {
            return s.serialize_str(&self.address);
        }
        let az = self.az.as_deref().filter(|v| !v.is_empty());
        let capnp = self.capnproto_address.as_deref().filter(|v| !v.is_empty());
        let len = 1 + usize::from(az.is_some()) + usize::from(capnp.is_some());
        let mut st = s.serialize_struct("Endpoint", len)?;
        st.serialize_field("address", &self.address)?;
        if let Some(az) = az {
            st.serialize_field("az", az)?;
        }
        if let Some(capnp) = capnp {
            st.serialize_field("capnproto_address", capnp)?;
        }
        st.end()
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EndpointVisitor)
    }
}

struct EndpointVisitor;

impl<'de> Visitor<'de> for EndpointVisitor {
    type Value = Endpoint;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an endpoint address string or an object with \"address\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Endpoint, E> {
        checked_endpoint(Endpoint::new(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Endpoint, A::Error> {
        let mut e = Endpoint::default();
        while let Some(key) = map.next_key::<String>()? {
            if key.eq_ignore_ascii_case("address") {
                if let Some(v) = map.next_value::<Option<String>>()? {
                    e.address = v;
                }
            } else if key.eq_ignore_ascii_case("az") {
                if let Some(v) = map.next_value::<Option<String>>()? {
                    e.az = Some(v).filter(|v| !v.is_empty());
                }
            } else if key.eq_ignore_ascii_case("capnproto_address") {
                if let Some(v) = map.next_value::<Option<String>>()? {
                    e.capnproto_address = Some(v).filter(|v| !v.is_empty());
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        checked_endpoint(e)
    }
}

/// Thanos rejects an endpoint without address while decoding; so do we, with its message, and
/// also one that is no `host:port`, which could never be dialled.
fn checked_endpoint<E: de::Error>(e: Endpoint) -> Result<Endpoint, E> {
    if e.address.is_empty() {
        return Err(E::custom("endpoint address must be set"));
    }
    if !valid_address(&e.address) {
        return Err(E::custom(format_args!(
            "endpoint address {:?} is not host:port",
            e.address
        )));
    }
    Ok(e)
}

/// Whether `addr` is `host:port`: a DNS name or IPv4 address, or a bracketed IPv6 address, and
/// a port number.
pub fn valid_address(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        }
    };
    host_ok && !port.is_empty() && port.parse::<u16>().is_ok()
}

/// One entry of `hashrings.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct HashringConfig {
    /// Name, only used as a metric label.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hashring: String,
    /// Tenants (or glob patterns) served by this ring; empty makes it a default ring.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// How `tenants` are matched.
    #[serde(skip_serializing_if = "TenantMatcher::is_exact")]
    pub tenant_matcher_type: TenantMatcher,
    /// Receivers of this ring, in file order (ketama depends on it only through addresses).
    pub endpoints: Vec<Endpoint>,
    /// Per-ring override of the receiver's default algorithm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
    /// Extra external labels for tenants listed literally in `tenants`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub external_labels: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for HashringConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(HashringConfigVisitor)
    }
}

struct HashringConfigVisitor;

impl<'de> Visitor<'de> for HashringConfigVisitor {
    type Value = HashringConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a hashring object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HashringConfig, A::Error> {
        let mut c = HashringConfig::default();
        let mut shard_size = 0;
        while let Some(key) = map.next_key::<String>()? {
            let key = key.to_ascii_lowercase();
            match key.as_str() {
                "hashring" => set(&mut c.hashring, map.next_value()?),
                "tenants" => set(&mut c.tenants, map.next_value()?),
                "tenant_matcher_type" => c.tenant_matcher_type = map.next_value()?,
                "endpoints" => set(&mut c.endpoints, map.next_value()?),
                "algorithm" => c.algorithm = map.next_value::<OptionalAlgorithm>()?.0,
                "external_labels" => set(&mut c.external_labels, map.next_value()?),
                "shuffle_sharding_config" => {
                    if let Some(s) = map.next_value::<Option<ShuffleSharding>>()? {
                        shard_size = s.shard_size;
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        // Thanos would route such tenants to a per-tenant sub-ring we do not compute; accepting
        // the file would silently place series differently from Thanos receivers.
        if shard_size > 0 {
            return Err(de::Error::custom(format_args!(
                "shuffle sharding (shuffle_sharding_config.shard_size = {shard_size}) is not supported"
            )));
        }
        Ok(c)
    }
}

/// Go leaves a field untouched when its JSON value is `null`.
fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

/// `algorithm` as written in the file: `""`/`null` defer to the receiver's default.
struct OptionalAlgorithm(Option<Algorithm>);

impl<'de> Deserialize<'de> for OptionalAlgorithm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Thanos silently falls back to hashmod for an unknown name (a typo such as "Ketama"
        // would quietly change placement); rejecting it is the safer reading of the same file.
        match Option::<String>::deserialize(d)?.as_deref() {
            None | Some("") => Ok(OptionalAlgorithm(None)),
            Some("hashmod") => Ok(OptionalAlgorithm(Some(Algorithm::Hashmod))),
            Some("ketama") => Ok(OptionalAlgorithm(Some(Algorithm::Ketama))),
            Some(other) => Err(de::Error::custom(format_args!(
                "unknown algorithm {other:?}, expected \"hashmod\" or \"ketama\""
            ))),
        }
    }
}

/// The part of `shuffle_sharding_config` needed to refuse configs that enable it.
struct ShuffleSharding {
    shard_size: i64,
}

impl<'de> Deserialize<'de> for ShuffleSharding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ShuffleSharding;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a shuffle_sharding_config object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ShuffleSharding, A::Error> {
                let mut shard_size = 0;
                while let Some(key) = map.next_key::<String>()? {
                    if key.eq_ignore_ascii_case("shard_size") {
                        set(&mut shard_size, map.next_value()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(ShuffleSharding { shard_size })
            }
        }
        d.deserialize_map(V)
    }
}

/// Why a `hashrings.json` could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file has no content (or only whitespace).
    #[error("configuration file is empty")]
    Empty,
    /// The content is not a valid hashring array.
    #[error("configuration file is not parsable: {0}")]
    Invalid(#[from] serde_json::Error),
    /// The content is `[]` or `null`.
    #[error("configuration file is empty: it defines no hashring")]
    NoHashrings,
}

/// Parses the content of a `hashrings.json` file.
pub fn parse(bytes: &[u8]) -> Result<Vec<HashringConfig>, ConfigError> {
    if bytes
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Err(ConfigError::Empty);
    }
    // `null` decodes to no hashrings in Go, hence the Option.
    let configs: Option<Vec<HashringConfig>> = serde_json::from_slice(bytes)?;
    match configs {
        Some(configs) if !configs.is_empty() => Ok(configs),
        _ => Err(ConfigError::NoHashrings),
    }
}

/// Serialises hashrings the way the operator writes them: pretty JSON, plain-string endpoints where possible.
pub fn to_json(configs: &[HashringConfig]) -> String {
    // Only string keys and plain data: serialisation cannot fail.
    serde_json::to_string_pretty(configs).expect("hashring configs always serialise")
}

/// Change-detection hash of a hashrings file: the first 6 bytes of its SHA-256, as Thanos computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConfigHash([u8; 6]);

impl ConfigHash {
    /// Hashes the raw file content (not the parsed configuration: formatting changes count).
    pub fn of(content: &[u8]) -> Self {
        let digest = Sha256::digest(content);
        let mut prefix = [0; 6];
        prefix.copy_from_slice(&digest[..6]);
        ConfigHash(prefix)
    }

    /// The value of the `thanos_receive_config_hash` gauge (the 6 bytes read as a little-endian integer).
    pub fn as_f64(&self) -> f64 {
        let mut le = [0; 8];
        le[..6].copy_from_slice(&self.0);
        // 48 bits fit a float64 mantissa exactly, which is why Thanos keeps only 6 bytes.
        u64::from_le_bytes(le) as f64
    }

    /// The 6 hash bytes in file-digest order, as 12 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// Reads back what [`ConfigHash::to_hex`] wrote.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 12 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0; 6];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(ConfigHash(bytes))
    }
}

impl fmt::Display for ConfigHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Shorthand for [`ConfigHash::of`].
pub fn config_hash(content: &[u8]) -> ConfigHash {
    ConfigHash::of(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(json: &str) -> Result<Vec<HashringConfig>, ConfigError> {
        parse(json.as_bytes())
    }

    fn error(json: &str) -> String {
        parse_str(json).unwrap_err().to_string()
    }

    #[test]
    fn full_file() {
        let configs = parse_str(
            r#"[
              {
                "hashring": "tenants-a",
                "tenants": ["a", "b"],
                "endpoints": ["recv-0:10901", {"address": "recv-1:10901", "az": "eu-1a", "capnproto_address": "recv-1:7000"}],
                "algorithm": "ketama",
                "external_labels": {"team": "a", "env": "prod"}
              },
              {
                "hashring": "globbed",
                "tenants": ["team-*"],
                "tenant_matcher_type": "glob",
                "endpoints": [{"address": "recv-2:10901"}],
                "algorithm": "hashmod"
              },
              {"endpoints": ["recv-3:10901"], "tenant_matcher_type": "exact", "algorithm": ""}
            ]"#,
        )
        .unwrap();
        assert_eq!(configs.len(), 3);
        let a = &configs[0];
        assert_eq!(a.hashring, "tenants-a");
        assert_eq!(a.tenants, ["a", "b"]);
        assert_eq!(a.tenant_matcher_type, TenantMatcher::Exact);
        assert_eq!(a.algorithm, Some(Algorithm::Ketama));
        assert_eq!(
            a.endpoints,
            [
                Endpoint::new("recv-0:10901"),
                Endpoint {
                    address: "recv-1:10901".into(),
                    az: Some("eu-1a".into()),
                    capnproto_address: Some("recv-1:7000".into()),
                }
            ]
        );
        assert_eq!(
            a.external_labels,
            BTreeMap::from([("env".into(), "prod".into()), ("team".into(), "a".into())])
        );
        assert_eq!(configs[1].tenant_matcher_type, TenantMatcher::Glob);
        assert_eq!(configs[1].algorithm, Some(Algorithm::Hashmod));
        assert_eq!(configs[1].endpoints, [Endpoint::new("recv-2:10901")]);
        let default = &configs[2];
        assert!(default.tenants.is_empty() && default.hashring.is_empty());
        assert_eq!(default.algorithm, None);
        assert_eq!(default.tenant_matcher_type, TenantMatcher::Exact);
    }

    #[test]
    fn lenient_like_go() {
        let configs = parse_str(
            r#"[{
                "hashring": null, "tenants": null, "tenant_matcher_type": "", "algorithm": null,
                "external_labels": null, "future_field": {"nested": [1, 2]},
                "shuffle_sharding_config": {"shard_size": 0, "cache_size": 7},
                "Endpoints": [{"Address": "x:1", "AZ": "", "capnproto_address": null, "weight": 3}]
            }]"#,
        )
        .unwrap();
        assert_eq!(
            configs[0],
            HashringConfig {
                endpoints: vec![Endpoint::new("x:1")],
                ..HashringConfig::default()
            }
        );
    }

    #[test]
    fn rejections_have_clear_messages() {
        assert_eq!(error(""), "configuration file is empty");
        assert_eq!(error(" \n\t"), "configuration file is empty");
        assert_eq!(
            error("[]"),
            "configuration file is empty: it defines no hashring"
        );
        assert_eq!(
            error("null"),
            "configuration file is empty: it defines no hashring"
        );
        assert!(error("[{").starts_with("configuration file is not parsable: "));
        assert!(error(r#"{"endpoints": []}"#).contains("invalid type: map, expected a sequence"));
        assert!(error(r#"[{"endpoints": ["a:1"]}] trailing"#).contains("trailing characters"));
        let cases = [
            (
                r#"[{"endpoints": [{"az": "z"}]}]"#,
                "endpoint address must be set",
            ),
            (r#"[{"endpoints": [""]}]"#, "endpoint address must be set"),
            (
                r#"[{"endpoints": [{"address": ""}]}]"#,
                "endpoint address must be set",
            ),
            (
                r#"[{"endpoints": [7]}]"#,
                "expected an endpoint address string or an object",
            ),
            (
                r#"[{"endpoints": ["a:1"], "algorithm": "Ketama"}]"#,
                r#"unknown algorithm "Ketama""#,
            ),
            (
                r#"[{"endpoints": ["a:1"], "tenant_matcher_type": "regex"}]"#,
                r#"unknown tenant_matcher_type "regex""#,
            ),
            (
                r#"[{"endpoints": ["a:1"], "tenants": "a"}]"#,
                "expected a sequence",
            ),
            (
                r#"[{"endpoints": ["a:1"], "shuffle_sharding_config": {"shard_size": 2}}]"#,
                "shuffle sharding (shuffle_sharding_config.shard_size = 2) is not supported",
            ),
        ];
        for (json, want) in cases {
            let got = error(json);
            assert!(got.contains(want), "{json}: {got}");
            assert!(got.contains("line 1 column"), "position missing: {got}");
        }
    }

    #[test]
    fn serialises_plain_endpoints_as_strings_and_round_trips() {
        let configs = vec![
            HashringConfig {
                hashring: "r".into(),
                tenants: vec!["team-*".into()],
                tenant_matcher_type: TenantMatcher::Glob,
                endpoints: vec![
                    Endpoint::new("a:10901"),
                    Endpoint {
                        az: Some("z1".into()),
                        ..Endpoint::new("b:10901")
                    },
                    Endpoint {
                        capnproto_address: Some("c:1".into()),
                        ..Endpoint::new("c:10901")
                    },
                ],
                algorithm: Some(Algorithm::Ketama),
                external_labels: BTreeMap::from([("k".into(), "v".into())]),
            },
            HashringConfig {
                endpoints: vec![Endpoint::new("d:10901")],
                ..HashringConfig::default()
            },
        ];
        let json = serde_json::to_string(&configs).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"[{"hashring":"r","tenants":["team-*"],"tenant_matcher_type":"glob","#,
                r#""endpoints":["a:10901",{"address":"b:10901","az":"z1"},"#,
                r#"{"address":"c:10901","capnproto_address":"c:1"}],"#,
                r#""algorithm":"ketama","external_labels":{"k":"v"}},"#,
                r#"{"endpoints":["d:10901"]}]"#
            )
        );
        assert_eq!(parse_str(&json).unwrap(), configs);
        assert_eq!(parse(to_json(&configs).as_bytes()).unwrap(), configs);
    }

    #[test]
    fn capnproto_default_follows_thanos() {
        assert_eq!(
            Endpoint::new("node-1:80").capnproto_address_or_default(),
            "node-1:19391"
        );
        assert_eq!(
            Endpoint::new("node-1").capnproto_address_or_default(),
            "node-1:19391"
        );
        let e = Endpoint {
            capnproto_address: Some("n:7".into()),
            ..Endpoint::new("n:1")
        };
        assert_eq!(e.capnproto_address_or_default(), "n:7");
        assert!(e.has_address("n:1") && e.has_address("n:7") && !e.has_address("n:19391"));
        assert!(Endpoint::new("n:1").has_address("n:19391"));
    }

    #[test]
    fn config_hash_is_first_six_sha256_bytes() {
        // sha256("") = e3b0c44298fc1c14...
        let h = config_hash(b"");
        assert_eq!(h.to_hex(), "e3b0c44298fc");
        assert_eq!(ConfigHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(ConfigHash::from_hex("e3b0c44298f"), None);
        assert_eq!(ConfigHash::from_hex("zzb0c44298fc"), None);
        // Gauge value: those bytes read little-endian.
        assert_eq!(h.as_f64(), 0xfc98_42c4_b0e3_u64 as f64);
        // sha256("abc") = ba7816bf8f01cfea...
        assert_eq!(config_hash(b"abc").to_string(), "ba7816bf8f01");
        assert_eq!(config_hash(b"abc").as_f64(), 0x018f_bf16_78ba_u64 as f64);
    }

    #[test]
    fn endpoint_addresses_must_be_host_port() {
        for ok in [
            "thanos-receive-0.thanos-receive.monitoring.svc.cluster.local:10901",
            "127.0.0.1:10901",
            "[::1]:10901",
        ] {
            assert!(valid_address(ok), "{ok}");
        }
        for bad in [
            "",
            "host",
            "host:",
            ":10901",
            "host:99999",
            "a b:1",
            "ho/st:1",
            "[zz]:1",
            "h:1x",
        ] {
            assert!(!valid_address(bad), "{bad}");
        }
        let err = parse_str(r#"[{"endpoints": ["not an address"]}]"#).unwrap_err();
        assert!(err.to_string().contains("is not host:port"), "{err}");
    }
}
