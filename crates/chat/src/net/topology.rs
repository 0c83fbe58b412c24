//! Link-state routing: the records every server floods, and the shortest
//! paths computed from them.
//!
//! A link counts only when both of its ends list it, so a server that died
//! drops out of every route as soon as one neighbour has noticed, and a
//! half-open link is never used.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use chatdrop_proto::link::{Lsa, ServerId};

/// The route to one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The neighbour to hand frames for it to.
    pub next: ServerId,
    /// Sum of the link costs along the path.
    pub cost: u64,
    /// Number of links along the path.
    pub hops: u32,
}

/// The link-state database of one server and its routing table.
#[derive(Debug)]
pub struct Topology {
    me: ServerId,
    lsas: HashMap<ServerId, Lsa>,
    routes: BTreeMap<ServerId, Route>,
}

impl Topology {
    /// A topology holding only this server's own record.
    pub fn new(own: Lsa) -> Self {
        let me = own.origin;
        let mut lsas = HashMap::new();
        lsas.insert(me, own);
        Topology {
            me,
            lsas,
            routes: BTreeMap::new(),
        }
    }

    /// This server's own record.
    pub fn own(&self) -> &Lsa {
        &self.lsas[&self.me]
    }

    /// Replaces this server's own record (its links changed).
    pub fn set_own(&mut self, lsa: Lsa) {
        self.lsas.insert(self.me, lsa);
    }

    /// Whether `lsa` would be taken: it is about another server and newer
    /// than the record held of it.
    pub fn is_newer(&self, lsa: &Lsa) -> bool {
        // Only this server speaks for itself.
        lsa.origin != self.me
            && self
                .lsas
                .get(&lsa.origin)
                .is_none_or(|old| (lsa.incarnation, lsa.seq) > (old.incarnation, old.seq))
    }

    /// Stores a record heard from a neighbour if it is newer than the one
    /// held. Returns whether it was (and must be flooded on). The caller has
    /// checked its signature.
    pub fn offer(&mut self, lsa: Lsa) -> bool {
        let newer = self.is_newer(&lsa);
        if newer {
            self.lsas.insert(lsa.origin, lsa);
        }
        newer
    }

    /// Every record held, this server's own included.
    pub fn records(&self) -> impl Iterator<Item = &Lsa> {
        self.lsas.values()
    }

    /// The record of one server.
    pub fn record(&self, id: &ServerId) -> Option<&Lsa> {
        self.lsas.get(id)
    }

    /// The current route to `dst`, if it is reachable.
    pub fn route(&self, dst: &ServerId) -> Option<&Route> {
        self.routes.get(dst)
    }

    /// Every reachable server but this one, with its route.
    pub fn routes(&self) -> &BTreeMap<ServerId, Route> {
        &self.routes
    }

    fn linked(&self, a: &ServerId, b: &ServerId) -> bool {
        self.lsas
            .get(a)
            .is_some_and(|l| l.neighbors.iter().any(|(n, _)| n == b))
    }

    /// Recomputes the shortest paths (Dijkstra, ties broken by hop count then
    /// by server id so that every server picks the same paths).
    pub fn recompute(&mut self) {
        let mut best: HashMap<ServerId, (u64, u32, ServerId)> = HashMap::new();
        let mut heap = BinaryHeap::new();
        heap.push(Reverse((0u64, 0u32, self.me, self.me)));
        let mut done: HashMap<ServerId, (u64, u32, ServerId)> = HashMap::new();
        while let Some(Reverse((cost, hops, node, first))) = heap.pop() {
            if done.contains_key(&node) {
                continue;
            }
            done.insert(node, (cost, hops, first));
            let Some(lsa) = self.lsas.get(&node) else {
                continue;
            };
            for (next, link_cost) in &lsa.neighbors {
                if done.contains_key(next) || !self.linked(next, &node) {
                    continue;
                }
                let c = cost + u64::from((*link_cost).max(1));
                let first = if node == self.me { *next } else { first };
                let cand = (c, hops + 1, first);
                if best.get(next).is_none_or(|b| cand < *b) {
                    best.insert(*next, cand);
                    heap.push(Reverse((c, hops + 1, *next, first)));
                }
            }
        }
        done.remove(&self.me);
        self.routes = done
            .into_iter()
            .map(|(id, (cost, hops, next))| (id, Route { next, cost, hops }))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ServerId {
        [n; 16]
    }

    fn lsa(n: u8, seq: u64, neighbors: &[(u8, u32)]) -> Lsa {
        // Routing does not look at keys and signatures (the network layer
        // checks them before offering a record).
        Lsa {
            origin: id(n),
            key: [0; 32],
            name: format!("s{n}"),
            incarnation: 1,
            seq,
            neighbors: neighbors.iter().map(|(m, c)| (id(*m), *c)).collect(),
            sig: Vec::new(),
        }
    }

    /// A ring 1-2-3-4-1 as seen from 1.
    fn ring() -> Topology {
        let mut t = Topology::new(lsa(1, 1, &[(2, 1), (4, 1)]));
        assert!(t.offer(lsa(2, 1, &[(1, 1), (3, 1)])));
        assert!(t.offer(lsa(3, 1, &[(2, 1), (4, 1)])));
        assert!(t.offer(lsa(4, 1, &[(3, 1), (1, 1)])));
        t.recompute();
        t
    }

    #[test]
    fn shortest_paths_in_a_ring() {
        let t = ring();
        assert_eq!(t.route(&id(2)).map(|r| (r.next, r.hops)), Some((id(2), 1)));
        assert_eq!(t.route(&id(4)).map(|r| (r.next, r.hops)), Some((id(4), 1)));
        // Two equal paths to 3: the tie goes to the smaller first hop.
        assert_eq!(t.route(&id(3)).map(|r| (r.next, r.hops)), Some((id(2), 2)));
    }

    #[test]
    fn a_failed_link_moves_traffic_to_the_other_side() {
        let mut t = ring();
        t.set_own(lsa(1, 2, &[(4, 1)]));
        t.recompute();
        assert_eq!(t.route(&id(2)).map(|r| (r.next, r.hops)), Some((id(4), 3)));
        assert_eq!(t.route(&id(3)).map(|r| (r.next, r.hops)), Some((id(4), 2)));
    }

    #[test]
    fn a_link_counts_only_when_both_ends_list_it() {
        let mut t = ring();
        // 3 still lists 2, but 2 no longer lists 3.
        assert!(t.offer(lsa(2, 2, &[(1, 1)])));
        t.recompute();
        assert_eq!(t.route(&id(3)).map(|r| r.next), Some(id(4)));
    }

    #[test]
    fn costs_beat_hop_counts_and_old_records_are_ignored() {
        let mut t = Topology::new(lsa(1, 1, &[(2, 50), (3, 1)]));
        t.offer(lsa(2, 5, &[(1, 50), (3, 1)]));
        t.offer(lsa(3, 1, &[(1, 1), (2, 1)]));
        t.recompute();
        assert_eq!(t.route(&id(2)).map(|r| (r.next, r.cost)), Some((id(3), 2)));
        assert!(!t.offer(lsa(2, 4, &[])), "an older record is not taken");
        assert!(!t.offer(lsa(1, 9, &[])), "nobody speaks for this server");
    }

    #[test]
    fn a_split_leaves_the_far_side_unreachable() {
        let mut t = Topology::new(lsa(1, 1, &[(2, 1)]));
        t.offer(lsa(2, 1, &[(1, 1), (3, 1)]));
        t.offer(lsa(3, 1, &[(2, 1)]));
        t.recompute();
        assert_eq!(t.routes().len(), 2);
        t.offer(lsa(2, 2, &[(1, 1)]));
        t.recompute();
        assert!(t.route(&id(3)).is_none());
        assert!(t.route(&id(2)).is_some());
    }
}
