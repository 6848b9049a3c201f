//! Man pages from the clap definition, so they never drift from `--help`: `hearth.1` plus `hearth-SUB.1` per
//! subcommand (and `hearth-SUB-SUBSUB.1`), as git does. Written by the packaging script (`hearth manpages DIR`).

use anyhow::{Context, Result};
use std::path::Path;

pub fn write_all(cmd: clap::Command, dir: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    write_page(cmd, "hearth", dir, &mut written)?;
    Ok(written)
}

fn write_page(cmd: clap::Command, name: &str, dir: &Path, written: &mut Vec<String>) -> Result<()> {
    // Every page's header and footer carry the version, not only the top one.
    let cmd = cmd
        .name(name.to_string())
        .version(env!("CARGO_PKG_VERSION"));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = format!("{name}-{}", sub.get_name());
        write_page(sub.clone(), &sub_name, dir, written)?;
    }
    let file = format!("{name}.1");
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .with_context(|| format!("rendering {file}"))?;
    std::fs::write(dir.join(&file), out).with_context(|| format!("writing {file}"))?;
    written.push(file);
    Ok(())
}
