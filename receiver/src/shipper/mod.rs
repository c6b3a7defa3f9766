//! The shipper: uploads every finished block of every tenant to object storage, oldest first, as
//! Thanos' shipper does, so a block exists in the bucket before local retention may delete it.
//!
//! Order per block: `chunks/*`, then `index`, then `meta.json` last (with `upload_time`), because
//! readers treat a block without `meta.json` as a partial upload. Uploaded ULIDs are recorded in
//! `<tenant>/thanos.shipper.json` (Thanos' format). A failed upload stops the sync: later blocks
//! wait, and the next sync retries from the oldest, so an S3 outage only delays uploads.

pub mod background;
pub mod objstore;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tsdb_format::meta::BlockMeta;
use ulid::Ulid;

use crate::metrics::ShipperMetrics;
use crate::tsdb::compact::list_blocks;
use crate::tsdb::{MultiTsdb, TenantDb};
use background::UploadRuntime;
use objstore::Bucket;

/// Name of the per-tenant record of uploaded blocks.
pub const SHIPPER_FILE: &str = "thanos.shipper.json";
/// Files above this size are uploaded in parts.
const MULTIPART_THRESHOLD: u64 = 64 << 20;
const PART_SIZE: usize = 16 << 20;

/// `thanos.shipper.json`.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShipperFile {
    /// Format version (1).
    pub version: u32,
    /// Blocks known to be in the bucket.
    pub uploaded: BTreeSet<Ulid>,
}

/// Upload failures.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The bucket refused or did not answer.
    #[error("uploading {block}: {source}")]
    Upload {
        /// The block being uploaded.
        block: Ulid,
        /// The store's error.
        source: object_store::Error,
    },
    /// A local file could not be read or written.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncStats {
    /// Blocks uploaded by this sync.
    pub uploaded: Vec<Ulid>,
    /// Blocks still waiting for upload.
    pub pending: usize,
}

/// Reads a tenant's shipper file; a missing or unreadable file means nothing is known uploaded.
pub fn read_shipper_file(tenant_dir: &Path) -> ShipperFile {
    std::fs::read(tenant_dir.join(SHIPPER_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(ShipperFile {
            version: 1,
            uploaded: BTreeSet::new(),
        })
}

fn write_shipper_file(tenant_dir: &Path, file: &ShipperFile) -> Result<(), ShipError> {
    let path = tenant_dir.join(SHIPPER_FILE);
    let tmp = tenant_dir.join(format!("{SHIPPER_FILE}.tmp"));
    let io = |source| ShipError::Io {
        path: path.clone(),
        source,
    };
    let body = serde_json::to_vec_pretty(file).expect("serializable");
    std::fs::write(&tmp, body).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

fn uploadable(meta: &BlockMeta) -> bool {
    meta.stats.num_samples > 0 && meta.compaction.level <= 1
}

/// Blocks of the tenant in `tenant_dir` that still wait for upload.
pub fn pending_blocks(tenant_dir: &Path) -> usize {
    let uploaded = read_shipper_file(tenant_dir).uploaded;
    list_blocks(tenant_dir)
        .iter()
        .filter(|(_, m)| uploadable(m) && !uploaded.contains(&m.ulid))
        .count()
}

/// Uploads blocks to one bucket.
pub struct Shipper {
    bucket: Bucket,
    metrics: ShipperMetrics,
    uploads: UploadRuntime,
}

impl Shipper {
    /// A shipper for `bucket`, with its upload threads started.
    pub fn new(bucket: Bucket, metrics: ShipperMetrics) -> std::io::Result<Self> {
        Ok(Shipper {
            bucket,
            metrics,
            uploads: UploadRuntime::new()?,
        })
    }

    /// Uploads the pending blocks of every tenant on the upload threads (see [`background`]);
    /// errors are counted and logged per tenant, and the next sync retries oldest first.
    pub async fn sync_all(self: &Arc<Self>, tsdb: &Arc<MultiTsdb>) {
        let (shipper, tsdb) = (Arc::clone(self), Arc::clone(tsdb));
        let done = self
            .uploads
            .run(async move {
                for db in tsdb.tenants() {
                    let _ = shipper.sync(&db).await;
                }
            })
            .await;
        if let Err(e) = done {
            tracing::error!(error = %e, "an upload task ended abnormally; the next sync retries");
        }
    }

    /// What the bucket is, for logs.
    pub fn description(&self) -> &str {
        &self.bucket.description
    }

    /// Whether `block` of the tenant in `tenant_dir` is recorded as uploaded.
    pub fn is_uploaded(tenant_dir: &Path, block: Ulid) -> bool {
        read_shipper_file(tenant_dir).uploaded.contains(&block)
    }

    /// Uploads every block of `db` not yet in the bucket, oldest first; stops at the first failure.
    pub async fn sync(&self, db: &TenantDb) -> Result<SyncStats, ShipError> {
        let result = self.sync_inner(db).await;
        let pending = pending_blocks(&db.dir);
        self.metrics.synced(&db.name, pending, result.is_ok());
        if let Err(e) = &result {
            tracing::warn!(tenant = db.name, pending, error = %e, "block upload failed; will retry oldest first");
        }
        result
    }

    async fn sync_inner(&self, db: &TenantDb) -> Result<SyncStats, ShipError> {
        let mut file = read_shipper_file(&db.dir);
        file.version = 1;
        let blocks = list_blocks(&db.dir);
        // Forget blocks that are gone locally, as Thanos does.
        file.uploaded
            .retain(|u| blocks.iter().any(|(_, m)| m.ulid == *u));
        let candidates: Vec<&(PathBuf, BlockMeta)> = blocks
            .iter()
            .filter(|(_, m)| {
                !file.uploaded.contains(&m.ulid)
                    && m.stats.num_samples > 0
                    && m.compaction.level <= 1
            })
            .collect();
        let mut stats = SyncStats {
            pending: candidates.len(),
            ..SyncStats::default()
        };
        for (dir, meta) in candidates {
            let meta_path = self.bucket.path(&format!("{}/meta.json", meta.ulid));
            let exists = self.bucket.store.head(&meta_path).await.is_ok();
            if !exists {
                let started = std::time::Instant::now();
                let bytes = match self.upload(dir, meta).await {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        write_shipper_file(&db.dir, &file)?;
                        return Err(e);
                    }
                };
                let seconds = started.elapsed().as_secs_f64();
                self.metrics.uploaded(&db.name, &self.bucket.description);
                stats.uploaded.push(meta.ulid);
                tracing::info!(
                    tenant = db.name,
                    block = %meta.ulid,
                    bucket = self.bucket.description,
                    bytes,
                    seconds = format!("{seconds:.3}"),
                    mib_per_second = format!("{:.1}", bytes as f64 / seconds.max(1e-9) / 1048576.0),
                    "block uploaded"
                );
            }
            file.uploaded.insert(meta.ulid);
            stats.pending -= 1;
            write_shipper_file(&db.dir, &file)?;
        }
        write_shipper_file(&db.dir, &file)?;
        Ok(stats)
    }

    /// Uploads the block's files, `meta.json` last; returns the bytes sent.
    async fn upload(&self, dir: &Path, meta: &BlockMeta) -> Result<u64, ShipError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("chunks"))
            .map_err(|source| ShipError::Io {
                path: dir.join("chunks"),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        files.push(dir.join("index"));
        let mut bytes = 0;
        for path in files {
            let rel = path
                .strip_prefix(dir)
                .expect("inside the block")
                .to_string_lossy()
                .into_owned();
            bytes += self
                .put_file(&path, &format!("{}/{rel}", meta.ulid), meta.ulid)
                .await?;
        }
        let mut uploaded = meta.clone();
        if let Some(thanos) = uploaded.thanos.as_mut() {
            thanos.upload_time =
                Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
        let body = uploaded.to_json().expect("meta serializes");
        bytes += body.len() as u64;
        self.bucket
            .store
            .put(
                &self.bucket.path(&format!("{}/meta.json", meta.ulid)),
                PutPayload::from(body),
            )
            .await
            .map_err(|source| ShipError::Upload {
                block: meta.ulid,
                source,
            })?;
        Ok(bytes)
    }

    /// Uploads one file (in parts past the multipart threshold); returns its size.
    async fn put_file(&self, path: &Path, key: &str, block: Ulid) -> Result<u64, ShipError> {
        let io = |source| ShipError::Io {
            path: path.to_path_buf(),
            source,
        };
        let upload_err = |source| ShipError::Upload { block, source };
        let dest = self.bucket.path(key);
        let size = tokio::fs::metadata(path).await.map_err(io)?.len();
        if size <= MULTIPART_THRESHOLD {
            let bytes = tokio::fs::read(path).await.map_err(io)?;
            self.bucket
                .store
                .put(&dest, PutPayload::from(bytes))
                .await
                .map_err(upload_err)?;
            return Ok(size);
        }
        let upload = self
            .bucket
            .store
            .put_multipart(&dest)
            .await
            .map_err(upload_err)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut buf = vec![0u8; PART_SIZE];
        loop {
            let n = file.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            // Bounds memory to a few parts in flight.
            writer.wait_for_capacity(2).await.map_err(upload_err)?;
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(upload_err)?;
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::tsdb::{SeriesVec, TsdbOptions};
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    use std::sync::Arc;

    fn db_with_blocks(dir: &Path) -> TenantDb {
        let (db, _) = TenantDb::open(dir, "t", TsdbOptions::default()).unwrap();
        for t in (0..5 * 3_600_000).step_by(600_000) {
            let b = SeriesVec::new().with(&[("__name__", "m")], &[(t, 1.0)]);
            let resolved = db.resolve(&b, &[0], 0).unwrap();
            db.append(&b, &[0], &resolved.refs).unwrap();
        }
        db.flush().unwrap();
        db
    }

    #[tokio::test]
    async fn uploads_in_order_with_meta_last_and_records_them() {
        let data = tempfile::tempdir().unwrap();
        let bucket_dir = tempfile::tempdir().unwrap();
        let db = db_with_blocks(data.path());
        let cfg: objstore::ObjstoreConfig = serde_yaml::from_str(&format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket_dir.path().display()
        ))
        .unwrap();
        let shipper = Shipper::new(objstore::build(&cfg).unwrap(), Metrics::new().shipper).unwrap();
        let stats = shipper.sync(&db).await.unwrap();
        assert_eq!((stats.uploaded.len(), stats.pending), (3, 0));
        for (_, meta) in db.blocks() {
            let b = bucket_dir.path().join(meta.ulid.to_string());
            assert!(b.join("index").exists() && b.join("chunks/000001").exists());
            let uploaded: serde_json::Value =
                serde_json::from_slice(&std::fs::read(b.join("meta.json")).unwrap()).unwrap();
            assert!(uploaded["thanos"]["upload_time"].is_string());
            assert!(
                !b.join("tombstones").exists(),
                "Thanos does not upload tombstones"
            );
            assert!(Shipper::is_uploaded(&db.dir, meta.ulid));
        }
        // A second sync has nothing to do.
        assert_eq!(shipper.sync(&db).await.unwrap(), SyncStats::default());
    }

    /// The store's own record of creation order: `InMemory` tags each put with a counter.
    #[tokio::test]
    async fn upload_order_is_oldest_block_first_and_meta_json_last() {
        let data = tempfile::tempdir().unwrap();
        let db = db_with_blocks(data.path());
        let store = Arc::new(object_store::memory::InMemory::new());
        let bucket = objstore::Bucket {
            store: Arc::clone(&store) as Arc<dyn object_store::ObjectStore>,
            prefix: "tenant-prefix".into(),
            description: "in-memory".into(),
        };
        let shipper = Shipper::new(bucket, Metrics::new().shipper).unwrap();
        assert_eq!(shipper.sync(&db).await.unwrap().uploaded.len(), 3);
        let mut objects: Vec<object_store::ObjectMeta> =
            store.list(None).try_collect().await.unwrap();
        objects.sort_by_key(|o| {
            let tag = o.e_tag.as_deref().unwrap().trim_matches('"');
            tag.parse::<u64>().unwrap()
        });
        let created: Vec<String> = objects.iter().map(|o| o.location.to_string()).collect();
        let mut expected_blocks: Vec<String> = db
            .blocks()
            .iter()
            .map(|(_, m)| m.ulid.to_string())
            .collect();
        expected_blocks.sort();
        let mut expected = Vec::new();
        for ulid in &expected_blocks {
            for file in ["chunks/000001", "index", "meta.json"] {
                expected.push(format!("tenant-prefix/{ulid}/{file}"));
            }
        }
        assert_eq!(created, expected, "creation order");
    }

    #[tokio::test]
    async fn an_unreachable_bucket_keeps_blocks_pending() {
        let data = tempfile::tempdir().unwrap();
        let db = db_with_blocks(data.path());
        let cfg: objstore::ObjstoreConfig = serde_yaml::from_str(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: 127.0.0.1:1\n  insecure: true\n  access_key: a\n  secret_key: s\n",
        )
        .unwrap();
        let shipper = Shipper::new(objstore::build(&cfg).unwrap(), Metrics::new().shipper).unwrap();
        assert!(shipper.sync(&db).await.is_err());
        assert!(read_shipper_file(&db.dir).uploaded.is_empty());
        assert!(
            db.blocks()
                .iter()
                .all(|(_, m)| !Shipper::is_uploaded(&db.dir, m.ulid))
        );
    }
}
