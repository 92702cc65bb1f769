//! The write-ahead log on real files: round trips across reopen, rotation, and recovery from
//! every kind of damage a crash (or a disk) can leave.
//!
//! The byte offsets below follow the format in the `wal` module docs: a 32-byte segment header,
//! a 33-byte hard-state record, and `26 + data` bytes per entry record.

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use raft_core::{Entry, EntryKind, HardState, Index, NodeId, Storage, StorageError, Term};
use raft_std::wal::{Wal, WalError, WalOptions};

const HEADER: u64 = 32;
const HS_RECORD: u64 = 33;
const ENTRY_FRAME: u64 = 26;

/// `cases` unless `PROPTEST_CASES` says otherwise, from a fixed seed unless `PROPTEST_RNG_SEED`
/// names another (as in raft-core's suites).
fn cases(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = proptest::test_runner::RngSeed::Fixed(0x3a1_f00d);
    }
    c
}

fn options(segment_bytes: u64, skip_fsync: bool) -> WalOptions {
    let mut o = WalOptions::default();
    o.segment_bytes = segment_bytes;
    o.dangerously_skip_fsync = skip_fsync;
    o
}

/// Real fsyncs, one segment.
fn durable() -> WalOptions {
    options(64 << 20, false)
}

/// For the many-reopen tests: fsync changes nothing about what is read back.
fn fast(segment_bytes: u64) -> WalOptions {
    options(segment_bytes, true)
}

fn e(index: u64, term: u64, data: &[u8]) -> Entry<'_> {
    Entry {
        index: Index(index),
        term: Term(term),
        kind: EntryKind::Normal,
        data,
    }
}

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: NodeId(vote),
        commit: Index(commit),
    }
}

fn open(dir: &Path, o: WalOptions) -> (Wal, raft_std::wal::Recovery) {
    Wal::open(dir, o, None).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

fn open_err(dir: &Path, o: WalOptions) -> WalError {
    match Wal::open(dir, o, None) {
        Ok(_) => panic!("open {} succeeded on a damaged log", dir.display()),
        Err(e) => e,
    }
}

/// The log as (term, kind, data), read through `Storage`.
type Log = Vec<(u64, EntryKind, Vec<u8>)>;

fn read_log(wal: &Wal) -> Log {
    assert_eq!(wal.first_index(), Index(1));
    (1..=wal.last_index().0)
        .map(|i| {
            let en = wal.entry(Index(i)).expect("held");
            assert_eq!(en.index, Index(i));
            assert_eq!(wal.term(Index(i)), Ok(en.term));
            (en.term.0, en.kind, en.data.to_vec())
        })
        .collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("dir readable")
        .map(|d| d.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Every file in `dir` with its bytes, to check that a refusal touched nothing.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
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

fn flip_bit(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).expect("read");
    bytes[offset as usize] ^= 0x10;
    fs::write(path, bytes).expect("write");
}

fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .expect("truncate");
}

/// Writes entries 1..=n (term `1 + i / 4`, data `entry-{i}`), one sync each, into one
/// segment. Returns the offset at which each entry's record starts.
fn write_entries(dir: &Path, n: u64) -> Vec<u64> {
    let (mut wal, _) = open(dir, fast(64 << 20));
    let mut offsets = Vec::new();
    let mut off = HEADER + HS_RECORD;
    for i in 1..=n {
        let data = format!("entry-{i}");
        wal.append([e(i, 1 + i / 4, data.as_bytes())])
            .expect("append");
        wal.sync().expect("sync");
        offsets.push(off);
        off += ENTRY_FRAME + data.len() as u64;
    }
    offsets
}

fn assert_entries(wal: &Wal, n: u64) {
    assert_eq!(wal.last_index(), Index(n));
    for i in 1..=n {
        let en = wal.entry(Index(i)).expect("held");
        assert_eq!(en.term, Term(1 + i / 4));
        assert_eq!(en.data, format!("entry-{i}").as_bytes());
    }
}

// ----- round trips -----

#[test]
fn round_trip_across_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let (mut wal, rec) = open(&dir, durable());
    assert_eq!((rec.segments, rec.entries), (0, 0));
    assert!(rec.torn_tail.is_none());
    assert_eq!(wal.dir(), dir);

    wal.set_hard_state(hs(2, 3, 2));
    let noop = Entry {
        kind: EntryKind::Noop,
        ..e(1, 1, b"")
    };
    wal.append([noop, e(2, 1, b"alpha"), e(3, 2, &[0, 1, 2, 255])])
        .expect("append");
    assert!(wal.has_unsynced());
    // Readable before the sync: the core reads committed entries straight after appending.
    assert_eq!(wal.entry(Index(2)).map(|x| x.data), Ok(&b"alpha"[..]));
    assert_eq!(wal.hard_state(), hs(2, 3, 2));
    let stats = wal.sync().expect("sync");
    assert!(stats.synced);
    assert_eq!(stats.bytes, HS_RECORD + 3 * ENTRY_FRAME + 5 + 4);
    assert!(!wal.has_unsynced());
    let before = read_log(&wal);
    drop(wal);

    let (wal, rec) = open(&dir, durable());
    assert_eq!((rec.segments, rec.entries), (1, 3));
    assert_eq!(rec.hard_state, hs(2, 3, 2));
    assert!(rec.torn_tail.is_none());
    assert_eq!(wal.hard_state(), hs(2, 3, 2));
    assert_eq!(read_log(&wal), before);
    assert_eq!(before[0].1, EntryKind::Noop);
    assert_eq!(wal.term(Index(0)), Ok(Term(0)));
    assert_eq!(wal.entry(Index(0)), Err(StorageError::Compacted));
    assert_eq!(wal.entry(Index(4)), Err(StorageError::Unavailable));
    assert_eq!(wal.term(Index(4)), Err(StorageError::Unavailable));
}

#[test]
fn sync_with_nothing_buffered_does_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = open(tmp.path(), durable());
    let s = wal.sync().expect("sync");
    assert_eq!(
        (s.bytes, s.synced, s.duration),
        (0, false, Default::default())
    );
    // The hard state it already has writes nothing.
    wal.set_hard_state(HardState::default());
    assert!(!wal.has_unsynced());
    wal.append(std::iter::empty()).expect("empty append");
    assert!(!wal.has_unsynced());
}

#[test]
fn skipping_fsync_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = open(tmp.path(), fast(64 << 20));
    wal.append([e(1, 1, b"x")]).expect("append");
    let s = wal.sync().expect("sync");
    assert!(!s.synced);
    assert_eq!(s.bytes, ENTRY_FRAME + 1);
}

#[test]
fn unsynced_records_are_lost_on_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = open(tmp.path(), durable());
    wal.append([e(1, 1, b"kept")]).expect("append");
    wal.sync().expect("sync");
    wal.append([e(2, 1, b"lost")]).expect("append");
    wal.set_hard_state(hs(5, 1, 0));
    drop(wal);
    let (wal, rec) = open(tmp.path(), durable());
    assert_eq!(rec.entries, 1);
    assert_eq!(wal.hard_state(), HardState::default());
    assert!(rec.torn_tail.is_none());
}

#[test]
fn overwritten_suffix_replays_after_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = open(tmp.path(), durable());
    wal.append((1..=5).map(|i| e(i, 1, b"one")))
        .expect("append");
    wal.sync().expect("sync");
    wal.append([e(3, 2, b"two"), e(4, 2, b"two")])
        .expect("overwrite");
    assert_eq!(wal.last_index(), Index(4));
    wal.sync().expect("sync");
    // Two overwrites in one batch, the second shortening the first.
    wal.append([e(4, 3, b"three"), e(5, 3, b"three"), e(6, 3, b"three")])
        .expect("overwrite");
    wal.append([e(5, 4, b"four")]).expect("overwrite");
    wal.sync().expect("sync");
    let expect = |wal: &Wal| {
        let terms: Vec<u64> = read_log(wal).iter().map(|x| x.0).collect();
        assert_eq!(terms, [1, 1, 2, 3, 4]);
        assert_eq!(wal.entry(Index(5)).map(|x| x.data), Ok(&b"four"[..]));
    };
    expect(&wal);
    drop(wal);
    let (wal, rec) = open(tmp.path(), durable());
    assert_eq!(rec.entries, 5);
    expect(&wal);
}

#[test]
fn bad_appends_change_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = open(tmp.path(), durable());
    wal.append([e(1, 1, b"a"), e(2, 1, b"b"), e(3, 1, b"c")])
        .expect("append");
    wal.sync().expect("sync");

    let gap = wal.append([e(5, 1, b"x")]).expect_err("gap");
    assert!(
        matches!(
            gap,
            WalError::Gap {
                expected: Index(4),
                got: Index(5)
            }
        ),
        "{gap}"
    );
    // A break late in the run, after an overwrite was set up: still nothing changes.
    let broken = wal
        .append([e(2, 2, b"x"), e(3, 2, b"y"), e(5, 2, b"z")])
        .expect_err("not contiguous");
    assert!(
        matches!(
            broken,
            WalError::NotContiguous {
                expected: Index(4),
                got: Index(5)
            }
        ),
        "{broken}"
    );
    let below = wal.append([e(0, 1, b"x")]).expect_err("below first index");
    assert!(matches!(below, WalError::Compacted { .. }), "{below}");

    assert!(!wal.has_unsynced());
    let abc: Vec<Vec<u8>> = read_log(&wal).into_iter().map(|x| x.2).collect();
    assert_eq!(abc, [b"a", b"b", b"c"]);
    wal.append([e(4, 1, b"d")])
        .expect("the log still takes a good append");
    wal.sync().expect("sync");
    drop(wal);
    let (wal, _) = open(tmp.path(), durable());
    assert_eq!(wal.last_index(), Index(4));
}

// ----- rotation -----

#[test]
fn rotation_spreads_the_log_over_segments_and_reopens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (mut wal, _) = open(dir, options(300, false));
    for i in 1..=40 {
        wal.append([e(i, 1 + i / 10, format!("entry-{i:03}").as_bytes())])
            .expect("append");
        wal.sync().expect("sync");
    }
    drop(wal);
    let files = segment_files(dir);
    assert!(files.len() >= 5, "{} segments", files.len());
    for (seq, f) in files.iter().enumerate() {
        let name = f.file_name().and_then(|n| n.to_str()).expect("utf-8 name");
        assert!(name.starts_with(&format!("{seq:016x}-")), "{name}");
        assert!(fs::metadata(f).expect("stat").len() <= 300 + ENTRY_FRAME + 9);
    }

    let (mut wal, rec) = open(dir, options(300, false));
    assert_eq!(rec.segments, files.len());
    assert_eq!(rec.entries, 40);
    for i in 1..=40 {
        let en = wal.entry(Index(i)).expect("held");
        assert_eq!(en.data, format!("entry-{i:03}").as_bytes());
        assert_eq!(en.term, Term(1 + i / 10));
    }
    // Carry on after the reopen, overwriting back across a segment boundary.
    wal.append([e(30, 9, b"rewritten"), e(31, 9, b"rewritten")])
        .expect("overwrite");
    wal.sync().expect("sync");
    drop(wal);
    let (wal, rec) = open(dir, options(300, false));
    assert_eq!(rec.entries, 31);
    assert_eq!(wal.entry(Index(29)).map(|x| x.term), Ok(Term(3)));
    assert_eq!(wal.entry(Index(31)).map(|x| x.data), Ok(&b"rewritten"[..]));
}

#[test]
fn each_hard_state_survives_rotation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut expected = HardState::default();
    for round in 1..=12u64 {
        let (mut wal, rec) = open(dir, fast(120));
        assert_eq!(rec.hard_state, expected, "round {round}");
        expected = hs(round, round % 3 + 1, round - 1);
        wal.set_hard_state(expected);
        wal.append([e(round, round, b"payload-payload")])
            .expect("append");
        wal.sync().expect("sync");
        if round % 2 == 0 {
            // A hard state alone in its batch, often the first write to a fresh segment.
            expected = hs(round, round % 3 + 1, round);
            wal.set_hard_state(expected);
            wal.sync().expect("sync");
        }
    }
    assert!(segment_files(dir).len() > 4);
    let (wal, _) = open(dir, fast(120));
    assert_eq!(wal.hard_state(), expected);
    assert_eq!(wal.last_index(), Index(12));
}

// ----- torn tails -----

#[test]
fn every_truncated_tail_recovers_a_prefix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pristine = tmp.path().join("pristine");
    let offsets = write_entries(&pristine, 12);
    let seg = segment_files(&pristine).pop().expect("one segment");
    let name = seg.file_name().expect("file name").to_owned();
    let bytes = fs::read(&seg).expect("read");
    let len = bytes.len() as u64;
    let mut boundaries = offsets.clone();
    boundaries.push(len);

    for cut in 1..=len {
        let dir = tmp.path().join(format!("cut-{cut}"));
        fs::create_dir(&dir).expect("mkdir");
        let kept = len - cut;
        fs::write(dir.join(&name), &bytes[..kept as usize]).expect("write");
        let (wal, rec) = open(&dir, fast(64 << 20));
        let whole = boundaries.iter().filter(|&&b| b <= kept).count() as u64;
        // `whole` boundaries lie at or below the cut: entries 1..whole - 1 survive, or none if
        // the cut went into the header or the first hard state.
        let expect = whole.saturating_sub(1);
        assert_eq!(wal.last_index(), Index(expect), "cut {cut}");
        assert_entries(&wal, expect);
        if kept < HEADER + HS_RECORD {
            // An incomplete header is removed; an intact header with a torn hard state is cut.
            assert!(kept >= HEADER || rec.segments == 0, "cut {cut}");
            continue;
        }
        let at = boundaries[whole as usize - 1];
        match &rec.torn_tail {
            None => assert_eq!(at, kept, "cut {cut}: no torn tail reported"),
            Some(t) => {
                assert_eq!((t.offset, t.bytes_dropped), (at, kept - at), "cut {cut}");
                assert_eq!(t.path, dir.join(&name));
            }
        }
        assert_eq!(fs::metadata(dir.join(&name)).expect("stat").len(), at);
        drop(wal);
        // The repair is on disk: a second open finds a clean log.
        let (wal, rec) = open(&dir, fast(64 << 20));
        assert!(rec.torn_tail.is_none(), "cut {cut}");
        assert_eq!(wal.last_index(), Index(expect));
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}

#[test]
fn flipped_bit_in_the_last_record_is_a_torn_tail() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let offsets = write_entries(tmp.path(), 8);
    let seg = segment_files(tmp.path()).pop().expect("segment");
    let len = fs::metadata(&seg).expect("stat").len();
    flip_bit(&seg, len - 2);
    let (mut wal, rec) = open(tmp.path(), durable());
    let torn = rec.torn_tail.expect("torn tail");
    assert_eq!(
        (torn.offset, torn.bytes_dropped),
        (offsets[7], len - offsets[7])
    );
    assert_entries(&wal, 7);
    // The log goes on from there.
    wal.append([e(8, 3, b"again")]).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let (wal, rec) = open(tmp.path(), durable());
    assert!(rec.torn_tail.is_none());
    assert_eq!(wal.entry(Index(8)).map(|x| x.data), Ok(&b"again"[..]));
}

#[test]
fn zeroed_tail_is_a_torn_tail() {
    // What a file system that extended the file but never wrote the block shows.
    let tmp = tempfile::tempdir().expect("tempdir");
    write_entries(tmp.path(), 5);
    let seg = segment_files(tmp.path()).pop().expect("segment");
    let mut bytes = fs::read(&seg).expect("read");
    let len = bytes.len() as u64;
    bytes.extend_from_slice(&[0; 4096]);
    fs::write(&seg, bytes).expect("write");
    let (wal, rec) = open(tmp.path(), durable());
    let torn = rec.torn_tail.expect("torn tail");
    assert_eq!((torn.offset, torn.bytes_dropped), (len, 4096));
    assert_entries(&wal, 5);
}

#[test]
fn lost_tail_clamps_the_commit_index() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = open(tmp.path(), fast(64 << 20));
    // One batch: the hard state first, the entries it commits after it.
    wal.set_hard_state(hs(1, 1, 5));
    wal.append((1..=5).map(|i| e(i, 1, b"12345")))
        .expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let seg = segment_files(tmp.path()).pop().expect("segment");
    let len = fs::metadata(&seg).expect("stat").len();
    truncate(&seg, len - (ENTRY_FRAME + 5) - 3);
    let (wal, rec) = open(tmp.path(), fast(64 << 20));
    assert_eq!(wal.last_index(), Index(3));
    assert_eq!(rec.hard_state, hs(1, 1, 3));
    assert_eq!(wal.hard_state(), hs(1, 1, 3));
}

// ----- damage that is refused -----

#[test]
fn flipped_bit_in_a_middle_record_refuses_and_touches_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let offsets = write_entries(tmp.path(), 10);
    let seg = segment_files(tmp.path()).pop().expect("segment");
    flip_bit(&seg, offsets[4] + ENTRY_FRAME + 1);
    let before = contents(tmp.path());
    let err = open_err(tmp.path(), durable());
    match &err {
        WalError::Corrupt { path, offset, .. } => {
            assert_eq!(path, &seg);
            assert_eq!(*offset, offsets[4]);
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&seg.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("offset {}", offsets[4])), "{msg}");
    assert_eq!(
        contents(tmp.path()),
        before,
        "a refusal must not change the files"
    );
}

#[test]
fn flipped_bit_in_an_earlier_segment_refuses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = open(tmp.path(), fast(200));
    for i in 1..=20 {
        wal.append([e(i, 1, b"0123456789")]).expect("append");
        wal.sync().expect("sync");
    }
    drop(wal);
    let files = segment_files(tmp.path());
    assert!(files.len() >= 3);
    // The very last byte of the first segment: nothing valid follows it in that file, but
    // later segments do, so this is not a torn tail.
    let len = fs::metadata(&files[0]).expect("stat").len();
    flip_bit(&files[0], len - 1);
    let before = contents(tmp.path());
    match open_err(tmp.path(), fast(200)) {
        WalError::Corrupt { path, offset, .. } => {
            assert_eq!(path, files[0]);
            assert_eq!(offset, len - ENTRY_FRAME - 10);
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    assert_eq!(contents(tmp.path()), before);
}

#[test]
fn damaged_header_of_an_earlier_segment_refuses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = open(tmp.path(), fast(100));
    for i in 1..=6 {
        wal.append([e(i, 1, b"0123456789")]).expect("append");
        wal.sync().expect("sync");
    }
    drop(wal);
    let files = segment_files(tmp.path());
    flip_bit(&files[1], 20);
    match open_err(tmp.path(), fast(100)) {
        WalError::Corrupt {
            path, offset: 0, ..
        } => assert_eq!(path, files[1]),
        other => panic!("expected Corrupt at the header, got {other}"),
    }
}

#[test]
fn missing_segment_refuses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = open(tmp.path(), fast(100));
    for i in 1..=8 {
        wal.append([e(i, 1, b"0123456789")]).expect("append");
        wal.sync().expect("sync");
    }
    drop(wal);
    let files = segment_files(tmp.path());
    assert!(files.len() >= 4);
    let held = tmp.path().join("held-aside");
    fs::rename(&files[2], &held).expect("move the middle segment away");
    match open_err(tmp.path(), fast(100)) {
        WalError::Corrupt {
            path,
            offset: 0,
            reason,
        } => {
            assert_eq!(path, files[3]);
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    fs::rename(&held, &files[2]).expect("put it back");
    fs::rename(&files[0], &held).expect("move the first segment away");
    match open_err(tmp.path(), fast(100)) {
        WalError::Corrupt { path, .. } => assert_eq!(path, files[1]),
        other => panic!("expected Corrupt, got {other}"),
    }
}

#[test]
fn misnamed_wal_file_refuses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_entries(tmp.path(), 2);
    let odd = tmp.path().join("backup.wal");
    fs::write(&odd, b"?").expect("write");
    match open_err(tmp.path(), durable()) {
        WalError::Corrupt { path, .. } => assert_eq!(path, odd),
        other => panic!("expected Corrupt, got {other}"),
    }
}

// ----- what a crash leaves around the edges -----

#[test]
fn missing_directory_is_a_new_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a").join("b");
    let (wal, rec) = open(&dir, durable());
    assert!(dir.is_dir());
    assert_eq!((rec.segments, rec.entries), (0, 0));
    assert_eq!(wal.last_index(), Index(0));
    assert_eq!(
        segment_files(&dir).len(),
        1,
        "a first segment is created at once"
    );
}

#[test]
fn empty_directory_is_a_new_log_and_other_files_are_left_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::write(tmp.path().join("identity"), b"node 1").expect("write");
    let (mut wal, rec) = open(tmp.path(), durable());
    assert_eq!(rec.entries, 0);
    wal.append([e(1, 1, b"x")]).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let (wal, _) = open(tmp.path(), durable());
    assert_eq!(wal.last_index(), Index(1));
    assert_eq!(
        fs::read(tmp.path().join("identity")).expect("kept"),
        b"node 1"
    );
}

#[test]
fn unfinished_last_segment_is_removed() {
    for leftover in [&b""[..], &b"TKRFTW"[..], &[0u8; 40][..]] {
        let tmp = tempfile::tempdir().expect("tempdir");
        write_entries(tmp.path(), 3);
        let next = tmp.path().join(format!("{:016x}-{:016x}.wal", 1, 4));
        fs::write(&next, leftover).expect("write");
        let tmpfile = tmp.path().join(format!("{:016x}-{:016x}.wal.tmp", 1, 4));
        fs::write(&tmpfile, b"half").expect("write");

        let (mut wal, rec) = open(tmp.path(), durable());
        assert_eq!(rec.segments, 1, "{leftover:?}");
        assert!(!next.exists() && !tmpfile.exists());
        assert_entries(&wal, 3);
        wal.append([e(4, 2, b"after")]).expect("append");
        wal.sync().expect("sync");
        drop(wal);
        let (wal, _) = open(tmp.path(), durable());
        assert_eq!(wal.entry(Index(4)).map(|x| x.data), Ok(&b"after"[..]));
    }
}

#[test]
fn only_empty_segment_is_a_new_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seg = tmp.path().join(format!("{:016x}-{:016x}.wal", 0, 1));
    fs::write(&seg, b"").expect("write");
    let (wal, rec) = open(tmp.path(), durable());
    assert_eq!((rec.segments, rec.entries), (0, 0));
    assert_eq!(wal.last_index(), Index(0));
    assert_eq!(
        fs::metadata(&seg).expect("recreated").len(),
        HEADER + HS_RECORD
    );
}

#[test]
fn long_last_segment_with_a_bad_header_refuses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_entries(tmp.path(), 6);
    let seg = segment_files(tmp.path()).pop().expect("segment");
    flip_bit(&seg, 3);
    match open_err(tmp.path(), durable()) {
        WalError::Corrupt {
            path, offset: 0, ..
        } => assert_eq!(path, seg),
        other => panic!("expected Corrupt, got {other}"),
    }
}

// ----- properties -----

/// One step of the model test.
#[derive(Clone, Debug)]
enum Op {
    /// Append `lens.len()` entries starting `back` entries before the end (overwriting them).
    Append {
        back: usize,
        term: u64,
        lens: Vec<usize>,
    },
    /// An append that starts past the end: refused, changes nothing.
    Gap,
    HardState {
        term: u64,
        vote: u64,
        commit: u64,
    },
    Sync,
    /// Drop the `Wal` (losing what was not synced) and open it again.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..4, 1u64..6, prop::collection::vec(0usize..40, 0..5))
            .prop_map(|(back, term, lens)| Op::Append { back, term, lens }),
        1 => Just(Op::Gap),
        2 => (0u64..6, 0u64..4, 0u64..20)
            .prop_map(|(term, vote, commit)| Op::HardState { term, vote, commit }),
        3 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    log: Log,
    hs: HardState,
}

impl Model {
    /// What recovery makes of this state.
    fn recovered(&self) -> Model {
        let mut m = self.clone();
        m.hs.commit = m.hs.commit.min(Index(m.log.len() as u64));
        m
    }
}

fn view(wal: &Wal) -> Model {
    Model {
        log: read_log(wal),
        hs: wal.hard_state(),
    }
}

/// Payload bytes that differ by index and term, so a misplaced entry shows.
fn payload(index: u64, term: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (index * 31 + term * 7 + k as u64) as u8)
        .collect()
}

/// Applies an append to the model and the `Wal`.
fn do_append(wal: &mut Wal, live: &mut Model, back: usize, term: u64, lens: &[usize]) {
    let back = back.min(live.log.len());
    let start = live.log.len() - back + 1;
    let datas: Vec<Vec<u8>> = lens
        .iter()
        .enumerate()
        .map(|(k, &len)| payload((start + k) as u64, term, len))
        .collect();
    let entries = datas.iter().enumerate().map(|(k, d)| Entry {
        index: Index((start + k) as u64),
        term: Term(term),
        kind: if d.is_empty() {
            EntryKind::Noop
        } else {
            EntryKind::Normal
        },
        data: d,
    });
    wal.append(entries).expect("valid append");
    if !lens.is_empty() {
        live.log.truncate(start - 1);
        for d in datas {
            let kind = if d.is_empty() {
                EntryKind::Noop
            } else {
                EntryKind::Normal
            };
            live.log.push((term, kind, d));
        }
    }
}

proptest! {
    #![proptest_config(cases(48))]

    /// Random appends, overwrites, hard states, syncs and reopens, against a model: the live
    /// view always matches, and a reopen shows exactly what was synced.
    #[test]
    fn wal_matches_a_model(ops in prop::collection::vec(op(), 1..40), seg in 150u64..600) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = open(tmp.path(), fast(seg));
        let mut live = Model::default();
        let mut synced = Model::default();
        for op in &ops {
            match op {
                Op::Append { back, term, lens } => {
                    do_append(&mut wal, &mut live, *back, *term, lens)
                }
                Op::Gap => {
                    let at = live.log.len() as u64 + 2;
                    let err = wal.append([e(at, 1, b"gap")]).expect_err("gap refused");
                    prop_assert!(matches!(err, WalError::Gap { .. }), "{}", err);
                }
                Op::HardState { term, vote, commit } => {
                    live.hs = hs(*term, *vote, *commit);
                    wal.set_hard_state(live.hs);
                }
                Op::Sync => {
                    wal.sync().expect("sync");
                    synced = live.clone();
                }
                Op::Reopen => {
                    drop(wal);
                    let (w, rec) = open(tmp.path(), fast(seg));
                    prop_assert!(rec.torn_tail.is_none());
                    wal = w;
                    live = synced.recovered();
                    synced = live.clone();
                }
            }
            prop_assert_eq!(view(&wal), live.clone());
        }
        drop(wal);
        let (wal, rec) = open(tmp.path(), fast(seg));
        prop_assert_eq!(rec.entries, synced.log.len() as u64);
        prop_assert_eq!(view(&wal), synced.recovered());
    }

    /// Cutting the last segment at any byte recovers the state after some prefix of the
    /// records written, and the full file recovers everything.
    #[test]
    fn cut_last_segment_recovers_a_prefix(
        batches in prop::collection::vec(prop::collection::vec(op(), 1..6), 1..8),
        seg in 150u64..600,
        cut in any::<prop::sample::Index>(),
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = open(tmp.path(), fast(seg));
        let mut live = Model::default();
        // The state after every record, in write order.
        let mut states = vec![live.clone()];
        for batch in &batches {
            for op in batch {
                match op {
                    Op::Append { back, term, lens } => {
                        let before = live.clone();
                        do_append(&mut wal, &mut live, *back, *term, lens);
                        // One record per entry: replay truncates at the first, then pushes.
                        let start = live.log.len() - lens.len();
                        for k in 0..lens.len() {
                            let mut s = before.clone();
                            s.log.truncate(start);
                            s.log.extend_from_slice(&live.log[start..=start + k]);
                            states.push(s);
                        }
                    }
                    Op::HardState { term, vote, commit } => {
                        let next = hs(*term, *vote, *commit);
                        wal.set_hard_state(next);
                        if next != live.hs {
                            live.hs = next;
                            states.push(live.clone());
                        }
                    }
                    Op::Gap | Op::Sync | Op::Reopen => {}
                }
            }
            wal.sync().expect("sync");
        }
        drop(wal);
        let last = segment_files(tmp.path()).pop().expect("a segment");
        let len = fs::metadata(&last).expect("stat").len();
        let kept = cut.index(len as usize + 1) as u64;
        truncate(&last, kept);

        let (wal, rec) = open(tmp.path(), fast(seg));
        let got = view(&wal);
        prop_assert!(
            states.iter().any(|s| s.recovered() == got),
            "cut at {} of {}: recovered {:?} is no prefix state", kept, len, got
        );
        if kept == len {
            prop_assert_eq!(&got, &live.recovered());
            prop_assert!(rec.torn_tail.is_none());
        }
        if let Some(t) = &rec.torn_tail {
            prop_assert_eq!(t.offset + t.bytes_dropped, kept);
        }
        drop(wal);
        let (wal, rec) = open(tmp.path(), fast(seg));
        prop_assert!(rec.torn_tail.is_none());
        prop_assert_eq!(view(&wal), got);
    }
}

/// `write` + `SyncHandle::sync` (the leader's deferred sync): what was written is readable at
/// once, counts as unsynced until `sync`, survives a reopen, and a log written only this way
/// still rotates its segments.
#[test]
fn deferred_writes_sync_from_a_handle_and_still_rotate() {
    use raft_core::{Entry, EntryKind, Index, Storage, Term};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = raft_std::wal::WalOptions::default();
    opts.segment_bytes = 4096;
    let (mut wal, _) = raft_std::wal::Wal::open(dir.path(), opts.clone(), None).expect("open");
    let data = [7u8; 100];
    let mut handles = 0;
    for i in 1..=200u64 {
        wal.append([Entry {
            index: Index(i),
            term: Term(1),
            kind: EntryKind::Normal,
            data: &data,
        }])
        .expect("append");
        if let Some(h) = wal.write().expect("write") {
            assert!(wal.has_unsynced());
            h.sync().expect("fdatasync from the handle");
            handles += 1;
        }
        assert_eq!(wal.last_index(), Index(i));
    }
    assert!(handles > 100, "most writes hand out a handle");
    wal.sync().expect("sync");
    assert!(!wal.has_unsynced());
    drop(wal);
    let segments = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wal"))
        })
        .count();
    assert!(segments > 3, "{segments} segments: writes alone rotate");
    let (wal, rec) = raft_std::wal::Wal::open(dir.path(), opts, None).expect("reopen");
    assert_eq!(rec.entries, 200);
    assert_eq!(wal.entry(Index(200)).expect("entry").data, &data);
}

// ----- compaction behind a snapshot -----

/// Opens with the snapshot at `(index, term)`.
fn open_at(dir: &Path, o: WalOptions, index: u64, term: u64) -> (Wal, raft_std::wal::Recovery) {
    Wal::open(dir, o, Some((Index(index), Term(term))))
        .unwrap_or_else(|e| panic!("open {} at snapshot {index}: {e}", dir.display()))
}

/// `(seq, first_index)` of every segment, from the file names, in order.
fn segment_names(dir: &Path) -> Vec<(u64, u64)> {
    segment_files(dir)
        .iter()
        .map(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).expect("utf-8 name");
            let (seq, first) = name
                .strip_suffix(".wal")
                .and_then(|s| s.split_once('-'))
                .expect("segment name");
            (
                u64::from_str_radix(seq, 16).expect("hex"),
                u64::from_str_radix(first, 16).expect("hex"),
            )
        })
        .collect()
}

/// The term `write_log` gives entry `i` (0 for the empty prefix at index 0).
fn term_of(i: u64) -> u64 {
    if i == 0 {
        0
    } else {
        1 + i / 4
    }
}

/// Writes entries 1..=n (term [`term_of`], data `entry-{i:03}`), one sync each, with small
/// segments: several entries per segment.
fn write_log(dir: &Path, n: u64) -> Wal {
    let (mut wal, _) = open(dir, fast(200));
    for i in 1..=n {
        wal.append([e(i, term_of(i), format!("entry-{i:03}").as_bytes())])
            .expect("append");
        wal.sync().expect("sync");
    }
    wal
}

/// Checks that the log holds exactly `first..=last` of what `write_log` wrote, with the term of
/// `first - 1` answered.
fn assert_log(wal: &Wal, first: u64, last: u64) {
    assert_eq!(
        (wal.first_index(), wal.last_index()),
        (Index(first), Index(last))
    );
    assert_eq!(wal.term(Index(first - 1)), Ok(Term(term_of(first - 1))));
    assert_eq!(wal.entry(Index(first - 1)), Err(StorageError::Compacted));
    if first > 1 {
        assert_eq!(wal.term(Index(first - 2)), Err(StorageError::Compacted));
    }
    for i in first..=last {
        let en = wal.entry(Index(i)).expect("held");
        assert_eq!(en.term, Term(term_of(i)));
        assert_eq!(en.data, format!("entry-{i:03}").as_bytes());
    }
}

/// The segments a snapshot at `index` leaves: from the last one starting at or below
/// `index + 1` on.
fn kept_after(names: &[(u64, u64)], index: u64) -> Vec<(u64, u64)> {
    let keep = names
        .iter()
        .rposition(|&(_, first)| first <= index + 1)
        .unwrap_or(0);
    names[keep..].to_vec()
}

#[test]
fn compaction_deletes_exactly_the_whole_segments_below() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for c in 0..=30u64 {
        let dir = tmp.path().join(format!("c-{c}"));
        let mut wal = write_log(&dir, 30);
        let names = segment_names(&dir);
        assert!(names.len() >= 6, "{} segments", names.len());
        wal.compact(Index(c), Term(term_of(c))).expect("compact");
        assert_eq!(
            segment_names(&dir),
            kept_after(&names, c),
            "compaction at {c}"
        );
        // The current segment is never deleted, even when the snapshot covers all of it.
        assert_eq!(segment_names(&dir).last(), names.last());
        assert_log(&wal, c + 1, 30);
        assert_eq!(wal.entries_since(Index(0)), 30 - c);
        drop(wal);

        // A restart from the snapshot finds the same log and deletes nothing more.
        let (wal, rec) = open_at(&dir, fast(200), c, term_of(c));
        assert!(!rec.log_discarded);
        assert_eq!(rec.entries, 30 - c);
        assert_log(&wal, c + 1, 30);
        assert_eq!(segment_names(&dir), kept_after(&names, c));
    }
}

#[test]
fn term_of_the_snapshot_index_survives_its_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut wal = write_log(tmp.path(), 30);
    let names = segment_names(tmp.path());
    // The last entry of a segment: compacting there deletes the segment that holds it.
    let c = names[3].1 - 1;
    wal.compact(Index(c), Term(term_of(c))).expect("compact");
    assert_eq!(segment_names(tmp.path())[0], names[3]);
    assert_eq!(wal.term(Index(c)), Ok(Term(term_of(c))));
    assert_eq!(wal.entry(Index(c)), Err(StorageError::Compacted));
    drop(wal);
    let (wal, rec) = open_at(tmp.path(), fast(200), c, term_of(c));
    assert!(!rec.log_discarded);
    assert_eq!(wal.term(Index(c)), Ok(Term(term_of(c))));
    assert_log(&wal, c + 1, 30);
}

#[test]
fn compaction_below_the_first_index_is_a_no_op() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut wal = write_log(tmp.path(), 20);
    wal.compact(Index(12), Term(term_of(12))).expect("compact");
    let files = contents(tmp.path());
    for c in [0, 3, 11, 12] {
        // Whatever the term: compacted entries are not checked again.
        wal.compact(Index(c), Term(99)).expect("no-op");
        assert_log(&wal, 13, 20);
    }
    assert_eq!(contents(tmp.path()), files);
}

#[test]
fn bad_compactions_change_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut wal = write_log(tmp.path(), 20);
    let files = contents(tmp.path());
    match wal.compact(Index(21), Term(term_of(20))) {
        Err(WalError::CompactBeyondLog {
            index: Index(21),
            last_index: Index(20),
        }) => {}
        other => panic!("expected CompactBeyondLog, got {other:?}"),
    }
    match wal.compact(Index(9), Term(7)) {
        Err(WalError::CompactTermMismatch { index, term, held }) => {
            assert_eq!((index, term, held), (Index(9), Term(7), Term(term_of(9))));
        }
        other => panic!("expected CompactTermMismatch, got {other:?}"),
    }
    assert_log(&wal, 1, 20);
    assert_eq!(contents(tmp.path()), files);
    // And the log goes on.
    wal.append([e(21, 9, b"more")]).expect("append");
    wal.sync().expect("sync");
}

#[test]
fn appends_below_the_compacted_index_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut wal = write_log(tmp.path(), 10);
    wal.compact(Index(6), Term(term_of(6))).expect("compact");
    let err = wal.append([e(6, 9, b"x")]).expect_err("below first");
    assert!(matches!(err, WalError::Compacted { .. }), "{err}");
    // Overwriting from the first index held is fine.
    wal.append([e(7, 9, b"over")]).expect("overwrite");
    wal.sync().expect("sync");
    drop(wal);
    let (wal, _) = open_at(tmp.path(), fast(200), 6, term_of(6));
    assert_eq!(wal.last_index(), Index(7));
    assert_eq!(wal.entry(Index(7)).map(|x| x.data), Ok(&b"over"[..]));
}

#[test]
fn restart_with_a_snapshot_deletes_the_segments_it_covers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    drop(write_log(tmp.path(), 30));
    let names = segment_names(tmp.path());
    // The WAL was never compacted: the node crashed after writing the snapshot.
    let (wal, rec) = open_at(tmp.path(), fast(200), 17, term_of(17));
    assert!(!rec.log_discarded);
    assert_eq!(rec.segments, kept_after(&names, 16).len());
    assert_log(&wal, 18, 30);
    assert_eq!(segment_names(tmp.path()), kept_after(&names, 17));
}

#[test]
fn compacted_log_without_its_snapshot_refuses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut wal = write_log(tmp.path(), 30);
    wal.compact(Index(20), Term(term_of(20))).expect("compact");
    drop(wal);
    let files = contents(tmp.path());
    match open_err(tmp.path(), fast(200)) {
        WalError::Corrupt { reason, .. } => assert!(reason.contains("missing"), "{reason}"),
        other => panic!("expected Corrupt, got {other}"),
    }
    assert_eq!(contents(tmp.path()), files);
}

#[test]
fn missing_segment_after_the_snapshot_refuses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    drop(write_log(tmp.path(), 30));
    let files = segment_files(tmp.path());
    let names = segment_names(tmp.path());
    // Entries 13..=16 go missing; the snapshot at 14 does not cover 15 and 16.
    let k = names
        .iter()
        .position(|&(_, first)| first == 13)
        .expect("segment from 13");
    let held = tmp.path().join("held-aside");
    fs::rename(&files[k], &held).expect("move a segment away");
    let before = contents(tmp.path());
    match Wal::open(tmp.path(), fast(200), Some((Index(14), Term(term_of(14))))) {
        Err(WalError::Corrupt { path, reason, .. }) => {
            assert_eq!(path, files[k + 1]);
            assert!(reason.contains("missing"), "{reason}");
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("opened a log with a segment missing"),
    }
    assert_eq!(contents(tmp.path()), before);
    // A snapshot that covers the missing segment does not need it.
    fs::remove_file(&held).expect("remove");
    let (wal, rec) = open_at(tmp.path(), fast(200), 17, term_of(17));
    assert!(!rec.log_discarded);
    assert_log(&wal, 18, 30);
}

#[test]
fn restart_where_the_log_conflicts_with_the_snapshot_discards_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut wal = write_log(tmp.path(), 10);
    wal.set_hard_state(hs(3, 2, 5));
    wal.sync().expect("sync");
    drop(wal);
    let last_seq = segment_names(tmp.path()).last().expect("segment").0;

    // The leader's snapshot says entry 6 has term 9: the log's entries are from another branch.
    let (mut wal, rec) = open_at(tmp.path(), fast(200), 6, 9);
    assert!(rec.log_discarded);
    assert_eq!(rec.entries, 0);
    assert_eq!((wal.first_index(), wal.last_index()), (Index(7), Index(6)));
    assert_eq!(wal.term(Index(6)), Ok(Term(9)));
    assert_eq!(wal.entry(Index(6)), Err(StorageError::Compacted));
    assert_eq!(
        wal.hard_state(),
        hs(3, 2, 5),
        "the hard state is kept as it is"
    );
    assert_eq!(segment_names(tmp.path()), [(last_seq + 1, 7)]);

    // The discard is durable: what follows survives a restart from the same snapshot.
    wal.append([e(7, 9, b"seven")]).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let (wal, rec) = open_at(tmp.path(), fast(200), 6, 9);
    assert!(!rec.log_discarded);
    assert_eq!(wal.last_index(), Index(7));
    assert_eq!(wal.entry(Index(7)).map(|x| x.data), Ok(&b"seven"[..]));
    assert_eq!(wal.hard_state(), hs(3, 2, 5));
}

#[test]
fn restart_where_the_log_lacks_the_snapshot_index_discards_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut wal = write_log(tmp.path(), 3);
    wal.set_hard_state(hs(2, 1, 3));
    wal.sync().expect("sync");
    drop(wal);
    let (wal, rec) = open_at(tmp.path(), fast(200), 10, 2);
    assert!(rec.log_discarded);
    assert_eq!(
        (wal.first_index(), wal.last_index()),
        (Index(11), Index(10))
    );
    assert_eq!(wal.term(Index(10)), Ok(Term(2)));
    assert_eq!(wal.hard_state(), hs(2, 1, 3));
    assert_eq!(segment_files(tmp.path()).len(), 1);
}

#[test]
fn restart_where_the_log_starts_after_the_snapshot_discards_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut wal = write_log(tmp.path(), 30);
    wal.compact(Index(24), Term(term_of(24))).expect("compact");
    drop(wal);
    let first = segment_names(tmp.path())[0].1;
    assert!(first > 7, "the first segment starts at {first}");
    // An older snapshot than the one the log was compacted behind: entries 7..first are gone.
    let (wal, rec) = open_at(tmp.path(), fast(200), 6, term_of(6));
    assert!(rec.log_discarded);
    assert_eq!((wal.first_index(), wal.last_index()), (Index(7), Index(6)));
    assert_eq!(segment_files(tmp.path()).len(), 1);
}

#[test]
fn restart_with_a_snapshot_into_a_new_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let (mut wal, rec) = open_at(&dir, fast(200), 40, 3);
    assert!(!rec.log_discarded);
    assert_eq!(
        (wal.first_index(), wal.last_index()),
        (Index(41), Index(40))
    );
    assert_eq!(wal.term(Index(40)), Ok(Term(3)));
    assert_eq!(segment_names(&dir), [(0, 41)]);
    wal.append([e(41, 3, b"x")]).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let (wal, _) = open_at(&dir, fast(200), 40, 3);
    assert_eq!(wal.last_index(), Index(41));
}

#[test]
fn reset_then_append_then_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut wal = write_log(tmp.path(), 10);
    wal.set_hard_state(hs(4, 2, 8));
    // Buffered and never synced: the reset discards it along with everything else.
    wal.append([e(11, 4, b"pending")]).expect("append");
    let last_seq = segment_names(tmp.path()).last().expect("segment").0;
    wal.reset(Index(50), Term(4)).expect("reset");
    assert_eq!(
        (wal.first_index(), wal.last_index()),
        (Index(51), Index(50))
    );
    assert_eq!(wal.term(Index(50)), Ok(Term(4)));
    assert_eq!(wal.entry(Index(10)), Err(StorageError::Compacted));
    assert_eq!((wal.entries_since(Index(0)), wal.bytes_held()), (0, 0));
    assert_eq!(wal.hard_state(), hs(4, 2, 8));
    assert!(!wal.has_unsynced());
    assert_eq!(segment_names(tmp.path()), [(last_seq + 1, 51)]);

    for i in 51..=55 {
        wal.append([e(i, 4, format!("after-{i}").as_bytes())])
            .expect("append");
    }
    wal.sync().expect("sync");
    drop(wal);
    let (wal, rec) = open_at(tmp.path(), fast(200), 50, 4);
    assert!(!rec.log_discarded);
    assert_eq!(
        rec.hard_state,
        hs(4, 2, 8),
        "the reset made the hard state durable"
    );
    assert_eq!(
        (wal.first_index(), wal.last_index()),
        (Index(51), Index(55))
    );
    assert_eq!(wal.entry(Index(53)).map(|x| x.data), Ok(&b"after-53"[..]));
    assert_eq!(wal.term(Index(50)), Ok(Term(4)));
    drop(wal);
    assert!(matches!(
        open_err(tmp.path(), fast(200)),
        WalError::Corrupt { .. }
    ));
}

#[test]
fn reset_is_durable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = open(tmp.path(), durable());
    wal.append([e(1, 1, b"a"), e(2, 1, b"b")]).expect("append");
    wal.sync().expect("sync");
    wal.set_hard_state(hs(2, 3, 2));
    wal.reset(Index(7), Term(2)).expect("reset");
    drop(wal);
    let (wal, rec) = open_at(tmp.path(), durable(), 7, 2);
    assert_eq!(rec.hard_state, hs(2, 3, 2));
    assert_eq!((wal.first_index(), wal.last_index()), (Index(8), Index(7)));
}

#[test]
fn interrupted_reset_recovers_as_if_it_finished() {
    // Which of the old segments (of 7) the crash left behind: all (the fresh segment then
    // follows them without a gap, and starts the log over), or some, with gaps between them.
    let all: Vec<usize> = (0..7).collect();
    for keep in [&all[..], &all[..6], &[0, 2, 3], &[5, 6], &[6], &[0]] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let held = tempfile::tempdir().expect("tempdir");
        let mut wal = write_log(tmp.path(), 24);
        wal.set_hard_state(hs(6, 1, 20));
        wal.sync().expect("sync");
        let old = segment_files(tmp.path());
        assert_eq!(old.len(), 7);
        for (k, f) in old.iter().enumerate() {
            fs::copy(f, held.path().join(k.to_string())).expect("copy aside");
        }
        wal.reset(Index(40), Term(6)).expect("reset");
        drop(wal);
        let fresh = segment_names(tmp.path());
        for &k in keep {
            fs::copy(held.path().join(k.to_string()), &old[k]).expect("put back");
        }

        let (wal, rec) = open_at(tmp.path(), fast(200), 40, 6);
        assert!(!rec.log_discarded, "{keep:?}");
        assert_eq!(
            (wal.first_index(), wal.last_index()),
            (Index(41), Index(40))
        );
        assert_eq!(wal.hard_state(), hs(6, 1, 20));
        assert_eq!(
            segment_names(tmp.path()),
            fresh,
            "{keep:?}: the old segments went"
        );
    }
}

#[test]
fn overwrite_reaching_into_a_deleted_segment_replays() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut wal = write_log(tmp.path(), 12);
    let boundary = segment_names(tmp.path()).last().expect("segment").1;
    assert!(boundary > 4);
    // A follower overwrites uncommitted entries from before the current segment started...
    let from = boundary - 2;
    let over: Vec<Vec<u8>> = (from..from + 6)
        .map(|i| format!("over-{i}").into_bytes())
        .collect();
    wal.append(
        over.iter()
            .enumerate()
            .map(|(k, d)| e(from + k as u64, 9, d)),
    )
    .expect("overwrite");
    wal.sync().expect("sync");
    // ...later commits them, snapshots behind them, and compacts.
    let c = from + 3;
    wal.compact(Index(c), Term(9)).expect("compact");
    drop(wal);
    let (wal, rec) = open_at(tmp.path(), fast(200), c, 9);
    assert!(!rec.log_discarded);
    assert_eq!(
        (wal.first_index(), wal.last_index()),
        (Index(c + 1), Index(from + 5))
    );
    for i in c + 1..=from + 5 {
        assert_eq!(
            wal.entry(Index(i)).map(|x| x.data),
            Ok(format!("over-{i}").as_bytes())
        );
    }
}

#[test]
fn entries_since_and_bytes_held_follow_compaction() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut wal = write_log(tmp.path(), 20);
    // `entry-{i:03}` is 9 bytes.
    assert_eq!(wal.bytes_held(), 20 * 9);
    assert_eq!(wal.entries_since(Index(0)), 20);
    assert_eq!(wal.entries_since(Index(15)), 5);
    assert_eq!(wal.entries_since(Index(20)), 0);
    assert_eq!(wal.entries_since(Index(99)), 0);
    wal.compact(Index(12), Term(term_of(12))).expect("compact");
    assert_eq!(wal.bytes_held(), 8 * 9);
    assert_eq!(wal.entries_since(Index(0)), 8);
    assert_eq!(wal.entries_since(Index(15)), 5);
    wal.append([e(21, 9, b"x")]).expect("append");
    assert_eq!(
        (wal.bytes_held(), wal.entries_since(Index(12))),
        (8 * 9 + 1, 9)
    );
    wal.sync().expect("sync");
    drop(wal);
    let (wal, _) = open_at(tmp.path(), fast(200), 12, term_of(12));
    assert_eq!(
        (wal.bytes_held(), wal.entries_since(Index(0))),
        (8 * 9 + 1, 9)
    );
}

/// One step of the compaction model test.
#[derive(Clone, Debug)]
enum COp {
    Append {
        back: usize,
        term: u64,
        lens: Vec<usize>,
    },
    HardState {
        term: u64,
        commit: u64,
    },
    Sync,
    /// Sync, then compact `back` entries before the end (if that is still held).
    Compact {
        back: usize,
    },
    /// Reset to a snapshot `ahead` entries past the end.
    Reset {
        ahead: u64,
        term: u64,
    },
    Reopen,
}

fn cop() -> impl Strategy<Value = COp> {
    prop_oneof![
        6 => (0usize..4, 1u64..6, prop::collection::vec(0usize..40, 0..5))
            .prop_map(|(back, term, lens)| COp::Append { back, term, lens }),
        1 => (0u64..6, 0u64..30).prop_map(|(term, commit)| COp::HardState { term, commit }),
        2 => Just(COp::Sync),
        2 => (0usize..6).prop_map(|back| COp::Compact { back }),
        1 => (0u64..5, 1u64..6).prop_map(|(ahead, term)| COp::Reset { ahead, term }),
        2 => Just(COp::Reopen),
    ]
}

/// The log `first..` (term of `first - 1`: `prefix`) and the hard state.
#[derive(Clone, Debug, PartialEq)]
struct CModel {
    first: u64,
    prefix: u64,
    log: Log,
    hs: HardState,
}

impl CModel {
    fn last(&self) -> u64 {
        self.first + self.log.len() as u64 - 1
    }

    fn recovered(&self) -> CModel {
        let mut m = self.clone();
        m.hs.commit = m.hs.commit.min(Index(m.last()));
        m
    }
}

fn cview(wal: &Wal) -> CModel {
    let first = wal.first_index().0;
    let log = (first..=wal.last_index().0)
        .map(|i| {
            let en = wal.entry(Index(i)).expect("held");
            assert_eq!(wal.term(Index(i)), Ok(en.term));
            (en.term.0, en.kind, en.data.to_vec())
        })
        .collect();
    CModel {
        first,
        prefix: wal.term(Index(first - 1)).expect("prefix term").0,
        log,
        hs: wal.hard_state(),
    }
}

proptest! {
    #![proptest_config(cases(48))]

    /// Appends, overwrites, syncs, compactions, resets and reopens against a model: the live
    /// view always matches, a reopen from the latest snapshot shows exactly what was synced
    /// after it, and after a compaction, reset or reopen no segment the snapshot covers is
    /// left.
    #[test]
    fn wal_with_compaction_matches_a_model(
        ops in prop::collection::vec(cop(), 1..50),
        seg in 150u64..600,
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = open(tmp.path(), fast(seg));
        let empty = CModel { first: 1, prefix: 0, log: Vec::new(), hs: HardState::default() };
        let mut live = empty.clone();
        let mut synced = empty;
        let mut snapshot: Option<(u64, u64)> = None;
        for op in &ops {
            match op {
                COp::Append { back, term, lens } => {
                    let back = (*back).min(live.log.len());
                    let start = live.last() + 1 - back as u64;
                    let datas: Vec<Vec<u8>> = lens
                        .iter()
                        .enumerate()
                        .map(|(k, &len)| payload(start + k as u64, *term, len))
                        .collect();
                    let kind = |d: &[u8]| if d.is_empty() { EntryKind::Noop } else { EntryKind::Normal };
                    wal.append(datas.iter().enumerate().map(|(k, d)| Entry {
                        index: Index(start + k as u64),
                        term: Term(*term),
                        kind: kind(d),
                        data: d,
                    }))
                    .expect("valid append");
                    if !lens.is_empty() {
                        live.log.truncate((start - live.first) as usize);
                        live.log.extend(datas.into_iter().map(|d| (*term, kind(&d), d)));
                    }
                }
                COp::HardState { term, commit } => {
                    live.hs = hs(*term, 1, *commit);
                    wal.set_hard_state(live.hs);
                }
                COp::Sync => {
                    wal.sync().expect("sync");
                    synced = live.clone();
                }
                COp::Compact { back } => {
                    wal.sync().expect("sync");
                    synced = live.clone();
                    let Some(at) = live.last().checked_sub(*back as u64) else { continue };
                    if at < live.first {
                        continue;
                    }
                    let term = live.log[(at - live.first) as usize].0;
                    wal.compact(Index(at), Term(term)).expect("compact");
                    live.log.drain(..(at + 1 - live.first) as usize);
                    live.first = at + 1;
                    live.prefix = term;
                    synced = live.clone();
                    snapshot = Some((at, term));
                }
                COp::Reset { ahead, term } => {
                    let at = live.last() + ahead;
                    wal.reset(Index(at), Term(*term)).expect("reset");
                    live = CModel { first: at + 1, prefix: *term, log: Vec::new(), hs: live.hs };
                    synced = live.clone();
                    snapshot = Some((at, *term));
                }
                COp::Reopen => {
                    drop(wal);
                    let (w, rec) = Wal::open(
                        tmp.path(),
                        fast(seg),
                        snapshot.map(|(i, t)| (Index(i), Term(t))),
                    )
                    .expect("reopen");
                    prop_assert!(rec.torn_tail.is_none());
                    prop_assert!(!rec.log_discarded);
                    wal = w;
                    live = synced.recovered();
                    synced = live.clone();
                }
            }
            prop_assert_eq!(cview(&wal), live.clone(), "after {:?}", op);
            prop_assert_eq!(wal.entries_since(Index(0)), live.log.len() as u64);
            let bytes: usize = live.log.iter().map(|x| x.2.len()).sum();
            prop_assert_eq!(wal.bytes_held(), bytes as u64);
            // (Only then: a later rotation may start a segment at the same index.)
            let deletes = matches!(op, COp::Compact { .. } | COp::Reset { .. } | COp::Reopen);
            if let (Some((at, _)), true) = (snapshot, deletes) {
                let names = segment_names(tmp.path());
                prop_assert_eq!(kept_after(&names, at), names);
            }
        }
    }
}
