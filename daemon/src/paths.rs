//! Where state lives: `--state-dir`, else `$HEARTH_STATE_DIR`, else the config's `state_dir`, else `./.hearth`
//! (development). Packaged installs set `/var/lib/hearth` in /etc/hearth/hearth.toml and the unit.

use std::path::{Path, PathBuf};

pub fn state_dir(flag: Option<PathBuf>, configured: Option<&Path>) -> PathBuf {
    flag.or_else(|| std::env::var_os("HEARTH_STATE_DIR").map(PathBuf::from))
        .or_else(|| configured.map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from(".hearth"))
}

/// Whether this process can create files in `dir` (a probe file, removed again).
pub fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe))
}

/// `probe_writable` as an error an operator can act on: who we are, and the fix for a packaged install.
pub fn ensure_writable(dir: &Path) -> anyhow::Result<()> {
    probe_writable(dir).map_err(|e| {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        anyhow::anyhow!(
            "the state directory {} is not writable by uid {uid}: {e}; it must belong to the user the daemon \
             runs as (packaged installs: chown -R hearth:hearth {})",
            dir.display(),
            dir.display()
        )
    })
}
