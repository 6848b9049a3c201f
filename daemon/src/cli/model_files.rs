//! `hearth model synth` and `hearth model convert`: writing model files (synthetic BitNet and Llama 3 models at real shapes,
//! Hugging Face BitNet checkpoints converted to GGUF).

use anyhow::{anyhow, bail, Context, Result};
use hearth_engine::gguf::GgufFile;
use hearth_engine::quant::GgmlType;
use hearth_engine::ternary::{hf, synth};
use std::path::{Path, PathBuf};

fn tokenizer_source(path: Option<&Path>) -> Result<Option<GgufFile>> {
    path.map(|p| {
        GgufFile::open(p).with_context(|| format!("reading the tokenizer from {}", p.display()))
    })
    .transpose()
}

fn format(s: &str) -> Result<hearth_engine::quant::GgmlType> {
    synth::parse_format(s).ok_or_else(|| anyhow!("unknown format '{s}' (use i2_s, tq2_0 or tq1_0)"))
}

fn write(w: &hearth_engine::gguf::writer::GgufWriter, out: &Path) -> Result<()> {
    // Write beside the target and rename, so a failed or interrupted run never leaves a half file under its name.
    let tmp = out.with_extension("gguf.partial");
    w.write_to(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!("wrote {} ({:.1} MB)", out.display(), size as f64 / 1e6);
    Ok(())
}

/// The flags of `hearth model synth`.
pub struct SynthArgs<'a> {
    pub family: &'a str,
    pub preset: &'a str,
    pub format: Option<&'a str>,
    pub file_type: Option<&'a str>,
    pub out: &'a Path,
    pub seed: u64,
    pub tokenizer: Option<&'a Path>,
    pub layers: Option<usize>,
    pub embed: Option<&'a str>,
}

pub fn synth(a: &SynthArgs<'_>) -> Result<()> {
    let w = match a.family {
        "bitnet" => synth_bitnet(a)?,
        "llama" => synth_llama(a)?,
        other => bail!("unknown model family '{other}' (available: bitnet, llama)"),
    };
    write(&w, a.out)
}

fn layers(shape_layers: &mut usize, layers: Option<usize>) -> Result<()> {
    if let Some(n) = layers {
        if n == 0 {
            bail!("--layers must be at least 1");
        }
        *shape_layers = n;
    }
    Ok(())
}

fn synth_bitnet(a: &SynthArgs<'_>) -> Result<hearth_engine::gguf::writer::GgufWriter> {
    if a.file_type.is_some() {
        bail!("--type is for llama files; a bitnet file takes --format i2_s|tq2_0|tq1_0");
    }
    let mut shape = synth::Shape::preset(a.preset).ok_or_else(|| {
        anyhow!(
            "unknown preset '{}' (use 2b4t, 2b4t-draft or tiny)",
            a.preset
        )
    })?;
    layers(&mut shape.n_layers, a.layers)?;
    let ty = format(a.format.unwrap_or("i2_s"))?;
    let tok = tokenizer_source(a.tokenizer)?;
    let embed = match a.embed.unwrap_or("f16") {
        "f16" => GgmlType::F16,
        "q8_0" => GgmlType::Q8_0,
        "q4_0" => GgmlType::Q4_0,
        other => bail!("unknown embedding type '{other}' (use f16, q8_0 or q4_0)"),
    };
    synth::bitnet_with_embedding(shape, ty, embed, a.seed, tok.as_ref()).map_err(|e| anyhow!(e))
}

fn synth_llama(a: &SynthArgs<'_>) -> Result<hearth_engine::gguf::writer::GgufWriter> {
    use hearth_engine::synth::llama::{FileType, Shape};
    if a.format.is_some() || a.embed.is_some() {
        bail!("--format and --embed are for bitnet files; a llama file takes --type q4_k_m|q4_0|q8_0|q6_k");
    }
    let mut shape = Shape::preset(a.preset).ok_or_else(|| {
        anyhow!(
            "unknown preset '{}' for llama (use {})",
            a.preset,
            Shape::PRESETS
        )
    })?;
    layers(&mut shape.n_layers, a.layers)?;
    let name = a.file_type.unwrap_or("q4_k_m");
    let ft = FileType::parse(name)
        .ok_or_else(|| anyhow!("unknown type '{name}' (use {})", FileType::NAMES))?;
    let tok = tokenizer_source(a.tokenizer)?;
    hearth_engine::synth::llama::llama(shape, ft, a.seed, tok.as_ref()).map_err(|e| anyhow!(e))
}

pub fn convert(
    dir: &Path,
    fmt: Option<&str>,
    out: &Path,
    tokenizer: Option<&PathBuf>,
) -> Result<()> {
    if hearth_engine::embed::is_embedding_folder(dir) {
        if tokenizer.is_some() {
            bail!("--tokenizer is for BitNet checkpoints: an embedding folder brings its tokenizer.json");
        }
        let ty = match fmt.unwrap_or("f16") {
            "f16" => GgmlType::F16,
            "f32" => GgmlType::F32,
            "q8_0" => GgmlType::Q8_0,
            other => {
                bail!("unknown format '{other}' for an embedding model (use f16, f32 or q8_0)")
            }
        };
        let w = hearth_engine::embed::gguf::write(dir, ty)
            .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
        return write(&w, out);
    }
    let ty = format(fmt.unwrap_or("i2_s"))?;
    let tok = tokenizer_source(tokenizer.map(PathBuf::as_path))?;
    let w = hf::convert(dir, ty, tok.as_ref()).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    write(&w, out)
}

/// `hearth model pull URL [--name N]`: download with a progress line on stderr, then import.
pub fn pull(store: &hearth::models::ModelStore, url: &str, name: Option<&str>) -> Result<()> {
    let name = name.map(str::to_owned).unwrap_or_else(|| {
        hearth::models::name_from_path(std::path::Path::new(
            hearth::pull::file_name_of(url).unwrap_or("model"),
        ))
    });
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last = std::time::Instant::now();
    let m = hearth::pull::pull(store, url, &name, None, |bytes, total| {
        if tty && last.elapsed().as_millis() < 200 && total != Some(bytes) {
            return;
        }
        last = std::time::Instant::now();
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let line = match total {
            Some(t) if t > 0 => format!(
                "pull {name}: {:.1} / {:.1} MiB ({:.0} %)",
                mib(bytes),
                mib(t),
                100.0 * bytes as f64 / t as f64
            ),
            _ => format!("pull {name}: {:.1} MiB", mib(bytes)),
        };
        if tty {
            eprint!("\r{line}");
        } else if total == Some(bytes) || bytes == 0 {
            eprintln!("{line}");
        }
    })?;
    if tty {
        eprintln!();
    }
    println!(
        "imported {} ({}, {:.1} MB)",
        m.name,
        m.architecture,
        m.size_bytes as f64 / 1e6
    );
    Ok(())
}
