//! The server's configuration file (`chatdrop_server::config::parse`), as an
//! operator writes it: any text must give a configuration or an error that
//! says what is wrong, never a panic.
//!
//! Checked: a file that parses has limits that pass their own check, and
//! parses the same again.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match chatdrop_server::config::parse(text) {
        Ok(c) => {
            if let Some(limits) = &c.limits {
                assert_eq!(limits.check(), Ok(()), "{text:?}");
            }
            let again = chatdrop_server::config::parse(text).map(|c| format!("{c:?}"));
            assert_eq!(again, Ok(format!("{c:?}")));
        }
        Err(why) => assert!(!why.is_empty(), "an empty reason for {text:?}"),
    }
});
