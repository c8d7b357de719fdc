//! Private files (keys, tokens): readable by their owner only, written whole and synced, then
//! moved or linked into place, so that a reader never sees half a file.

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
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| FileError::new(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| FileError::new(&tmp, e))?;
    Ok(tmp)
}
