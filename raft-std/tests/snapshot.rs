//! Snapshot files on real directories: writing and reading back, chunked transfer between two
//! stores, and detection of every kind of damage, at open and at the end of a transfer.
//!
//! Offsets follow the format in the `snapshot` module docs: a 32-byte header, the meta, the
//! data, and a 12-byte trailer (data length, CRC).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use raft_core::{Index, Term};
use raft_std::snapshot::{SnapshotError, SnapshotInfo, SnapshotStore, MAX_META_LEN};

const HEADER: usize = 32;
const TRAILER: usize = 12;

/// `cases` unless `PROPTEST_CASES` says otherwise, from a fixed seed unless `PROPTEST_RNG_SEED`
/// names another (as in the WAL's suite).
fn cases(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = proptest::test_runner::RngSeed::Fixed(0x5a4_f00d);
    }
    c
}

fn open(dir: &Path) -> (SnapshotStore, Option<SnapshotInfo>) {
    SnapshotStore::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// Opening must refuse with `Corrupt` naming `path`; returns the reason.
fn open_corrupt(dir: &Path, path: &Path) -> String {
    match SnapshotStore::open(dir) {
        Err(SnapshotError::Corrupt { path: p, reason }) => {
            assert_eq!(p, path);
            reason
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("opened a damaged snapshot"),
    }
}

fn write(
    store: &mut SnapshotStore,
    index: u64,
    term: u64,
    meta: &[u8],
    data: &[u8],
) -> SnapshotInfo {
    let mut w = store
        .create(Index(index), Term(term), meta)
        .expect("create");
    // In uneven pieces, as a state machine would stream it.
    for piece in data.chunks(7) {
        w.write_all(piece).expect("write");
    }
    assert_eq!(w.data_len(), data.len() as u64);
    w.finish().expect("finish")
}

fn data_of(store: &SnapshotStore) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .read_data()
        .expect("read_data")
        .read_to_end(&mut out)
        .expect("read");
    out
}

/// Sends the latest snapshot of `from` to `to` in chunks of `chunk` bytes, as a leader would.
fn send(from: &SnapshotStore, to: &mut SnapshotStore, chunk: usize) {
    let info = from.latest().expect("a snapshot to send").clone();
    to.receive(info.index, info.term).expect("receive");
    let mut buf = vec![0; chunk];
    let mut offset = 0;
    loop {
        let n = from
            .read_chunk(info.index, offset, &mut buf)
            .expect("read_chunk");
        if n == 0 {
            break;
        }
        to.write_chunk(offset, &buf[..n]).expect("write_chunk");
        offset += n as u64;
    }
    assert_eq!(offset, info.file_len);
}

/// Feeds `bytes` to `to` as a transfer announced as `(index, term)`, in chunks of 5 bytes.
fn receive_bytes(to: &mut SnapshotStore, index: u64, term: u64, bytes: &[u8]) {
    to.receive(Index(index), Term(term)).expect("receive");
    let mut offset = 0;
    for chunk in bytes.chunks(5) {
        to.write_chunk(offset, chunk).expect("write_chunk");
        offset += chunk.len() as u64;
    }
}

/// `finish_receive` must refuse with `Corrupt`, delete the file received, and leave no
/// transfer in progress; returns the reason.
fn finish_corrupt(to: &mut SnapshotStore) -> String {
    let reason = match to.finish_receive() {
        Err(SnapshotError::Corrupt { path, reason }) => {
            assert_eq!(path, to.dir().join("incoming.tmp"));
            reason
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(info) => panic!("accepted a damaged transfer: {info:?}"),
    };
    assert!(!to.dir().join("incoming.tmp").exists());
    assert!(to.receiving().is_none());
    reason
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .expect("dir readable")
        .map(|d| {
            let p = d.expect("entry").path();
            let bytes = fs::read(&p).expect("file readable");
            (p, bytes)
        })
        .collect();
    v.sort();
    v
}

fn names(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .map(|(p, _)| {
            p.file_name()
                .and_then(|n| n.to_str())
                .expect("utf-8 name")
                .to_owned()
        })
        .collect()
}

fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[bit / 8] ^= 1 << (bit % 8);
    b
}

/// A small snapshot (index 0x2a, term 3) in `dir`; returns its info and bytes.
fn small(dir: &Path) -> (SnapshotInfo, Vec<u8>) {
    let (mut store, _) = open(dir);
    let info = write(&mut store, 0x2a, 3, b"meta!", b"twenty bytes of data");
    let bytes = fs::read(&info.path).expect("read");
    (info, bytes)
}

/// Which region of `small`'s file a byte is in.
fn region(at: usize, len: usize) -> &'static str {
    match at {
        _ if at < HEADER => "header",
        _ if at < HEADER + 5 => "meta",
        _ if at < len - TRAILER => "data",
        _ => "trailer",
    }
}

// ----- round trips -----

#[test]
fn round_trip_across_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data").join("snap");
    let (mut store, latest) = open(&dir);
    assert!(dir.is_dir(), "created with its parents");
    assert!(latest.is_none() && store.latest().is_none());

    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let info = write(&mut store, 1000, 7, b"members 1 2 3", &data);
    assert_eq!((info.index, info.term), (Index(1000), Term(7)));
    assert_eq!(info.meta, b"members 1 2 3");
    assert_eq!(info.data_len, data.len() as u64);
    assert_eq!(info.file_len, (HEADER + 13 + data.len() + TRAILER) as u64);
    assert_eq!(
        info.path,
        dir.join("00000000000003e8-0000000000000007.snap")
    );
    assert_eq!(fs::metadata(&info.path).expect("stat").len(), info.file_len);
    assert_eq!(store.latest(), Some(&info));
    assert_eq!(data_of(&store), data);
    assert_eq!(names(&dir), ["00000000000003e8-0000000000000007.snap"]);
    drop(store);

    let (store, latest) = open(&dir);
    assert_eq!(latest.as_ref(), Some(&info));
    assert_eq!(store.latest(), Some(&info));
    assert_eq!(data_of(&store), data);
}

#[test]
fn empty_meta_and_data_round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = open(tmp.path());
    let info = write(&mut store, 1, 1, b"", b"");
    assert_eq!(
        (info.file_len, info.data_len),
        ((HEADER + TRAILER) as u64, 0)
    );
    assert!(data_of(&store).is_empty());
    drop(store);
    let (_, latest) = open(tmp.path());
    assert_eq!(latest, Some(info));
}

#[test]
fn data_reader_is_bounded_and_outlives_a_newer_snapshot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = open(tmp.path());
    write(&mut store, 5, 1, b"m", b"0123456789");
    let mut reader = store.read_data().expect("read_data");
    assert_eq!(reader.remaining(), 10);
    let mut buf = [0; 4];
    reader.read_exact(&mut buf).expect("read");
    assert_eq!(&buf, b"0123");
    // A newer snapshot deletes the old file; the reader keeps its own handle on it.
    write(&mut store, 9, 1, b"m", b"something else");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).expect("read");
    assert_eq!(rest, b"456789");
    assert_eq!(reader.read(&mut buf).expect("at the end"), 0);
    assert_eq!(data_of(&store), b"something else");
}

// ----- transfer -----

#[test]
fn chunked_transfer_reproduces_the_file_byte_for_byte() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut leader, _) = open(&tmp.path().join("leader"));
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let sent = write(&mut leader, 77, 4, b"address book", &data);
    let original = fs::read(&sent.path).expect("read");

    for chunk in [1, 7, 4096, 1 << 20] {
        let dir = tmp.path().join(format!("follower-{chunk}"));
        let (mut follower, _) = open(&dir);
        send(&leader, &mut follower, chunk);
        assert_eq!(
            follower.receiving().map(|r| (r.index, r.term, r.received)),
            Some((Index(77), Term(4), sent.file_len))
        );
        let got = follower.finish_receive().expect("finish_receive");
        assert_eq!(got.path, dir.join("000000000000004d-0000000000000004.snap"));
        assert_eq!(
            (got.index, got.term, &got.meta, got.file_len, got.data_len),
            (
                sent.index,
                sent.term,
                &sent.meta,
                sent.file_len,
                sent.data_len
            )
        );
        assert_eq!(follower.latest(), Some(&got));
        assert!(follower.receiving().is_none());
        assert_eq!(
            fs::read(&got.path).expect("read"),
            original,
            "chunk {chunk}"
        );
        assert_eq!(names(&dir), ["000000000000004d-0000000000000004.snap"]);
        assert_eq!(data_of(&follower), data);
        drop(follower);
        let (_, latest) = open(&dir);
        assert_eq!(latest, Some(got));
    }
}

#[test]
fn received_snapshot_replaces_older_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut leader, _) = open(&tmp.path().join("leader"));
    write(&mut leader, 50, 2, b"new", b"new state");
    let dir = tmp.path().join("follower");
    let (mut follower, _) = open(&dir);
    write(&mut follower, 10, 1, b"old", b"old state");
    send(&leader, &mut follower, 16);
    follower.finish_receive().expect("finish_receive");
    assert_eq!(names(&dir), ["0000000000000032-0000000000000002.snap"]);
    assert_eq!(data_of(&follower), b"new state");
}

#[test]
fn out_of_order_chunks_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, bytes) = small(&tmp.path().join("leader"));
    let dir = tmp.path().join("follower");
    let (mut follower, _) = open(&dir);
    follower.receive(Index(0x2a), Term(3)).expect("receive");
    follower.write_chunk(0, &bytes[..10]).expect("first chunk");
    for bad in [5, 9, 11, 40] {
        match follower.write_chunk(bad, &bytes[bad as usize..]) {
            Err(SnapshotError::OutOfOrder {
                path,
                expected: 10,
                got,
            }) => {
                assert_eq!(got, bad);
                assert_eq!(path, dir.join("incoming.tmp"));
            }
            other => panic!("expected OutOfOrder, got {other:?}"),
        }
        assert_eq!(follower.receiving().map(|r| r.received), Some(10));
    }
    assert_eq!(
        fs::read(dir.join("incoming.tmp")).expect("read"),
        &bytes[..10]
    );
    follower.write_chunk(10, &bytes[10..]).expect("in order");
    assert!(follower.finish_receive().is_ok());
}

#[test]
fn offset_zero_starts_the_transfer_over() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, bytes) = small(&tmp.path().join("leader"));
    let (mut follower, _) = open(&tmp.path().join("follower"));
    follower.receive(Index(0x2a), Term(3)).expect("receive");
    follower
        .write_chunk(0, b"garbage from a sender that restarted")
        .expect("chunk");
    follower.write_chunk(0, &bytes[..3]).expect("restart");
    assert_eq!(follower.receiving().map(|r| r.received), Some(3));
    follower.write_chunk(3, &bytes[3..]).expect("rest");
    let info = follower.finish_receive().expect("finish_receive");
    assert_eq!(fs::read(&info.path).expect("read"), bytes);
}

#[test]
fn a_new_transfer_discards_the_old_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, bytes) = small(&tmp.path().join("leader"));
    let (mut follower, _) = open(&tmp.path().join("follower"));
    follower.receive(Index(7), Term(1)).expect("receive");
    follower
        .write_chunk(0, b"half of another snapshot")
        .expect("chunk");
    receive_bytes(&mut follower, 0x2a, 3, &bytes);
    let info = follower.finish_receive().expect("finish_receive");
    assert_eq!(info.index, Index(0x2a));

    follower.receive(Index(0x30), Term(3)).expect("receive");
    follower.abort_receive();
    assert!(follower.receiving().is_none());
    assert!(!follower.dir().join("incoming.tmp").exists());
}

#[test]
fn chunks_without_a_transfer_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = open(tmp.path());
    assert!(matches!(
        store.write_chunk(0, b"x"),
        Err(SnapshotError::NotReceiving { .. })
    ));
    assert!(matches!(
        store.finish_receive(),
        Err(SnapshotError::NotReceiving { .. })
    ));
}

#[test]
fn wrong_index_or_term_is_refused_at_finish() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, bytes) = small(&tmp.path().join("leader"));
    let (mut follower, _) = open(&tmp.path().join("follower"));
    for (index, term) in [(0x2b, 3), (0x29, 3), (0x2a, 4), (0x2a, 2)] {
        receive_bytes(&mut follower, index, term, &bytes);
        let reason = finish_corrupt(&mut follower);
        assert!(reason.contains("expected index"), "{reason}");
        assert!(follower.latest().is_none());
    }
}

// ----- damage -----

#[test]
fn a_bit_flip_anywhere_is_detected_at_open_and_leaves_the_files_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pristine = tmp.path().join("pristine");
    let (info, bytes) = small(&pristine);
    let name = info.path.file_name().expect("file name").to_owned();
    let older = "0000000000000001-0000000000000001.snap";
    let older_bytes = {
        let dir = tmp.path().join("older");
        let (mut s, _) = open(&dir);
        let i = write(&mut s, 1, 1, b"", b"older state");
        fs::read(i.path).expect("read")
    };
    let mut seen = Vec::new();
    for bit in 0..bytes.len() * 8 {
        let dir = tmp.path().join("flipped");
        fs::create_dir(&dir).expect("mkdir");
        let path = dir.join(&name);
        fs::write(&path, flip(&bytes, bit)).expect("write");
        // An older snapshot and a leftover temporary file: a refusal must touch neither.
        fs::write(dir.join(older), &older_bytes).expect("write");
        fs::write(dir.join("incoming.tmp"), b"partial").expect("write");
        let before = files(&dir);
        open_corrupt(&dir, &path);
        assert_eq!(files(&dir), before, "bit {bit}");
        seen.push(region(bit / 8, bytes.len()));
        fs::remove_dir_all(&dir).expect("cleanup");
    }
    seen.dedup();
    assert_eq!(seen, ["header", "meta", "data", "trailer"]);
}

#[test]
fn a_bit_flip_anywhere_is_detected_at_finish() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, bytes) = small(&tmp.path().join("leader"));
    let dir = tmp.path().join("follower");
    let (mut follower, _) = open(&dir);
    let kept = write(&mut follower, 0x10, 2, b"", b"what the follower had");
    for bit in 0..bytes.len() * 8 {
        receive_bytes(&mut follower, 0x2a, 3, &flip(&bytes, bit));
        finish_corrupt(&mut follower);
        assert_eq!(follower.latest(), Some(&kept), "bit {bit}");
    }
    assert_eq!(names(&dir), ["0000000000000010-0000000000000002.snap"]);
}

#[test]
fn each_region_names_what_is_wrong() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, bytes) = small(&tmp.path().join("leader"));
    let (mut follower, _) = open(&tmp.path().join("follower"));
    let len = bytes.len();
    for (at, expect) in [
        (0, "magic"),
        (8, "version"),
        (10, "reserved"),
        (12, "CRC"),
        (29, "meta length"),
        (HEADER + 2, "CRC"),
        (len - TRAILER - 1, "CRC"),
        (len - TRAILER, "CRC"),
        (len - 1, "CRC"),
    ] {
        receive_bytes(&mut follower, 0x2a, 3, &flip(&bytes, at * 8 + 4));
        let reason = finish_corrupt(&mut follower);
        assert!(reason.contains(expect), "byte {at}: {reason}");
    }
}

#[test]
fn truncated_or_extended_files_are_detected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (info, bytes) = small(&tmp.path().join("pristine"));
    let name = info.path.file_name().expect("file name").to_owned();
    let (mut follower, _) = open(&tmp.path().join("follower"));
    let mut variants: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
    variants.push([&bytes[..], b"\0"].concat());
    variants.push([&bytes[..], &bytes[..]].concat());
    for v in &variants {
        let dir = tmp.path().join("damaged");
        fs::create_dir(&dir).expect("mkdir");
        let path = dir.join(&name);
        fs::write(&path, v).expect("write");
        open_corrupt(&dir, &path);
        assert_eq!(fs::read(&path).expect("untouched"), *v);
        fs::remove_dir_all(&dir).expect("cleanup");

        receive_bytes(&mut follower, 0x2a, 3, v);
        finish_corrupt(&mut follower);
    }
}

#[test]
fn meta_length_is_bounded_before_anything_is_allocated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (info, bytes) = small(&tmp.path().join("pristine"));
    // A whole, CRC-valid file whose meta length claims 4 GiB - 1.
    let mut forged = bytes[..HEADER].to_vec();
    forged[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
    forged.extend_from_slice(&0u64.to_le_bytes());
    let crc = crc32c::crc32c(&forged);
    forged.extend_from_slice(&crc.to_le_bytes());
    let dir = tmp.path().join("forged");
    fs::create_dir(&dir).expect("mkdir");
    let path = dir.join(info.path.file_name().expect("name"));
    fs::write(&path, &forged).expect("write");
    let reason = open_corrupt(&dir, &path);
    assert!(reason.contains("limit"), "{reason}");

    let (mut store, _) = open(&tmp.path().join("writer"));
    match store.create(Index(1), Term(1), &vec![0; MAX_META_LEN + 1]) {
        Err(SnapshotError::MetaTooLarge { len, max, .. }) => {
            assert_eq!((len, max), (MAX_META_LEN + 1, MAX_META_LEN));
        }
        other => panic!("expected MetaTooLarge, got {other:?}"),
    }
    // The limit itself is fine.
    let info = write(&mut store, 1, 1, &vec![7; MAX_META_LEN], b"d");
    drop(store);
    let (_, latest) = open(&tmp.path().join("writer"));
    assert_eq!(latest.map(|l| l.meta.len()), Some(MAX_META_LEN));
    assert_eq!(info.meta.len(), MAX_META_LEN);
}

#[test]
fn another_format_version_is_refused_by_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (info, bytes) = small(&tmp.path().join("pristine"));
    let mut v2 = bytes[..bytes.len() - 4].to_vec();
    v2[8] = 2;
    let crc = crc32c::crc32c(&v2);
    v2.extend_from_slice(&crc.to_le_bytes());
    let dir = tmp.path().join("v2");
    fs::create_dir(&dir).expect("mkdir");
    let path = dir.join(info.path.file_name().expect("name"));
    fs::write(&path, &v2).expect("write");
    let reason = open_corrupt(&dir, &path);
    assert!(reason.contains("format version 2"), "{reason}");
}

#[test]
fn crc_valid_file_with_a_wrong_data_length_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (info, bytes) = small(&tmp.path().join("pristine"));
    let (mut follower, _) = open(&tmp.path().join("follower"));
    for stated in [0u64, 19, 21, u64::MAX] {
        let mut forged = bytes[..bytes.len() - TRAILER].to_vec();
        forged.extend_from_slice(&stated.to_le_bytes());
        let crc = crc32c::crc32c(&forged);
        forged.extend_from_slice(&crc.to_le_bytes());
        let dir = tmp.path().join("forged");
        fs::create_dir(&dir).expect("mkdir");
        let path = dir.join(info.path.file_name().expect("name"));
        fs::write(&path, &forged).expect("write");
        let reason = open_corrupt(&dir, &path);
        assert!(reason.contains("data bytes"), "{reason}");
        fs::remove_dir_all(&dir).expect("cleanup");

        receive_bytes(&mut follower, 0x2a, 3, &forged);
        let reason = finish_corrupt(&mut follower);
        assert!(reason.contains("data bytes"), "{reason}");
    }
}

#[test]
fn file_whose_header_contradicts_its_name_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (info, bytes) = small(&tmp.path().join("pristine"));
    let dir = tmp.path().join("renamed");
    fs::create_dir(&dir).expect("mkdir");
    let path = dir.join("000000000000002b-0000000000000003.snap");
    fs::write(&path, &bytes).expect("write");
    let reason = open_corrupt(&dir, &path);
    assert!(reason.contains("expected index 43"), "{reason}");
    assert_ne!(path.file_name(), info.path.file_name());
}

// ----- what open tidies -----

#[test]
fn leftover_temporary_files_are_removed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (info, _) = small(tmp.path());
    for leftover in [
        "incoming.tmp",
        "0000000000000099-0000000000000003.snap.tmp",
        "anything.tmp",
    ] {
        fs::write(tmp.path().join(leftover), b"half written").expect("write");
    }
    let (store, latest) = open(tmp.path());
    assert_eq!(latest.as_ref(), Some(&info));
    assert_eq!(
        names(tmp.path()),
        ["000000000000002a-0000000000000003.snap"]
    );
    drop(store);

    // With no snapshot at all, too.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    fs::write(empty.join("incoming.tmp"), b"x").expect("write");
    let (_, latest) = open(&empty);
    assert!(latest.is_none());
    assert!(names(&empty).is_empty());
}

#[test]
fn dropping_a_writer_deletes_its_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = open(tmp.path());
    let kept = write(&mut store, 3, 1, b"", b"kept");
    let mut w = store.create(Index(9), Term(1), b"meta").expect("create");
    w.write_all(&[1; 100_000]).expect("write");
    assert!(tmp
        .path()
        .join("0000000000000009-0000000000000001.snap.tmp")
        .exists());
    drop(w);
    assert_eq!(
        names(tmp.path()),
        ["0000000000000003-0000000000000001.snap"]
    );
    assert_eq!(store.latest(), Some(&kept));
    assert_eq!(data_of(&store), b"kept");
}

#[test]
fn only_the_newest_snapshot_is_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = open(tmp.path());
    let first = write(&mut store, 10, 1, b"", b"ten");
    let first_bytes = fs::read(&first.path).expect("read");
    write(&mut store, 20, 1, b"", b"twenty");
    let newest = write(&mut store, 30, 2, b"", b"thirty");
    assert_eq!(
        names(tmp.path()),
        ["000000000000001e-0000000000000002.snap"]
    );
    drop(store);

    // Older files that survived a crash are deleted by the next open...
    fs::write(&first.path, &first_bytes).expect("put back");
    let (store, latest) = open(tmp.path());
    assert_eq!(latest.as_ref(), Some(&newest));
    assert_eq!(
        names(tmp.path()),
        ["000000000000001e-0000000000000002.snap"]
    );
    assert_eq!(data_of(&store), b"thirty");
    drop(store);

    // ...but only once the newest verified: a damaged newest leaves them for an operator.
    fs::write(&first.path, &first_bytes).expect("put back");
    let bytes = fs::read(&newest.path).expect("read");
    fs::write(&newest.path, flip(&bytes, 8 * (bytes.len() - 20))).expect("damage");
    let before = files(tmp.path());
    open_corrupt(tmp.path(), &newest.path);
    assert_eq!(files(tmp.path()), before);
}

#[test]
fn newest_is_chosen_by_index_then_term() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut a, _) = open(&tmp.path().join("a"));
    let low = write(&mut a, 0x100, 9, b"", b"low");
    let (mut b, _) = open(&tmp.path().join("b"));
    let high = write(&mut b, 0xff0, 1, b"", b"high");
    let dir = tmp.path().join("both");
    fs::create_dir(&dir).expect("mkdir");
    for info in [&low, &high] {
        let name = info.path.file_name().expect("name");
        fs::copy(&info.path, dir.join(name)).expect("copy");
    }
    let (store, latest) = open(&dir);
    assert_eq!(latest.map(|l| l.index), Some(Index(0xff0)));
    assert_eq!(data_of(&store), b"high");
    assert_eq!(names(&dir), ["0000000000000ff0-0000000000000001.snap"]);
}

#[test]
fn files_that_are_not_snapshots_are_ignored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (info, _) = small(tmp.path());
    for odd in [
        "README",
        "2a-3.snap",
        "000000000000002A-0000000000000003.snap",
    ] {
        fs::write(tmp.path().join(odd), b"not mine").expect("write");
    }
    let (_, latest) = open(tmp.path());
    assert_eq!(latest, Some(info));
    assert_eq!(names(tmp.path()).len(), 4, "nothing deleted");
}

// ----- sending while the latest moves on -----

#[test]
fn read_chunk_after_a_newer_snapshot_is_replaced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = open(tmp.path());
    let mut buf = [0; 16];
    assert!(matches!(
        store.read_chunk(Index(1), 0, &mut buf),
        Err(SnapshotError::NoSnapshot { .. })
    ));
    assert!(matches!(
        store.read_data(),
        Err(SnapshotError::NoSnapshot { .. })
    ));
    let old = write(&mut store, 10, 1, b"", b"old");
    let mut chunk = |store: &SnapshotStore, index: u64, offset: u64| {
        store
            .read_chunk(Index(index), offset, &mut buf)
            .expect("read_chunk")
    };
    assert_eq!(chunk(&store, 10, 0), 16);
    // Up to the end, and nothing past it.
    assert_eq!(chunk(&store, 10, old.file_len - 3), 3);
    assert_eq!(chunk(&store, 10, old.file_len), 0);
    assert_eq!(chunk(&store, 10, u64::MAX), 0);

    write(&mut store, 11, 1, b"", b"new");
    match store.read_chunk(Index(10), 16, &mut buf) {
        Err(SnapshotError::Replaced { index, latest, .. }) => {
            assert_eq!((index, latest), (Index(10), Index(11)));
        }
        other => panic!("expected Replaced, got {other:?}"),
    }
    assert_eq!(
        store
            .read_chunk(Index(11), 0, &mut buf)
            .expect("read_chunk"),
        16
    );
}

#[test]
fn older_snapshots_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = open(tmp.path());
    let latest = write(&mut store, 20, 2, b"", b"twenty");
    assert!(matches!(
        store.create(Index(19), Term(2), b""),
        Err(SnapshotError::Stale {
            index: Index(19),
            latest: Index(20),
            ..
        })
    ));
    assert!(matches!(
        store.receive(Index(5), Term(1)),
        Err(SnapshotError::Stale { .. })
    ));
    assert!(store.receiving().is_none());
    assert_eq!(store.latest(), Some(&latest));
    // The same index replaces it.
    let again = write(&mut store, 20, 2, b"again", b"twenty again");
    assert_eq!(store.latest(), Some(&again));
    assert_eq!(data_of(&store), b"twenty again");
}

#[test]
fn a_local_snapshot_that_overtakes_a_transfer_wins() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, bytes) = small(&tmp.path().join("leader"));
    let (mut follower, _) = open(&tmp.path().join("follower"));
    receive_bytes(&mut follower, 0x2a, 3, &bytes);
    let local = write(&mut follower, 0x40, 3, b"", b"newer");
    assert!(matches!(
        follower.finish_receive(),
        Err(SnapshotError::Stale { .. })
    ));
    assert_eq!(follower.latest(), Some(&local));
    assert!(!follower.dir().join("incoming.tmp").exists());
}

// ----- properties -----

/// Damage to a valid file: bytes changed (position, xor mask), then a new length.
fn damage() -> impl Strategy<Value = (Vec<(prop::sample::Index, u8)>, Option<prop::sample::Index>)>
{
    (
        prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        prop::option::of(any::<prop::sample::Index>()),
    )
}

proptest! {
    #![proptest_config(cases(256))]

    /// Random corruption of a valid file (changed bytes, a cut) never panics, and is never
    /// accepted, neither at open nor at the end of a transfer.
    #[test]
    fn random_corruption_is_refused_without_panicking(
        meta in prop::collection::vec(any::<u8>(), 0..40),
        data in prop::collection::vec(any::<u8>(), 0..300),
        (changes, cut) in damage(),
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mut writer, _) = open(&tmp.path().join("w"));
        let info = write(&mut writer, 9, 2, &meta, &data);
        let bytes = fs::read(&info.path).expect("read");
        let mut damaged = bytes.clone();
        for (at, mask) in &changes {
            let i = at.index(damaged.len());
            damaged[i] ^= mask;
        }
        if let Some(cut) = cut {
            damaged.truncate(cut.index(damaged.len()));
        }

        let dir = tmp.path().join("r");
        fs::create_dir(&dir).expect("mkdir");
        let path = dir.join(info.path.file_name().expect("name"));
        fs::write(&path, &damaged).expect("write");
        let opened = SnapshotStore::open(&dir);
        let (mut receiver, _) = open(&tmp.path().join("x"));
        receive_bytes(&mut receiver, 9, 2, &damaged);
        let finished = receiver.finish_receive();
        if damaged == bytes {
            prop_assert!(opened.is_ok());
            prop_assert!(finished.is_ok());
        } else {
            let opened_corrupt = matches!(opened, Err(SnapshotError::Corrupt { .. }));
            prop_assert!(opened_corrupt);
            let finished_corrupt = matches!(finished, Err(SnapshotError::Corrupt { .. }));
            prop_assert!(finished_corrupt);
        }
    }

    /// Arbitrary bytes under a snapshot's name, or received as one, never panic.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        magic in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if magic && bytes.len() >= 8 {
            // Past the first check, so that the later ones see the garbage.
            bytes[..8].copy_from_slice(b"TKRFSNAP");
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("0000000000000001-0000000000000001.snap");
        fs::write(&path, &bytes).expect("write");
        let _ = SnapshotStore::open(tmp.path());
        let (mut receiver, _) = open(&tmp.path().join("x"));
        receive_bytes(&mut receiver, 1, 1, &bytes);
        let _ = receiver.finish_receive();
    }
}

#[test]
fn a_sealed_snapshot_is_committed_off_thread_then_adopted() {
    let d = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = open(d.path());
    write(&mut store, 5, 1, b"m", b"old");
    let mut w = store.create(Index(9), Term(2), b"meta").expect("create");
    w.write_all(b"new data").expect("write");
    let sealed = w.seal().expect("seal");
    // Until adopted, the store goes on serving the previous snapshot.
    assert_eq!(store.latest().map(|l| l.index), Some(Index(5)));
    assert_eq!(data_of(&store), b"old");
    let committed = std::thread::spawn(move || sealed.commit().expect("commit"))
        .join()
        .expect("thread");
    // Durable already: a restart would find it.
    assert!(committed.info().path.exists());
    let info = store.adopt(committed).expect("adopt");
    assert_eq!((info.index, info.term), (Index(9), Term(2)));
    assert_eq!(data_of(&store), b"new data");
    assert_eq!(names(d.path()).len(), 1, "{:?}", names(d.path()));
    let (_, latest) = open(d.path());
    assert_eq!(latest.map(|l| l.index), Some(Index(9)));
}

#[test]
fn a_sealed_snapshot_overtaken_by_a_received_one_is_dropped() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let (mut leader, _) = open(a.path());
    write(&mut leader, 20, 3, b"m", b"from the leader");
    let (mut follower, _) = open(b.path());
    let mut w = follower.create(Index(10), Term(2), b"m").expect("create");
    w.write_all(b"local").expect("write");
    let sealed = w.seal().expect("seal");
    send(&leader, &mut follower, 4);
    follower.finish_receive().expect("finish the transfer");
    let committed = sealed.commit().expect("commit");
    let path = committed.info().path.clone();
    assert!(matches!(
        follower.adopt(committed),
        Err(SnapshotError::Stale { .. })
    ));
    assert!(!path.exists(), "the stale file is deleted");
    assert_eq!(follower.latest().map(|l| l.index), Some(Index(20)));
    assert_eq!(data_of(&follower), b"from the leader");
    // A sealed snapshot dropped uncommitted leaves nothing behind.
    let mut w = follower.create(Index(30), Term(3), b"m").expect("create");
    w.write_all(b"x").expect("write");
    drop(w.seal().expect("seal"));
    assert_eq!(names(b.path()).len(), 1, "{:?}", names(b.path()));
}
