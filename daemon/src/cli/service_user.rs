//! `sudo hearth key create …` on a packaged install: the state directory belongs to the service user, and files
//! the CLI creates there as root (SQLite's -wal/-shm, imported models) would lock the daemon out. So a CLI run as
//! root becomes the directory's owner before touching it — the same identity the unit runs the daemon under.

use anyhow::{Context, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// The owner of `state_dir` when we run as root and it belongs to someone else; `None` means stay as we are.
pub fn foreign_owner(state_dir: &Path) -> Option<Owner> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let meta = std::fs::metadata(state_dir).ok()?;
    (meta.uid() != 0).then(|| Owner {
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// Becomes `owner` for good: groups and gid while still root, uid last (after it there is no way back).
pub fn switch_to(owner: Owner, state_dir: &Path) -> Result<()> {
    let Owner { uid, gid } = owner;
    // SAFETY: plain syscalls on integers and a one-element array that outlives the call.
    let failed = unsafe {
        libc::setgroups(1, &gid) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0
    };
    if failed {
        return Err(std::io::Error::last_os_error()).with_context(|| {
            format!(
                "cannot switch to uid {uid} / gid {gid}, the owner of {}",
                state_dir.display()
            )
        });
    }
    tracing::debug!(uid, gid, state = %state_dir.display(), "running as the state directory's owner");
    Ok(())
}

/// `sudo hearth model import ~/model.gguf`: root can read the file, the service user often cannot (a private
/// home). While still root, copy it into `<state>/.staged-PID/` (same name) owned by `owner`; the import then
/// hard-links it into place and `unstage` removes the directory.
pub fn stage(owner: Owner, src: &Path, state_dir: &Path) -> Result<PathBuf> {
    let dir = state_dir.join(format!(".staged-{}", std::process::id()));
    let name = src
        .file_name()
        .with_context(|| format!("{} names no file", src.display()))?;
    let dst = dir.join(name);
    let chown = |p: &Path| {
        std::os::unix::fs::chown(p, Some(owner.uid), Some(owner.gid))
            .with_context(|| format!("giving {} to uid {}", p.display(), owner.uid))
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    chown(&dir)?;
    copy_owned(src, &dst, &chown)?;
    Ok(dst)
}

/// Copies a file, or a folder's files and subfolders (an embedding model), each given to the service user.
fn copy_owned(src: &Path, dst: &Path, chown: &dyn Fn(&Path) -> Result<()>) -> Result<()> {
    if src.is_dir() {
        std::fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
        chown(dst)?;
        let entries =
            std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", src.display()))?;
            copy_owned(&entry.path(), &dst.join(entry.file_name()), chown)?;
        }
        return Ok(());
    }
    std::fs::copy(src, dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    chown(dst)
}

pub fn unstage(staged: &Path) {
    if let Some(dir) = staged.parent() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove the staged copy");
        }
    }
}
