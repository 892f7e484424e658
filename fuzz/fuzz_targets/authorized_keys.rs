//! The authorized_keys parser; every entry it accepts, written back with
//! `authorized_key_line`, parses to the same key and comment on one line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovtp::{authorized_key_line, parse_authorized_keys};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(entries) = parse_authorized_keys(text) else {
        return;
    };
    for (key, comment) in entries {
        let line = authorized_key_line(&key, &comment);
        assert!(!line.contains(['\n', '\r']));
        let again = parse_authorized_keys(&line).expect("a written line parses");
        assert_eq!(again.len(), 1);
        assert!(again[0].0 == key);
        let cleaned: String =
            comment.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        assert_eq!(again[0].1, cleaned.trim());
    }
});
