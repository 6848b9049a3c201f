//! The `hearth` binary end to end: `run`, `bench` and `model import|list|rm` on the demo model, in a temp state
//! directory, with their output contract (stdout holds only the generated text / the requested data).

mod harness;

use harness::{demo_model as model, hearth};

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("UTF-8 output")
}

#[test]
fn run_streams_only_the_generated_text() {
    let state = tempfile::tempdir().expect("tmp");
    let m = model();
    let args = [
        "run",
        m.to_str().expect("path"),
        "The capital of France is",
        "--raw",
        "--temperature",
        "0",
        "--max-tokens",
        "8",
        "--threads",
        "2",
    ];
    let a = hearth(state.path(), &args);
    assert!(a.status.success(), "{}", text(&a.stderr));
    let out = text(&a.stdout);
    assert!(!out.trim().is_empty(), "no text generated");
    assert!(
        !out.contains("hearth:"),
        "diagnostics leaked to stdout: {out:?}"
    );
    assert!(
        text(&a.stderr).contains("finish: length"),
        "{}",
        text(&a.stderr)
    );
    // Greedy is deterministic.
    let b = hearth(state.path(), &args);
    assert_eq!(out, text(&b.stdout));
}

#[test]
fn chat_mode_with_seed_is_reproducible() {
    let state = tempfile::tempdir().expect("tmp");
    let m = model();
    let args = [
        "run",
        m.to_str().expect("path"),
        "Name a colour.",
        "--seed",
        "7",
        "--temperature",
        "0.9",
        "--max-tokens",
        "16",
    ];
    let a = hearth(state.path(), &args);
    let b = hearth(state.path(), &args);
    assert!(a.status.success(), "{}", text(&a.stderr));
    assert_eq!(text(&a.stdout), text(&b.stdout));
}

#[test]
fn model_import_list_run_by_name_and_remove() {
    let state = tempfile::tempdir().expect("tmp");
    let m = model();
    let imp = hearth(
        state.path(),
        &[
            "model",
            "import",
            m.to_str().expect("path"),
            "--name",
            "smol",
        ],
    );
    assert!(imp.status.success(), "{}", text(&imp.stderr));
    let again = hearth(
        state.path(),
        &[
            "model",
            "import",
            m.to_str().expect("path"),
            "--name",
            "smol",
        ],
    );
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );

    let list = hearth(state.path(), &["model", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).expect("JSON list");
    let entry = &v[0];
    assert_eq!(entry["name"], "smol");
    assert_eq!(entry["architecture"], "llama");
    assert_eq!(entry["file_type"], "Q4_1");
    assert_eq!(entry["context_length"], 8192);
    assert_eq!(
        entry["sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert_eq!(entry["quant_types"]["Q4_1"], 210);

    let run = hearth(
        state.path(),
        &[
            "run",
            "smol",
            "Hi",
            "--raw",
            "--temperature",
            "0",
            "--max-tokens",
            "3",
        ],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));

    let rm = hearth(state.path(), &["model", "rm", "smol"]);
    assert!(rm.status.success());
    let missing = hearth(state.path(), &["run", "smol", "Hi"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("'smol' is not imported"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn bad_inputs_fail_with_clear_messages() {
    let state = tempfile::tempdir().expect("tmp");
    let junk = state.path().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file at all").expect("write");
    let out = hearth(state.path(), &["run", junk.to_str().expect("path"), "Hi"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("bad magic"),
        "{}",
        text(&out.stderr)
    );

    let imp = hearth(
        state.path(),
        &["model", "import", junk.to_str().expect("path")],
    );
    assert!(!imp.status.success());
    assert!(
        text(&imp.stderr).contains("not a valid GGUF"),
        "{}",
        text(&imp.stderr)
    );
    assert!(
        !state.path().join("models/junk").exists(),
        "nothing half-imported"
    );

    let m = model();
    let too_long = hearth(
        state.path(),
        &[
            "run",
            m.to_str().expect("path"),
            "Hi",
            "--ctx",
            "16",
            "--max-tokens",
            "32",
        ],
    );
    assert!(!too_long.status.success());
    assert!(
        text(&too_long.stderr).contains("exceeds the context length"),
        "{}",
        text(&too_long.stderr)
    );

    let bad_temp = hearth(
        state.path(),
        &["run", m.to_str().expect("path"), "Hi", "--temperature=-1"],
    );
    assert!(
        text(&bad_temp.stderr).contains("temperature must be >= 0"),
        "{}",
        text(&bad_temp.stderr)
    );
}

#[test]
fn bench_reports_json() {
    let state = tempfile::tempdir().expect("tmp");
    let m = model();
    let out = hearth(
        state.path(),
        &[
            "bench",
            m.to_str().expect("path"),
            "--prompt-tokens",
            "32",
            "--gen-tokens",
            "8",
            "--batch",
            "1,2",
            "--repetitions",
            "1",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(v["pp_tokens_per_s"].as_f64().expect("pp") > 0.0);
    assert!(v["tg_tokens_per_s"].as_f64().expect("tg") > 0.0);
    assert_eq!(v["batches"].as_array().expect("batches").len(), 2);
}

#[test]
fn synth_llama_writes_a_file_bench_reads_at_depth_and_wrong_flags_are_named() {
    let state = tempfile::tempdir().expect("tmp");
    let out = state.path().join("tiny-llama.gguf");
    let o = out.to_str().expect("path");
    let w = hearth(
        state.path(),
        &[
            "model", "synth", "llama", "--preset", "tiny", "--type", "q4_k_m", "--out", o,
        ],
    );
    assert!(w.status.success(), "{}", text(&w.stderr));
    assert!(text(&w.stdout).contains("wrote"), "{}", text(&w.stdout));
    assert!(
        !state.path().join("tiny-llama.gguf.partial").exists(),
        "no partial file left"
    );

    // Generation measured behind a 40-token prompt (llama-bench's -d), reported as such.
    let b = hearth(
        state.path(),
        &[
            "bench",
            o,
            "--prompt-tokens",
            "16",
            "--gen-tokens",
            "4",
            "--depth",
            "40",
            "--batch",
            "1",
            "--repetitions",
            "1",
            "--json",
        ],
    );
    assert!(b.status.success(), "{}", text(&b.stderr));
    let v: serde_json::Value = serde_json::from_slice(&b.stdout).expect("JSON");
    assert_eq!(v["depth"], 40);
    assert_eq!(v["architecture"], "llama");
    assert!(v["tg_tokens_per_s"].as_f64().expect("tg") > 0.0);

    for (args, says) in [
        (
            vec!["--type", "q5_k_m"],
            "unknown type 'q5_k_m' (use q4_k_m, q4_0, q8_0 or q6_k)",
        ),
        (
            vec!["--format", "i2_s"],
            "--format and --embed are for bitnet files",
        ),
        (
            vec!["--preset", "70b"],
            "unknown preset '70b' for llama (use 1b, 3b, 8b or tiny)",
        ),
    ] {
        let mut a = vec!["model", "synth", "llama", "--out", o];
        a.extend(args);
        let r = hearth(state.path(), &a);
        assert!(!r.status.success());
        assert!(text(&r.stderr).contains(says), "{}", text(&r.stderr));
    }
    let r = hearth(
        state.path(),
        &["model", "synth", "bitnet", "--type", "q4_0", "--out", o],
    );
    assert!(
        text(&r.stderr).contains("--type is for llama files"),
        "{}",
        text(&r.stderr)
    );
    let r = hearth(state.path(), &["model", "synth", "gpt2", "--out", o]);
    assert!(
        text(&r.stderr).contains("unknown model family 'gpt2' (available: bitnet, llama)"),
        "{}",
        text(&r.stderr)
    );
}
