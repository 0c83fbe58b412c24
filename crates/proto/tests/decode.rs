//! Property tests: whatever bytes arrive, decoding returns a value or an
//! error, never panics, and valid messages survive a round trip however the
//! stream is cut.

use bytes::BytesMut;
use chatdrop_proto::{decode, encode_frame, ClientMsg, FrameCodec, ServerMsg, Target};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

/// Fixed seed and no regression files: the same cases on every run.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x00c4_a7d2),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<ClientMsg>(&bytes);
        let _ = decode::<ServerMsg>(&bytes);
    }

    #[test]
    fn random_streams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&bytes[..]);
        // At most one frame per 4 bytes; each step consumes or stops.
        for _ in 0..=bytes.len() / 4 {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => { let _ = decode::<ClientMsg>(&frame); }
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn says_round_trip(user in "[a-z]{1,32}", text in "\\PC{0,200}", split in 0usize..300) {
        let msg = ClientMsg::Say { to: Target::User(user), room: None, text };
        let frame = encode_frame(&msg).unwrap();
        let cut = split.min(frame.len());
        let mut codec = FrameCodec::new(16 * 1024);
        let mut buf = BytesMut::from(&frame[..cut]);
        let payload = match codec.decode(&mut buf).unwrap() {
            Some(p) => p,
            None => {
                buf.extend_from_slice(&frame[cut..]);
                codec.decode(&mut buf).unwrap().unwrap()
            }
        };
        prop_assert_eq!(decode::<ClientMsg>(&payload).unwrap(), msg);
    }
}
