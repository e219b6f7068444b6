//! Writing users' files safely, for every modality: the data goes to a temporary file
//! beside the target and is moved into place only when complete, so a failed or
//! interrupted write never leaves a half-written file, and an existing file is replaced
//! only when the caller allows it.

use std::path::{Path, PathBuf};

/// Why a file could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The target exists and replacing was not allowed.
    #[error("{0} already exists (pass --overwrite to replace it)")]
    Exists(PathBuf),
    /// The target's folder does not exist.
    #[error("{0}: no such folder")]
    NoFolder(PathBuf),
    /// The target would leave the folder outputs are confined to.
    #[error("{path}: outputs must stay inside {root} (no absolute paths, `..` or links out of it)")]
    Escapes {
        /// The path asked for.
        path: PathBuf,
        /// The folder outputs are confined to.
        root: PathBuf,
    },
    /// A file-system error.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Writes `path` through `write`, which fills the temporary file it is given. Without
/// `overwrite` an existing `path` is an error and is never touched, even if it appears
/// while `write` runs (the finished file is hard-linked into place, which fails on an
/// existing name). The temporary file is removed on failure. The file gets the permissions
/// a newly created file gets (the umask's), even when `write` creates it more narrowly (the
/// safetensors writer makes owner-only files).
pub fn write_file<E: From<OutputError>>(path: &Path, overwrite: bool, write: impl FnOnce(&Path) -> Result<(), E>) -> Result<(), E> {
    if !overwrite && path.exists() {
        return Err(OutputError::Exists(path.to_path_buf()).into());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(OutputError::NoFolder(dir).into());
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let io = |source: std::io::Error| OutputError::Io { path: tmp.clone(), source };
    let usual = std::fs::File::create(&tmp).and_then(|f| f.metadata()).map(|m| m.permissions()).map_err(io)?;
    let result = write(&tmp)
        .and_then(|()| std::fs::set_permissions(&tmp, usual).map_err(|e| E::from(io(e))))
        .and_then(|()| place(&tmp, path, overwrite).map_err(E::from));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` whole or not at all ([`write_file`]).
pub fn write_bytes(path: &Path, bytes: &[u8], overwrite: bool) -> Result<(), OutputError> {
    write_file(path, overwrite, |tmp| std::fs::write(tmp, bytes).map_err(|source| OutputError::Io { path: tmp.to_path_buf(), source }))
}

/// `path` inside `root`, refused when it would leave it: an absolute path, a `..`
/// component, or a folder on the way that is a link to elsewhere. Batch jobs and server
/// requests name their outputs through this, so a job file or a request cannot write
/// outside the folder it was given.
pub fn confine(root: &Path, path: &Path) -> Result<PathBuf, OutputError> {
    use std::path::Component;
    let escapes = || OutputError::Escapes { path: path.to_path_buf(), root: root.to_path_buf() };
    if path.as_os_str().is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(escapes());
    }
    let joined = root.join(path);
    // links: the deepest existing folder on the way must resolve inside the root
    let real_root = root.canonicalize().map_err(|_| OutputError::NoFolder(root.to_path_buf()))?;
    let mut existing = joined.parent();
    while let Some(dir) = existing {
        if let Ok(real) = dir.canonicalize() {
            if !real.starts_with(&real_root) {
                return Err(escapes());
            }
            break;
        }
        existing = dir.parent();
    }
    // the file itself must not be a link out either
    if let Ok(real) = joined.canonicalize()
        && !real.starts_with(&real_root)
    {
        return Err(escapes());
    }
    Ok(joined)
}

/// Moves the finished temporary file into place: a rename when replacing is allowed, a
/// hard link (which fails if the name exists) otherwise, so a file created meanwhile survives.
fn place(tmp: &Path, path: &Path, overwrite: bool) -> Result<(), OutputError> {
    let err = |source: std::io::Error| OutputError::Io { path: path.to_path_buf(), source };
    if overwrite {
        return std::fs::rename(tmp, path).map_err(err);
    }
    match std::fs::hard_link(tmp, path) {
        Ok(()) => {
            let _ = std::fs::remove_file(tmp);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(OutputError::Exists(path.to_path_buf())),
        // File systems without hard links: fall back to a rename after re-checking.
        Err(_) if !path.exists() => std::fs::rename(tmp, path).map_err(err),
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_refuses_to_replace_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("stipple-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("a.bin");
        let _ = std::fs::remove_file(&target);
        write_file::<OutputError>(&target, false, |tmp| std::fs::write(tmp, b"one").map_err(|source| OutputError::Io { path: tmp.into(), source })).unwrap();
        let again = write_file::<OutputError>(&target, false, |tmp| std::fs::write(tmp, b"two").map_err(|source| OutputError::Io { path: tmp.into(), source }));
        assert!(matches!(again, Err(OutputError::Exists(_))));
        assert_eq!(std::fs::read(&target).unwrap(), b"one");
        // a failing writer leaves neither the target nor a temporary file
        let failed = write_file::<OutputError>(&dir.join("b.bin"), false, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(OutputError::NoFolder(tmp.into()))
        });
        assert!(failed.is_err());
        assert!(!dir.join("b.bin").exists());
        write_file::<OutputError>(&target, true, |tmp| std::fs::write(tmp, b"three").map_err(|source| OutputError::Io { path: tmp.into(), source })).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"three");
        let leftovers = std::fs::read_dir(&dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp")).count();
        assert_eq!(leftovers, 0);
        assert!(matches!(write_file::<OutputError>(&dir.join("nope/x.bin"), false, |_| Ok(())), Err(OutputError::NoFolder(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn confined_paths_cannot_leave_their_folder() {
        let root = std::env::temp_dir().join(format!("stipple-confine-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        assert_eq!(confine(&root, Path::new("a.png")).unwrap(), root.join("a.png"));
        assert_eq!(confine(&root, Path::new("sub/./b.wav")).unwrap(), root.join("sub/./b.wav"));
        for bad in ["../x.png", "sub/../../x.png", "/etc/passwd", "", ".."] {
            assert!(matches!(confine(&root, Path::new(bad)), Err(OutputError::Escapes { .. })), "{bad:?} accepted");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(std::env::temp_dir(), root.join("out")).unwrap();
            assert!(matches!(confine(&root, Path::new("out/x.png")), Err(OutputError::Escapes { .. })));
            std::os::unix::fs::symlink("/etc/hostname", root.join("name.png")).unwrap();
            assert!(matches!(confine(&root, Path::new("name.png")), Err(OutputError::Escapes { .. })));
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A writer that makes an owner-only file (as the safetensors writer does) still leaves
    /// a file with the usual permissions.
    #[cfg(unix)]
    #[test]
    fn files_get_the_usual_permissions() {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let dir = std::env::temp_dir().join(format!("stipple-output-perms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("plain");
        std::fs::write(&plain, b"x").unwrap();
        let usual = std::fs::metadata(&plain).unwrap().permissions().mode();
        let target = dir.join("w.safetensors");
        write_file::<OutputError>(&target, false, |tmp| {
            let _ = std::fs::remove_file(tmp);
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp).map(drop).map_err(|source| OutputError::Io { path: tmp.into(), source })
        })
        .unwrap();
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode(), usual);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
