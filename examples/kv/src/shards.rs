//! The store's map, split into shards that are shared copy-on-write, so that a snapshot can
//! freeze the whole state in microseconds and write it on another thread.
//!
//! Each of [`SHARDS`] shards is an `Arc<HashMap>`. [`ShardedMap::freeze`] clones the 256 `Arc`s;
//! the next write to a shard a frozen view still holds copies that one shard
//! (`Arc::make_mut`), about 1/256 of the state, and later writes to it are plain again. So a
//! snapshot costs the node thread a copy of each shard written while the snapshot is being
//! written, spread over those writes, instead of the whole write of the state at once.

use std::collections::HashMap;
use std::sync::Arc;

/// How many shards.
pub const SHARDS: usize = 256;

type Shard = HashMap<Vec<u8>, Vec<u8>>;

/// A map from keys to values in [`SHARDS`] copy-on-write shards.
#[derive(Clone, Debug)]
pub struct ShardedMap {
    shards: Vec<Arc<Shard>>,
    len: usize,
}

impl Default for ShardedMap {
    fn default() -> Self {
        ShardedMap {
            shards: (0..SHARDS).map(|_| Arc::new(Shard::new())).collect(),
            len: 0,
        }
    }
}

/// The shard of `key`, by FNV-1a: the same on every member and every run.
fn shard_of(key: &[u8]) -> usize {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    (h % SHARDS as u64) as usize
}

impl ShardedMap {
    /// Keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value at `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.shards[shard_of(key)].get(key)
    }

    /// Whether `key` is held.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.shards[shard_of(key)].contains_key(key)
    }

    /// The value at `key`, for changing in place.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Vec<u8>> {
        let shard = &mut self.shards[shard_of(key)];
        // A shard a frozen view shares is copied only if the key is there to change.
        if Arc::get_mut(shard).is_none() && !shard.contains_key(key) {
            return None;
        }
        Arc::make_mut(shard).get_mut(key)
    }

    /// Stores `value` at `key`; the old value, if any.
    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Option<Vec<u8>> {
        let old = Arc::make_mut(&mut self.shards[shard_of(&key)]).insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`; its value, if it was there.
    pub fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let shard = &mut self.shards[shard_of(key)];
        if Arc::get_mut(shard).is_none() && !shard.contains_key(key) {
            return None;
        }
        let old = Arc::make_mut(shard).remove(key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Every key and value, shard by shard.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// A frozen copy of the whole map, made by sharing every shard: it does not change when
    /// this map does, and is `Send`, for writing a snapshot on another thread.
    pub fn freeze(&self) -> ShardedMap {
        self.clone()
    }
}

impl FromIterator<(Vec<u8>, Vec<u8>)> for ShardedMap {
    fn from_iter<I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>>(iter: I) -> Self {
        let mut m = ShardedMap::default();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_map_and_a_frozen_copy_does_not_move() {
        let mut m = ShardedMap::default();
        for i in 0..1000u32 {
            assert_eq!(m.insert(i.to_le_bytes().to_vec(), vec![1]), None);
        }
        assert_eq!(m.len(), 1000);
        let frozen = m.freeze();
        for i in 0..500u32 {
            let k = i.to_le_bytes();
            assert_eq!(m.remove(&k), Some(vec![1]));
            assert_eq!(m.remove(&k), None);
        }
        for i in 500..1000u32 {
            m.get_mut(&i.to_le_bytes()).expect("held").push(2);
        }
        assert_eq!(m.get_mut(b"absent"), None);
        assert_eq!(m.insert(7u32.to_le_bytes().to_vec(), vec![9]), None);
        assert_eq!(m.len(), 501);
        assert_eq!(m.iter().count(), 501);
        // The frozen copy still holds the state at the time of `freeze`.
        assert_eq!(frozen.len(), 1000);
        assert_eq!(frozen.iter().count(), 1000);
        assert!(frozen.iter().all(|(_, v)| v == &vec![1]));
        assert_eq!(m.get(&600u32.to_le_bytes()), Some(&vec![1, 2]));
        assert_eq!(frozen.get(&600u32.to_le_bytes()), Some(&vec![1]));
        // A shard nobody else holds is written in place; a shared one is copied first.
        drop(frozen);
        m.insert(b"x".to_vec(), vec![]);
        let own = Arc::as_ptr(&m.shards[shard_of(b"x")]);
        m.insert(b"x".to_vec(), vec![1]);
        assert_eq!(Arc::as_ptr(&m.shards[shard_of(b"x")]), own);
        let frozen = m.freeze();
        m.insert(b"x".to_vec(), vec![2]);
        assert_ne!(Arc::as_ptr(&m.shards[shard_of(b"x")]), own);
        assert_eq!(frozen.get(b"x"), Some(&vec![1]));
        assert_eq!(m.get(b"x"), Some(&vec![2]));
        // A key that is not there copies no shared shard.
        let shared = Arc::as_ptr(&m.shards[shard_of(b"absent")]);
        assert_eq!(m.get_mut(b"absent"), None);
        assert_eq!(m.remove(b"absent"), None);
        assert_eq!(Arc::as_ptr(&m.shards[shard_of(b"absent")]), shared);
        drop(frozen);
    }

    #[test]
    fn keys_spread_over_the_shards() {
        let m: ShardedMap = (0..10_000u32)
            .map(|i| (format!("key:{i:012}").into_bytes(), Vec::new()))
            .collect();
        let fullest = m.shards.iter().map(|s| s.len()).max().unwrap_or(0);
        let emptiest = m.shards.iter().map(|s| s.len()).min().unwrap_or(0);
        // About 39 each.
        assert!(fullest < 80 && emptiest > 10, "{emptiest}..{fullest}");
    }
}
