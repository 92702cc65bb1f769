//! The replicated state machine: a map from keys to values, answering in RESP.
//!
//! Every member applies the same log entries in the same order; an entry's response is the
//! exact RESP reply for the client that proposed it, so the server writes it through
//! untouched.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use raft_std::{Index, SnapshotView, StateMachine};

use crate::codec::{decode, Decoded};
use crate::command::{parse_i64, Op, SetCondition};
use crate::limits::MAX_REPLY_BYTES;
use crate::resp::{write_array_len, write_bulk, write_error, write_integer, write_nil};
use crate::shards::ShardedMap;
use crate::snapshot;

/// The number of keys in a store, readable from any thread without going through the node (so
/// `INFO keyspace` answers even without a leader). It is this member's applied state, not a
/// linearizable read.
#[derive(Clone, Debug, Default)]
pub struct KeyCount(Arc<AtomicU64>);

impl KeyCount {
    /// Keys as of the last applied entry.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The key-value store every member replicates.
#[derive(Debug, Default)]
pub struct KvStore {
    map: ShardedMap,
    keys: KeyCount,
}

/// A reply being built, which stops growing past [`MAX_REPLY_BYTES`].
#[derive(Default)]
struct Reply {
    out: Vec<u8>,
    /// Some value was left out because the reply would have grown past the bound.
    over: bool,
}

impl Reply {
    fn bulk(&mut self, data: &[u8]) {
        // 32: the `$<len>\r\n` and `\r\n` around it, generously.
        if self.over || self.out.len() + data.len() + 32 > MAX_REPLY_BYTES {
            self.over = true;
        } else {
            write_bulk(&mut self.out, data);
        }
    }

    fn error(&mut self, msg: &str) {
        write_error(&mut self.out, msg);
    }

    fn finish(mut self, wrote: bool) -> Vec<u8> {
        if self.over {
            self.out.clear();
            let applied = if wrote {
                "; its writes were applied"
            } else {
                ""
            };
            let msg = format!("ERR reply larger than {MAX_REPLY_BYTES} bytes{applied}");
            write_error(&mut self.out, &msg);
        }
        self.out
    }
}

impl KvStore {
    /// An empty store.
    pub fn new() -> Self {
        KvStore::default()
    }

    /// A handle on the number of keys, for `INFO`.
    pub fn key_count(&self) -> KeyCount {
        self.keys.clone()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The value at `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    fn read(&self, op: &Op<&[u8]>, r: &mut Reply) {
        match op {
            Op::Ping(None) => r.out.extend_from_slice(b"+PONG\r\n"),
            Op::Ping(Some(msg)) | Op::Echo(msg) => r.bulk(msg),
            Op::Get(key) => match self.map.get(key) {
                Some(v) => r.bulk(v),
                None => write_nil(&mut r.out),
            },
            Op::MGet(keys) => {
                write_array_len(&mut r.out, keys.len());
                for key in keys {
                    match self.map.get(key) {
                        Some(v) => r.bulk(v),
                        None => write_nil(&mut r.out),
                    }
                }
            }
            Op::Exists(keys) => {
                let n = keys.iter().filter(|k| self.map.contains_key(k)).count();
                write_integer(&mut r.out, n as i64);
            }
            Op::DbSize => write_integer(&mut r.out, self.map.len() as i64),
            Op::Set { .. } | Op::Del(_) | Op::IncrBy { .. } | Op::MSet(_) => {
                r.error("ERR a query cannot hold a write");
            }
        }
    }

    fn execute(&mut self, op: &Op<&[u8]>, r: &mut Reply) {
        match op {
            Op::Set {
                key,
                value,
                condition,
            } => {
                let current = self.map.get(key);
                let set = match condition {
                    SetCondition::Always => true,
                    SetCondition::IfAbsent => current.is_none(),
                    SetCondition::IfPresent => current.is_some(),
                    SetCondition::IfEqual(expected) => current.is_some_and(|v| v == expected),
                };
                if set {
                    self.put(key, value);
                    r.out.extend_from_slice(b"+OK\r\n");
                } else {
                    write_nil(&mut r.out);
                }
            }
            Op::Del(keys) => {
                let n = keys.iter().filter(|k| self.map.remove(k).is_some()).count();
                write_integer(&mut r.out, n as i64);
            }
            Op::IncrBy { key, delta } => {
                let current = match self.map.get(key) {
                    None => Some(0),
                    Some(v) => parse_i64(v),
                };
                let Some(current) = current else {
                    return r.error("ERR value is not an integer or out of range");
                };
                let Some(new) = current.checked_add(*delta) else {
                    return r.error("ERR increment or decrement would overflow");
                };
                self.put(key, new.to_string().as_bytes());
                write_integer(&mut r.out, new);
            }
            Op::MSet(pairs) => {
                for (k, v) in pairs {
                    self.put(k, v);
                }
                r.out.extend_from_slice(b"+OK\r\n");
            }
            read => self.read(read, r),
        }
    }

    /// Stores `value` at `key`, reusing the old value's allocation when there is one.
    fn put(&mut self, key: &[u8], value: &[u8]) {
        match self.map.get_mut(key) {
            Some(v) => {
                v.clear();
                v.extend_from_slice(value);
            }
            None => {
                self.map.insert(key.to_vec(), value.to_vec());
            }
        }
    }
}

impl StateMachine for KvStore {
    fn apply(&mut self, _index: Index, command: &[u8]) -> Vec<u8> {
        let mut r = Reply::default();
        let mut wrote = false;
        match decode(command) {
            Err(e) => r.error(&format!("ERR malformed command in the log: {e}")),
            Ok(Decoded::Single(op)) => {
                wrote = op.is_write();
                self.execute(&op, &mut r);
            }
            Ok(Decoded::Batch(ops)) => {
                // The whole transaction is one entry, so nothing can run between its commands:
                // reads inside it see the writes before them and nothing else.
                write_array_len(&mut r.out, ops.len());
                for op in &ops {
                    wrote |= op.is_write();
                    self.execute(op, &mut r);
                }
            }
        }
        self.keys.0.store(self.map.len() as u64, Ordering::Relaxed);
        r.finish(wrote)
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        let mut r = Reply::default();
        match decode(query) {
            Err(e) => r.error(&format!("ERR malformed query: {e}")),
            Ok(Decoded::Single(op)) => self.read(&op, &mut r),
            Ok(Decoded::Batch(ops)) => {
                write_array_len(&mut r.out, ops.len());
                for op in &ops {
                    self.read(op, &mut r);
                }
            }
        }
        r.finish(false)
    }

    /// The whole map in the encoding of [`crate::snapshot`].
    fn snapshot(&self, out: &mut dyn io::Write) -> io::Result<()> {
        snapshot::write(self.map.len(), self.map.iter(), out)
    }

    /// A copy-on-write freeze of the map (see [`crate::shards`]): the node writes it on its
    /// snapshot thread while this store goes on applying.
    fn snapshot_view(&self) -> Option<Box<dyn SnapshotView>> {
        Some(Box::new(Frozen(self.map.freeze())))
    }

    /// Replaces the map with a snapshot's. The new map is built beside the old one, so a
    /// refused snapshot leaves the store as it was (and memory peaks at both maps).
    fn restore(&mut self, input: &mut dyn io::Read) -> io::Result<()> {
        self.map = snapshot::read(input)?;
        self.keys.0.store(self.map.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// The map as it was when a snapshot was asked for.
struct Frozen(ShardedMap);

impl SnapshotView for Frozen {
    fn write_to(&mut self, out: &mut dyn io::Write) -> io::Result<()> {
        snapshot::write(self.0.len(), self.0.iter(), out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Transaction;
    use crate::command::test_support::op;

    /// Runs one command the way the server would: writes through `apply`, reads through
    /// `query`.
    fn run(s: &mut KvStore, words: &str) -> String {
        let o = op(words);
        let reply = if o.is_write() {
            s.apply(Index(1), &o.encode())
        } else {
            s.query(&o.encode())
        };
        String::from_utf8(reply).expect("ASCII")
    }

    fn exec(s: &mut KvStore, commands: &[&str]) -> String {
        let mut t = Transaction::new();
        for c in commands {
            t.push(&op(c)).expect("fits");
        }
        String::from_utf8(s.apply(Index(1), &t.encode())).expect("ASCII")
    }

    #[test]
    fn set_and_get() {
        let mut s = KvStore::new();
        assert_eq!(run(&mut s, "GET k"), "$-1\r\n");
        assert_eq!(run(&mut s, "SET k v"), "+OK\r\n");
        assert_eq!(run(&mut s, "GET k"), "$1\r\nv\r\n");
        assert_eq!(run(&mut s, "SET k longer"), "+OK\r\n");
        assert_eq!(run(&mut s, "GET k"), "$6\r\nlonger\r\n");
    }

    #[test]
    fn set_conditions() {
        let mut s = KvStore::new();
        assert_eq!(run(&mut s, "SET k v XX"), "$-1\r\n");
        assert_eq!(run(&mut s, "EXISTS k"), ":0\r\n");
        assert_eq!(run(&mut s, "SET k v1 NX"), "+OK\r\n");
        assert_eq!(run(&mut s, "SET k v2 NX"), "$-1\r\n");
        assert_eq!(run(&mut s, "GET k"), "$2\r\nv1\r\n");
        assert_eq!(run(&mut s, "SET k v3 XX"), "+OK\r\n");
        assert_eq!(run(&mut s, "SET k v4 IFEQ v1"), "$-1\r\n");
        assert_eq!(run(&mut s, "SET k v4 IFEQ v3"), "+OK\r\n");
        assert_eq!(run(&mut s, "GET k"), "$2\r\nv4\r\n");
        // IFEQ on a missing key does not set (Valkey 8.1).
        assert_eq!(run(&mut s, "SET missing v IFEQ v"), "$-1\r\n");
        assert_eq!(run(&mut s, "EXISTS missing"), ":0\r\n");
    }

    #[test]
    fn counters() {
        let mut s = KvStore::new();
        assert_eq!(run(&mut s, "INCR c"), ":1\r\n");
        assert_eq!(run(&mut s, "INCRBY c 41"), ":42\r\n");
        assert_eq!(run(&mut s, "DECR c"), ":41\r\n");
        assert_eq!(run(&mut s, "DECRBY c 50"), ":-9\r\n");
        assert_eq!(run(&mut s, "GET c"), "$2\r\n-9\r\n");
        assert_eq!(run(&mut s, "SET c 9223372036854775806"), "+OK\r\n");
        assert_eq!(run(&mut s, "INCR c"), ":9223372036854775807\r\n");
        assert_eq!(
            run(&mut s, "INCR c"),
            "-ERR increment or decrement would overflow\r\n"
        );
        assert_eq!(run(&mut s, "GET c"), "$19\r\n9223372036854775807\r\n");
        assert_eq!(run(&mut s, "SET c -9223372036854775808"), "+OK\r\n");
        assert_eq!(
            run(&mut s, "DECR c"),
            "-ERR increment or decrement would overflow\r\n"
        );
        for bad in ["abc", "1.5", "+1", "01", " 1", "99999999999999999999"] {
            s.apply(
                Index(1),
                &Op::Set {
                    key: &b"n"[..],
                    value: bad.as_bytes(),
                    condition: SetCondition::Always,
                }
                .encode(),
            );
            assert_eq!(
                run(&mut s, "INCR n"),
                "-ERR value is not an integer or out of range\r\n"
            );
        }
    }

    #[test]
    fn del_and_exists_count() {
        let mut s = KvStore::new();
        run(&mut s, "MSET a 1 b 2");
        assert_eq!(run(&mut s, "EXISTS a b c a"), ":3\r\n");
        assert_eq!(run(&mut s, "DBSIZE"), ":2\r\n");
        assert_eq!(run(&mut s, "DEL a c a"), ":1\r\n");
        assert_eq!(run(&mut s, "DEL a"), ":0\r\n");
        assert_eq!(run(&mut s, "DBSIZE"), ":1\r\n");
        assert_eq!(s.key_count().get(), 1);
    }

    #[test]
    fn mset_is_one_entry_and_mget_sees_it() {
        let mut s = KvStore::new();
        // Later pairs win, as in Redis.
        assert_eq!(run(&mut s, "MSET a 1 b 2 a 3"), "+OK\r\n");
        assert_eq!(
            run(&mut s, "MGET a b c"),
            "*3\r\n$1\r\n3\r\n$1\r\n2\r\n$-1\r\n"
        );
    }

    #[test]
    fn transactions_apply_in_order_and_reads_see_earlier_writes() {
        let mut s = KvStore::new();
        let reply = exec(
            &mut s,
            &[
                "SET a x", "INCR a", "GET a", "INCR c", "INCR c", "GET c", "PING",
            ],
        );
        assert_eq!(
            reply,
            "*7\r\n+OK\r\n-ERR value is not an integer or out of range\r\n$1\r\nx\r\n\
             :1\r\n:2\r\n$1\r\n2\r\n+PONG\r\n"
        );
        assert_eq!(exec(&mut s, &[]), "*0\r\n");
        // A read-only transaction can go through `query`.
        let mut t = Transaction::new();
        t.push(&op("GET c")).expect("fits");
        t.push(&op("EXISTS a c")).expect("fits");
        assert_eq!(
            String::from_utf8(s.query(&t.encode())).expect("ASCII"),
            "*2\r\n$1\r\n2\r\n:2\r\n"
        );
    }

    #[test]
    fn queries_refuse_writes_and_garbage() {
        let mut s = KvStore::new();
        assert_eq!(
            String::from_utf8(s.query(&op("SET a b").encode())).expect("ASCII"),
            "-ERR a query cannot hold a write\r\n"
        );
        assert!(s.is_empty());
        assert!(s
            .apply(Index(1), b"\x01\x01\x10\x09")
            .starts_with(b"-ERR malformed command"));
        assert!(s.query(b"").starts_with(b"-ERR malformed query"));
    }

    fn snapshot_of(s: &KvStore) -> Vec<u8> {
        let mut out = Vec::new();
        s.snapshot(&mut out).expect("writes to memory");
        out
    }

    #[test]
    fn restore_replaces_the_whole_state() {
        let mut s = KvStore::new();
        run(&mut s, "MSET a 1 b 2 c 3");
        run(&mut s, "INCR n");
        let snap = snapshot_of(&s);
        let mut t = KvStore::new();
        run(&mut t, "SET only-here x");
        t.restore(&mut &snap[..]).expect("valid");
        assert_eq!(
            run(&mut t, "MGET a b c n only-here"),
            run(&mut s, "MGET a b c n only-here")
        );
        assert_eq!(t.len(), 4);
        assert_eq!(t.key_count().get(), 4);
        // An empty snapshot empties the store.
        t.restore(&mut &snapshot_of(&KvStore::new())[..])
            .expect("valid");
        assert!(t.is_empty());
        assert_eq!(t.key_count().get(), 0);
    }

    #[test]
    fn a_view_writes_the_state_it_was_taken_at_while_the_store_moves_on() {
        let mut s = KvStore::new();
        for i in 0..2000 {
            run(&mut s, &format!("SET k{i} v{i}"));
        }
        let at_freeze = snapshot_of(&s);
        let mut view = s.snapshot_view().expect("the store offers a view");
        // Writes after the freeze, to every shard: overwritten, deleted, new and counted keys.
        for i in 0..2000 {
            run(&mut s, &format!("SET k{i} changed"));
        }
        run(&mut s, "DEL k1 k2 k3");
        run(&mut s, "SET brand-new 1");
        let mut written = Vec::new();
        // On another thread, as the node does.
        let written = std::thread::spawn(move || {
            view.write_to(&mut written).expect("writes to memory");
            written
        })
        .join()
        .expect("thread");
        let (mut from_view, mut from_snapshot) = (KvStore::new(), KvStore::new());
        from_view.restore(&mut &written[..]).expect("valid");
        from_snapshot.restore(&mut &at_freeze[..]).expect("valid");
        assert_eq!(from_view.len(), 2000);
        for i in (0..2000).step_by(97).chain([1, 2, 3]) {
            let get = format!("GET k{i}");
            assert_eq!(
                run(&mut from_view, &get),
                run(&mut from_snapshot, &get),
                "{get}"
            );
            assert_eq!(
                run(&mut from_view, &get),
                format!("${}\r\nv{i}\r\n", format!("v{i}").len())
            );
        }
        assert_eq!(run(&mut from_view, "EXISTS brand-new"), ":0\r\n");
        assert_eq!(run(&mut s, "GET k5"), "$7\r\nchanged\r\n");
    }

    #[test]
    fn a_refused_snapshot_leaves_the_store_as_it_was() {
        let mut s = KvStore::new();
        run(&mut s, "SET k v");
        let snap = snapshot_of(&s);
        let e = s
            .restore(&mut &snap[..snap.len() - 1])
            .expect_err("truncated");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(s.get(b"k"), Some(&b"v"[..]));
        assert!(s.restore(&mut &b"garbage"[..]).is_err());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn replies_are_bounded() {
        let mut s = KvStore::new();
        let value = vec![b'v'; 400 * 1024];
        s.apply(
            Index(1),
            &Op::Set {
                key: &b"big"[..],
                value: &value[..],
                condition: SetCondition::Always,
            }
            .encode(),
        );
        let keys: Vec<&[u8]> = vec![b"big"; 50];
        let reply = s.query(&Op::MGet(keys).encode());
        assert!(
            reply.starts_with(b"-ERR reply larger than"),
            "{}",
            reply.len()
        );
        let mut t = Transaction::new();
        t.push(&op("INCR n")).expect("fits");
        for _ in 0..50 {
            t.push(&op("GET big")).expect("fits");
        }
        let reply = String::from_utf8(s.apply(Index(2), &t.encode())).expect("ASCII");
        assert!(reply.ends_with("; its writes were applied\r\n"), "{reply}");
        assert_eq!(s.get(b"n"), Some(&b"1"[..]));
    }
}
