//! Framing: every frame is a 4-byte big-endian payload length followed by the
//! postcard encoding of one message.
//!
//! The length is checked against the receiver's limit before any buffer is
//! reserved for the payload, so a peer that claims a 4 GiB frame costs
//! nothing but its disconnection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::Decoder;

/// Errors of encoding and decoding frames.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The frame's declared length is over the limit.
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    FrameTooLarge {
        /// Declared length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The payload is not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
    /// Reading from the connection failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Decoder of length-prefixed frames with a size limit. Yields payloads; turn
/// them into messages with [`decode`].
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max: usize,
}

impl FrameCodec {
    /// A codec that refuses frames longer than `max` payload bytes.
    pub fn new(max: usize) -> Self {
        FrameCodec { max }
    }

    /// Changes the limit, for a connection that turned out to be a server
    /// link after its first frame.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, ProtoError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max {
            return Err(ProtoError::FrameTooLarge { len, max: self.max });
        }
        if src.len() < 4 + len {
            // The length is within the limit, so reserving for it is safe.
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(len)))
    }
}

/// Decodes one message from a frame payload.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtoError> {
    Ok(postcard::from_bytes(payload)?)
}

/// Encodes one message as a payload, without the length prefix.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtoError> {
    Ok(postcard::to_stdvec(msg)?)
}

/// Encodes one message as a complete frame, length prefix included, ready to
/// be written (and shared between many connections without re-encoding).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Bytes, ProtoError> {
    let payload = postcard::to_stdvec(msg)?;
    let len = u32::try_from(payload.len()).map_err(|_| ProtoError::FrameTooLarge {
        len: payload.len(),
        max: u32::MAX as usize,
    })?;
    let mut buf = BytesMut::with_capacity(4 + payload.len());
    buf.put_u32(len);
    buf.put_slice(&payload);
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientMsg, ServerMsg, Target};

    #[test]
    fn round_trip_through_frames() {
        let msgs = vec![
            ClientMsg::Hello {
                version: 1,
                user: "alice".into(),
                public_key: [7; 32],
            },
            ClientMsg::Say {
                to: Target::User("bob".into()),
                room: None,
                text: "hi ✓".into(),
            },
            ClientMsg::JoinRoom {
                room: "whatsapp".into(),
                password: Some("1234".into()),
            },
        ];
        let mut buf = BytesMut::new();
        for m in &msgs {
            buf.extend_from_slice(&encode_frame(m).unwrap());
        }
        let mut codec = FrameCodec::new(1024);
        for m in &msgs {
            let frame = codec.decode(&mut buf).unwrap().unwrap();
            assert_eq!(&decode::<ClientMsg>(&frame).unwrap(), m);
        }
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn oversized_frame_is_refused_before_allocation() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1, 2][..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            ProtoError::FrameTooLarge {
                len: 0xffff_ffff,
                max: 1024
            }
        ));
        // Nothing was reserved for the claimed 4 GiB.
        assert!(buf.capacity() < 1024 * 1024);
    }

    #[test]
    fn partial_frame_waits_for_more() {
        let frame = encode_frame(&ServerMsg::Pong).unwrap();
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&frame[..frame.len() - 1]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&frame[frame.len() - 1..]);
        let payload = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(decode::<ServerMsg>(&payload).unwrap(), ServerMsg::Pong);
    }

    #[test]
    fn frames_split_anywhere_decode_the_same() {
        // A payload that starts like a large length must not be mistaken for
        // a header when it arrives in pieces.
        let msg = ClientMsg::Say {
            to: Target::All,
            room: Some("lobby".into()),
            text: "x".repeat(5000),
        };
        let frame = encode_frame(&msg).unwrap();
        for cut in [1, 3, 4, 5, 6, 100, frame.len() - 1] {
            let mut codec = FrameCodec::new(16 * 1024);
            let mut buf = BytesMut::from(&frame[..cut]);
            assert!(codec.decode(&mut buf).unwrap().is_none(), "cut at {cut}");
            buf.extend_from_slice(&frame[cut..]);
            let payload = codec.decode(&mut buf).unwrap().unwrap();
            assert_eq!(decode::<ClientMsg>(&payload).unwrap(), msg);
        }
    }

    #[test]
    fn garbage_payload_is_an_error_not_a_panic() {
        for bytes in [&[0xff_u8, 0xff, 0xff][..], &[200], &[8, 2, 0xff]] {
            assert!(decode::<ClientMsg>(bytes).is_err());
        }
    }
}
