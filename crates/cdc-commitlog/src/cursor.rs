//! A bounds-checked reader over a byte slice. Every read either succeeds or returns
//! [`Error::Malformed`] naming the position and what was expected; nothing here can panic, and no
//! length is trusted beyond the bytes that remain.

use crate::error::Error;
use crate::vint;

#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(Error::malformed(
                self.pos,
                format!("{what} ({n} bytes, {} remain)", self.remaining()),
            )),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Error> {
        let s = self.bytes(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, Error> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn uvint(&mut self, what: &str) -> Result<u64, Error> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match vint::decode_uvint(rest) {
            Some((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            None => Err(Error::malformed(self.pos, format!("{what} (vint)"))),
        }
    }

    /// A vint used as a count or length: must fit `usize` and be at most `remaining()`
    /// (every counted item takes at least one byte).
    pub(crate) fn count(&mut self, what: &str) -> Result<usize, Error> {
        let at = self.pos;
        let v = self.uvint(what)?;
        match usize::try_from(v) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err(Error::malformed(
                at,
                format!(
                    "{what}: {v} exceeds the {} bytes that remain",
                    self.remaining()
                ),
            )),
        }
    }

    /// `bytes(uvint)`: a vint length then that many bytes.
    pub(crate) fn vint_bytes(&mut self, what: &str) -> Result<&'a [u8], Error> {
        let n = self.count(what)?;
        self.bytes(n, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_bounds() {
        let mut c = Cursor::new(&[0x01, 0x00, 0x02, 0x03, 0xaa, 0xbb, 0xcc]);
        assert_eq!(c.u8("a").unwrap(), 1);
        assert_eq!(c.u16("b").unwrap(), 2);
        assert_eq!(c.vint_bytes("c").unwrap(), &[0xaa, 0xbb, 0xcc]);
        assert!(c.is_empty());
        assert!(matches!(
            c.u8("d"),
            Err(Error::Malformed { position: 7, .. })
        ));
    }

    #[test]
    fn huge_length_is_an_error() {
        let mut c = Cursor::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]);
        assert!(c.vint_bytes("value").is_err());
        let mut c = Cursor::new(&[0x05, 0x00]);
        assert!(c.count("n").is_err());
    }
}
