//! Link-state records speak for their origin only: a server holding the
//! network key cannot make the others believe another server's links
//! changed.

use chatdrop_proto::link::{LinkMsg, Lsa, ServerId};
use ed25519_dalek::{Signer, SigningKey};

use super::{Identity, NetEvent, Network};
use crate::event::{Effect, LinkId};

/// The neighbour that sends the records (and, below, forges some).
const FROM_B: LinkId = LinkId(1);
/// Another neighbour, to see what is flooded on.
const TO_D: LinkId = LinkId(2);

fn seed(n: u8) -> [u8; 32] {
    [n; 32]
}

fn server(n: u8) -> Identity {
    Identity::new(&seed(n), format!("s{n}"), 1)
}

fn id(n: u8) -> ServerId {
    server(n).id()
}

/// Server `n`'s own record, signed by it.
fn genuine(n: u8, seq: u64, neighbors: &[u8]) -> Lsa {
    server(n).record(seq, neighbors.iter().map(|m| (id(*m), 1)).collect())
}

/// Server 1 linked to 2 (over which 3 is reached) and to 4; returns it with
/// the route to 3 in place.
fn network() -> Network {
    let mut net = Network::new(server(1));
    let mut out = Vec::new();
    net.link_up(0, FROM_B, id(2), "s2".into(), &mut out);
    net.link_up(0, TO_D, id(4), "s4".into(), &mut out);
    for lsa in [
        genuine(2, 1, &[1, 3]),
        genuine(3, 1, &[2]),
        genuine(4, 1, &[1]),
    ] {
        net.link_msg(0, FROM_B, LinkMsg::Lsa(lsa), &mut out);
    }
    assert_eq!(net.topo.route(&id(3)).map(|r| r.next), Some(id(2)));
    net
}

/// Records flooded on to server 4 by the last call.
fn flooded(out: &[Effect]) -> Vec<&Lsa> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Link {
                link: TO_D,
                msg: LinkMsg::Lsa(l),
            } => Some(l),
            _ => None,
        })
        .collect()
}

/// Seen failing with the records' keys and signatures not checked: the
/// forged record cut server 3 off and was flooded on.
#[test]
fn a_forged_record_for_another_server_is_dropped() {
    let mut net = network();
    let b = SigningKey::from_bytes(&seed(2));
    // Server 2 holds the network key and wants 3 cut off: a newer record
    // of 3 with no links.
    let mut claim = genuine(3, 9, &[]);
    let forgeries = {
        // Signed by 2, with 2's key: the key is not 3's.
        let mut own_key = claim.clone();
        own_key.key = b.verifying_key().to_bytes();
        own_key.sig = b.sign(&own_key.signed_bytes()).to_bytes().to_vec();
        // With 3's key, signed by 2.
        let mut wrong_signer = claim.clone();
        wrong_signer.sig = b.sign(&wrong_signer.signed_bytes()).to_bytes().to_vec();
        // 3's genuine signature of an older record, on the new one.
        let mut replayed = claim.clone();
        replayed.sig = genuine(3, 1, &[2]).sig;
        // No signature.
        claim.sig.clear();
        [own_key, wrong_signer, replayed, claim]
    };
    for forged in forgeries {
        let mut out = Vec::new();
        let events = net.link_msg(1, FROM_B, LinkMsg::Lsa(forged.clone()), &mut out);
        assert!(events.is_empty(), "{forged:?}: {events:?}");
        assert!(flooded(&out).is_empty(), "{forged:?} was flooded on");
        assert_eq!(
            net.topo.route(&id(3)).map(|r| r.next),
            Some(id(2)),
            "{forged:?} changed the routes"
        );
        let logged = out.iter().any(|e| {
            matches!(e, Effect::Console(l) if l.contains("dropped a link-state record for server")
                && l.contains("from the link to s2"))
        });
        assert!(logged, "{forged:?} dropped without a word: {out:?}");
    }
    assert!(net.reachable().any(|s| *s == id(3)));
}

/// The same change, signed by server 3 itself, is taken and flooded on.
#[test]
fn a_genuine_record_still_floods() {
    let mut net = network();
    let mut out = Vec::new();
    let events = net.link_msg(1, FROM_B, LinkMsg::Lsa(genuine(3, 2, &[])), &mut out);
    assert_eq!(flooded(&out), vec![&genuine(3, 2, &[])]);
    assert!(events.contains(&NetEvent::Lost { server: id(3) }));
    assert!(net.topo.route(&id(3)).is_none());
    // A copy of it changes nothing and costs no check.
    let mut out = Vec::new();
    net.link_msg(2, FROM_B, LinkMsg::Lsa(genuine(3, 2, &[])), &mut out);
    assert!(out.is_empty());
}

/// This server's own records carry its key and verify.
#[test]
fn own_records_are_signed() {
    let mut net = Network::new(server(1));
    let mut out = Vec::new();
    net.link_up(0, FROM_B, id(2), "s2".into(), &mut out);
    let sent: Vec<&Lsa> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Link {
                msg: LinkMsg::Lsa(l),
                ..
            } => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].origin, id(1));
    assert_eq!(super::check_record(sent[0]), Ok(()));
}

/// A record its origin signed, but whose server name breaks the naming
/// rules (an escape sequence for every console that shows routes), is
/// dropped as a link's hello with that name would be.
#[test]
fn a_record_naming_its_server_against_the_rules_is_dropped() {
    let mut net = network();
    let rogue = Identity::new(&seed(3), "s3\u{1b}[2J".into(), 1);
    let record = rogue.record(9, vec![]);
    let mut out = Vec::new();
    let events = net.link_msg(1, FROM_B, LinkMsg::Lsa(record), &mut out);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(net.topo.route(&id(3)).map(|r| r.next), Some(id(2)));
    let logged = out.iter().any(
        |e| matches!(e, Effect::Console(l) if l.contains("server name breaks the naming rules")),
    );
    assert!(logged, "{out:?}");
}
