//! Where state lives: `--state-dir`, else `$HEARTH_STATE_DIR`, else the config's `state_dir`, else `./.hearth`
//! (development). Packaged installs set `/var/lib/hearth` in /etc/hearth/hearth.toml and the unit.

use std::path::{Path, PathBuf};

pub fn state_dir(flag: Option<PathBuf>, configured: Option<&Path>) -> PathBuf {
    flag.or_else(|| std::env::var_os("HEARTH_STATE_DIR").map(PathBuf::from))
        .or_else(|| configured.map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from(".hearth"))
}
