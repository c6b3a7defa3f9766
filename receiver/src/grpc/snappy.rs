//! gRPC's `snappy` message compression as Thanos implements it (`pkg/extgrpc/snappy`): each
//! message whose frame has the compressed flag set is a snappy *framed* stream (the format of
//! klauspost/compress' `snappy.Writer`), announced by the `grpc-encoding: snappy` header. tonic
//! has no such codec, so requests are decompressed before tonic sees them and forwards are framed
//! here.

use std::io::Read;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tonic::Status;

/// The `grpc-encoding` value of Thanos' compressor.
pub const ENCODING: &str = "snappy";

/// One gRPC length-prefixed message: compressed flag, big-endian length, payload.
const FRAME_HEADER: usize = 5;

/// Rewrites the gRPC frames of `body` so none is compressed: a flagged frame's payload is
/// decompressed, at most `max_message` bytes.
pub fn decompress_frames(mut body: Bytes, max_message: usize) -> Result<Bytes, Status> {
    let mut out = BytesMut::with_capacity(body.len() * 2);
    while body.has_remaining() {
        if body.len() < FRAME_HEADER {
            return Err(Status::invalid_argument("truncated gRPC frame header"));
        }
        let compressed = body.get_u8();
        let len = body.get_u32() as usize;
        if len > body.len() {
            return Err(Status::invalid_argument("truncated gRPC message"));
        }
        let payload = body.split_to(len);
        let message = match compressed {
            0 => payload,
            1 => decompress(&payload, max_message)?,
            flag => {
                return Err(Status::invalid_argument(format!(
                    "unknown gRPC compressed flag {flag}"
                )));
            }
        };
        out.put_u8(0);
        out.put_u32(message.len() as u32);
        out.put_slice(&message);
    }
    Ok(out.freeze())
}

/// The snappy framed stream `payload` decoded, refused beyond `max_message` bytes.
fn decompress(payload: &[u8], max_message: usize) -> Result<Bytes, Status> {
    let mut out = Vec::new();
    snap::read::FrameDecoder::new(payload)
        .take(max_message as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Status::invalid_argument(format!("snappy-compressed gRPC message: {e}")))?;
    if out.len() > max_message {
        return Err(Status::resource_exhausted(format!(
            "decompressed gRPC message larger than {max_message} bytes"
        )));
    }
    Ok(out.into())
}

/// One gRPC frame holding `message` compressed as Thanos' snappy compressor writes it.
pub fn compressed_frame(message: &[u8]) -> Bytes {
    let mut encoder = snap::write::FrameEncoder::new(Vec::with_capacity(message.len() / 2 + 64));
    std::io::Write::write_all(&mut encoder, message).expect("writing to a Vec cannot fail");
    let compressed = encoder
        .into_inner()
        .expect("flushing into a Vec cannot fail");
    let mut frame = BytesMut::with_capacity(FRAME_HEADER + compressed.len());
    frame.put_u8(1);
    frame.put_u32(compressed.len() as u32);
    frame.put_slice(&compressed);
    frame.freeze()
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
