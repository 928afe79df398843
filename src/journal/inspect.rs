//! A read-only look at a `--state` directory before sled opens it.
//!
//! sled repairs what it cannot read: opened on a log of random bytes it
//! "recovers" an empty database and rewrites the file, so a run's journal
//! pointed at by mistake (or damaged) would be silently destroyed and then
//! reported as "no run". [`inspect`] reads, and never writes, the few things
//! that tell a sled database from something else:
//! - the state path and its `db` are directories;
//! - `db/conf` ends with the CRC-32 of its text, or (as sled accepts after a
//!   warning) its text reads as sled's settings;
//! - a non-empty `db/db` has at least one log segment whose 20-byte header
//!   carries its own valid CRC (sled 0.34's `SegmentHeader`: CRC-32 of bytes
//!   4..20, xor `0xFFFF_FFFF`, little-endian, in bytes 0..4).
//!
//! Anything else is [`JournalError::NotAJournal`], naming the path and what
//! is wrong, with nothing created or changed on disk.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::JournalError;

/// What a state directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateDir {
    /// Nothing there yet (the path or its `db` does not exist).
    Empty,
    /// A sled database that passes the read-only checks.
    Journal,
}

/// sled's segment size when `conf` does not say (its default, which the
/// journal uses).
const DEFAULT_SEGMENT: u64 = 512 * 1024;
/// sled 0.34's segment header length.
const SEG_HEADER_LEN: usize = 20;

/// Looks at `dir` without changing anything (see the module docs).
pub fn inspect(dir: &Path) -> Result<StateDir, JournalError> {
    let not = |what: String| JournalError::NotAJournal {
        dir: dir.to_path_buf(),
        what,
    };
    let io = |source| JournalError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    if !dir.exists() {
        return Ok(StateDir::Empty);
    }
    if !dir.is_dir() {
        return Err(not("it is a file, not a directory".into()));
    }
    let db = dir.join(super::state_dir::DB_DIR);
    if !db.exists() {
        return Ok(StateDir::Empty);
    }
    if !db.is_dir() {
        return Err(not(
            "its `db` is a file, not sled's database directory".into()
        ));
    }
    let log = db.join("db");
    let log_len = match std::fs::metadata(&log) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io(e)),
    };
    let mut segment = DEFAULT_SEGMENT;
    match std::fs::read(db.join("conf")) {
        // sled created nothing yet (a crash at its first open): it starts afresh.
        Ok(conf) if conf.is_empty() && log_len == 0 => {}
        Ok(conf) => segment = check_conf(&conf).map_err(|w| not(format!("its db/conf {w}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    match std::fs::File::open(&log) {
        Ok(mut f) => {
            if !has_valid_segment(&mut f, segment).map_err(io)? {
                return Err(not(
                    "its db/db holds no valid sled log segment (random bytes or another file?)"
                        .into(),
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    Ok(StateDir::Journal)
}

/// The segment size of a sled `conf` file, or what is wrong with it.
fn check_conf(conf: &[u8]) -> Result<u64, String> {
    if conf.len() <= 8 {
        return Err(format!(
            "is {} bytes, too short for sled's settings",
            conf.len()
        ));
    }
    let (text, crc) = conf.split_at(conf.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let settings = std::str::from_utf8(text).ok().filter(|t| {
        t.lines().any(|l| l.starts_with("version:"))
            && t.lines().any(|l| l.starts_with("segment_size:"))
    });
    let Some(text) = settings else {
        return Err(if crc32fast::hash(text) != stored {
            "fails its checksum and is not sled's settings file".into()
        } else {
            "names no sled version or segment size".into()
        });
    };
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("segment_size:"))
        .and_then(|v| v.trim().parse().ok())
        .filter(|&s: &u64| s >= SEG_HEADER_LEN as u64)
        .unwrap_or(DEFAULT_SEGMENT))
}

/// True if `log` is empty or one of its segments starts with a header whose
/// checksum holds.
fn has_valid_segment(log: &mut std::fs::File, segment: u64) -> std::io::Result<bool> {
    let len = log.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    let mut at = 0;
    while at + SEG_HEADER_LEN as u64 <= len {
        let mut h = [0u8; SEG_HEADER_LEN];
        log.seek(SeekFrom::Start(at))?;
        log.read_exact(&mut h)?;
        let stored = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) ^ 0xFFFF_FFFF;
        if crc32fast::hash(&h[4..]) == stored {
            return Ok(true);
        }
        at += segment;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Journal;

    fn noise(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_real_journal_passes_and_nothing_is_an_empty_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert_eq!(inspect(&state).unwrap(), StateDir::Empty);
        {
            let j = Journal::open(&state).unwrap();
            j.flush().unwrap();
        }
        assert_eq!(inspect(&state).unwrap(), StateDir::Journal);
    }

    #[test]
    fn files_and_random_bytes_are_refused_without_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"not a journal").unwrap();
        let e = Journal::open_existing(&file).unwrap_err();
        assert!(e.to_string().contains("is a file, not a directory"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"not a journal");

        let db_file = dir.path().join("db-file");
        std::fs::create_dir_all(&db_file).unwrap();
        std::fs::write(db_file.join("db"), noise(5000, 3)).unwrap();
        let e = Journal::open(&db_file).unwrap_err();
        assert!(matches!(e, JournalError::NotAJournal { .. }), "{e}");
        assert!(e.to_string().contains("`db` is a file"), "{e}");

        // A valid settings file over a random log: sled would rewrite it.
        let garbage = dir.path().join("garbage");
        {
            Journal::open(&garbage).unwrap().flush().unwrap();
        }
        let log = garbage.join("db").join("db");
        let bytes = noise(std::fs::metadata(&log).unwrap().len().max(4096) as usize, 7);
        std::fs::write(&log, &bytes).unwrap();
        let e = Journal::open(&garbage).unwrap_err();
        assert!(e.to_string().contains("no valid sled log segment"), "{e}");
        assert_eq!(std::fs::read(&log).unwrap(), bytes);

        let conf = garbage.join("db").join("conf");
        std::fs::write(&conf, noise(62, 9)).unwrap();
        let e = Journal::open_existing(&garbage).unwrap_err();
        assert!(e.to_string().contains("db/conf fails its checksum"), "{e}");
        assert!(
            e.to_string().contains(&garbage.display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn open_existing_creates_nothing_where_there_is_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("none");
        let e = Journal::open_existing(&state).unwrap_err();
        assert!(matches!(e, JournalError::NoRun { .. }), "{e}");
        assert!(!state.exists());
        std::fs::create_dir_all(&state).unwrap();
        assert!(Journal::open_existing(&state).is_err());
        assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0);
    }
}
