//! Sentence embeddings against an independent reference: tests/compat/embed_reference.py, the published BERT
//! forward pass in numpy (float64) with Hugging Face's tokenizer, on the real all-MiniLM-L6-v2 folder.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use hearth_engine::embed::{gguf, Embedder};
use hearth_engine::quant::GgmlType;
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

const TEXTS: [&str; 5] = [
    "The cat sits on the mat.",
    "A feline is resting on a rug!",
    "Quarterly revenue rose 12% on strong cloud demand.",
    "Ünïcödé, émojis 🙂 and CamelCaseWords — tokenized like Python's tokenizers.",
    "x",
];

fn minilm() -> PathBuf {
    common::models_dir().join("all-MiniLM-L6-v2")
}

/// The numpy float64 forward (tests/compat/embed_reference.py) of `TEXTS` on the folder's weights.
fn reference() -> Vec<Vec<f64>> {
    let mut child = Command::new(python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/compat/embed_reference.py"))
        .arg(minilm())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&TEXTS).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the reference failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn minilm_matches_the_numpy_reference() {
    let e = Embedder::open(&minilm()).unwrap();
    assert_eq!(e.dimensions(), 384);
    assert_eq!(e.max_tokens(), 256);
    let texts = TEXTS;
    let want = reference();
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

/// The folder converted to a BERT GGUF (llama.cpp's names and phantom-space vocabulary) and read back: the same
/// token ids as the folder's tokenizer.json on every text, and vectors that match the numpy reference — exactly
/// at F32, within F16 and Q8_0 rounding.
#[test]
fn a_bert_gguf_embeds_as_its_folder() {
    let folder = Embedder::open(&minilm()).unwrap();
    let want = reference();
    let tmp = tempfile::tempdir().unwrap();
    let tricky = [
        "[CLS] Hello, WORLD! don't stop—it's 3.14 o'clock; naïve café 東京 [MASK] unknownwordzzz",
        "   spaces\tand\nnewlines   ",
    ];
    for (ty, floor) in [
        (GgmlType::F32, 0.999_999),
        (GgmlType::F16, 0.999_9),
        (GgmlType::Q8_0, 0.999),
    ] {
        let path = tmp.path().join(format!("minilm-{}.gguf", ty.name()));
        gguf::write(&minilm(), ty).unwrap().write_to(&path).unwrap();
        let e = Embedder::load(&path).unwrap();
        assert_eq!(e.dimensions(), 384);
        assert_eq!(e.vocab_size(), folder.vocab_size());
        for t in TEXTS.iter().chain(&tricky) {
            assert_eq!(e.tokenize(t).unwrap(), folder.tokenize(t).unwrap(), "{t:?}");
        }
        let mut worst = 1f64;
        for (t, w) in TEXTS.iter().zip(&want) {
            let c = cosine(&e.embed(&e.tokenize(t).unwrap()).unwrap(), w);
            worst = worst.min(c);
            assert!(c >= floor, "{}: {t:?}: cosine {c}", ty.name());
        }
        eprintln!(
            "{}: {} bytes, worst cosine to the reference {worst:.7}",
            ty.name(),
            std::fs::metadata(&path).unwrap().len()
        );
    }
    // The tensors and keys llama.cpp reads.
    let f = hearth_engine::gguf::GgufFile::open(tmp.path().join("minilm-F16.gguf")).unwrap();
    assert_eq!(f.get_str("general.architecture"), Some("bert"));
    assert_eq!(f.get_str("tokenizer.ggml.model"), Some("bert"));
    assert_eq!(f.get_u64("bert.pooling_type"), Some(1));
    for t in [
        "token_embd.weight",
        "position_embd.weight",
        "token_types.weight",
        "token_embd_norm.bias",
        "blk.5.attn_q.weight",
        "blk.5.attn_output_norm.weight",
        "blk.5.ffn_down.bias",
        "blk.5.layer_output_norm.weight",
    ] {
        assert!(f.tensor_info(t).is_some(), "{t}");
    }
    // Not an embedding folder, or an unsupported type: refused with the reason.
    assert!(gguf::write(tmp.path(), GgmlType::F16).is_err());
    let err = gguf::write(&minilm(), GgmlType::Q4K).err().unwrap();
    assert!(err.to_string().contains("f16"), "{err}");
}
