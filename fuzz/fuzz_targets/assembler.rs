//! Message assembly (proto/msg.rs `Assembler`) from arbitrary decrypted
//! records, compared with a model of PROTOCOL.md 6-7: records are refused
//! for unknown flag bits (`check_flags`, as the channel does before
//! assembly), for a type change inside a message and for a message over the
//! limit; otherwise a message is the concatenation of its records'
//! plaintexts up to FIN. So no message exceeds its limit or mixes types, and
//! nothing accepted is lost or reordered. An error ends the connection, as in
//! `io/channel.rs`: the next record starts a new connection.
//!
//! Input: limit u16 (cut to 10 bits, so that the limit is reachable), then
//! records `rtype u8 || flags u8 || len u8 || plaintext [len]`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovtp::Error;
use ovtp::hooks::msg::{Assembler, FLAG_FIN, check_flags};
use ovtp_fuzz::Input;

/// What the assembler should hold: the records accepted since the last
/// message ended, by type.
#[derive(Default)]
struct Model {
    rtype: Option<u8>,
    payload: Vec<u8>,
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let limit = usize::from(input.u16() & 0x3ff);
    let mut asm = Assembler::new(limit);
    let mut model = Model::default();
    while !input.is_empty() {
        let (rtype, flags, len) = (input.u8(), input.u8(), input.u8());
        let plaintext = input.bytes(usize::from(len));
        assert_eq!(check_flags(flags).is_ok(), flags & !0x03 == 0, "flags {flags:#x}");
        if check_flags(flags).is_err() {
            (asm, model) = (Assembler::new(limit), Model::default()); // the channel closes
            continue;
        }
        let size = model.payload.len() + plaintext.len();
        match asm.push(rtype, flags, plaintext) {
            Err(Error::Malformed(_)) => {
                assert!(model.rtype.is_some_and(|t| t != rtype), "type change refused wrongly")
            }
            Err(Error::TooLarge { size: s, limit: l, .. }) => {
                assert_eq!(model.rtype.unwrap_or(rtype), rtype, "type change not refused");
                assert!(size > limit && s == size as u64 && l == limit as u64, "size {size}");
            }
            Err(e) => panic!("unexpected error {e:?}"),
            Ok(done) => {
                assert_eq!(*model.rtype.get_or_insert(rtype), rtype, "a message mixed types");
                assert!(size <= limit, "a message of {size} bytes over the limit {limit}");
                model.payload.extend_from_slice(plaintext);
                assert_eq!(asm.received(), if done.is_some() { 0 } else { size });
                match done {
                    None => assert_eq!(flags & FLAG_FIN, 0, "FIN did not end the message"),
                    Some((t, payload)) => {
                        assert_ne!(flags & FLAG_FIN, 0, "a message ended without FIN");
                        assert_eq!(t, rtype);
                        assert!(payload.len() <= limit);
                        assert_eq!(payload, model.payload, "message != its records' plaintexts");
                        model = Model::default();
                    }
                }
                continue;
            }
        }
        (asm, model) = (Assembler::new(limit), Model::default()); // the connection ends
    }
});
