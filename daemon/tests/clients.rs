//! Client compatibility: the official `openai` and `ollama` Python packages (PyPI, unmodified, installed by
//! scripts/client-env) against the real daemon. See tests/compat/clients.py.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod harness;

use std::path::PathBuf;

#[test]
fn official_python_clients_work_unchanged() {
    let venv = std::env::var_os("HEARTH_CLIENT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/hearth/client-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/client-env (make test does)",
        python.display()
    );
    // The catalog `ollama.pull` fetches from: the demo model served over loopback.
    let files = harness::serve_file(harness::demo_model());
    let d = harness::Daemon::start_with(
        &format!(
            "{}\n[catalog.compat-pulled]\nurl = \"{files}/ok.gguf\"\n",
            harness::BASE_CONFIG
        ),
        &[],
    );
    let minilm = harness::demo_model()
        .parent()
        .unwrap()
        .join("all-MiniLM-L6-v2");
    harness::ok_stdout(&d.cli(&[
        "model",
        "import",
        minilm.to_str().unwrap(),
        "--name",
        "minilm",
    ]));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/compat/clients.py");
    let o = std::process::Command::new(python)
        .arg(script)
        .arg(format!("http://{}", d.addr))
        .arg(&d.admin_key)
        .arg("smollm2")
        .arg("minilm")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        d.log()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("checks passed"));
}
