//! Who the members are and where they listen: the address book the node keeps beside the
//! core's configuration.
//!
//! The core's configuration names members by id only. Their Raft addresses travel as the
//! context of each configuration entry (the whole book of the new configuration), and in every
//! snapshot's metadata next to the configuration, so that any member, and any node restored
//! from a snapshot, knows how to reach every other:
//!
//! ```text
//! book:          [version = 1] [count: u16 LE] ([id: u64 LE] [len: u8] [address, UTF-8]) * count
//! snapshot meta: [version = 1] [membership len: u16 LE] [membership (raft-core encoding)] [book]
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;

use raft_core::{Membership, NodeId};

const VERSION: u8 = 1;

/// Member id to Raft address.
pub(crate) type Book = BTreeMap<NodeId, SocketAddr>;

/// Encodes `book` (at most `u16::MAX` entries).
pub(crate) fn encode_book(book: &Book) -> Vec<u8> {
    let mut out = vec![VERSION];
    out.extend_from_slice(&(book.len().min(u16::MAX as usize) as u16).to_le_bytes());
    for (id, addr) in book.iter().take(u16::MAX as usize) {
        let a = addr.to_string();
        out.extend_from_slice(&id.0.to_le_bytes());
        out.push(a.len() as u8);
        out.extend_from_slice(a.as_bytes());
    }
    out
}

/// Decodes a book; `None` for anything malformed (the input comes from the log or a peer's
/// snapshot, so it is checked, never trusted).
pub(crate) fn decode_book(bytes: &[u8]) -> Option<Book> {
    let (&v, rest) = bytes.split_first()?;
    if v != VERSION {
        return None;
    }
    let (count, mut rest) = rest.split_first_chunk::<2>()?;
    let count = u16::from_le_bytes(*count);
    let mut book = Book::new();
    for _ in 0..count {
        let (id, r) = rest.split_first_chunk::<8>()?;
        let (&len, r) = r.split_first()?;
        let addr = r.get(..len as usize)?;
        let addr: SocketAddr = std::str::from_utf8(addr).ok()?.parse().ok()?;
        book.insert(NodeId(u64::from_le_bytes(*id)), addr);
        rest = &r[len as usize..];
    }
    rest.is_empty().then_some(book)
}

/// Encodes a snapshot's metadata: the configuration at its index and the address book.
pub(crate) fn encode_meta(membership: &Membership, book: &Book) -> Vec<u8> {
    let mut m = [0u8; Membership::MAX_ENCODED_LEN];
    // The buffer is the encoding's maximum.
    let n = membership.encode(&mut m).unwrap_or(0);
    let mut out = vec![VERSION];
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&m[..n]);
    out.extend_from_slice(&encode_book(book));
    out
}

/// Decodes what [`encode_meta`] wrote.
pub(crate) fn decode_meta(bytes: &[u8]) -> Option<(Membership, Book)> {
    let (&v, rest) = bytes.split_first()?;
    if v != VERSION {
        return None;
    }
    let (n, rest) = rest.split_first_chunk::<2>()?;
    let n = u16::from_le_bytes(*n) as usize;
    let (membership, left) = Membership::decode(rest.get(..n)?).ok()?;
    if !left.is_empty() {
        return None;
    }
    Some((membership, decode_book(&rest[n..])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn book_and_meta_roundtrip_and_refuse_garbage() {
        let mut book = Book::new();
        book.insert(NodeId(1), "127.0.0.1:7001".parse().expect("addr"));
        book.insert(NodeId(9), "[::1]:65535".parse().expect("addr"));
        let b = encode_book(&book);
        assert_eq!(decode_book(&b), Some(book.clone()));
        for cut in 0..b.len() {
            assert_eq!(decode_book(&b[..cut]), None, "cut {cut}");
        }
        let m = Membership::with_voters(&[NodeId(1), NodeId(9)]).expect("valid");
        let meta = encode_meta(&m, &book);
        assert_eq!(decode_meta(&meta), Some((m, book)));
        for cut in 0..meta.len() {
            assert_eq!(decode_meta(&meta[..cut]), None, "cut {cut}");
        }
        assert_eq!(
            decode_book(&[1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, b'x', b'y', b'z']),
            None
        );
    }
}
