//! Hostile input can never panic the server or make it hold more than its limits.
//!
//! - The RESP reader over arbitrary bytes and over edited valid requests, arriving in
//!   arbitrary chunks: never panics, never holds more than the read buffer plus one request,
//!   never returns a request past the limits; unedited requests come back exactly.
//! - Command parsing of arbitrary arguments never panics, and whatever parses encodes to a
//!   command that fits the node's limit (the arithmetic `limits` relies on).
//! - The store applying arbitrary bytes, and edited valid encodings, as log entries or
//!   queries: never panics; valid encodings decode to what was encoded.
//! - The store restoring arbitrary bytes, and edited valid snapshots: never panics, refuses
//!   with `InvalidData` and keeps its state; a valid snapshot restores exactly what was saved.
//!
//! For a soak: `PROPTEST_CASES=20000 cargo test -p tickraft-kv --release --test hostile`.

use std::io::{self, Read};

use proptest::collection::vec;
use proptest::prelude::*;
use raft_std::{Index, StateMachine};
use tickraft_kv::codec::{decode, Transaction};
use tickraft_kv::command::{Command, Op};
use tickraft_kv::limits::{
    COMMAND_OVERHEAD, MAX_ARRAY_LEN, MAX_BULK_BYTES, MAX_READ_BUFFER_BYTES, MAX_REQUEST_BYTES,
};
use tickraft_kv::resp::{Args, ProtocolError, RequestReader};
use tickraft_kv::store::KvStore;

/// `cases` unless `PROPTEST_CASES` says otherwise, from a fixed seed unless `PROPTEST_RNG_SEED`
/// names another, so that CI runs the same cases every time and a soak can explore new ones.
/// Failures print their shrunk input, so nothing is written next to this file.
fn cases(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = proptest::test_runner::RngSeed::Fixed(0x6b76_7265_7370);
    }
    c
}

/// A stream that hands out its bytes in the given chunk sizes, cycling.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.next % self.sizes.len()].max(1);
        self.next += 1;
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Reads every request from `data`; stops at the first protocol error.
fn read_all(data: &[u8], sizes: Vec<usize>) -> (Vec<Args>, Option<ProtocolError>) {
    let mut stream = Chunked {
        data,
        sizes,
        next: 0,
    };
    let mut reader = RequestReader::new();
    let mut got = Vec::new();
    loop {
        let r = reader.next_request();
        assert!(
            reader.held_bytes() <= MAX_READ_BUFFER_BYTES + MAX_REQUEST_BYTES,
            "holds {} bytes",
            reader.held_bytes()
        );
        match r {
            Ok(Some(args)) => {
                assert!(!args.is_empty() && args.len() <= MAX_ARRAY_LEN);
                assert!(args.iter().all(|a| a.len() <= MAX_BULK_BYTES));
                assert!(args.iter().map(Vec::len).sum::<usize>() <= MAX_REQUEST_BYTES);
                got.push(args);
            }
            Ok(None) => {
                let buf = match reader.read_buf() {
                    Ok(buf) => buf,
                    Err(e) => return (got, Some(e)),
                };
                match stream.read(buf).expect("reads from memory") {
                    0 => return (got, None),
                    n => reader.filled(n),
                }
            }
            Err(e) => return (got, Some(e)),
        }
    }
}

fn encode_request(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Arguments that look like commands often enough to reach past the name check.
fn args_strategy() -> impl Strategy<Value = Args> {
    let name = prop_oneof![
        Just(b"SET".to_vec()),
        Just(b"get".to_vec()),
        Just(b"MSET".to_vec()),
        Just(b"MGET".to_vec()),
        Just(b"DEL".to_vec()),
        Just(b"EXISTS".to_vec()),
        Just(b"INCRBY".to_vec()),
        Just(b"DECRBY".to_vec()),
        Just(b"INCR".to_vec()),
        Just(b"PING".to_vec()),
        Just(b"CLIENT".to_vec()),
        Just(b"CONFIG".to_vec()),
        Just(b"HELLO".to_vec()),
        Just(b"INFO".to_vec()),
        Just(b"COMMAND".to_vec()),
        Just(b"RAFT.ADDLEARNER".to_vec()),
        Just(b"RAFT.PROMOTE".to_vec()),
        Just(b"RAFT.MEMBERS".to_vec()),
        vec(any::<u8>(), 0..8),
    ];
    let arg = prop_oneof![
        Just(b"NX".to_vec()),
        Just(b"XX".to_vec()),
        Just(b"IFEQ".to_vec()),
        Just(b"-9223372036854775808".to_vec()),
        Just(b"9223372036854775807".to_vec()),
        Just(b"1".to_vec()),
        Just(b"GET".to_vec()),
        Just(b"SETNAME".to_vec()),
        Just(b"127.0.0.1:7001".to_vec()),
        Just(b"[::1]:7001".to_vec()),
        vec(any::<u8>(), 0..40),
        vec(any::<u8>(), 0..3000),
    ];
    (name, vec(arg, 0..12)).prop_map(|(name, mut rest)| {
        rest.insert(0, name);
        rest
    })
}

#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply_edits(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len();
        match *e {
            Edit::Flip(i, b) if len > 0 => bytes[i % len] ^= b | 1,
            Edit::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Edit::Delete(i) if len > 0 => {
                bytes.remove(i % len);
            }
            Edit::Truncate(i) => bytes.truncate(i % (len + 1)),
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_the_reader(
        data in vec(any::<u8>(), 0..4096),
        sizes in vec(1usize..300, 1..8),
    ) {
        read_all(&data, sizes);
    }

    #[test]
    fn framed_garbage_never_panics_the_reader(
        pieces in vec(prop_oneof![
            Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()), Just(b"\"".to_vec()), Just(b"'".to_vec()),
            Just(b"\\x4".to_vec()), Just(b"-1".to_vec()), Just(b"3".to_vec()),
            Just(b"65536".to_vec()), Just(b"524288".to_vec()), Just(b" ".to_vec()),
            vec(any::<u8>(), 0..6),
        ], 0..200),
        sizes in vec(1usize..64, 1..4),
    ) {
        read_all(&pieces.concat(), sizes);
    }

    #[test]
    fn valid_requests_come_back_exactly_in_any_chunking(
        requests in vec(args_strategy(), 1..6),
        sizes in vec(1usize..5000, 1..6),
    ) {
        let data: Vec<u8> = requests.iter().flat_map(|r| encode_request(r)).collect();
        let (got, err) = read_all(&data, sizes);
        prop_assert!(err.is_none(), "{err:?}");
        prop_assert_eq!(got, requests);
    }

    #[test]
    fn edited_requests_never_panic_the_reader(
        requests in vec(args_strategy(), 1..4),
        edits in vec(edit_strategy(), 1..6),
        sizes in vec(1usize..2000, 1..4),
    ) {
        let data: Vec<u8> = requests.iter().flat_map(|r| encode_request(r)).collect();
        read_all(&apply_edits(data, &edits), sizes);
    }

    #[test]
    fn whatever_parses_fits_in_a_command(args in args_strategy()) {
        let wire = encode_request(&args).len();
        if let Ok(Command::Op(op)) = Command::parse(args) {
            let encoded = op.encode();
            prop_assert!(encoded.len() <= wire + COMMAND_OVERHEAD);
            // And it decodes to what was encoded, and applies without a panic.
            prop_assert!(decode(&encoded).is_ok());
            let mut store = KvStore::new();
            let reply = if op.is_write() {
                store.apply(Index(1), &encoded)
            } else {
                store.query(&encoded)
            };
            prop_assert!(!reply.is_empty());
        }
    }

    #[test]
    fn arbitrary_log_entries_never_panic_the_store(
        entries in vec(vec(any::<u8>(), 0..64), 1..20),
    ) {
        let mut store = KvStore::new();
        for (i, e) in entries.iter().enumerate() {
            let mut entry = e.clone();
            // Half the time, a valid header, so the bytes reach the op decoder.
            if i % 2 == 0 {
                entry.splice(0..0, [1u8, (i % 4) as u8 / 2 + 1]);
            }
            let reply = store.apply(Index(i as u64 + 1), &entry);
            prop_assert!(reply.first().is_some_and(|b| b"+-:$*".contains(b)));
            let reply = store.query(&entry);
            prop_assert!(reply.first().is_some_and(|b| b"+-:$*".contains(b)));
        }
    }

    #[test]
    fn edited_valid_entries_never_panic_the_store(
        commands in vec(args_strategy(), 1..8),
        edits in vec(edit_strategy(), 1..4),
    ) {
        let mut t = Transaction::new();
        for args in commands {
            if let Ok(Command::Op(op)) = Command::parse(args) {
                let _ = t.push(&op);
            }
        }
        let mut store = KvStore::new();
        let valid = t.encode();
        prop_assert!(decode(&valid).is_ok());
        store.apply(Index(1), &valid);
        let edited = apply_edits(valid, &edits);
        store.apply(Index(2), &edited);
        store.query(&edited);
        let single = Op::Get(&b"k"[..]).encode();
        store.apply(Index(3), &apply_edits(single, &edits));
    }
}

/// A store holding `pairs` (later pairs win).
fn store_with(pairs: &[(Vec<u8>, Vec<u8>)]) -> KvStore {
    let mut store = KvStore::new();
    for (k, v) in pairs {
        let op = Op::Set {
            key: &k[..],
            value: &v[..],
            condition: tickraft_kv::command::SetCondition::Always,
        };
        store.apply(Index(1), &op.encode());
    }
    store
}

fn snapshot_of(store: &KvStore) -> Vec<u8> {
    let mut out = Vec::new();
    store.snapshot(&mut out).expect("writes to memory");
    out
}

fn pairs_strategy() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    vec((vec(any::<u8>(), 0..16), vec(any::<u8>(), 0..300)), 0..20)
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn snapshots_restore_exactly_what_was_saved(pairs in pairs_strategy()) {
        let store = store_with(&pairs);
        let mut restored = store_with(&[(b"stale".to_vec(), b"x".to_vec())]);
        restored.restore(&mut &snapshot_of(&store)[..]).expect("valid");
        prop_assert_eq!(restored.len(), store.len());
        for (k, _) in &pairs {
            prop_assert_eq!(restored.get(k), store.get(k));
        }
        prop_assert_eq!(restored.get(b"stale"), store.get(b"stale"));
    }

    #[test]
    fn arbitrary_bytes_never_panic_restore(
        data in vec(any::<u8>(), 0..2048),
        magic in any::<bool>(),
    ) {
        let mut data = data;
        // Half the time, a valid header, so the bytes reach the records.
        if magic {
            data.splice(0..0, tickraft_kv::snapshot::MAGIC.iter().copied().chain([1, 0, 0, 0]));
        }
        let mut store = store_with(&[(b"k".to_vec(), b"v".to_vec())]);
        if let Err(e) = store.restore(&mut &data[..]) {
            prop_assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            prop_assert_eq!(store.get(b"k"), Some(&b"v"[..]));
        }
    }

    #[test]
    fn edited_snapshots_are_refused_or_restore_a_valid_state(
        pairs in pairs_strategy(),
        edits in vec(edit_strategy(), 1..4),
        sizes in vec(1usize..700, 1..4),
    ) {
        let valid = snapshot_of(&store_with(&pairs));
        let edited = apply_edits(valid.clone(), &edits);
        let mut store = store_with(&[(b"k".to_vec(), b"v".to_vec())]);
        // Arriving in pieces, as from a file or a socket.
        let mut input = Chunked { data: &edited, sizes, next: 0 };
        match store.restore(&mut input) {
            // Only if the edits cancelled out (a byte inserted, then deleted): the checksum
            // refuses anything else.
            Ok(()) => prop_assert!(edited == valid, "an edited snapshot was accepted"),
            Err(e) => {
                prop_assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                prop_assert_eq!(store.get(b"k"), Some(&b"v"[..]));
            }
        }
    }
}
