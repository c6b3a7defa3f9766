//! `tombstones`: `magic u32 | version u8 | (ref uvarint, mint varint, maxt varint)* | CRC32C(entries)`.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use crate::encoding::{Decoder, check_crc, put_uvarint, put_varint};
use crate::error::{Result, corrupt, io_err};
use crate::fsutil::write_synced;

/// File name inside a block directory.
pub const TOMBSTONES_FILENAME: &str = "tombstones";
/// Magic number opening the file.
pub const TOMBSTONES_MAGIC: u32 = 0x0130_BA30;
/// Format version.
pub const TOMBSTONES_VERSION: u8 = 1;

/// A deleted time range `[min_time, max_time]` of one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    /// Series ID in the block's index.
    pub series_ref: u64,
    /// Inclusive start.
    pub min_time: i64,
    /// Inclusive end.
    pub max_time: i64,
}

/// Encodes tombstones; an empty slice gives the 9-byte file Prometheus writes for every block.
pub fn encode(stones: &[Tombstone]) -> Vec<u8> {
    let mut b = TOMBSTONES_MAGIC.to_be_bytes().to_vec();
    b.push(TOMBSTONES_VERSION);
    for s in stones {
        put_uvarint(&mut b, s.series_ref);
        put_varint(&mut b, s.min_time);
        put_varint(&mut b, s.max_time);
    }
    let crc = crc32c::crc32c(&b[5..]);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

/// Writes `dir/tombstones` and fsyncs it; returns its size.
pub fn write(dir: &Path, stones: &[Tombstone]) -> Result<u64> {
    let data = encode(stones);
    write_synced(&dir.join(TOMBSTONES_FILENAME), &data)?;
    Ok(data.len() as u64)
}

/// Reads `dir/tombstones`; a missing file means no tombstones.
pub fn read(dir: &Path) -> Result<Vec<Tombstone>> {
    let path = dir.join(TOMBSTONES_FILENAME);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&path)(e)),
    };
    decode(&data)
}

/// Parses tombstones file content, verifying magic, version and CRC.
pub fn decode(data: &[u8]) -> Result<Vec<Tombstone>> {
    const WHAT: &str = "tombstones";
    let mut d = Decoder::new(data, WHAT);
    let magic = d.be_u32()?;
    if magic != TOMBSTONES_MAGIC {
        return Err(corrupt(WHAT, format!("bad magic {magic:#010x}")));
    }
    let version = d.u8()?;
    if version != TOMBSTONES_VERSION {
        return Err(corrupt(WHAT, format!("unsupported version {version}")));
    }
    let body_len = data
        .len()
        .checked_sub(9)
        .ok_or_else(|| corrupt(WHAT, "file too short"))?;
    let body = d.bytes(body_len as u64)?;
    check_crc(WHAT, body, d.be_u32()?)?;
    let mut d = Decoder::new(body, WHAT);
    let mut out = Vec::new();
    while d.remaining() > 0 {
        out.push(Tombstone {
            series_ref: d.uvarint()?,
            min_time: d.varint()?,
            max_time: d.varint()?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn empty_file_is_nine_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(write(tmp.path(), &[]).unwrap(), 9);
        let raw = fs::read(tmp.path().join("tombstones")).unwrap();
        assert_eq!(raw, [0x01, 0x30, 0xBA, 0x30, 0x01, 0, 0, 0, 0]);
        assert!(read(tmp.path()).unwrap().is_empty());
    }

    #[test]
    fn missing_file_is_empty() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(read(tmp.path()).unwrap().is_empty());
    }

    #[test]
    fn round_trip_and_crc() {
        let stones = [
            Tombstone {
                series_ref: 3,
                min_time: -10,
                max_time: 20,
            },
            Tombstone {
                series_ref: 1 << 40,
                min_time: 0,
                max_time: i64::MAX,
            },
        ];
        let mut raw = encode(&stones);
        assert_eq!(decode(&raw).unwrap(), stones);
        raw[6] ^= 1;
        assert!(matches!(decode(&raw), Err(Error::Checksum { .. })));
        assert!(decode(&raw[..6]).is_err());
    }
}
