//! `Message::decode` on raw bytes: never panics, and whatever decodes re-encodes to bytes that
//! decode to an equal message (and re-encoding that gives the same bytes: the encoding is
//! canonical even when the input was not).
#![no_main]

use libfuzzer_sys::fuzz_target;
use raft_core::message::MAX_HEADER_LEN;
use raft_core::{Entry, Message};

fn encode(m: &Message<'_>, room: usize) -> Vec<u8> {
    let mut buf = vec![0u8; room];
    let n = m
        .encode(&mut buf)
        .expect("a decoded message re-encodes in no more room");
    buf.truncate(n);
    buf
}

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::decode(data) else {
        return;
    };
    // The canonical encoding is never longer than what was decoded.
    let bytes = encode(&m, data.len() + MAX_HEADER_LEN);
    assert!(bytes.len() <= data.len());
    let d = Message::decode(&bytes).expect("a re-encoded message decodes");
    assert_eq!(d, m);
    assert_eq!((d.from, d.to, d.term), (m.from, m.to, m.term));
    assert_eq!(d.body.name(), m.body.name());
    let a: Vec<Entry<'_>> = m.entries().iter().collect();
    let b: Vec<Entry<'_>> = d.entries().iter().collect();
    assert_eq!(a, b);
    assert_eq!(a.len(), m.entries().len());
    assert_eq!(encode(&d, bytes.len()), bytes);
});
