//! What the packages and the systemd unit rely on from the binary: the packaged config is valid, clear errors for
//! a taken port, completions and man pages generated from the CLI, and a CLI run as root acting as the owner of
//! the state directory. (The packages themselves are tested by tests/package/run.)

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod harness;

use harness::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const PACKAGED_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/hearth.toml");

#[test]
fn packaged_config_is_valid_and_binds_the_lan() {
    let dir = tempfile::tempdir().unwrap();
    let o = hearth(dir.path(), &["config", "check", PACKAGED_CONFIG]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["--config", PACKAGED_CONFIG, "config", "show"])
        .env_remove("HEARTH_STATE_DIR")
        .output()
        .unwrap();
    let shown = ok_stdout(&o);
    assert!(shown.contains("0.0.0.0:8383"), "{shown}");
    assert!(
        shown.contains("state_dir (effective) = /var/lib/hearth"),
        "{shown}"
    );
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let o = hearth(dir.path(), &["serve", "--bind", &addr]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn completions_for_each_shell_name_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F _hearth"),
        ("zsh", "#compdef hearth"),
        ("fish", "complete -c hearth"),
    ] {
        let script = ok_stdout(&hearth(dir.path(), &["completions", shell]));
        assert!(script.contains(marker), "{shell}: {script:.200}");
        for sub in ["serve", "doctor", "model", "key"] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let o = hearth(dir.path(), &["completions", "tcsh"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid value 'tcsh'"));
}

#[test]
fn man_pages_cover_every_visible_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    let listed = ok_stdout(&hearth(dir.path(), &["manpages", out.to_str().unwrap()]));
    for page in [
        "hearth.1",
        "hearth-serve.1",
        "hearth-key-create.1",
        "hearth-model-import.1",
        "hearth-config-check.1",
    ] {
        let text = std::fs::read_to_string(out.join(page)).unwrap();
        let name = page.trim_end_matches(".1");
        let header = format!(".TH {name} 1  \"{name} {}\"", env!("CARGO_PKG_VERSION"));
        assert!(text.contains(&header), "{page}: {text:.160}");
        assert!(listed.contains(page));
    }
    let top = std::fs::read_to_string(out.join("hearth.1")).unwrap();
    assert!(top.contains("hearth\\-serve(1)"), "{top}");
    // The generator itself is not documented as a user command.
    assert!(!out.join("hearth-manpages.1").exists());
}

fn euid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// `sudo hearth user add …` on a packaged install must leave files the daemon (user hearth) can open.
#[test]
fn root_cli_acts_as_the_state_owner() {
    if euid() != 0 {
        eprintln!("skipped: needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    // nobody:nogroup stands in for the service user.
    let (uid, gid) = (65534, 65534);
    std::os::unix::fs::chown(&state, Some(uid), Some(gid)).unwrap();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    let o = hearth_stdin(
        &state,
        &["user", "add", "alice", "--password-stdin"],
        Some("pw-for-alice\n"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let key = ok_stdout(&hearth(&state, &["key", "create", "alice"]));
    assert!(key.starts_with("hth_"), "{key}");
    ok_stdout(&hearth(
        &state,
        &[
            "model",
            "import",
            demo_model().to_str().unwrap(),
            "--name",
            "demo",
        ],
    ));
    // The model came from root's private cache (0700): it was staged as the owner, and the stage is gone.
    let entries = walk(&state);
    assert!(
        entries
            .iter()
            .all(|p| !p.to_string_lossy().contains(".staged-")),
        "{entries:?}"
    );
    for entry in entries {
        let m = std::fs::metadata(&entry).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (uid, gid),
            "{} is not owned by the state directory's owner",
            entry.display()
        );
    }
    // Synth writes where --out says, as the caller (root), not as the state owner.
    let out = dir.path().join("tiny.gguf");
    ok_stdout(&hearth(
        &state,
        &[
            "model",
            "synth",
            "bitnet",
            "--preset",
            "tiny",
            "--out",
            out.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::metadata(&out).unwrap().uid(), 0);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
