//! The known_hosts parser; every entry it accepts, written back as a line,
//! parses to the same host and fingerprint.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovtp::parse_known_hosts;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(entries) = parse_known_hosts(text) else {
        return;
    };
    for (host, fp, _comment) in entries {
        assert!(!host.is_empty() && !host.contains(char::is_whitespace));
        let again = parse_known_hosts(&format!("{host} {fp}\n")).expect("a written line parses");
        assert_eq!(again.len(), 1);
        assert_eq!((&again[0].0, &again[0].1), (&host, &fp));
    }
});
