//! Direct-mode tickets (`Ticket::decode`), as `chatdrop recv` takes them
//! from the user: the input as the ticket's text, and the input as the
//! bytes behind the `chatdrop1-` prefix (hex-encoded here, so that the
//! fuzzer works on the encoding itself rather than on its hex).
//!
//! Checked: a ticket that decodes has its window and packet size in
//! range, and prints as a ticket that decodes to itself.

#![no_main]

use chatdrop_transfer::{Ticket, MAX_MSS};
use libfuzzer_sys::fuzz_target;

fn check(text: &str) {
    if let Ok(t) = Ticket::decode(text) {
        assert!(
            t.window >= 1 && t.window <= chatdrop_arq::MAX_WINDOW,
            "{t:?}"
        );
        assert!(t.mss >= 1 && t.mss <= MAX_MSS, "{t:?}");
        let printed = t.encode();
        assert_eq!(
            Ticket::decode(&printed).ok().as_ref(),
            Some(&t),
            "{printed}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
    check(&format!("chatdrop1-{}", hex::encode(data)));
});
