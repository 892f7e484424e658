#!/usr/bin/env python3
"""Write the seed corpora of the `messages`, `assembler` and `transfer` fuzz
targets (fuzz/seeds/<target>/), from the layouts in PROTOCOL.md 7 and in the
targets' doc comments. Written apart from the Rust encoders on purpose: the
`messages` target checks that each seed re-encodes byte for byte.

    python3 fuzz/seeds/make_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def u16(v): return struct.pack(">H", v)
def u64(v): return struct.pack(">Q", v)
def vec16(b): return u16(len(b)) + b


ID = bytes(range(16))
SHA = bytes(range(0x80, 0xA0))
NAME = "dir/a.txt".encode()

def entry(kind, mode, size, mtime, name):
    return bytes([kind]) + u16(mode) + u64(size) + struct.pack(">q", mtime) + vec16(name)


# messages: selector byte (decoder), then the body.
messages = {
    "alert": b"\x00" + b"\x07" + vec16(b"protocol error"),
    "alert_unknown_code": b"\x00" + b"\xc8" + vec16(b""),
    "alert_encode": b"\x01" + b"\x04" + "handshake failed: clé refusée ".encode() * 20,
    "request_text": b"\x02" + ID + b"\x01" + b"hello",
    "request_data": b"\x02" + ID + b"\x02" + bytes([0, 255, 1]),
    "request_put": b"\x02" + ID + b"\x03" + vec16(NAME) + u64(1 << 20) + b"\x03",
    "request_get": b"\x02" + ID + b"\x04" + vec16(NAME) + u64(4096) + SHA + b"\x02",
    "request_digest": b"\x02" + ID + b"\x05" + vec16("ünïcode/name".encode()),
    # Names at the limit (4096 bytes, accepted) and one over it (refused);
    # they also raise libFuzzer's input length limit above a name's limit.
    "request_put_name_at_limit": b"\x02" + ID + b"\x03" + vec16(b"n" * 4096) + u64(1) + b"\x00",
    "request_digest_name_over_limit": b"\x02" + ID + b"\x05" + vec16("é".encode() * 2048 + b"x"),
    "alert_message_over_limit": b"\x00" + b"\x06" + vec16(b"m" * 513),
    "request_unknown": b"\x02" + ID + b"\x09" + b"body",
    "put": b"\x03" + vec16(NAME) + u64(7) + b"\x01",
    "get": b"\x04" + vec16(NAME) + u64(0) + bytes(32) + b"\x00",
    "response": b"\x05" + ID + u16(0) + b"ok",
    "digest_reply": b"\x06" + u64(12345) + SHA,
    "ready_to_receive": b"\x07" + u64(4096),
    "file_prefix": b"\x0b" + SHA,
    "ready_to_send": b"\x08" + u64(10000) + u64(4096),
    "file_data": b"\x09" + u64(4096) + b"chunk bytes",
    "file_end": b"\x0a" + b"\x01" + u64(10000) + SHA,
    "file_end_abort": b"\x0a" + b"\x03" + u64(4096) + bytes(32),
    "request_put_preserve": b"\x02" + ID + b"\x03" + vec16(NAME) + u64(7) + b"\x06" + u16(0o751) + struct.pack(">q", 1000000000),
    "request_get_preserve": b"\x02" + ID + b"\x04" + vec16(NAME) + u64(0) + SHA + b"\x06",
    "request_list": b"\x02" + ID + b"\x06" + vec16(b"docs") + vec16(b"a dir"),
    "request_mkdir": b"\x02" + ID + b"\x07" + vec16(b"docs/new"),
    "put_preserve_setuid": b"\x03" + vec16(NAME) + u64(7) + b"\x04" + u16(0o4755) + u64(0),
    "ready_to_send_preserve": b"\x08" + u64(10000) + u64(0) + u16(0o640) + struct.pack(">q", -86400),
    "list": b"\x0c" + vec16(b"") + vec16(b""),
    "list_page": b"\x0d" + b"\x01" + u16(2) + entry(2, 0o755, 0, 1000000000, b"a dir") + entry(1, 0o640, 12, -1, "notes ü.txt".encode()),
    "list_page_hostile": b"\x0d" + b"\x00" + u16(3) + entry(1, 0o644, 1, 0, b"../x") + entry(1, 0o644, 1, 0, b"a/b") + entry(3, 0o777, 0, 0, b"."),
    "list_page_empty_more": b"\x0d" + b"\x01" + u16(0),
    "file_meta": b"\x0e" + u16(0o777) + struct.pack(">q", -1),
}

# assembler: limit u16, then records rtype u8 || flags u8 || len u8 || plaintext.
def rec(rtype, flags, body): return bytes([rtype, flags, len(body)]) + body

assembler = {
    "two_messages": u16(256) + rec(0x10, 0, b"abc") + rec(0x10, 1, b"de") + rec(0x11, 1, b""),
    "type_change": u16(256) + rec(0x10, 0, b"abc") + rec(0x11, 1, b"de") + rec(0x12, 1, b"x"),
    "over_limit": u16(8) + rec(0x13, 0, b"12345") + rec(0x13, 1, b"6789") + rec(0x13, 1, b"ok"),
    "unknown_flags": u16(64) + rec(0x10, 0x04, b"a") + rec(0x10, 1, b"b"),
}

# transfer: driver u8 (0 receiver, 1 sender, 2 honest pair), then its script.
DATA_NEXT, DATA_ZERO = 0x00, 0x08          # FILE_DATA at the file's end / at 0
END_TRUE, END_ABORT = 0x05, 0x05 | 0x08    # FILE_END with the true size and digest


def data(sel, length, fill): return bytes([sel]) + u16(length) + bytes([fill])


transfer = {
    # receiver, upload of 10 bytes from nothing; then complete.
    "rx_upload": b"\x00" + b"\x00" + u16(0) + u16(10) + data(DATA_NEXT, 10, 0x41)
    + bytes([END_TRUE]),
    # receiver, upload resumed after 4 held bytes (prefix agreed: mode 0x20), in two chunks.
    "rx_upload_resume": b"\x00" + b"\x20" + u16(4) + u16(10) + data(DATA_NEXT, 3, 1)
    + data(DATA_NEXT, 3, 4) + bytes([END_TRUE]),
    # receiver, upload where the sender starts over at 0.
    "rx_upload_restart": b"\x00" + b"\x00" + u16(4) + u16(8) + data(DATA_ZERO, 8, 9)
    + bytes([END_TRUE]),
    # receiver, download resumed at our offer (FILE_READY start = offer).
    "rx_download": b"\x00" + b"\x01" + u16(4) + u16(10) + data(DATA_NEXT, 6, 2)
    + bytes([END_TRUE]),
    # receiver, a sender that aborts half way.
    "rx_abort": b"\x00" + b"\x00" + u16(0) + u16(10) + data(DATA_NEXT, 5, 3)
    + bytes([END_ABORT]),
    # sender of 100 bytes, offer 40 with the matching digest, chunks as asked.
    "tx_resume": b"\x01" + b"\x04" + u16(100) + u16(40) + b"\x00\x00",
    # sender of 3 MiB + 1 from 0 (chunks of at most FILE_CHUNK).
    "tx_large": b"\x01" + b"\x07" + u64(3 * (1 << 20) + 1) + b"\x00\x00\x00\x00\x00",
    # honest upload of 1000 bytes, receiver holding 300, reads of various sizes.
    "honest_upload": b"\x02" + b"\x00" + u16(1000) + b"\x07" + u16(300)
    + u16(99) + u16(0) + u16(500),
    # honest download of 2000 bytes, the receiver's 500-byte prefix damaged.
    "honest_download_damaged": b"\x02" + b"\x03" + u16(2000) + b"\x2a" + u16(500)
    + u16(123) + b"\x05" + u16(700),
}

for target, seeds in [("messages", messages), ("assembler", assembler), ("transfer", transfer)]:
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    for name, body in seeds.items():
        with open(os.path.join(HERE, target, name), "wb") as f:
            f.write(body)
