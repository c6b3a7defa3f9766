//! gRPC's `snappy` message compression as Thanos implements it (`pkg/extgrpc/snappy`): each
//! message whose frame has the compressed flag set is a snappy *framed* stream (the format of
//! klauspost/compress' `snappy.Writer`), announced by the `grpc-encoding: snappy` header. tonic
//! has no such codec, so requests are decompressed before tonic sees them and forwards are framed
//! here.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tonic::Status;

/// The `grpc-encoding` value of Thanos' compressor.
pub const ENCODING: &str = "snappy";

/// One gRPC length-prefixed message: compressed flag, big-endian length, payload.
const FRAME_HEADER: usize = 5;

/// The first chunk of every framed stream (Google's `framing_format.txt`).
const STREAM_IDENTIFIER: &[u8] = b"\xff\x06\x00\x00sNaPpY";
/// Chunk types: a snappy block, stored bytes, and the stream identifier.
const COMPRESSED: u8 = 0x00;
const UNCOMPRESSED: u8 = 0x01;
const IDENTIFIER: u8 = 0xff;
/// Most uncompressed bytes one chunk may hold.
const MAX_BLOCK: usize = 65536;

/// Rewrites the gRPC frames of `body` so none is compressed: a flagged frame's payload is
/// decompressed, at most `max_message` bytes.
pub fn decompress_frames(mut body: Bytes, max_message: usize) -> Result<Bytes, Status> {
    let mut out = BytesMut::with_capacity(body.len() * 2);
    while body.has_remaining() {
        let (compressed, payload) = next_frame(&mut body)?;
        let message = match compressed {
            false => payload,
            true => decompress(&payload, max_message, Vec::new())?,
        };
        out.put_u8(0);
        out.put_u32(message.len() as u32);
        out.put_slice(&message);
    }
    Ok(out.freeze())
}

/// The message of a body that is one gRPC frame, decompressed if it is compressed; `None` for a
/// body of several frames (a stream), which [`decompress_frames`] handles. A compressed message
/// is decoded into the buffer `buffer` gives.
pub fn single_message(
    mut body: Bytes,
    max_message: usize,
    buffer: impl FnOnce() -> Vec<u8>,
) -> Result<Option<Bytes>, Status> {
    let (compressed, payload) = next_frame(&mut body)?;
    if body.has_remaining() {
        return Ok(None);
    }
    Ok(Some(match compressed {
        false => payload,
        true => decompress(&payload, max_message, buffer())?,
    }))
}

/// Splits the next gRPC frame off `body`: whether it is compressed, and its payload.
fn next_frame(body: &mut Bytes) -> Result<(bool, Bytes), Status> {
    if body.len() < FRAME_HEADER {
        return Err(Status::invalid_argument("truncated gRPC frame header"));
    }
    let compressed = match body.get_u8() {
        0 => false,
        1 => true,
        flag => {
            return Err(Status::invalid_argument(format!(
                "unknown gRPC compressed flag {flag}"
            )));
        }
    };
    let len = body.get_u32() as usize;
    if len > body.len() {
        return Err(Status::invalid_argument("truncated gRPC message"));
    }
    Ok((compressed, body.split_to(len)))
}

/// The chunks of a framed stream as `(type, body)`; the stream identifier must come first.
fn chunks(stream: &[u8]) -> impl Iterator<Item = Result<(u8, &[u8]), Status>> {
    let mut rest = stream;
    let mut first = true;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() < 4 {
            return Some(Err(invalid("truncated chunk header")));
        }
        let kind = rest[0];
        let len = u32::from_le_bytes([rest[1], rest[2], rest[3], 0]) as usize;
        if rest.len() < 4 + len {
            rest = &[];
            return Some(Err(invalid("truncated chunk")));
        }
        let body = &rest[4..4 + len];
        rest = &rest[4 + len..];
        if std::mem::take(&mut first) && (kind != IDENTIFIER || body != &STREAM_IDENTIFIER[4..]) {
            rest = &[];
            return Some(Err(invalid(
                "the stream does not start with its identifier",
            )));
        }
        Some(Ok((kind, body)))
    })
}

fn invalid(what: &str) -> Status {
    Status::invalid_argument(format!("snappy-compressed gRPC message: {what}"))
}

/// The masked CRC-32C a chunk stores of its uncompressed bytes.
fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// The snappy framed stream `payload` decoded into `out`, refused beyond `max_message` bytes.
/// The chunk headers are read first, so `out` is sized once and each block decodes straight
/// into it; of a reused `out`, only bytes it never held are zeroed (every other one is
/// overwritten).
fn decompress(payload: &[u8], max_message: usize, mut out: Vec<u8>) -> Result<Bytes, Status> {
    let mut total = 0usize;
    for chunk in chunks(payload) {
        let (kind, body) = chunk?;
        let len = match kind {
            COMPRESSED if body.len() >= 4 => {
                snap::raw::decompress_len(&body[4..]).map_err(|e| invalid(&e.to_string()))?
            }
            UNCOMPRESSED if body.len() >= 4 => body.len() - 4,
            COMPRESSED | UNCOMPRESSED => return Err(invalid("chunk without checksum")),
            IDENTIFIER if body == &STREAM_IDENTIFIER[4..] => 0,
            0x02..=0x7f | IDENTIFIER => return Err(invalid("unskippable chunk")),
            _ => 0,
        };
        if len > MAX_BLOCK {
            return Err(invalid("chunk larger than 64 KiB"));
        }
        total += len;
        if total > max_message {
            return Err(Status::resource_exhausted(format!(
                "decompressed gRPC message larger than {max_message} bytes"
            )));
        }
    }
    out.resize(total, 0);
    let mut decoder = snap::raw::Decoder::new();
    let mut start = 0;
    for chunk in chunks(payload) {
        let (kind, body) = chunk?;
        let (crc, data) = match kind {
            COMPRESSED | UNCOMPRESSED => (
                u32::from_le_bytes(body[..4].try_into().unwrap()),
                &body[4..],
            ),
            _ => continue,
        };
        let end = if kind == COMPRESSED {
            let len = snap::raw::decompress_len(data).map_err(|e| invalid(&e.to_string()))?;
            let n = decoder
                .decompress(data, &mut out[start..start + len])
                .map_err(|e| invalid(&e.to_string()))?;
            start + n
        } else {
            out[start..start + data.len()].copy_from_slice(data);
            start + data.len()
        };
        if masked_crc(&out[start..end]) != crc {
            return Err(invalid("checksum mismatch"));
        }
        start = end;
    }
    // A block that decoded shorter than it announced leaves stale bytes past `start`.
    out.truncate(start);
    Ok(out.into())
}

/// One gRPC frame holding `message` compressed as Thanos' snappy compressor writes it: a framed
/// stream of snappy blocks of 64 KiB, each stored as is when it would not shrink by an eighth.
pub fn compressed_frame(message: &[u8]) -> Bytes {
    let mut out =
        Vec::with_capacity(FRAME_HEADER + STREAM_IDENTIFIER.len() + message.len() / 2 + 64);
    out.extend_from_slice(&[1, 0, 0, 0, 0]);
    out.extend_from_slice(STREAM_IDENTIFIER);
    let mut encoder = snap::raw::Encoder::new();
    let mut block = vec![0; snap::raw::max_compress_len(MAX_BLOCK)];
    for data in message.chunks(MAX_BLOCK) {
        let n = encoder
            .compress(data, &mut block)
            .expect("the block buffer fits any 64 KiB input");
        let (kind, body) = match n < data.len() - data.len() / 8 {
            true => (COMPRESSED, &block[..n]),
            false => (UNCOMPRESSED, data),
        };
        out.push(kind);
        out.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes()[..3]);
        out.extend_from_slice(&masked_crc(data).to_le_bytes());
        out.extend_from_slice(body);
    }
    let len = (out.len() - FRAME_HEADER) as u32;
    out[1..FRAME_HEADER].copy_from_slice(&len.to_be_bytes());
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_frames_decompress_to_plain_ones() {
        let message = b"a forwarded write request, repeated repeated repeated".repeat(100);
        let frame = compressed_frame(&message);
        assert_eq!(frame[0], 1);
        assert!(frame.len() < message.len() / 4, "{} bytes", frame.len());
        // The payload is a snappy framed stream: it starts with the stream identifier chunk.
        assert_eq!(&frame[5..15], b"\xff\x06\x00\x00sNaPpY");
        let plain = decompress_frames(frame, 1 << 20).unwrap();
        assert_eq!(plain[0], 0);
        assert_eq!(
            u32::from_be_bytes(plain[1..5].try_into().unwrap()) as usize,
            message.len()
        );
        assert_eq!(&plain[5..], &message[..]);
    }

    /// 200 KiB: compressible text, then bytes snappy cannot shrink (stored chunks).
    fn mixed_message() -> Vec<u8> {
        let mut m = b"up{job=\"node\",instance=\"10.0.0.1:9100\"} ".repeat(2500);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        m.extend((0..100_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }));
        m
    }

    #[test]
    fn frames_agree_with_the_reference_framed_codec_both_ways() {
        use std::io::{Read, Write};
        let message = mixed_message();
        let ours = compressed_frame(&message);
        let mut back = Vec::new();
        snap::read::FrameDecoder::new(&ours[5..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, message);
        // Both chunk types were written.
        let kinds: Vec<u8> = chunks(&ours[5..]).map(|c| c.unwrap().0).collect();
        assert!(
            kinds.contains(&COMPRESSED) && kinds.contains(&UNCOMPRESSED),
            "{kinds:?}"
        );

        let mut reference = snap::write::FrameEncoder::new(Vec::new());
        reference.write_all(&message).unwrap();
        let reference = reference.into_inner().unwrap();
        let mut frame = vec![1];
        frame.extend_from_slice(&(reference.len() as u32).to_be_bytes());
        frame.extend_from_slice(&reference);
        let plain = single_message(Bytes::from(frame.clone()), 1 << 20, Vec::new)
            .unwrap()
            .unwrap();
        assert_eq!(&plain[..], &message[..]);
        // Into reused buffers holding stale bytes, longer and shorter than the message.
        for stale in [message.len() * 2, message.len() / 3] {
            let plain = single_message(Bytes::from(frame.clone()), 1 << 20, || vec![0xaa; stale])
                .unwrap()
                .unwrap();
            assert_eq!(&plain[..], &message[..], "stale buffer of {stale} bytes");
        }
    }

    #[test]
    fn corrupt_streams_are_refused() {
        let frame = compressed_frame(&mixed_message());
        // A flipped byte in the last chunk's data: its checksum no longer matches.
        let mut flipped = frame.to_vec();
        *flipped.last_mut().unwrap() ^= 1;
        let err = single_message(Bytes::from(flipped), 1 << 20, Vec::new).unwrap_err();
        assert!(err.message().contains("checksum"), "{err:?}");
        // No stream identifier first.
        let mut headless = vec![1, 0, 0, 0, 0];
        headless.extend_from_slice(&frame[5 + STREAM_IDENTIFIER.len()..]);
        let len = (headless.len() - 5) as u32;
        headless[1..5].copy_from_slice(&len.to_be_bytes());
        assert!(single_message(Bytes::from(headless), 1 << 20, Vec::new).is_err());
        // A stored chunk larger than a block.
        let mut big = vec![1, 0, 0, 0, 0];
        big.extend_from_slice(STREAM_IDENTIFIER);
        let data = vec![7u8; MAX_BLOCK + 1];
        big.push(UNCOMPRESSED);
        big.extend_from_slice(&((data.len() + 4) as u32).to_le_bytes()[..3]);
        big.extend_from_slice(&masked_crc(&data).to_le_bytes());
        big.extend_from_slice(&data);
        let len = (big.len() - 5) as u32;
        big[1..5].copy_from_slice(&len.to_be_bytes());
        assert!(single_message(Bytes::from(big), 1 << 20, Vec::new).is_err());
    }

    #[test]
    fn bombs_truncation_and_garbage_are_refused() {
        let big = vec![0u8; 1 << 20];
        let err = decompress_frames(compressed_frame(&big), 1000).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        let frame = compressed_frame(b"hello");
        assert!(decompress_frames(frame.slice(..frame.len() - 1), 1000).is_err());
        assert!(decompress_frames(Bytes::from_static(&[1, 0, 0, 0, 3, 1, 2, 3]), 1000).is_err());
        assert!(decompress_frames(Bytes::from_static(&[7, 0, 0, 0, 0]), 1000).is_err());
        assert!(decompress_frames(Bytes::from_static(&[0, 0]), 1000).is_err());
    }
}
