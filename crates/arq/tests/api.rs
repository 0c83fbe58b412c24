//! What the transfer driver (`crates/transfer/src/session.rs`) and its
//! tracing call, compiled from outside the crate as the driver is: a sender
//! made with `Sender::new` has chatdrop's controller, whose readings need
//! no trait in scope.

use std::time::Instant;

use chatdrop_arq::congestion::Mode;
use chatdrop_arq::{Config, Scheme, Sender};

#[test]
fn the_driver_reads_the_default_controller_without_the_trait() {
    // Checked against `Model::cwnd` removed from the inherent methods (it
    // then does not compile: the trait is not in scope here), and against
    // `Sender::new` starting in another phase than startup.
    let cfg = Config::new(Scheme::SelectiveRepeat, 64);
    let mut arq = Sender::new(cfg, 7, 0, 1_000_000, Instant::now());
    assert!(arq.poll_transmit(Instant::now()).is_some());
    let c = arq.controller();
    assert_eq!(c.mode(), Mode::Startup);
    assert_eq!(c.cwnd(), 10, "RFC 9002's initial window");
    assert!(c.pacing_rate() > 0.0);
    assert_eq!((c.bandwidth(), c.min_rtt()), (0.0, None));
    assert_eq!((c.overflows(), c.loss_rate()), (0, 0.0));
    assert_eq!(arq.rtt().srtt(), None);
}
