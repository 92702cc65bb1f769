//! The data directory's identity file, so that a directory is never recovered as another node
//! or into another cluster (which would break Raft's safety: a log and a vote are promises made
//! by one member).

use std::fs;
use std::io::Write;
use std::path::Path;

use raft_core::NodeId;

use super::StartError;

const FILE: &str = "tickraft.id";
const LOCK: &str = "tickraft.lock";

/// Takes an exclusive lock on `dir` for as long as the returned file lives, so that two processes
/// never run one member's log (two writers would interleave records, and two voters with one
/// identity could vote twice in a term). The lock is the kernel's (`flock`): it goes away with
/// the process, however it dies.
pub(crate) fn lock(dir: &Path) -> Result<fs::File, StartError> {
    let path = dir.join(LOCK);
    let io = |source| StartError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(StartError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// Creates `dir` and its identity file if new; otherwise checks the recorded identity.
pub(crate) fn check_or_create(dir: &Path, cluster: u64, id: NodeId) -> Result<(), StartError> {
    let io = |source| StartError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    let path = dir.join(FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let (found_cluster, found_id) = parse(&text).ok_or_else(|| {
                io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a tickraft identity file", path.display()),
                ))
            })?;
            if found_cluster != cluster || found_id != id.0 {
                return Err(StartError::WrongIdentity {
                    path: dir.to_path_buf(),
                    found_id,
                    found_cluster,
                    id: id.0,
                    cluster,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Write to a temporary file, sync, rename, sync the directory: a crash leaves either
            // no identity (the directory is still new) or the whole file.
            let tmp = dir.join(format!("{FILE}.tmp"));
            let mut f = fs::File::create(&tmp).map_err(io)?;
            writeln!(f, "tickraft cluster={cluster:#x} node={}", id.0).map_err(io)?;
            f.sync_all().map_err(io)?;
            fs::rename(&tmp, &path).map_err(io)?;
            fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            Ok(())
        }
        Err(e) => Err(io(e)),
    }
}

fn parse(text: &str) -> Option<(u64, u64)> {
    let mut words = text.split_whitespace();
    if words.next()? != "tickraft" {
        return None;
    }
    let cluster = words.next()?.strip_prefix("cluster=0x")?;
    let node = words.next()?.strip_prefix("node=")?;
    Some((u64::from_str_radix(cluster, 16).ok()?, node.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_then_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        check_or_create(dir.path(), 0xabc, NodeId(2)).expect("new");
        check_or_create(dir.path(), 0xabc, NodeId(2)).expect("same identity");
        assert!(matches!(
            check_or_create(dir.path(), 0xabc, NodeId(3)),
            Err(StartError::WrongIdentity { found_id: 2, .. })
        ));
        assert!(matches!(
            check_or_create(dir.path(), 0xdef, NodeId(2)),
            Err(StartError::WrongIdentity {
                found_cluster: 0xabc,
                ..
            })
        ));
        let held = lock(dir.path()).expect("first lock");
        assert!(matches!(lock(dir.path()), Err(StartError::Locked { .. })));
        drop(held);
        lock(dir.path()).expect("free again once the holder is gone");
        fs::write(dir.path().join(FILE), "garbage").expect("write");
        assert!(matches!(
            check_or_create(dir.path(), 0xabc, NodeId(2)),
            Err(StartError::DataDir { .. })
        ));
    }
}
