//! Sentence embeddings against an independent reference: tests/compat/embed_reference.py, the published BERT
//! forward pass in numpy (float64) with Hugging Face's tokenizer, on the real all-MiniLM-L6-v2 folder.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use hearth_engine::embed::Embedder;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn python() -> PathBuf {
    let venv = std::env::var_os("HEARTH_CLIENT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/hearth/client-venv")
        });
    let py = venv.join("bin/python");
    assert!(
        py.is_file(),
        "{} is missing: run scripts/client-env",
        py.display()
    );
    py
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * y).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_matches_the_numpy_reference() {
    let dir = common::models_dir().join("all-MiniLM-L6-v2");
    let e = Embedder::open(&dir).unwrap();
    assert_eq!(e.dimensions(), 384);
    assert_eq!(e.max_tokens(), 256);
    let texts = [
        "The cat sits on the mat.",
        "A feline is resting on a rug!",
        "Quarterly revenue rose 12% on strong cloud demand.",
        "Ünïcödé, émojis 🙂 and CamelCaseWords — tokenized like Python's tokenizers.",
        "x",
    ];
    let mut child = Command::new(python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/compat/embed_reference.py"))
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&texts).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the reference failed");
    let want: Vec<Vec<f64>> = serde_json::from_slice(&out.stdout).unwrap();
    let mut got = Vec::new();
    for (t, w) in texts.iter().zip(&want) {
        let v = e.embed(&e.tokenize(t).unwrap()).unwrap();
        let c = cosine(&v, w);
        assert!(c >= 0.999_9, "{t:?}: cosine {c}");
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");
        got.push(v);
    }
    // Meaning, not only numbers: the paraphrase is nearer than the unrelated sentence.
    let sim = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(sim(&got[0], &got[1]) > sim(&got[0], &got[2]) + 0.2);
    // Several inputs in one forward pass give each input's own vector.
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| e.tokenize(t).unwrap()).collect();
    for (one, batched) in got.iter().zip(e.embed_batch(&ids).unwrap()) {
        assert!(one.iter().zip(&batched).all(|(a, b)| (a - b).abs() < 1e-5));
    }
    // The figures sentence-transformers' documentation prints for this model (0.6660 and 0.1046).
    let weather: Vec<Vec<f32>> = [
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
    ]
    .iter()
    .map(|t| e.embed(&e.tokenize(t).unwrap()).unwrap())
    .collect();
    assert!((sim(&weather[0], &weather[1]) - 0.6660).abs() < 1e-3);
    assert!((sim(&weather[0], &weather[2]) - 0.1046).abs() < 1e-3);
    // Over-long input: truncation keeps the closing [SEP].
    let mut ids = e.tokenize(&"word ".repeat(400)).unwrap();
    let sep = *ids.last().unwrap();
    assert!(ids.len() > 256 && e.embed(&ids).is_err());
    e.truncate(&mut ids);
    assert_eq!((ids.len(), *ids.last().unwrap()), (256, sep));
    assert!(e.embed(&ids).is_ok());
}
