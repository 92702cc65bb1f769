//! The postcard encoding of the few types on the wire, written out by hand.
//!
//! The wire format is postcard's (see [`message`](crate::message)): unsigned integers as
//! LEB128 varints, `bool` and `Option` tags as one byte 0 or 1, enum variants as a varint index,
//! byte strings as a varint length then the bytes. Going through serde for a message of a few
//! varints cost more than the rest of the replication path (a `memcpy` call per varint, a bounds
//! check per byte), so `message` encodes and decodes with [`Writer`] and [`Reader`] instead.
//! They accept and produce exactly what postcard does, byte for byte, including postcard's rule
//! for the last byte of a maximal varint; `message`'s tests check that against postcard itself.

use crate::error::{DecodeError, EncodeError};

/// Most bytes of a varint `u64`.
const VARINT_U64_MAX: usize = 10;
/// Most bytes of a varint `u32`.
const VARINT_U32_MAX: usize = 5;

/// Writes into a caller's buffer; every write checks for room and fails with nothing
/// guaranteed about the bytes past what was written before.
pub(crate) struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> Writer<'b> {
    #[inline]
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }

    /// Bytes written so far.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.pos
    }

    #[inline]
    pub(crate) fn byte(&mut self, b: u8) -> Result<(), EncodeError> {
        let slot = self.buf.get_mut(self.pos).ok_or(EncodeError::BufferFull)?;
        *slot = b;
        self.pos += 1;
        Ok(())
    }

    #[inline]
    pub(crate) fn bool(&mut self, b: bool) -> Result<(), EncodeError> {
        self.byte(u8::from(b))
    }

    #[inline]
    pub(crate) fn varint(&mut self, v: u64) -> Result<(), EncodeError> {
        // Most numbers on the wire (ids, tags, lengths, terms) take one byte.
        if v < 0x80 {
            return self.byte(v as u8);
        }
        self.varint_long(v)
    }

    fn varint_long(&mut self, mut v: u64) -> Result<(), EncodeError> {
        let rest = self
            .buf
            .get_mut(self.pos..)
            .ok_or(EncodeError::BufferFull)?;
        let mut n = 0;
        loop {
            let slot = rest.get_mut(n).ok_or(EncodeError::BufferFull)?;
            n += 1;
            if v < 0x80 {
                *slot = v as u8;
                break;
            }
            *slot = (v as u8) | 0x80;
            v >>= 7;
        }
        self.pos += n;
        Ok(())
    }

    /// A `[u8; 4]` holding a `u32` little-endian: four bytes, no length.
    pub(crate) fn fixed_u32(&mut self, v: u32) -> Result<(), EncodeError> {
        for b in v.to_le_bytes() {
            self.byte(b)?;
        }
        Ok(())
    }

    /// A byte string: its length, then the bytes.
    #[inline]
    pub(crate) fn bytes(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        self.varint(b.len() as u64)?;
        let end = self.pos + b.len();
        self.buf
            .get_mut(self.pos..end)
            .ok_or(EncodeError::BufferFull)?
            .copy_from_slice(b);
        self.pos = end;
        Ok(())
    }
}

/// Reads from the front of a byte slice. Every read is bounded by the input and fails with
/// [`DecodeError::Malformed`] on a short or invalid value; each input byte is looked at once.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline]
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// What is left to read.
    #[inline]
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }

    #[inline]
    pub(crate) fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.rest.split_first().ok_or(DecodeError::Malformed)?;
        self.rest = rest;
        Ok(b)
    }

    /// A `bool` or an `Option` tag: 0 or 1, anything else is malformed.
    #[inline]
    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed),
        }
    }

    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        match self.rest.split_first() {
            Some((&b, rest)) if b < 0x80 => {
                self.rest = rest;
                Ok(u64::from(b))
            }
            _ => self.varint_max::<VARINT_U64_MAX, 64>(),
        }
    }

    #[inline]
    pub(crate) fn varint_u32(&mut self) -> Result<u32, DecodeError> {
        match self.rest.split_first() {
            Some((&b, rest)) if b < 0x80 => {
                self.rest = rest;
                Ok(u32::from(b))
            }
            // In range: at most 5 groups, the last limited to the 4 bits left.
            _ => self.varint_max::<VARINT_U32_MAX, 32>().map(|v| v as u32),
        }
    }

    /// A varint of at most `MAX` bytes for a `BITS`-bit integer. Like postcard: the last of
    /// `MAX` bytes may not carry bits beyond `BITS`; shorter non-minimal spellings are fine.
    fn varint_max<const MAX: usize, const BITS: u32>(&mut self) -> Result<u64, DecodeError> {
        let mut out = 0u64;
        let mut i = 0;
        while i < MAX {
            let Some(&b) = self.rest.get(i) else {
                return Err(DecodeError::Malformed);
            };
            out |= u64::from(b & 0x7F) << (7 * i);
            i += 1;
            if b < 0x80 {
                if i == MAX && u32::from(b) >= 1 << (BITS - 7 * (MAX as u32 - 1)) {
                    return Err(DecodeError::Malformed);
                }
                self.rest = self.rest.get(i..).unwrap_or_default();
                return Ok(out);
            }
        }
        Err(DecodeError::Malformed)
    }

    /// Four bytes holding a `u32` little-endian.
    pub(crate) fn fixed_u32(&mut self) -> Result<u32, DecodeError> {
        let (b, rest) = self
            .rest
            .split_first_chunk::<4>()
            .ok_or(DecodeError::Malformed)?;
        self.rest = rest;
        Ok(u32::from_le_bytes(*b))
    }

    /// A byte string, borrowed from the input.
    #[inline]
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.varint()?;
        if len > self.rest.len() as u64 {
            return Err(DecodeError::Malformed);
        }
        let (b, rest) = self.rest.split_at(len as usize);
        self.rest = rest;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_roundtrip_at_every_width() {
        let mut buf = [0u8; 16];
        for shift in 0..64 {
            for v in [1u64 << shift, (1u64 << shift) - 1, u64::MAX >> shift] {
                let mut w = Writer::new(&mut buf);
                w.varint(v).expect("fits");
                let n = w.len();
                assert!(n <= VARINT_U64_MAX);
                let mut r = Reader::new(&buf[..n]);
                assert_eq!(r.varint(), Ok(v));
                assert!(r.rest().is_empty());
                assert!(Reader::new(&buf[..n - 1]).varint().is_err());
            }
        }
    }

    #[test]
    fn overlong_and_overflowing_varints() {
        // Non-minimal spellings decode, as in postcard.
        assert_eq!(Reader::new(&[0x80, 0x00]).varint(), Ok(0));
        // Ten bytes whose last carries more than the top bit of a u64.
        let mut big = [0xFF; 10];
        big[9] = 0x01;
        assert_eq!(Reader::new(&big).varint(), Ok(u64::MAX));
        big[9] = 0x02;
        assert!(Reader::new(&big).varint().is_err());
        // Eleven bytes are never a varint.
        assert!(Reader::new(&[0x80; 11]).varint().is_err());
        assert_eq!(
            Reader::new(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]).varint_u32(),
            Ok(u32::MAX)
        );
        assert!(Reader::new(&[0xFF, 0xFF, 0xFF, 0xFF, 0x10])
            .varint_u32()
            .is_err());
    }

    #[test]
    fn short_buffers_refuse() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        assert!(w.bytes(b"abc").is_err());
        let mut w = Writer::new(&mut buf);
        assert!(w.varint(1 << 21).is_err());
        assert!(Reader::new(&[5, 1, 2]).bytes().is_err());
        assert!(Reader::new(&[2]).bool().is_err());
    }
}
