//! The run directory: choosing it, locking it against a second run, and writing files into it
//! atomically (temporary file, fsync, rename) so a crash never leaves a half-written file.

use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `runs/<n>` for the smallest n >= 1 that does not exist yet under `root`.
pub fn next_run_dir(root: &Path) -> PathBuf {
    (1..).map(|n| root.join(n.to_string())).find(|p| !p.exists()).expect("an unused run number exists")
}

/// The directories a run created (its directory and any missing parents, deepest first), so
/// a run that fails before writing anything leaves none of them behind.
#[derive(Debug)]
pub struct CreatedDirs(Vec<PathBuf>);

impl CreatedDirs {
    pub fn create(dir: &Path) -> Result<CreatedDirs> {
        let missing = dir.ancestors().take_while(|p| !p.as_os_str().is_empty() && !p.exists()).map(Path::to_path_buf).collect();
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(CreatedDirs(missing))
    }

    /// Removes the created directories that are still empty, deepest first. `fs::remove_dir`
    /// removes only an empty directory, so whatever the run wrote stays.
    pub fn remove_if_empty(self) {
        for dir in &self.0 {
            if fs::remove_dir(dir).is_err() {
                break;
            }
        }
    }
}

/// Writes `bytes` to `path` so that readers see either the old file or the whole new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    // Make the rename itself durable; directories cannot be opened for syncing on every platform.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Holds `DIR/train.lock` for the life of a run; a second run in the same directory is refused.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

/// Whether the process that wrote a lock file still runs (Linux: /proc/PID exists). Elsewhere a
/// lock is always taken as held.
fn lock_holder_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

impl RunLock {
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        let path = dir.join("train.lock");
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    write!(f, "{}", std::process::id()).map_err(|e| Error::io(&path, e))?;
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u32>().ok());
                    match holder {
                        Some(pid) if !lock_holder_alive(pid) => {
                            // Left behind by a run that died without cleaning up: take it over.
                            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                        }
                        _ => {
                            let who = holder.map(|p| format!(" (process {p})")).unwrap_or_default();
                            return Err(Error::config(format!(
                                "another training run{who} is using {}; use another --out, or delete {} if that run is gone",
                                dir.display(),
                                path.display()
                            )));
                        }
                    }
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Err(Error::config(format!("could not take the lock {}", path.display())))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferronet-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn lock_refuses_a_second_run_and_is_released_on_drop() {
        let dir = scratch("lock");
        let lock = RunLock::acquire(&dir).unwrap();
        let err = RunLock::acquire(&dir).unwrap_err().to_string();
        assert!(err.contains("another training run") && err.contains("train.lock"), "{err}");
        drop(lock);
        let again = RunLock::acquire(&dir).unwrap();
        drop(again);
        // A lock naming a process that no longer exists is stale and taken over.
        fs::write(dir.join("train.lock"), "4294967294").unwrap();
        RunLock::acquire(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn atomic_write_replaces_whole_file_and_run_dirs_count_up() {
        let dir = scratch("atomic");
        let file = dir.join("a.json");
        write_atomic(&file, b"first").unwrap();
        write_atomic(&file, b"second").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"second");
        assert!(!dir.join(".a.json.tmp").exists());
        assert_eq!(next_run_dir(&dir), dir.join("1"));
        fs::create_dir(dir.join("1")).unwrap();
        assert_eq!(next_run_dir(&dir), dir.join("2"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn created_dirs_are_removed_only_while_empty() {
        let dir = scratch("created");
        let created = CreatedDirs::create(&dir.join("runs/1")).unwrap();
        created.remove_if_empty();
        assert!(!dir.join("runs").exists() && dir.exists(), "both created levels go, the existing parent stays");
        let created = CreatedDirs::create(&dir.join("runs/1")).unwrap();
        fs::write(dir.join("runs/1/history.csv"), "epoch").unwrap();
        created.remove_if_empty();
        assert!(dir.join("runs/1/history.csv").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
