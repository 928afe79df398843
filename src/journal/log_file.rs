//! The log file in the state folder: JSON lines (one `tracing` event each),
//! appended by the process that holds the journal, rotated by size.
//!
//! Contract: nothing is written until [`attach`] names the folder (a
//! command calls it once it holds the journal as writer, so two processes
//! never rotate the same file); every line passes through
//! [`crate::model::redact`] first, so a SAS signature or bearer token that
//! reached an event's text is never written; when the file would pass
//! [`MAX_BYTES`] it is renamed to `.1` (older copies shift up, the
//! [`KEEP`]-th is dropped) and a new one is started.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::state_dir::log_path;

/// Size at which the file is rotated.
pub const MAX_BYTES: u64 = 16 << 20;
/// Rotated copies kept (`ade2eah.log.1` .. `ade2eah.log.KEEP`).
pub const KEEP: usize = 4;

struct Sink {
    dir: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Starts (or continues) the log file in `dir`; later events go there.
pub fn attach(dir: &Path) -> io::Result<()> {
    attach_with_limit(dir, MAX_BYTES)
}

/// [`attach`] with another rotation size (tests).
pub fn attach_with_limit(dir: &Path, max: u64) -> io::Result<()> {
    let file = open(dir)?;
    let size = file.metadata()?.len();
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = Some(Sink {
        dir: dir.to_path_buf(),
        file,
        size,
        max,
    });
    Ok(())
}

fn open(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(dir, 0))
}

impl Sink {
    fn rotate(&mut self) -> io::Result<()> {
        for n in (1..KEEP).rev() {
            let from = log_path(&self.dir, n);
            if from.exists() {
                std::fs::rename(&from, log_path(&self.dir, n + 1))?;
            }
        }
        std::fs::rename(log_path(&self.dir, 0), log_path(&self.dir, 1))?;
        self.file = open(&self.dir)?;
        self.size = 0;
        Ok(())
    }

    fn write_line(&mut self, text: &str) -> io::Result<()> {
        let line = crate::model::redact(text);
        if self.size > 0 && self.size + line.len() as u64 > self.max {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.size += line.len() as u64;
        Ok(())
    }
}

/// A `tracing_subscriber` writer for the log file: writes each formatted
/// event (one `write_all` per event) to the attached file, or nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = sink.as_mut() {
            // A log line that cannot be written must not fail the run.
            let _ = s.write_line(&String::from_utf8_lossy(buf));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether a log file is attached (events are worth formatting).
pub fn attached() -> bool {
    SINK.lock().unwrap_or_else(|p| p.into_inner()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_keeps_the_newest_and_redacts() {
        let dir = tempfile::tempdir().unwrap();
        attach_with_limit(dir.path(), 100).unwrap();
        for i in 0..30 {
            writeln!(
                LogWriter,
                "{{\"n\":{i},\"u\":\"https://x/y?sig=SECRETSECRET&sv=1\"}}"
            )
            .unwrap();
        }
        *SINK.lock().unwrap() = None;
        let cur = std::fs::read_to_string(log_path(dir.path(), 0)).unwrap();
        assert!(cur.contains("\"n\":29"), "{cur}");
        assert!(log_path(dir.path(), KEEP).exists());
        assert!(!log_path(dir.path(), KEEP + 1).exists());
        for n in 0..=KEEP {
            let t = std::fs::read_to_string(log_path(dir.path(), n)).unwrap();
            assert!(!t.contains("SECRET"), "{t}");
            assert!(t.len() <= 100, "file {n} is {} bytes", t.len());
        }
    }
}
