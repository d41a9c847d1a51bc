//! A store file made read-only in a way even root cannot write through: the file's
//! immutable attribute (`chattr +i`), taken off again when the guard drops, panic or not.

use std::path::{Path, PathBuf};

/// The SQLite store `db` and its write-ahead log, immutable while this lives. Not the
/// `-shm` file: SQLite maps it, and a write to an immutable mapping kills the process.
pub struct Immutable(Vec<PathBuf>);

impl Immutable {
    pub fn on(db: &Path) -> Self {
        let wal = PathBuf::from(format!("{}-wal", db.display()));
        let files: Vec<PathBuf> = [db.to_path_buf(), wal]
            .into_iter()
            .filter(|f| f.exists())
            .collect();
        assert!(
            chattr("+i", &files),
            "chattr +i {files:?} (these tests need root and chattr)"
        );
        Self(files)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        chattr("-i", &self.0);
    }
}

fn chattr(flag: &str, files: &[PathBuf]) -> bool {
    std::process::Command::new("chattr")
        .arg(flag)
        .args(files)
        .status()
        .is_ok_and(|s| s.success())
}
