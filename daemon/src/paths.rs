//! Where state lives: `--state-dir`, else `$HEARTH_STATE_DIR`, else `./.hearth` (development). Packaged
//! installs pass `/var/lib/hearth`.

use std::path::PathBuf;

pub fn state_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("HEARTH_STATE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".hearth"))
}
