//! Bad input: every malformed file or request is a typed error with a message that names the problem — never a
//! panic. Synthetic files are written with the engine's own GGUF writer, in the real format.

mod common;

use hearth_engine::gguf::writer::GgufWriter;
use hearth_engine::gguf::{GgufFile, MetaArray, MetaValue};
use hearth_engine::quant::GgmlType;
use hearth_engine::{
    EngineError, GenerateRequest, LoadOptions, LoadedModel, Model, SamplingParams,
};

fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(f.path(), bytes).expect("write");
    f
}

fn small_file() -> GgufWriter {
    let mut w = GgufWriter::default();
    w.meta("general.architecture", MetaValue::String("llama".into()))
        .meta("general.name", MetaValue::String("tiny".into()))
        .meta(
            "some.array",
            MetaValue::Array(MetaArray::I32(vec![1, 2, 3])),
        )
        .f32_tensor("a.weight", &[32, 2], &[0.5; 64])
        .f32_tensor("b.weight", &[32], &[1.0; 32]);
    w
}

#[test]
fn a_valid_file_round_trips() {
    let f = write(&small_file().to_bytes());
    let g = GgufFile::open(f.path()).expect("opens");
    assert_eq!(g.version, 3);
    assert_eq!(g.get_str("general.name"), Some("tiny"));
    assert_eq!(
        g.get("some.array")
            .and_then(|v| v.as_array())
            .map(|a| a.len()),
        Some(3)
    );
    let info = g.tensor_info("a.weight").expect("tensor");
    assert_eq!(
        (info.row_len(), info.n_rows(), info.ty),
        (32, 2, GgmlType::F32)
    );
    assert_eq!(g.tensor_data(info).len(), 256);
}

#[test]
fn bad_magic_names_the_file() {
    let mut bytes = small_file().to_bytes();
    bytes[0] = b'X';
    let f = write(&bytes);
    let e = GgufFile::open(f.path()).expect_err("bad magic");
    assert!(matches!(e, EngineError::BadGguf { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("bad magic") && msg.contains(&f.path().display().to_string()),
        "{msg}"
    );
}

#[test]
fn unknown_version_is_refused() {
    let mut bytes = small_file().to_bytes();
    bytes[4] = 9;
    let e = GgufFile::open(write(&bytes).path()).expect_err("version");
    assert!(e.to_string().contains("unsupported GGUF version 9"), "{e}");
}

#[test]
fn truncated_files_are_errors_at_every_length() {
    let bytes = small_file().to_bytes();
    for len in (0..bytes.len()).step_by(7) {
        let e = GgufFile::open(write(&bytes[..len]).path()).expect_err("truncated");
        let msg = e.to_string();
        assert!(
            msg.contains("GGUF") || msg.contains("tensor"),
            "len {len}: {msg}"
        );
    }
}

#[test]
fn tensor_outside_the_file_names_the_tensor() {
    let mut w = GgufWriter::default();
    w.meta("general.architecture", MetaValue::String("llama".into()))
        .f32_tensor("big.weight", &[32, 1000], &[0.0; 32]);
    let e = GgufFile::open(write(&w.to_bytes()).path()).expect_err("outside");
    match &e {
        EngineError::BadTensor { tensor, reason, .. } => {
            assert_eq!(tensor, "big.weight");
            assert!(reason.contains("outside"), "{reason}");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn unknown_tensor_type_is_named() {
    let mut w = GgufWriter::default();
    w.meta("general.architecture", MetaValue::String("llama".into()))
        .tensor("odd.weight", &[256], GgmlType::Other(16), vec![0; 66]);
    let e = GgufFile::open(write(&w.to_bytes()).path()).expect_err("type");
    assert!(
        matches!(&e, EngineError::UnsupportedTensorType { tensor, .. } if tensor == "odd.weight"),
        "{e}"
    );
}

#[test]
fn unsupported_architecture_is_a_typed_error() {
    let mut w = GgufWriter::default();
    w.meta("general.architecture", MetaValue::String("mamba".into()));
    let f = write(&w.to_bytes());
    let e = Model::load(f.path(), &LoadOptions::default()).expect_err("arch");
    assert!(
        matches!(e, EngineError::UnsupportedArchitecture(ref a) if a == "mamba"),
        "{e}"
    );
}

#[test]
fn a_model_missing_a_tensor_names_it() {
    let mut w = small_file();
    w.meta("llama.block_count", MetaValue::U32(1))
        .meta("llama.embedding_length", MetaValue::U32(32))
        .meta("llama.feed_forward_length", MetaValue::U32(64))
        .meta("llama.attention.head_count", MetaValue::U32(2))
        .meta("llama.vocab_size", MetaValue::U32(4));
    let e = Model::load(write(&w.to_bytes()).path(), &LoadOptions::default()).expect_err("missing");
    assert!(e.to_string().contains("blk.0.attn_norm.weight"), "{e}");
}

#[test]
fn random_corruption_never_panics() {
    let clean = small_file().to_bytes();
    let mut s = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..1500 {
        let mut bytes = clean.clone();
        for _ in 0..3 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let at = (s as usize) % bytes.len();
            bytes[at] = (s >> 32) as u8;
        }
        // Either it parses (the flip hit data) or it is an error; a panic fails the test.
        let _ = GgufFile::open(write(&bytes).path());
    }
}

#[test]
fn bad_requests_are_refused_before_any_work() {
    let lm = LoadedModel::load(common::model(common::SMOLLM2), &LoadOptions::default(), 1)
        .expect("load");
    let mut batch = lm.new_batch(1, 64);
    let req = |prompt: Vec<u32>, max_tokens: usize, sampling: SamplingParams| GenerateRequest {
        prompt,
        max_tokens,
        sampling,
        ..Default::default()
    };
    let cases: Vec<(GenerateRequest, &str)> = vec![
        (req(vec![], 4, SamplingParams::greedy()), "prompt is empty"),
        (
            req(vec![1; 60], 10, SamplingParams::greedy()),
            "exceeds the context length of 64",
        ),
        (req(vec![1], 0, SamplingParams::greedy()), "max_tokens"),
        (
            req(vec![999_999], 4, SamplingParams::greedy()),
            "outside the vocabulary",
        ),
        (
            req(
                vec![1],
                4,
                SamplingParams {
                    temperature: -0.5,
                    ..Default::default()
                },
            ),
            "temperature",
        ),
        (
            req(
                vec![1],
                4,
                SamplingParams {
                    top_p: 1.5,
                    ..Default::default()
                },
            ),
            "top_p",
        ),
    ];
    for (r, want) in cases {
        let e = batch.add(r).expect_err(want);
        assert!(e.to_string().contains(want), "{e} does not say {want:?}");
    }
    assert!(batch.is_empty(), "nothing was admitted");
    let overflow = batch
        .add(req(vec![1; 60], 10, SamplingParams::greedy()))
        .expect_err("overflow");
    assert!(matches!(
        overflow,
        EngineError::ContextOverflow {
            prompt_tokens: 60,
            max_tokens: 10,
            context: 64
        }
    ));
}

#[test]
fn a_template_that_raises_is_a_template_error() {
    let t = hearth_engine::ChatTemplate::new("{{ raise_exception('no system role') }}", "", "")
        .expect("compiles");
    let e = t
        .render(&[hearth_engine::ChatMessage::new("system", "x")], true)
        .expect_err("raises");
    assert!(
        matches!(e, EngineError::Template(ref m) if m.contains("no system role")),
        "{e}"
    );
}

/// A file that is not GGUF is named as such, without any of its bytes (an admin may point at any file).
#[test]
fn a_file_that_is_not_gguf_is_not_echoed() {
    let f = write(b"root:$y$j9T$secret:19000:0:99999:7:::\n");
    let msg = GgufFile::open(f.path()).expect_err("not gguf").to_string();
    assert!(msg.contains("not a GGUF file"), "{msg}");
    assert!(
        !msg.contains("$y$") && !msg.contains("72, 6f") && !msg.contains("114, 111"),
        "{msg}"
    );
}

/// A norm epsilon or rope base that is NaN, infinite, zero or negative loads fine and generates nothing: the
/// model is refused with the key named.
#[test]
fn non_finite_or_non_positive_hyper_parameters_are_refused_by_name() {
    for (key, v) in [
        ("llama.attention.layer_norm_rms_epsilon", f32::NAN),
        ("llama.attention.layer_norm_rms_epsilon", -1e-5),
        ("llama.rope.freq_base", f32::INFINITY),
        ("llama.rope.freq_base", 0.0),
    ] {
        let mut w = small_file();
        w.meta("llama.block_count", MetaValue::U32(1))
            .meta("llama.embedding_length", MetaValue::U32(32))
            .meta("llama.feed_forward_length", MetaValue::U32(64))
            .meta("llama.attention.head_count", MetaValue::U32(2))
            .meta("llama.vocab_size", MetaValue::U32(4))
            .meta(key, MetaValue::F32(v));
        let e = Model::load(write(&w.to_bytes()).path(), &LoadOptions::default()).expect_err(key);
        assert!(e.to_string().contains(key), "{key} = {v}: {e}");
    }
}

/// Tensor infos whose data ranges overlap (one tensor's bytes read as another's) are refused, naming both.
#[test]
fn overlapping_tensor_data_is_refused_naming_both() {
    let mut bytes = small_file().to_bytes();
    // b.weight's info: name, then n_dims (u32) = 1, its dimension (u64), type (u32), then the offset (u64).
    let name = b"b.weight";
    let at = bytes
        .windows(name.len())
        .position(|w| w == name)
        .expect("tensor info")
        + name.len()
        + 4
        + 8
        + 4;
    bytes[at..at + 8].copy_from_slice(&0u64.to_le_bytes());
    let e = GgufFile::open(write(&bytes).path()).expect_err("overlap");
    let msg = e.to_string();
    assert!(
        msg.contains("b.weight") && msg.contains("a.weight") && msg.contains("overlaps"),
        "{msg}"
    );
}

/// Found by the tokenizer fuzz target (tests/fuzz): SmolLM2's byte-level vocabulary has no token for six
/// control characters (0x04, 0x06, 0x13, 0x14, 0x16, 0x1d). Like the model's own tokenizer.json and llama.cpp,
/// encoding drops exactly those characters; every other byte of the text comes back.
#[test]
fn byte_level_bpe_round_trips_all_but_the_bytes_the_vocabulary_lacks() {
    let gguf = GgufFile::open(common::model(common::SMOLLM2)).expect("open");
    let tok = hearth_engine::Tokenizer::from_gguf(&gguf).expect("tokenizer");
    for c in ['\u{4}', '\u{6}', '\u{13}', '\u{14}', '\u{16}', '\u{1d}'] {
        assert_eq!(
            tok.encode(&c.to_string(), false).expect("encode"),
            Vec::<u32>::new()
        );
    }
    for (text, back) in [
        ("a\u{13}b", "ab"),
        ("\u{fffd}\u{13}\u{fffd}", "\u{fffd}\u{fffd}"),
        ("\0\u{1}\u{7f}\u{1b}[0m", "\0\u{1}\u{7f}\u{1b}[0m"),
    ] {
        let ids = tok.encode(text, false).expect("encode");
        assert_eq!(tok.decode(&ids), back);
    }
}
