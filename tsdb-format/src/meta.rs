//! `meta.json`: Prometheus' `BlockMeta` plus Thanos' `thanos` section.
//!
//! Field names, order and `omitempty` behaviour follow the Go structs so the file
//! looks like one Prometheus/Thanos wrote (tab-indented, like `json.MarshalIndent`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};
use ulid::Ulid;

use crate::error::{Error, Result, corrupt, io_err};
use crate::fsutil::{sync_dir, write_synced};

/// File name inside a block directory.
pub const META_FILENAME: &str = "meta.json";
/// The only meta.json version Prometheus and Thanos accept.
pub const META_VERSION: u32 = 1;
/// Thanos meta section version.
pub const THANOS_VERSION: u32 = 1;

fn is_zero(x: &u64) -> bool {
    *x == 0
}

/// Contents of `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    /// Block ID.
    pub ulid: Ulid,
    /// Inclusive lower time bound (ms).
    pub min_time: i64,
    /// Exclusive upper time bound (ms).
    pub max_time: i64,
    /// Content counts.
    #[serde(default)]
    pub stats: BlockStats,
    /// Compaction lineage.
    #[serde(default)]
    pub compaction: Compaction,
    /// Meta file version; always [`META_VERSION`].
    pub version: u32,
    /// Thanos extension, absent in plain Prometheus blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thanos: Option<ThanosMeta>,
}

/// `stats`: all fields are `omitempty` in Go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    /// Float plus histogram samples.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    /// Float samples (newer Prometheus field; older readers ignore it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_float_samples: u64,
    /// Histogram samples.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_histogram_samples: u64,
    /// Series.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_series: u64,
    /// Chunks.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    /// Tombstone intervals.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
}

/// `compaction`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    /// 1 for blocks cut from the head.
    pub level: u32,
    /// ULIDs of the level-1 blocks this block was built from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Ulid>,
    /// Set on blocks compacted away.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deletable: bool,
    /// Direct parents of a compacted block.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
    /// Set when compaction of this block failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
    /// Compactor hints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

/// A parent block reference in `compaction.parents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockDesc {
    /// Parent ID.
    pub ulid: Ulid,
    /// Parent lower bound.
    pub min_time: i64,
    /// Parent upper bound.
    pub max_time: i64,
}

/// The `thanos` section (Thanos `metadata.Thanos`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosMeta {
    /// Section version; 0/absent means 1.
    #[serde(default)]
    pub version: u32,
    /// External labels; Go writes a nil map as `null`, which reads back as empty.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub labels: BTreeMap<String, String>,
    /// Downsampling resolution.
    #[serde(default)]
    pub downsample: ThanosDownsample,
    /// Producer, e.g. `receive`.
    #[serde(default)]
    pub source: String,
    /// Block files sorted by path (tombstones excluded, as Thanos does).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ThanosFile>,
    /// Size hints for the store gateway; Go always writes the object.
    #[serde(default)]
    pub index_stats: IndexStats,
    /// Upload time (RFC 3339), set by the shipper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_time: Option<String>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_default())
}

/// `thanos.downsample`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosDownsample {
    /// Resolution in ms; 0 = raw.
    pub resolution: i64,
}

/// One entry of `thanos.files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosFile {
    /// Path relative to the block directory.
    pub rel_path: String,
    /// Size; omitted when 0 (meta.json itself carries no size).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size_bytes: u64,
}

/// `thanos.index_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStats {
    /// Largest series entry in the index (bytes).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub series_max_size: u64,
    /// Largest chunk record (bytes).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub chunk_max_size: u64,
}

impl BlockMeta {
    /// Serializes like Go's `json.Encoder` with `SetIndent("", "\t")` (trailing newline included).
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        self.serialize(&mut serde_json::Serializer::with_formatter(&mut out, fmt))?;
        out.push(b'\n');
        Ok(out)
    }
}

/// Writes `dir/meta.json` atomically (temp file, fsync, rename, fsync dir); returns its size.
pub fn write_meta(dir: &Path, meta: &BlockMeta) -> Result<u64> {
    let path = dir.join(META_FILENAME);
    let data = meta.to_json().map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    let tmp = dir.join(format!("{META_FILENAME}.tmp"));
    write_synced(&tmp, &data)?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir)?;
    Ok(data.len() as u64)
}

/// Reads `dir/meta.json`, rejecting meta versions other than 1.
pub fn read_meta(dir: &Path) -> Result<BlockMeta> {
    let path = dir.join(META_FILENAME);
    let data = fs::read(&path).map_err(io_err(&path))?;
    let meta: BlockMeta = serde_json::from_slice(&data).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    if meta.version != META_VERSION {
        return Err(corrupt(
            path.display().to_string(),
            format!("unsupported meta version {}", meta.version),
        ));
    }
    if let Some(t) = &meta.thanos
        && t.version > THANOS_VERSION
    {
        return Err(corrupt(
            path.display().to_string(),
            format!("unsupported thanos meta version {}", t.version),
        ));
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BlockMeta {
        let ulid = Ulid::from_string("01HQZ5V4Z3N4Q7C8D9E0F1G2H3").unwrap();
        BlockMeta {
            ulid,
            min_time: 1_700_000_000_000,
            max_time: 1_700_007_200_000,
            stats: BlockStats {
                num_samples: 480,
                num_float_samples: 480,
                num_series: 1,
                num_chunks: 4,
                ..Default::default()
            },
            compaction: Compaction {
                level: 1,
                sources: vec![ulid],
                ..Default::default()
            },
            version: 1,
            thanos: Some(ThanosMeta {
                version: 1,
                labels: [("tenant_id".to_string(), "default-tenant".to_string())].into(),
                downsample: ThanosDownsample { resolution: 0 },
                source: "receive".into(),
                files: vec![
                    ThanosFile {
                        rel_path: "chunks/000001".into(),
                        size_bytes: 1234,
                    },
                    ThanosFile {
                        rel_path: "index".into(),
                        size_bytes: 567,
                    },
                    ThanosFile {
                        rel_path: "meta.json".into(),
                        size_bytes: 0,
                    },
                ],
                index_stats: IndexStats {
                    series_max_size: 40,
                    chunk_max_size: 300,
                },
                upload_time: None,
            }),
        }
    }

    #[test]
    fn json_shape() {
        let text = String::from_utf8(sample().to_json().unwrap()).unwrap();
        let want = r#"{
	"ulid": "01HQZ5V4Z3N4Q7C8D9E0F1G2H3",
	"minTime": 1700000000000,
	"maxTime": 1700007200000,
	"stats": {
		"numSamples": 480,
		"numFloatSamples": 480,
		"numSeries": 1,
		"numChunks": 4
	},
	"compaction": {
		"level": 1,
		"sources": [
			"01HQZ5V4Z3N4Q7C8D9E0F1G2H3"
		]
	},
	"version": 1,
	"thanos": {
		"version": 1,
		"labels": {
			"tenant_id": "default-tenant"
		},
		"downsample": {
			"resolution": 0
		},
		"source": "receive",
		"files": [
			{
				"rel_path": "chunks/000001",
				"size_bytes": 1234
			},
			{
				"rel_path": "index",
				"size_bytes": 567
			},
			{
				"rel_path": "meta.json"
			}
		],
		"index_stats": {
			"series_max_size": 40,
			"chunk_max_size": 300
		}
	}
}
"#;
        assert_eq!(text, want);
    }

    #[test]
    fn write_read_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let mut meta = sample();
        let size = write_meta(tmp.path(), &meta).unwrap();
        assert_eq!(
            fs::metadata(tmp.path().join("meta.json")).unwrap().len(),
            size
        );
        assert!(!tmp.path().join("meta.json.tmp").exists());
        assert_eq!(read_meta(tmp.path()).unwrap(), meta);

        meta.thanos.as_mut().unwrap().upload_time = Some("2024-01-01T00:00:00Z".into());
        write_meta(tmp.path(), &meta).unwrap();
        assert_eq!(read_meta(tmp.path()).unwrap(), meta);

        meta.version = 2;
        write_meta(tmp.path(), &meta).unwrap();
        assert!(read_meta(tmp.path()).is_err());
    }

    #[test]
    fn reads_go_written_meta() {
        // Plain Prometheus meta (no thanos section) and Thanos' null labels.
        let tmp = tempfile::tempdir().unwrap();
        let text = r#"{"ulid":"01HQZ5V4Z3N4Q7C8D9E0F1G2H3","minTime":0,"maxTime":7200000,
            "stats":{"numSamples":1},"compaction":{"level":2,"sources":["01HQZ5V4Z3N4Q7C8D9E0F1G2H3"],
            "parents":[{"ulid":"01HQZ5V4Z3N4Q7C8D9E0F1G2H3","minTime":0,"maxTime":1}]},"version":1,
            "thanos":{"labels":null,"downsample":{"resolution":300000},"source":"compactor",
            "segment_files":["000001"],"index_stats":{}}}"#;
        fs::write(tmp.path().join("meta.json"), text).unwrap();
        let meta = read_meta(tmp.path()).unwrap();
        assert_eq!(meta.compaction.level, 2);
        assert_eq!(meta.compaction.parents.len(), 1);
        let thanos = meta.thanos.unwrap();
        assert!(thanos.labels.is_empty());
        assert_eq!(thanos.downsample.resolution, 300_000);
        assert_eq!(thanos.version, 0);
    }
}
