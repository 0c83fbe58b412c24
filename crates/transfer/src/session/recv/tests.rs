//! The receiving session in simulated time. Each test names, in its
//! comment, the break in `recv.rs` it was checked to fail with.

use super::*;
use crate::session::sim::{
    at, deliver, fetching, ms, quiet, receiver_sends, sender_sends, serving, Sent, Wire, RECEIVER,
    SENDER, STRANGER,
};
use crate::session::{SendSession, MAX_MSS, MIN_MSS};

const ISN: u32 = 7;
const START: Sent = Sent::Start {
    isn: ISN,
    resume_from: 0,
    proved: false,
};
const PROVED: Sent = Sent::Start {
    isn: ISN,
    resume_from: 0,
    proved: true,
};

/// A whole file of one part (no outline) of `size` bytes.
fn all_of(size: u64) -> Span {
    Span {
        from: 0,
        to: size,
        outline: 0,
    }
}

fn session(cap: u32, size: u64, t0: Instant) -> RecvSession {
    RecvSession::new(SENDER, &fetching(cap), ISN, all_of(size), t0)
}

/// A session of `size` bytes whose `Start` went at `t0` and that took the
/// sender's `Begin` for packets of `cap` bytes then.
fn begun(cap: u32, size: u64, t0: Instant) -> RecvSession {
    let mut rx = session(cap, size, t0);
    assert_eq!(sends(&mut rx, t0), [START]);
    rx.handle(t0, SENDER, Msg::Begin { mss: cap });
    let opened = Event::Started {
        peer: SENDER,
        isn: ISN,
        resume_from: 0,
        to: size,
    };
    assert_eq!(rx.poll_event(), Some(opened));
    assert_eq!(rx.poll_event(), Some(Event::Began { mss: cap }));
    rx
}

/// Where `rx` sends what, at `now`.
fn sends_to(rx: &mut RecvSession, now: Instant) -> Vec<(SocketAddr, Sent)> {
    std::iter::from_fn(|| rx.poll_msg(now))
        .map(|(to, m)| (to, Wire::of(&m).sent()))
        .collect()
}

#[test]
fn starts_go_to_every_candidate_until_one_answers_then_to_it_alone() {
    // The sender may be at any of three addresses; the second answers.
    // Checked to fail with the peer not fixed by the first frame (the
    // next round goes to all three again).
    let t0 = Instant::now();
    let near: SocketAddr = "192.168.1.9:4000".parse().unwrap();
    let candidates = [SENDER, near, STRANGER];
    let mut rx =
        RecvSession::with_candidates(&candidates, &fetching(MAX_MSS), ISN, all_of(100), t0);
    let first: Vec<_> = candidates.iter().map(|c| (*c, START)).collect();
    assert_eq!(sends_to(&mut rx, t0), first);
    assert_eq!(rx.peer(), None);
    let token = [3; TOKEN_LEN];
    assert_eq!(rx.handle(t0, near, Msg::Challenge { token }), None);
    assert_eq!(rx.peer(), Some(near));
    assert_eq!(sends_to(&mut rx, t0), [(near, PROVED)]);
    assert_eq!(sends_to(&mut rx, at(t0, 250)), [(near, PROVED)]);
    // Frames from the other candidates count for nothing now.
    assert_eq!(rx.handle(t0, SENDER, Msg::Begin { mss: 1000 }), None);
    assert!(!rx.began());
}

#[test]
fn a_punch_from_a_new_address_is_answered_there_at_once() {
    // The sender's NAT gave its socket a port nobody listed: its punch
    // shows it, and a `Start` goes back there at once and with every
    // round after. Checked to fail with punches ignored.
    let t0 = Instant::now();
    let mut rx = session(MAX_MSS, 100, t0);
    assert_eq!(sends_to(&mut rx, t0), [(SENDER, START)]);
    let mapped: SocketAddr = "203.0.113.7:61000".parse().unwrap();
    assert_eq!(rx.handle(at(t0, 10), mapped, Msg::Punch), None);
    assert_eq!(rx.peer(), None, "a punch proves nothing about our Starts");
    assert_eq!(sends_to(&mut rx, at(t0, 10)), [(mapped, START)]);
    assert_eq!(
        sends_to(&mut rx, at(t0, 250)),
        [(SENDER, START), (mapped, START)]
    );
    // Punches are bounded: past the candidates' cap, new addresses are
    // not answered.
    for i in 0..MAX_TRIED as u16 {
        let other = SocketAddr::new(mapped.ip(), 1000 + i);
        rx.handle(at(t0, 300), other, Msg::Punch);
    }
    let answered = sends_to(&mut rx, at(t0, 300)).len();
    assert_eq!(answered, MAX_TRIED - 2, "up to the cap of candidates");
}

#[test]
fn only_the_first_candidate_is_tried_after_three_seconds() {
    // Checked to fail with every candidate tried until the give-up.
    let t0 = Instant::now();
    let candidates = [SENDER, STRANGER];
    let mut rx =
        RecvSession::with_candidates(&candidates, &fetching(MAX_MSS), ISN, all_of(100), t0);
    let mut last = Vec::new();
    for round in 0..20 {
        last = sends_to(&mut rx, at(t0, round * 250));
    }
    assert_eq!(last, [(SENDER, START)]);
}

#[test]
fn a_relay_learned_late_is_tried_first_and_at_once() {
    // The direct candidates went unanswered for longer than their rounds;
    // the relay's address comes: a `Start` goes there now, and it stays
    // tried with the first candidate. Checked to fail with the relay
    // added at the end of the list (never tried after the rounds).
    let t0 = Instant::now();
    let candidates = [SENDER, STRANGER];
    let mut rx =
        RecvSession::with_candidates(&candidates, &fetching(MAX_MSS), ISN, all_of(100), t0);
    for round in 0..20 {
        sends_to(&mut rx, at(t0, round * 250));
    }
    let relay: SocketAddr = "198.51.100.1:7777".parse().unwrap();
    rx.add_candidate(at(t0, 5_000), relay);
    let now = sends_to(&mut rx, at(t0, 5_000));
    assert_eq!(now, [(relay, START), (SENDER, START), (STRANGER, START)]);
    let mut last = Vec::new();
    for round in 21..60 {
        last = sends_to(&mut rx, at(t0, round * 250));
    }
    assert_eq!(last, [(relay, START)]);
    // Once the sender answered, a late address changes nothing.
    let token = [3; TOKEN_LEN];
    rx.handle(at(t0, 15_000), relay, Msg::Challenge { token });
    rx.add_candidate(at(t0, 15_000), STRANGER);
    assert_eq!(sends_to(&mut rx, at(t0, 15_000)), [(relay, PROVED)]);
}

/// What `rx` sends at `now`, in short.
fn sends(rx: &mut RecvSession, now: Instant) -> Vec<Sent> {
    receiver_sends(rx, now).iter().map(Wire::sent).collect()
}

/// The data packet numbered `ISN + index`, of `len` bytes of `index`.
fn data(index: u32, len: usize) -> Wire {
    let payload = vec![index as u8; len];
    Wire::of(&Msg::Arq(Frame::Data {
        seq: ISN.wrapping_add(index),
        payload: &payload,
    }))
}

fn silent(end: Option<Result<(), TransferError>>) -> String {
    match end {
        Some(Err(TransferError::PeerSilent(why))) => why,
        other => panic!("not a silent peer: {other:?}"),
    }
}

#[test]
fn a_lost_start_is_repeated_and_the_sender_begins_on_the_next() {
    // The first `Start` is lost; the second, 250 ms later, reaches the
    // sender, which begins with its numbers; its `Begin` and data reach
    // the receiver. Checked to fail with the repeat delayed past the
    // give-up (`next_start` 250 s on).
    let t0 = Instant::now();
    let mut rx = session(MIN_MSS, 2_000, t0);
    let mut tx = SendSession::new(&serving(MIN_MSS, None), 2_000, 0, t0, [5; 32]);
    assert_eq!(sends(&mut rx, t0), [START], "lost on the way");
    assert_eq!(rx.poll_timeout(), Some(at(t0, 250)));
    rx.handle_timeout(at(t0, 250));
    let again = receiver_sends(&mut rx, at(t0, 250));
    assert_eq!(again.iter().map(Wire::sent).collect::<Vec<_>>(), [START]);
    tx.handle(at(t0, 260), RECEIVER, again[0].msg());
    // The sender challenges the address; the receiver proves it at once.
    let challenge = sender_sends(&mut tx, at(t0, 260), None, usize::MAX);
    assert_eq!(
        challenge.iter().map(Wire::sent).collect::<Vec<_>>(),
        [Sent::Challenge]
    );
    rx.handle(at(t0, 265), SENDER, challenge[0].msg());
    let proof = receiver_sends(&mut rx, at(t0, 265));
    assert_eq!(proof.iter().map(Wire::sent).collect::<Vec<_>>(), [PROVED]);
    tx.handle(at(t0, 265), RECEIVER, proof[0].msg());
    let started = Event::Started {
        peer: RECEIVER,
        isn: ISN,
        resume_from: 0,
        to: 2_000,
    };
    assert_eq!(tx.poll_event(), Some(started));
    let mut file = vec![0u8; 2_000];
    for wire in sender_sends(&mut tx, at(t0, 265), None, usize::MAX) {
        deliver(&mut rx, at(t0, 270), &wire, &mut file);
    }
    assert!(rx.began());
    assert_eq!(rx.contiguous_bytes(), 2_000);
    assert_eq!(sends(&mut rx, at(t0, 270)), [Sent::Ack { cum: ISN + 2 }]);
}

#[test]
fn probes_are_answered_up_to_the_cap_only() {
    // Under a cap of 8,946 bytes: no answer to the 64 KiB probe (data that
    // large would be refused), one per size to the others, and the same
    // while data flows (the sender checks that the path still carries its
    // size). Checked to fail with the `size <= cap` guard removed, and
    // with probes answered only while opening.
    let t0 = Instant::now();
    let mut rx = session(8946, 100_000, t0);
    for size in [MAX_MSS, 8946, 1446, 1446] {
        rx.handle(t0, SENDER, Msg::Probe { size });
    }
    rx.handle(t0, STRANGER, Msg::Probe { size: 1200 });
    let answers = [START, Sent::ProbeAck(8946), Sent::ProbeAck(1446)];
    assert_eq!(sends(&mut rx, t0), answers);
    rx.handle(at(t0, 10), SENDER, Msg::Begin { mss: 1446 });
    rx.handle(at(t0, 10), SENDER, Msg::Probe { size: 1446 });
    rx.handle(at(t0, 10), SENDER, Msg::Probe { size: MAX_MSS });
    assert_eq!(sends(&mut rx, at(t0, 10)), [Sent::ProbeAck(1446)]);
}

#[test]
fn a_resize_is_taken_once_and_only_for_a_later_run() {
    // Three 1000-byte packets of 10,000 arrive, the second lost; the
    // sender goes on in 500-byte packets from 1000 (what it saw
    // acknowledged), numbered right after its first run's ten. Checked to
    // fail with any `isn` taken (a copy would restart the run), with only
    // the very next run's `isn` taken, with a
    // `from` past what arrived taken (a gap no one sends), and with the
    // contiguous count following the new run back to `from`.
    let t0 = Instant::now();
    let mut rx = begun(1000, 10_000, t0);
    let mut file = vec![0u8; 10_000];
    for seq in [ISN, ISN + 2] {
        let payload = [1u8; 1000];
        let data = Msg::Arq(Frame::Data {
            seq,
            payload: &payload,
        });
        deliver(&mut rx, t0, &Wire::of(&data), &mut file);
    }
    assert_eq!(rx.contiguous_bytes(), 1000);
    let next = ISN + 10;
    // Numbers of this run, too large, or past what arrived: nothing.
    for (mss, isn, from) in [(500, ISN + 3, 1000), (2000, next, 1000), (500, next, 1001)] {
        rx.handle(at(t0, 5), SENDER, Msg::Resize { mss, isn, from });
        assert_eq!(rx.resizes(), 0, "{mss} {isn} {from}");
    }
    let resize = Msg::Resize {
        mss: 500,
        isn: next,
        from: 1000,
    };
    rx.handle(at(t0, 10), SENDER, resize.clone());
    assert_eq!(rx.poll_event(), Some(Event::Resized { mss: 500 }));
    assert_eq!(rx.resizes(), 1);
    rx.handle(at(t0, 11), SENDER, resize);
    assert_eq!(rx.resizes(), 1, "a copy changes nothing");
    // The old run's packets are the past now, the new run's are taken.
    let old = [1u8; 1000];
    let stale = Msg::Arq(Frame::Data {
        seq: ISN + 1,
        payload: &old,
    });
    assert_eq!(
        deliver(&mut rx, at(t0, 12), &Wire::of(&stale), &mut file),
        None
    );
    let fresh = [2u8; 500];
    let data = Msg::Arq(Frame::Data {
        seq: next + 1,
        payload: &fresh,
    });
    assert_eq!(
        deliver(&mut rx, at(t0, 12), &Wire::of(&data), &mut file),
        Some(1500)
    );
    assert_eq!(rx.contiguous_bytes(), 1000, "still a gap at 1000..1500");
    let data = Msg::Arq(Frame::Data {
        seq: next,
        payload: &fresh,
    });
    assert_eq!(
        deliver(&mut rx, at(t0, 13), &Wire::of(&data), &mut file),
        Some(1000)
    );
    assert_eq!(rx.contiguous_bytes(), 2000);
    assert_eq!(sends(&mut rx, at(t0, 13)), [Sent::Ack { cum: next + 2 }]);
    // The sender changed again, twice, and the first of the two was
    // lost: the later run is taken all the same (found by fuzzing: a
    // receiver that waited for the lost one ignored the sender for good).
    // This run has 18 packets; the lost one's 9 came after them.
    let lost_run = next + 18;
    let resize = Msg::Resize {
        mss: 1000,
        isn: lost_run + 9,
        from: 2000,
    };
    rx.handle(at(t0, 20), SENDER, resize);
    assert_eq!(rx.poll_event(), Some(Event::Resized { mss: 1000 }));
    assert_eq!(rx.resizes(), 2);
    let old = Msg::Resize {
        mss: 500,
        isn: next,
        from: 1000,
    };
    rx.handle(at(t0, 21), SENDER, old);
    assert_eq!(rx.resizes(), 2, "an older run's Resize changes nothing");
}

#[test]
fn a_begin_outside_the_cap_is_refused() {
    // Packet sizes of 0 and of one more than the offer allowed end the
    // session with an error saying so; the cap itself is taken. Checked
    // to fail with the range check in `begin` removed.
    let t0 = Instant::now();
    let cap = 1446;
    for mss in [0, cap + 1] {
        let mut rx = session(cap, 100_000, t0);
        rx.handle(t0, STRANGER, Msg::Begin { mss: cap });
        assert!(!rx.began(), "a Begin from elsewhere is no Begin");
        rx.handle(t0, SENDER, Msg::Begin { mss });
        match rx.poll_end() {
            Some(Err(TransferError::Invalid(why))) => {
                assert_eq!(
                    why,
                    format!("the sender chose {mss}-byte packets, outside 1..={cap}")
                );
            }
            other => panic!("mss {mss}: {other:?}"),
        }
        assert!(!rx.began());
        assert_eq!(sends(&mut rx, t0), []);
    }
    let rx = begun(cap, 100_000, t0);
    assert!(rx.began());
}

#[test]
fn a_sender_silent_before_begin_is_peer_silent() {
    // `Start` every 250 ms, then, at the idle timeout (ten seconds), the
    // end. Checked to fail with the `give_up` deadline never acted on.
    let t0 = Instant::now();
    let mut rx = session(MIN_MSS, 100_000, t0);
    let mut now = t0;
    let sent = quiet(&mut rx, t0, &mut now, at(t0, 60_000));
    let starts: Vec<_> = (0..40).map(|i| (i * 250, START)).collect();
    assert_eq!(sent, starts);
    assert_eq!(ms(t0, now), 10_000);
    assert_eq!(silent(rx.poll_end()), "no answer from the peer for 10s");
}

#[test]
fn a_sender_silent_during_data_is_peer_silent() {
    // One packet of three arrives, is acknowledged, and nothing more: the
    // acknowledgement goes again 300 ms later, then at doubling waits (up
    // to 2.4 s), in case this end's address changed; the session ends the
    // idle timeout after that packet. Checked to fail with the ARQ's
    // failure not looked at in `handle_timeout`, and with no
    // acknowledgement sent again.
    let t0 = Instant::now();
    let mut rx = begun(MIN_MSS, 3_000, t0);
    let mut file = vec![0u8; 3_000];
    assert_eq!(
        deliver(&mut rx, at(t0, 20), &data(0, 1_200), &mut file),
        Some(0)
    );
    let mut now = at(t0, 20);
    let sent = quiet(&mut rx, t0, &mut now, at(t0, 60_000));
    let acks: Vec<_> = [20, 320, 920, 2_120, 4_520, 6_920, 9_320]
        .into_iter()
        .map(|t| (t, Sent::Ack { cum: ISN + 1 }))
        .collect();
    assert_eq!(sent, acks);
    assert_eq!(ms(t0, now), 10_020);
    assert_eq!(silent(rx.poll_end()), "no answer from the peer for 10s");
    assert_eq!(rx.contiguous_bytes(), 1_200, "what came is kept");
}

#[test]
fn a_sender_that_moved_is_followed_by_its_fresh_data() {
    // The sender's NAT gave its socket a new mapping mid-transfer: its
    // next data comes from there, and the acknowledgements follow it.
    // Other frames from a new address move nothing. Checked to fail with
    // frames from other addresses dropped as before (the ack went to the
    // old address).
    let t0 = Instant::now();
    let mut rx = begun(MIN_MSS, 3_600, t0);
    let mut file = vec![0u8; 3_600];
    assert_eq!(
        deliver(&mut rx, at(t0, 20), &data(0, 1_200), &mut file),
        Some(0)
    );
    assert_eq!(
        sends_to(&mut rx, at(t0, 20)),
        [(SENDER, Sent::Ack { cum: ISN + 1 })]
    );
    let moved: SocketAddr = "203.0.113.9:61001".parse().unwrap();
    let begin = Wire::of(&Msg::Begin { mss: MIN_MSS });
    assert_eq!(rx.handle(at(t0, 30), moved, begin.msg()), None);
    assert_eq!(rx.peer(), Some(SENDER), "not by a Begin");
    let second = data(1, 1_200);
    let write = rx.handle(at(t0, 40), moved, second.msg());
    assert_eq!(write.map(|w| w.offset), Some(1_200));
    assert_eq!(rx.peer(), Some(moved));
    assert_eq!(rx.poll_event(), Some(Event::Moved { peer: moved }));
    assert_eq!(
        sends_to(&mut rx, at(t0, 40)),
        [(moved, Sent::Ack { cum: ISN + 2 })]
    );
}

#[test]
fn an_abort_ends_the_session_in_the_opening_and_in_data() {
    // An `Abort` from elsewhere changes nothing; the sender's ends the
    // session with its reason, before `Begin` as after. Checked to fail
    // with `Abort` taken only once data flows (the opening case).
    let t0 = Instant::now();
    let opening = session(MIN_MSS, 3_000, t0);
    let mut receiving = begun(MIN_MSS, 3_000, t0);
    let mut file = vec![0u8; 3_000];
    deliver(&mut receiving, at(t0, 10), &data(0, 1_200), &mut file);
    for mut rx in [opening, receiving] {
        rx.handle(at(t0, 20), STRANGER, Msg::Arq(Frame::Abort("not me")));
        assert!(rx.poll_end().is_none());
        rx.handle(at(t0, 30), SENDER, Msg::Arq(Frame::Abort("file changed")));
        match rx.poll_end() {
            Some(Err(TransferError::Aborted(why))) => assert_eq!(why, "file changed"),
            other => panic!("{other:?}"),
        }
        assert_eq!(sends(&mut rx, at(t0, 30)), []);
        assert_eq!(rx.poll_timeout(), None);
    }
}

#[test]
fn done_ends_the_session_once_every_byte_is_here() {
    // A `Done` before the last byte is ignored; after it, the session ends
    // at once rather than after the linger. Checked to fail with `Done`
    // taken in any phase, and with it ignored when complete.
    let t0 = Instant::now();
    let mut rx = begun(MIN_MSS, 2_000, t0);
    let mut file = vec![0u8; 2_000];
    rx.handle(at(t0, 5), SENDER, Msg::Arq(Frame::Done));
    assert!(rx.poll_end().is_none(), "data is still to come");
    deliver(&mut rx, at(t0, 10), &data(0, 1_200), &mut file);
    deliver(&mut rx, at(t0, 10), &data(1, 800), &mut file);
    assert_eq!(sends(&mut rx, at(t0, 10)), [Sent::Ack { cum: ISN + 2 }]);
    rx.handle(at(t0, 40), SENDER, Msg::Arq(Frame::Done));
    assert!(matches!(rx.poll_end(), Some(Ok(()))));
    assert_eq!(rx.packets(), 2);
    assert!(file[..1_200].iter().all(|&b| b == 0) && file[1_200..].iter().all(|&b| b == 1));
}

#[test]
fn without_done_the_receiver_lingers_answering_copies() {
    // The last packet arrives at 30 ms and `Done` is lost: a copy of the
    // last packet (the sender missed its ack) is acknowledged again at
    // 500 ms, and the session ends well one second after the last byte.
    // Checked to fail with `LINGER` of zero, and with `Lingering` never
    // ending in `handle_timeout`.
    let t0 = Instant::now();
    let mut rx = begun(MIN_MSS, 2_000, t0);
    let mut file = vec![0u8; 2_000];
    deliver(&mut rx, at(t0, 20), &data(0, 1_200), &mut file);
    deliver(&mut rx, at(t0, 30), &data(1, 800), &mut file);
    let mut now = at(t0, 30);
    assert_eq!(
        quiet(&mut rx, t0, &mut now, at(t0, 500)),
        [(30, Sent::Ack { cum: ISN + 2 })]
    );
    assert!(rx.poll_end().is_none());
    assert_eq!(
        deliver(&mut rx, at(t0, 500), &data(1, 800), &mut file),
        None,
        "a copy"
    );
    now = at(t0, 500);
    let sent = quiet(&mut rx, t0, &mut now, at(t0, 1_029));
    assert_eq!(sent, [(500, Sent::Ack { cum: ISN + 2 })]);
    assert!(rx.poll_end().is_none(), "still lingering");
    assert_eq!(quiet(&mut rx, t0, &mut now, at(t0, 5_000)), []);
    assert_eq!(ms(t0, now), 1_030);
    assert!(matches!(rx.poll_end(), Some(Ok(()))));
}

#[test]
fn a_challenge_while_receiving_is_answered_with_a_proving_start() {
    // The sender saw this end at a new address and challenged it there:
    // a `Start` echoing the token goes at once, then acknowledgements as
    // before. Checked to fail with challenges taken in the opening only.
    let t0 = Instant::now();
    let mut rx = begun(MIN_MSS, 10_000, t0);
    let mut file = vec![0u8; 10_000];
    deliver(&mut rx, at(t0, 5), &data(0, 1_200), &mut file);
    assert!(sends(&mut rx, at(t0, 5)).contains(&Sent::Ack { cum: ISN + 1 }));
    rx.handle(
        at(t0, 10),
        SENDER,
        Msg::Challenge {
            token: [4; TOKEN_LEN],
        },
    );
    assert_eq!(sends(&mut rx, at(t0, 10)), [PROVED]);
    deliver(&mut rx, at(t0, 15), &data(1, 1_200), &mut file);
    assert_eq!(sends(&mut rx, at(t0, 15)), [Sent::Ack { cum: ISN + 2 }]);
}
