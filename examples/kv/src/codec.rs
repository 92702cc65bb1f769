//! The binary encoding of data operations, as they go into the replicated log.
//!
//! # The log encoding (version 1)
//!
//! ```text
//! command := version:u8=1  body
//! body    := 0x01 op                   one operation; the reply is the op's reply
//!          | 0x02 count:varint op*     a transaction (MULTI/EXEC); the reply is an array
//! op      := 0x01 PING    has_msg:u8 (0|1) [msg:bytes]
//!          | 0x02 ECHO    msg:bytes
//!          | 0x03 GET     key:bytes
//!          | 0x04 MGET    count:varint key:bytes*
//!          | 0x05 EXISTS  count:varint key:bytes*
//!          | 0x06 DBSIZE
//!          | 0x10 SET     cond:u8 (0 always, 1 NX, 2 XX, 3 IFEQ) [expected:bytes] key value
//!          | 0x11 DEL     count:varint key:bytes*
//!          | 0x12 INCRBY  key:bytes delta:zigzag-varint
//!          | 0x13 MSET    count:varint (key:bytes value:bytes)*
//! bytes   := len:varint data            varint: LEB128 of a u64, at most 10 bytes
//! ```
//!
//! Queries (`NodeHandle::read`) use the same encoding and may hold only the read operations
//! (`PING` to `DBSIZE`). [`decode`] checks every length and count against the bytes that
//! remain before it allocates, and rejects trailing bytes, so a corrupt or hostile entry is an
//! error reply, never a panic. A new version of the format gets a new version byte; an old
//! node refuses an entry it cannot read with an error reply rather than misapplying it.

use std::fmt;

use crate::command::{Op, SetCondition};
use crate::limits::{MAX_COMMAND_BYTES, MAX_MULTI_COMMANDS};

/// The version byte every encoded command starts with.
pub const FORMAT_VERSION: u8 = 1;

const BODY_SINGLE: u8 = 0x01;
const BODY_BATCH: u8 = 0x02;

const OP_PING: u8 = 0x01;
const OP_ECHO: u8 = 0x02;
const OP_GET: u8 = 0x03;
const OP_MGET: u8 = 0x04;
const OP_EXISTS: u8 = 0x05;
const OP_DBSIZE: u8 = 0x06;
const OP_SET: u8 = 0x10;
const OP_DEL: u8 = 0x11;
const OP_INCRBY: u8 = 0x12;
const OP_MSET: u8 = 0x13;

impl<B: AsRef<[u8]>> Op<B> {
    /// Appends the operation's encoding (`op` in the module docs).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Op::Ping(msg) => {
                out.push(OP_PING);
                match msg {
                    Some(m) => {
                        out.push(1);
                        put_bytes(out, m.as_ref());
                    }
                    None => out.push(0),
                }
            }
            Op::Echo(msg) => {
                out.push(OP_ECHO);
                put_bytes(out, msg.as_ref());
            }
            Op::Get(key) => {
                out.push(OP_GET);
                put_bytes(out, key.as_ref());
            }
            Op::MGet(keys) => put_keys(out, OP_MGET, keys),
            Op::Exists(keys) => put_keys(out, OP_EXISTS, keys),
            Op::DbSize => out.push(OP_DBSIZE),
            Op::Set {
                key,
                value,
                condition,
            } => {
                out.push(OP_SET);
                match condition {
                    SetCondition::Always => out.push(0),
                    SetCondition::IfAbsent => out.push(1),
                    SetCondition::IfPresent => out.push(2),
                    SetCondition::IfEqual(expected) => {
                        out.push(3);
                        put_bytes(out, expected.as_ref());
                    }
                }
                put_bytes(out, key.as_ref());
                put_bytes(out, value.as_ref());
            }
            Op::Del(keys) => put_keys(out, OP_DEL, keys),
            Op::IncrBy { key, delta } => {
                out.push(OP_INCRBY);
                put_bytes(out, key.as_ref());
                // Zigzag, so that the common small deltas of either sign take one byte.
                put_varint(out, ((delta << 1) ^ (delta >> 63)) as u64);
            }
            Op::MSet(pairs) => {
                out.push(OP_MSET);
                put_varint(out, pairs.len() as u64);
                for (k, v) in pairs {
                    put_bytes(out, k.as_ref());
                    put_bytes(out, v.as_ref());
                }
            }
        }
    }

    /// The whole command for this one operation.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION, BODY_SINGLE];
        self.encode_into(&mut out);
        out
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_keys<B: AsRef<[u8]>>(out: &mut Vec<u8>, code: u8, keys: &[B]) {
    out.push(code);
    put_varint(out, keys.len() as u64);
    for k in keys {
        put_bytes(out, k.as_ref());
    }
}

/// Why a transaction cannot take another command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionFull {
    /// It holds [`MAX_MULTI_COMMANDS`] already.
    TooManyCommands,
    /// The encoded transaction would exceed [`MAX_COMMAND_BYTES`].
    TooLarge,
}

impl fmt::Display for TransactionFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransactionFull::TooManyCommands => {
                write!(
                    f,
                    "ERR a transaction holds at most {MAX_MULTI_COMMANDS} commands"
                )
            }
            TransactionFull::TooLarge => {
                write!(
                    f,
                    "ERR a transaction holds at most {MAX_COMMAND_BYTES} bytes"
                )
            }
        }
    }
}

/// The operations queued by `MULTI`, encoded as they arrive, to become one log entry at
/// `EXEC`.
#[derive(Clone, Debug, Default)]
pub struct Transaction {
    ops: Vec<u8>,
    count: usize,
    writes: bool,
}

impl Transaction {
    /// The most bytes of header before the ops: version, body tag, and a count of at most
    /// [`MAX_MULTI_COMMANDS`] (a 2-byte varint).
    const HEADER_BYTES: usize = 4;

    /// An empty transaction.
    pub fn new() -> Self {
        Transaction::default()
    }

    /// Queues `op`, unless that would make the transaction too long or too large.
    pub fn push<B: AsRef<[u8]>>(&mut self, op: &Op<B>) -> Result<(), TransactionFull> {
        if self.count >= MAX_MULTI_COMMANDS {
            return Err(TransactionFull::TooManyCommands);
        }
        let before = self.ops.len();
        op.encode_into(&mut self.ops);
        if self.ops.len() + Self::HEADER_BYTES > MAX_COMMAND_BYTES {
            self.ops.truncate(before);
            return Err(TransactionFull::TooLarge);
        }
        self.count += 1;
        self.writes |= op.is_write();
        Ok(())
    }

    /// Commands queued.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether any queued command writes (if none does, the whole transaction can be a read).
    pub fn has_writes(&self) -> bool {
        self.writes
    }

    /// Its one command as a command of its own (what [`Op::encode`] gives), if it holds
    /// exactly one: a lone pipelined write goes to the log as a plain command.
    pub fn encode_lone(&self) -> Option<Vec<u8>> {
        (self.count == 1).then(|| {
            let mut out = Vec::with_capacity(self.ops.len() + 2);
            out.push(FORMAT_VERSION);
            out.push(BODY_SINGLE);
            out.extend_from_slice(&self.ops);
            out
        })
    }

    /// The whole command.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.ops.len() + Self::HEADER_BYTES);
        out.push(FORMAT_VERSION);
        out.push(BODY_BATCH);
        put_varint(&mut out, self.count as u64);
        out.extend_from_slice(&self.ops);
        out
    }
}

/// A decoded command, borrowing from the encoded bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// One operation.
    Single(Op<&'a [u8]>),
    /// A transaction.
    Batch(Vec<Op<&'a [u8]>>),
}

/// Why bytes are not a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// No bytes at all.
    Empty,
    /// A version this build does not know.
    UnknownVersion(u8),
    /// A body tag this version does not know.
    UnknownBody(u8),
    /// An opcode this version does not know.
    UnknownOp(u8),
    /// A `SET` condition this version does not know.
    UnknownCondition(u8),
    /// A `PING` flag other than 0 or 1.
    BadFlag(u8),
    /// The bytes end inside a field.
    Truncated,
    /// A varint longer than 10 bytes or above `u64::MAX`.
    BadVarint,
    /// A length or count larger than the bytes that remain could hold.
    BadLength,
    /// Bytes after the end of the command.
    TrailingBytes,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty command"),
            DecodeError::UnknownVersion(v) => write!(f, "unknown format version {v}"),
            DecodeError::UnknownBody(v) => write!(f, "unknown body tag {v:#04x}"),
            DecodeError::UnknownOp(v) => write!(f, "unknown opcode {v:#04x}"),
            DecodeError::UnknownCondition(v) => write!(f, "unknown SET condition {v}"),
            DecodeError::BadFlag(v) => write!(f, "bad flag {v}"),
            DecodeError::Truncated => f.write_str("truncated command"),
            DecodeError::BadVarint => f.write_str("malformed varint"),
            DecodeError::BadLength => f.write_str("length past the end of the command"),
            DecodeError::TrailingBytes => f.write_str("trailing bytes after the command"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes a command (or a query) written by [`Op::encode`] or [`Transaction::encode`].
pub fn decode(bytes: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    match r.u8().map_err(|_| DecodeError::Empty)? {
        FORMAT_VERSION => {}
        v => return Err(DecodeError::UnknownVersion(v)),
    }
    let decoded = match r.u8()? {
        BODY_SINGLE => Decoded::Single(r.op()?),
        BODY_BATCH => {
            // Every op is at least one byte, which bounds the count before allocating.
            let n = r.count(1)?;
            let mut ops = Vec::with_capacity(n);
            for _ in 0..n {
                ops.push(r.op()?);
            }
            Decoded::Batch(ops)
        }
        v => return Err(DecodeError::UnknownBody(v)),
    };
    if r.pos != bytes.len() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(decoded)
}

/// A bounds-checked cursor over an encoded command.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(DecodeError::BadVarint);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint)
    }

    /// A count of items that each take at least `min_item_bytes` bytes.
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let n = usize::try_from(self.varint()?).map_err(|_| DecodeError::BadLength)?;
        if n.checked_mul(min_item_bytes)
            .is_none_or(|b| b > self.remaining())
        {
            return Err(DecodeError::BadLength);
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::BadLength)?;
        if len > self.remaining() {
            return Err(DecodeError::BadLength);
        }
        let b = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(b)
    }

    fn keys(&mut self) -> Result<Vec<&'a [u8]>, DecodeError> {
        let n = self.count(1)?;
        (0..n).map(|_| self.bytes()).collect()
    }

    fn op(&mut self) -> Result<Op<&'a [u8]>, DecodeError> {
        Ok(match self.u8()? {
            OP_PING => match self.u8()? {
                0 => Op::Ping(None),
                1 => Op::Ping(Some(self.bytes()?)),
                f => return Err(DecodeError::BadFlag(f)),
            },
            OP_ECHO => Op::Echo(self.bytes()?),
            OP_GET => Op::Get(self.bytes()?),
            OP_MGET => Op::MGet(self.keys()?),
            OP_EXISTS => Op::Exists(self.keys()?),
            OP_DBSIZE => Op::DbSize,
            OP_SET => {
                let condition = match self.u8()? {
                    0 => SetCondition::Always,
                    1 => SetCondition::IfAbsent,
                    2 => SetCondition::IfPresent,
                    3 => SetCondition::IfEqual(self.bytes()?),
                    c => return Err(DecodeError::UnknownCondition(c)),
                };
                let key = self.bytes()?;
                let value = self.bytes()?;
                Op::Set {
                    key,
                    value,
                    condition,
                }
            }
            OP_DEL => Op::Del(self.keys()?),
            OP_INCRBY => {
                let key = self.bytes()?;
                let z = self.varint()?;
                let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
                Op::IncrBy { key, delta }
            }
            OP_MSET => {
                let n = self.count(2)?;
                let mut pairs = Vec::with_capacity(n);
                for _ in 0..n {
                    pairs.push((self.bytes()?, self.bytes()?));
                }
                Op::MSet(pairs)
            }
            v => return Err(DecodeError::UnknownOp(v)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::test_support::op;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn a_transaction_of_one_encodes_alone_as_its_command() {
        for o in sample_ops() {
            let mut t = Transaction::new();
            assert_eq!(t.encode_lone(), None);
            t.push(&o).expect("fits");
            assert_eq!(t.encode_lone(), Some(o.encode()), "{o:?}");
            t.push(&o).expect("fits");
            assert_eq!(t.encode_lone(), None);
        }
    }

    fn sample_ops() -> Vec<Op<Vec<u8>>> {
        vec![
            op("PING"),
            op("PING hello"),
            op("ECHO x"),
            op("GET k"),
            op("MGET a b c"),
            op("EXISTS a a"),
            op("DBSIZE"),
            op("SET k v"),
            op("SET k v NX"),
            op("SET k v XX"),
            op("SET k v IFEQ old"),
            op("DEL a b"),
            op("INCR k"),
            op("INCRBY k -9223372036854775808"),
            op("INCRBY k 9223372036854775807"),
            op("MSET a 1 b 2"),
            Op::Set {
                key: vec![0xff; 300],
                value: vec![0; 70_000],
                condition: SetCondition::Always,
            },
        ]
    }

    fn keys(ks: &[Vec<u8>]) -> Vec<&[u8]> {
        ks.iter().map(Vec::as_slice).collect()
    }

    fn borrowed(op: &Op<Vec<u8>>) -> Op<&[u8]> {
        match op {
            Op::Ping(m) => Op::Ping(m.as_deref()),
            Op::Echo(m) => Op::Echo(m),
            Op::Get(k) => Op::Get(k),
            Op::MGet(ks) => Op::MGet(keys(ks)),
            Op::Exists(ks) => Op::Exists(keys(ks)),
            Op::DbSize => Op::DbSize,
            Op::Set {
                key,
                value,
                condition,
            } => Op::Set {
                key,
                value,
                condition: match condition {
                    SetCondition::Always => SetCondition::Always,
                    SetCondition::IfAbsent => SetCondition::IfAbsent,
                    SetCondition::IfPresent => SetCondition::IfPresent,
                    SetCondition::IfEqual(e) => SetCondition::IfEqual(e),
                },
            },
            Op::Del(ks) => Op::Del(keys(ks)),
            Op::IncrBy { key, delta } => Op::IncrBy { key, delta: *delta },
            Op::MSet(ps) => Op::MSet(ps.iter().map(|(k, v)| (&k[..], &v[..])).collect()),
        }
    }

    #[test]
    fn every_op_round_trips() {
        for o in sample_ops() {
            let enc = o.encode();
            assert_eq!(decode(&enc), Ok(Decoded::Single(borrowed(&o))), "{o:?}");
            // Every strict prefix is refused, never misread.
            for cut in 0..enc.len() {
                assert!(decode(&enc[..cut]).is_err(), "{o:?} cut at {cut}");
            }
            let mut longer = enc.clone();
            longer.push(0);
            assert_eq!(decode(&longer), Err(DecodeError::TrailingBytes));
        }
    }

    #[test]
    fn transactions_round_trip_and_know_whether_they_write() {
        let mut t = Transaction::new();
        assert!(t.is_empty());
        t.push(&op("GET a")).expect("room");
        t.push(&op("PING")).expect("room");
        assert!(!t.has_writes());
        t.push(&op("INCR a")).expect("room");
        assert!(t.has_writes());
        assert_eq!(t.len(), 3);
        let enc = t.encode();
        let ops = [op("GET a"), op("PING"), op("INCR a")];
        let want: Vec<_> = ops.iter().map(borrowed).collect();
        assert_eq!(decode(&enc), Ok(Decoded::Batch(want)));
    }

    #[test]
    fn transactions_are_bounded() {
        let mut t = Transaction::new();
        for _ in 0..MAX_MULTI_COMMANDS {
            t.push(&op("INCR a")).expect("room");
        }
        assert_eq!(t.push(&op("INCR a")), Err(TransactionFull::TooManyCommands));
        let mut t = Transaction::new();
        let big = Op::Set {
            key: b("k"),
            value: vec![0; 200 * 1024],
            condition: SetCondition::Always,
        };
        t.push(&big).expect("room");
        t.push(&big).expect("room");
        assert_eq!(t.push(&big), Err(TransactionFull::TooLarge));
        assert_eq!(t.len(), 2);
        assert!(t.encode().len() <= MAX_COMMAND_BYTES);
        assert!(decode(&t.encode()).is_ok());
    }

    #[test]
    fn hostile_encodings_are_refused() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(decode(&[2, 1]), Err(DecodeError::UnknownVersion(2)));
        assert_eq!(decode(&[1, 9]), Err(DecodeError::UnknownBody(9)));
        assert_eq!(decode(&[1, 1, 0x7f]), Err(DecodeError::UnknownOp(0x7f)));
        // A count of 2^63 keys in a 14-byte command.
        let mut huge = vec![1, 1, OP_DEL];
        put_varint(&mut huge, 1 << 63);
        assert_eq!(decode(&huge), Err(DecodeError::BadLength));
        let mut huge = vec![1, 2];
        put_varint(&mut huge, u64::MAX);
        assert_eq!(decode(&huge), Err(DecodeError::BadLength));
        assert_eq!(
            decode(&[1, 1, OP_GET, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(DecodeError::BadVarint)
        );
        assert_eq!(
            decode(&[1, 1, OP_GET, 5, b'a']),
            Err(DecodeError::BadLength)
        );
        assert_eq!(
            decode(&[1, 1, OP_SET, 7, 0, 0]),
            Err(DecodeError::UnknownCondition(7))
        );
        assert_eq!(decode(&[1, 1, OP_PING, 2]), Err(DecodeError::BadFlag(2)));
    }
}
