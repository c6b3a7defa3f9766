//! The Thanos `objstore.yml` (`--objstore.config-file`), turned into an `object_store` bucket.
//!
//! ```yaml
//! type: S3
//! config:
//!   bucket: thanos
//!   endpoint: minio.monitoring.svc:9000
//!   access_key: ...
//!   secret_key: ...
//!   insecure: true
//! prefix: ""
//! ```
//! `S3`, `GCS` (`bucket`, `service_account`: the key's JSON; without it, the environment's
//! application default credentials), `AZURE` (`storage_account`, `storage_account_key`,
//! `container`, `endpoint`: the blob domain, or a full URL such as Azurite's), `COS` and `OSS`
//! (through their S3-compatible endpoints) and `FILESYSTEM` (`directory`) are supported, with
//! Thanos' keys. S3 credentials left out of the file come from
//! the usual `AWS_*` environment variables.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, RetryConfig};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjstoreConfig {
    /// `S3` or `FILESYSTEM` (case-insensitive, as Thanos).
    #[serde(rename = "type")]
    pub kind: String,
    /// Provider settings.
    #[serde(default)]
    pub config: BTreeMap<String, serde_yaml::Value>,
    /// Key prefix inside the bucket.
    #[serde(default)]
    pub prefix: String,
}

/// Why an objstore config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ObjstoreError {
    /// The config file is unreadable or invalid.
    #[error("objstore config {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with line and column (never the file's secrets).
        message: String,
    },
    /// The store cannot be built from a valid config.
    #[error("objstore: {0}")]
    Store(#[from] object_store::Error),
}

/// A bucket and the prefix every key goes under.
pub struct Bucket {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix (no leading or trailing `/`).
    pub prefix: String,
    /// What the config describes, for logs.
    pub description: String,
}

impl Bucket {
    /// The object path of `key` under the prefix.
    pub fn path(&self, key: &str) -> object_store::path::Path {
        if self.prefix.is_empty() {
            object_store::path::Path::from(key)
        } else {
            object_store::path::Path::from(format!("{}/{key}", self.prefix))
        }
    }
}

fn str_field<'a>(cfg: &'a BTreeMap<String, serde_yaml::Value>, key: &str) -> Option<&'a str> {
    cfg.get(key)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
}

/// Reads and builds the bucket of an objstore file.
pub fn load(path: &Path) -> Result<Bucket, ObjstoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| ObjstoreError::Invalid {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse(&text, &path.display().to_string())
}

/// Builds the bucket of objstore YAML `text` (`--objstore.config`); `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Bucket, ObjstoreError> {
    let invalid = |message: String| ObjstoreError::Invalid {
        path: origin.to_owned(),
        message,
    };
    // serde_yaml's messages quote the offending value, which may be a secret key: say where only.
    let cfg: ObjstoreConfig = serde_yaml::from_str(text).map_err(|e| {
        invalid(match e.location() {
            Some(l) => format!(
                "not a valid objstore config at line {}, column {} (the value is not shown: it may be a secret)",
                l.line(),
                l.column()
            ),
            None => "not a valid objstore config (the value is not shown: it may be a secret)".into(),
        })
    })?;
    build(&cfg).map_err(|e| match e {
        ObjstoreError::Invalid { message, .. } => invalid(message),
        other => other,
    })
}

/// A config error; [`parse`] fills in where the config came from.
fn invalid(message: String) -> ObjstoreError {
    ObjstoreError::Invalid {
        path: String::new(),
        message,
    }
}

/// Builds the bucket a parsed config describes.
pub fn build(cfg: &ObjstoreConfig) -> Result<Bucket, ObjstoreError> {
    let prefix = cfg.prefix.trim_matches('/').to_string();
    let kind = cfg.kind.to_ascii_uppercase();
    if kind == "COS" || kind == "OSS" {
        // Both speak the S3 API: their Thanos keys become an S3 config.
        let config = s3_compatible(&kind, &cfg.config).map_err(invalid)?;
        return build(&ObjstoreConfig {
            kind: "S3".into(),
            config,
            prefix: cfg.prefix.clone(),
        });
    }
    match kind.as_str() {
        "S3" => s3(&cfg.config, prefix),
        "GCS" => gcs(&cfg.config, prefix),
        "AZURE" => azure(&cfg.config, prefix),
        "FILESYSTEM" => filesystem(&cfg.config, prefix),
        other => Err(invalid(format!(
            "unsupported type {other:?}: use S3, GCS, AZURE, COS, OSS or FILESYSTEM"
        ))),
    }
}

/// The S3 config of a Tencent COS or Alibaba OSS config with Thanos' keys: their S3-compatible
/// endpoints, virtual-hosted buckets, and their key names mapped onto S3's.
fn s3_compatible(
    kind: &str,
    c: &BTreeMap<String, serde_yaml::Value>,
) -> Result<BTreeMap<String, serde_yaml::Value>, String> {
    let need =
        |key: &str| str_field(c, key).ok_or_else(|| format!("{kind}: config.{key} is required"));
    let (bucket, endpoint, region, access, secret) = if kind == "COS" {
        let region = need("region")?;
        let bucket = need("bucket")?;
        // COS bucket names carry the account's APPID suffix.
        let bucket = match str_field(c, "app_id") {
            Some(app) if !bucket.ends_with(&format!("-{app}")) => format!("{bucket}-{app}"),
            _ => bucket.to_string(),
        };
        let endpoint = str_field(c, "endpoint").map_or_else(
            || format!("https://cos.{region}.myqcloud.com"),
            str::to_string,
        );
        (
            bucket,
            endpoint,
            region.to_string(),
            need("secret_id")?,
            need("secret_key")?,
        )
    } else {
        let endpoint = need("endpoint")?;
        // `oss-cn-hangzhou.aliyuncs.com`: the region is the first label.
        let host = endpoint.rsplit("://").next().unwrap_or(endpoint);
        let region = host.split('.').next().unwrap_or(host).to_string();
        let endpoint = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("https://{endpoint}")
        };
        (
            need("bucket")?.to_string(),
            endpoint,
            region,
            need("access_key_id")?,
            need("access_key_secret")?,
        )
    };
    Ok([
        ("bucket", bucket),
        ("endpoint", endpoint),
        ("region", region),
        ("access_key", access.to_string()),
        ("secret_key", secret.to_string()),
        ("bucket_lookup_type", "virtual-hosted".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), serde_yaml::Value::String(v)))
    .collect())
}

/// An S3 bucket (`endpoint` with or without a scheme; path-style unless `bucket_lookup_type: virtual-hosted`).
fn s3(c: &BTreeMap<String, serde_yaml::Value>, prefix: String) -> Result<Bucket, ObjstoreError> {
    let bucket =
        str_field(c, "bucket").ok_or_else(|| invalid("S3: config.bucket is required".into()))?;
    let endpoint = str_field(c, "endpoint")
        .ok_or_else(|| invalid("S3: config.endpoint is required".into()))?;
    let insecure = c.get("insecure").and_then(|v| v.as_bool()).unwrap_or(false);
    let url = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("{}://{endpoint}", if insecure { "http" } else { "https" })
    };
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_endpoint(&url)
        .with_allow_http(insecure || url.starts_with("http://"))
        .with_region(str_field(c, "region").unwrap_or("us-east-1"))
        // Thanos' default lookup for custom endpoints is path style.
        .with_virtual_hosted_style_request(
            str_field(c, "bucket_lookup_type") == Some("virtual-hosted"),
        )
        .with_retry(upload_retry());
    if let Some(k) = str_field(c, "access_key") {
        b = b.with_access_key_id(k);
    }
    if let Some(k) = str_field(c, "secret_key") {
        b = b.with_secret_access_key(k);
    }
    if let Some(t) = str_field(c, "session_token") {
        b = b.with_token(t);
    }
    Ok(Bucket {
        store: Arc::new(b.build()?),
        prefix,
        description: format!("s3 {url}/{bucket}"),
    })
}

/// A GCS bucket.
fn gcs(c: &BTreeMap<String, serde_yaml::Value>, prefix: String) -> Result<Bucket, ObjstoreError> {
    let bucket =
        str_field(c, "bucket").ok_or_else(|| invalid("GCS: config.bucket is required".into()))?;
    let mut b = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_retry(upload_retry());
    if let Some(key) = str_field(c, "service_account") {
        b = b.with_service_account_key(key);
    }
    Ok(Bucket {
        store: Arc::new(b.build()?),
        prefix,
        description: format!("gcs {bucket}"),
    })
}

/// An Azure Blob container.
fn azure(c: &BTreeMap<String, serde_yaml::Value>, prefix: String) -> Result<Bucket, ObjstoreError> {
    let account = str_field(c, "storage_account")
        .ok_or_else(|| invalid("AZURE: config.storage_account is required".into()))?;
    let container = str_field(c, "container")
        .ok_or_else(|| invalid("AZURE: config.container is required".into()))?;
    // Thanos' `endpoint` is the blob domain; a full URL (Azurite, sovereign clouds) is
    // taken as the account URL itself.
    let endpoint = str_field(c, "endpoint").unwrap_or("blob.core.windows.net");
    let url = if endpoint.contains("://") {
        endpoint.trim_end_matches('/').to_string()
    } else {
        format!("https://{account}.{endpoint}")
    };
    let mut b = MicrosoftAzureBuilder::from_env()
        .with_account(account)
        .with_container_name(container)
        .with_endpoint(url.clone())
        .with_allow_http(url.starts_with("http://"))
        .with_retry(upload_retry());
    if let Some(key) = str_field(c, "storage_account_key") {
        b = b.with_access_key(key);
    }
    Ok(Bucket {
        store: Arc::new(b.build()?),
        prefix,
        description: format!("azure {url}/{container}"),
    })
}

/// A directory as a bucket.
fn filesystem(
    c: &BTreeMap<String, serde_yaml::Value>,
    prefix: String,
) -> Result<Bucket, ObjstoreError> {
    let dir = str_field(c, "directory")
        .ok_or_else(|| invalid("FILESYSTEM: config.directory is required".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| invalid(format!("{dir}: {e}")))?;
    Ok(Bucket {
        store: Arc::new(LocalFileSystem::new_with_prefix(dir)?),
        prefix,
        description: format!("filesystem {dir}"),
    })
}

/// Fail an upload within seconds; the shipper retries at its next sync, oldest block first.
fn upload_retry() -> RetryConfig {
    RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(20),
        ..RetryConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Bucket, ObjstoreError> {
        build(&serde_yaml::from_str(text).unwrap())
    }

    #[test]
    fn thanos_configs_build() {
        let b = parse("type: s3\nconfig:\n  bucket: thanos\n  endpoint: 127.0.0.1:9000\n  access_key: a\n  secret_key: b\n  insecure: true\nprefix: /team/\n").unwrap();
        assert_eq!(b.description, "s3 http://127.0.0.1:9000/thanos");
        assert_eq!(b.path("01ABC/meta.json").as_ref(), "team/01ABC/meta.json");
        let dir = tempfile::tempdir().unwrap();
        let b = parse(&format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            dir.path().display()
        ))
        .unwrap();
        assert_eq!(b.path("x").as_ref(), "x");
        let b = parse("type: AZURE\nconfig:\n  storage_account: acct\n  storage_account_key: a2V5\n  container: thanos\n").unwrap();
        assert_eq!(
            b.description,
            "azure https://acct.blob.core.windows.net/thanos"
        );
        let b = parse("type: azure\nconfig:\n  storage_account: devstoreaccount1\n  storage_account_key: a2V5\n  container: c\n  endpoint: http://127.0.0.1:10000/devstoreaccount1/\n").unwrap();
        assert_eq!(
            b.description,
            "azure http://127.0.0.1:10000/devstoreaccount1/c"
        );
    }

    #[test]
    fn cos_and_oss_map_onto_their_s3_endpoints() {
        let b = parse("type: COS\nconfig:\n  bucket: thanos\n  region: ap-shanghai\n  app_id: \"1250000000\"\n  secret_id: id\n  secret_key: key\n").unwrap();
        assert_eq!(
            b.description,
            "s3 https://cos.ap-shanghai.myqcloud.com/thanos-1250000000"
        );
        let b = parse("type: OSS\nconfig:\n  bucket: thanos\n  endpoint: oss-cn-hangzhou.aliyuncs.com\n  access_key_id: id\n  access_key_secret: key\n").unwrap();
        assert_eq!(
            b.description,
            "s3 https://oss-cn-hangzhou.aliyuncs.com/thanos"
        );
    }

    #[test]
    fn broken_configs_say_why() {
        let err = |t: &str| parse(t).err().unwrap().to_string();
        assert!(err("type: S3\nconfig: {endpoint: x}\n").contains("bucket is required"));
        assert!(err("type: S3\nconfig: {bucket: x}\n").contains("endpoint is required"));
        assert!(err("type: SWIFT\nconfig: {bucket: x}\n").contains("unsupported type"));
        assert!(err("type: COS\nconfig: {bucket: x}\n").contains("region is required"));
        assert!(err("type: OSS\nconfig: {bucket: x}\n").contains("endpoint is required"));
        assert!(err("type: GCS\nconfig: {}\n").contains("bucket is required"));
        assert!(
            err("type: AZURE\nconfig: {container: x}\n").contains("storage_account is required")
        );
        assert!(
            err("type: AZURE\nconfig: {storage_account: a}\n").contains("container is required")
        );
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("objstore.yml");
        std::fs::write(&bad, "type: [").unwrap();
        assert!(load(&bad).is_err());
    }

    #[test]
    fn a_broken_config_does_not_echo_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("objstore.yml");
        std::fs::write(
            &path,
            "type: S3\nconfig:\n  bucket: b\n  secret_key: [\"hunter2-SECRET\"\n",
        )
        .unwrap();
        let err = load(&path)
            .err()
            .expect("broken YAML is refused")
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("line"), "{err}");
        std::fs::write(&path, "type: S3\nconfig: hunter2-SECRET\n").unwrap();
        let err = load(&path)
            .err()
            .expect("wrong shape is refused")
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
