//! The byte-level codec: a bounds-checked reader over a received frame body,
//! and the encoders beside their decoders. Nothing here allocates from a
//! peer-given length without checking it against a limit first.

use crate::error::{Error, Result};

/// Reads fields from a frame body; every read is bounds-checked.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The next `n` bytes, or `Malformed(what)` if fewer remain.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let out = self.buf[self.pos..].get(..n).ok_or(Error::Malformed(what))?;
        self.pos += n;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A field with a u16 length prefix, refused if longer than `max`.
    pub fn vec16(&mut self, max: usize, what: &'static str) -> Result<&'a [u8]> {
        let len = usize::from(self.u16(what)?);
        if len > max {
            return Err(Error::TooLarge { what, size: len as u64, limit: max as u64 });
        }
        self.take(len, what)
    }

    /// Whether every byte was read.
    pub fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// Fails if bytes are left over: a frame must be exactly its fields.
    pub fn finish(self, what: &'static str) -> Result<()> {
        if self.pos == self.buf.len() { Ok(()) } else { Err(Error::Malformed(what)) }
    }
}

/// A message body with its encoding beside its decoding. [`Body::decode`] is
/// the one way bodies are parsed: it refuses bytes left over after the fields.
pub trait Body<'a>: Sized {
    /// Names the body in errors.
    const WHAT: &'static str;
    /// Append the encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Read the fields from `r`.
    fn read(r: &mut Reader<'a>) -> Result<Self>;
    /// Decode exactly `bytes`: every field, nothing after.
    fn decode(bytes: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let body = Self::read(&mut r)?;
        r.finish(Self::WHAT)?;
        Ok(body)
    }
    /// The encoding as a new vector.
    fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Append a u16-length-prefixed field. Callers only pass fields whose limit is below 64 KiB.
pub(crate) fn put_vec16(out: &mut Vec<u8>, field: &[u8]) {
    let len = u16::try_from(field.len()).expect("callers bound fields below 64 KiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

/// Prefix `body` with its 4-byte big-endian length, making a frame.
pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    [&frame_len(body.len()).to_be_bytes()[..], body].concat()
}

/// The length prefix of a body; bodies are bounded by MAX_RECORD_FRAME, far below 4 GiB.
pub(crate) fn frame_len(len: usize) -> u32 {
    u32::try_from(len).expect("frame bodies are bounded far below 4 GiB")
}

/// Check a received length prefix against the limit before anything is allocated.
pub(crate) fn check_frame_len(prefix: [u8; 4], max: usize) -> Result<usize> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(Error::TooLarge { what: "frame", size: len as u64, limit: max as u64 });
    }
    if len == 0 {
        return Err(Error::Malformed("empty frame"));
    }
    Ok(len)
}

/// Read one frame body from a byte slice (used by fuzzing and by tests):
/// returns the body and the bytes after it.
#[cfg(any(test, feature = "test-hooks"))]
pub fn split_frame(input: &[u8], max: usize) -> Result<(&[u8], &[u8])> {
    let mut r = Reader::new(input);
    let len = check_frame_len(r.array("length prefix")?, max)?;
    let body = r.take(len, "frame body")?;
    Ok((body, r.rest()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_is_bounds_checked_and_rejects_trailing_bytes() {
        let mut r = Reader::new(&[0, 3, 1, 2, 3, 9]);
        assert_eq!(r.vec16(8, "f").unwrap(), &[1, 2, 3]);
        assert!(matches!(Reader::new(&[0, 9, 1]).vec16(64, "f"), Err(Error::Malformed(_))));
        assert!(matches!(Reader::new(&[0, 9, 1]).vec16(4, "f"), Err(Error::TooLarge { .. })));
        assert!(matches!(r.finish("t"), Err(Error::Malformed(_))));
    }

    #[test]
    fn length_prefix_of_4_gib_is_rejected_before_reading_the_body() {
        let err = split_frame(&[0xff, 0xff, 0xff, 0xff], 1 << 20).unwrap_err();
        assert!(matches!(err, Error::TooLarge { size: 0xffff_ffff, .. }), "{err:?}");
        assert!(matches!(split_frame(&[0, 0, 0, 0], 16), Err(Error::Malformed(_))));
        let (body, rest) = split_frame(&[0, 0, 0, 2, 7, 8, 9], 16).unwrap();
        assert_eq!((body, rest), (&[7u8, 8][..], &[9u8][..]));
    }
}
