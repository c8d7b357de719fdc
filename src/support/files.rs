//! Private files: everything the ledger writes holds health data or keys, so every file it
//! creates is its owner's only (0600) and every directory it creates 0700, whatever the umask.
//! Keys and tokens are moreover written whole and synced, then moved or linked into place, so
//! that a reader never sees half a file.

use std::path::{Path, PathBuf};

/// A private file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    fn new(path: &Path, source: std::io::Error) -> FileError {
        FileError {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Writes a file readable by its owner only (signing keys, tokens and token hashes), through
/// a temporary file and a rename, synced before it replaces the old one.
pub fn write_private(path: &std::path::Path, text: &str) -> Result<(), FileError> {
    let tmp = write_private_tmp(path, text)?;
    std::fs::rename(&tmp, path).map_err(|e| FileError::new(path, e))
}

/// Creates a file readable by its owner only, unless it exists: written whole under a name
/// of its own, then linked into place, so that of several processes creating it at once one
/// wins and the others read a complete file. `Ok(false)`: it existed.
pub fn create_private(path: &std::path::Path, text: &str) -> Result<bool, FileError> {
    let tmp = write_private_tmp(path, text)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(FileError::new(path, e)),
    }
}

/// `text` in a synced temporary file beside `path`, named for this process.
fn write_private_tmp(path: &std::path::Path, text: &str) -> Result<std::path::PathBuf, FileError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if let Some(dir) = path.parent() {
        private_dir_all(dir).map_err(|e| FileError::new(dir, e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .map_err(|e| FileError::new(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| FileError::new(&tmp, e))?;
    Ok(tmp)
}

/// The mode of every file the ledger creates.
pub const FILE_MODE: u32 = 0o600;
/// The mode of every directory the ledger creates.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents, each new one 0700 (existing ones are left as they
/// are).
pub fn private_dir_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// `OpenOptions` that create a file 0600 (its directory is not created).
pub fn private_options() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut o = std::fs::OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Makes sure `path` exists as a file of its owner's only, creating it empty (and its
/// directory, 0700) when missing: SQLite then makes its `-wal` and `-shm` with the same mode.
/// An existing file is left as it is.
pub fn ensure_private_file(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        private_dir_all(dir)?;
    }
    match private_options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The files among `paths` (and their SQLite `-wal` and `-shm`) that others than their owner
/// may read or write, with their modes: `serve` warns about them at start.
pub fn readable_by_others(paths: &[PathBuf]) -> Vec<(PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut found = Vec::new();
    for p in paths {
        for suffix in ["", "-wal", "-shm"] {
            let mut f = p.as_os_str().to_owned();
            f.push(suffix);
            let f = PathBuf::from(f);
            if let Ok(m) = std::fs::metadata(&f) {
                let mode = m.permissions().mode() & 0o777;
                if m.is_file() && mode & 0o077 != 0 {
                    found.push((f, mode));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn what_the_ledger_creates_is_private_and_what_exists_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b");
        let file = deep.join("x.db");
        ensure_private_file(&file).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&deep), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert!(readable_by_others(std::slice::from_ref(&file)).is_empty());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        ensure_private_file(&file).unwrap();
        assert_eq!(
            readable_by_others(std::slice::from_ref(&file)),
            vec![(file, 0o644)]
        );
    }
}
