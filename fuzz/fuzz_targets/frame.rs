//! The frame decoder: a length prefix checked against the limit, then the body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovtp::constants::{MAX_HANDSHAKE_FRAME, MAX_RECORD_FRAME};
use ovtp::hooks::split_frame;

fuzz_target!(|data: &[u8]| {
    for max in [MAX_HANDSHAKE_FRAME, MAX_RECORD_FRAME] {
        let mut rest = data;
        while let Ok((body, next)) = split_frame(rest, max) {
            let prefix = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            assert!(!body.is_empty() && body.len() <= max && body.len() == prefix);
            assert_eq!(4 + body.len() + next.len(), rest.len());
            rest = next;
        }
    }
});
