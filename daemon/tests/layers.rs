//! The layering the map (docs/ARCHITECTURE.md) promises, checked on the source: `api` is the only daemon module
//! that knows HTTP, nothing below it imports it, and the engine crates name no HTTP, SQL or metrics crate.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("readable source dir")
        .flatten()
    {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Outside `api/`, only what sits above it may name actix-web or the api module: `server.rs` (the composition
/// root that builds the HTTP server and wires the parts) and the binary (`main.rs`, `cli/`).
#[test]
fn only_api_knows_http_and_nothing_below_imports_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 50,
        "found only {} files under {}",
        files.len(),
        src.display()
    );
    let mut offenders = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        if rel.starts_with("api")
            || rel.starts_with("cli")
            || rel == Path::new("server.rs")
            || rel == Path::new("main.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(f).expect("readable");
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("actix_web")
                || code.contains("crate::api")
                || code.contains("hearth::api")
            {
                offenders.push(format!("{}:{}: {}", rel.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "HTTP below api:\n{}",
        offenders.join("\n")
    );
}

/// The engine and its kernels depend on no HTTP, SQL or metrics crate.
#[test]
fn the_engine_crates_name_no_http_sql_or_metrics_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for manifest in ["engine/Cargo.toml", "engine/kernels/Cargo.toml"] {
        let text = std::fs::read_to_string(root.join(manifest)).expect("readable manifest");
        let deps: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split(['=', ' ']).next())
            .collect();
        for banned in [
            "actix-web",
            "actix-rt",
            "sqlx",
            "rusqlite",
            "prometheus",
            "hyper",
            "ureq",
            "reqwest",
        ] {
            assert!(!deps.contains(&banned), "{manifest} depends on {banned}");
        }
    }
}
