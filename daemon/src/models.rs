//! The models directory: `<state>/models/<name>/` holds the GGUF file and `manifest.json` (architecture, quant
//! types, size, context length, sha256). A model is referred to by name everywhere else.

use hearth_engine::gguf::GgufFile;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModelStoreError {
    #[error("model '{0}' is not imported (see `hearth model list`)")]
    NotFound(String),
    #[error("a model named '{0}' already exists (remove it first or choose --name)")]
    Exists(String),
    #[error("invalid model name '{0}': use letters, digits, '.', '_', '-' and ':' (at most 64)")]
    BadName(String),
    #[error(transparent)]
    Engine(#[from] hearth_engine::EngineError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt manifest: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, ModelStoreError>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub file: String,
    pub architecture: String,
    /// Tensor type → number of tensors.
    pub quant_types: BTreeMap<String, usize>,
    /// The file's overall type (`general.file_type` as llama.cpp names it), when known.
    pub file_type: Option<String>,
    pub size_bytes: u64,
    pub context_length: Option<u64>,
    pub parameters: u64,
    pub sha256: String,
    pub imported_at: u64,
    /// What a derived model (Ollama's create) changes of the model it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived: Option<Derived>,
}

/// A model made from another (Ollama's `/api/create` with `from`): the same weights, with its own system prompt,
/// conversation prefix, chat template and default request options. The template applies when the model loads,
/// the rest to each request (`inference`, and the APIs for the options).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Derived {
    /// The model it was made from (its files are linked, not copied).
    pub from: String,
    /// The system message of a conversation that has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// A Jinja chat template in place of the file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Messages put before every conversation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<DerivedMessage>,
    /// Default request options, in Ollama's names (`temperature`, `num_ctx`, `stop`, …); a request's own win.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DerivedMessage {
    pub role: String,
    pub content: String,
}

impl Derived {
    /// This derivation over `base` (the model it is made from, itself perhaps derived): what it sets wins, the
    /// rest is the base's.
    fn over(self, base: Option<&Derived>) -> Derived {
        let Some(b) = base else {
            return self;
        };
        let mut parameters = b.parameters.clone();
        parameters.extend(self.parameters);
        Derived {
            from: self.from,
            system: self.system.or_else(|| b.system.clone()),
            template: self.template.or_else(|| b.template.clone()),
            messages: if self.messages.is_empty() {
                b.messages.clone()
            } else {
                self.messages
            },
            parameters,
            license: self.license.or_else(|| b.license.clone()),
        }
    }
}

/// What an embedding model's folder keeps of a sentence-transformers folder.
const EMBEDDING_FILES: [&str; 6] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

impl Manifest {
    /// An embedding model (a sentence-transformers folder), not a generating one.
    pub fn is_embedding(&self) -> bool {
        self.architecture == "bert"
    }
}

/// Writes the manifest into the staging folder and publishes it atomically: a half-imported model is never
/// listed.
fn publish(tmp: &Path, dir: &Path, manifest: Manifest) -> Result<Manifest> {
    let mpath = tmp.join("manifest.json");
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|source| ModelStoreError::Manifest {
            path: mpath.clone(),
            source,
        })?;
    std::fs::write(&mpath, json).map_err(io(&mpath))?;
    std::fs::rename(tmp, dir).map_err(io(dir))?;
    Ok(manifest)
}

/// A model's folder linked file by file into `dst` (its manifest left out: the copy writes its own).
fn link_tree(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst).map_err(io(dst))?;
    for entry in std::fs::read_dir(src).map_err(io(src))? {
        let entry = entry.map_err(io(src))?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        if from.is_dir() {
            link_tree(&from, &to)?;
        } else if entry.file_name() != "manifest.json" && std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(io(&to))?;
        }
    }
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Clone)]
pub struct ModelStore {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelStoreError + '_ {
    move |source| ModelStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

/// A default name from a file name: `SmolLM2-135M-Instruct-Q4_1.gguf` → `smollm2-135m-instruct-q4_1`.
pub fn name_from_path(path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    let n: String = stem
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    n.chars().take(64).collect()
}

fn file_type_name(ft: u64) -> Option<&'static str> {
    Some(match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        _ => return None,
    })
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

impl ModelStore {
    pub fn new(state_dir: &Path) -> ModelStore {
        ModelStore::at(state_dir.join("models"))
    }

    /// A models directory configured elsewhere than `<state>/models`.
    pub fn at(root: PathBuf) -> ModelStore {
        ModelStore { root }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Validates the file as a loadable GGUF (or the folder as an embedding model), copies it in and writes the
    /// manifest.
    pub fn import(&self, src: &Path, name: Option<&str>) -> Result<Manifest> {
        let name = name
            .map(str::to_owned)
            .unwrap_or_else(|| name_from_path(src));
        if !valid_name(&name) {
            return Err(ModelStoreError::BadName(name));
        }
        if src.is_dir() {
            return self.import_folder(src, name);
        }
        let gguf = std::sync::Arc::new(GgufFile::open(src)?);
        let arch = gguf.architecture()?.to_owned();
        // Refuse what we cannot run now rather than at first request (cheap: weights stay in the map).
        if arch == "bert" {
            hearth_engine::embed::Embedder::open_gguf(src)?;
        } else {
            hearth_engine::Model::from_gguf(gguf.clone(), &Default::default())?;
            hearth_engine::Tokenizer::from_gguf(&gguf)?;
        }
        let dir = self.dir(&name);
        if dir.exists() {
            return Err(ModelStoreError::Exists(name));
        }
        let file_name = src
            .file_name()
            .and_then(|f| f.to_str())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{name}.gguf"));
        let tmp = self
            .root
            .join(format!(".import-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let dst = tmp.join(&file_name);
        if std::fs::hard_link(src, &dst).is_err() {
            std::fs::copy(src, &dst).map_err(io(&dst))?;
        }
        let manifest = Manifest {
            name: name.clone(),
            file: file_name,
            architecture: arch.clone(),
            quant_types: gguf
                .type_counts()
                .into_iter()
                .map(|(t, n)| (t.name(), n))
                .collect(),
            file_type: gguf
                .get_u64("general.file_type")
                .and_then(file_type_name)
                .map(str::to_owned),
            size_bytes: gguf.file_size(),
            context_length: gguf.get_u64(&format!("{arch}.context_length")),
            parameters: gguf.tensors.iter().map(|t| t.n_elements()).sum(),
            sha256: sha256_file(&dst)?,
            imported_at: unix_now(),
            derived: None,
        };
        publish(&tmp, &dir, manifest)
    }

    /// A sentence-transformers folder (an embedding model): the files the engine reads are copied in; the
    /// manifest's `file` is its `model.safetensors` and its architecture `bert`.
    fn import_folder(&self, src: &Path, name: String) -> Result<Manifest> {
        if !hearth_engine::embed::is_embedding_folder(src) {
            return Err(ModelStoreError::Engine(hearth_engine::EngineError::Metadata(format!(
                "{}: a folder must hold config.json, model.safetensors and tokenizer.json (a sentence-transformers model)",
                src.display()
            ))));
        }
        let embedder = hearth_engine::embed::Embedder::open(src)?;
        let dir = self.dir(&name);
        if dir.exists() {
            return Err(ModelStoreError::Exists(name));
        }
        let tmp = self
            .root
            .join(format!(".import-{name}-{}", std::process::id()));
        for f in EMBEDDING_FILES {
            let from = src.join(f);
            if !from.is_file() {
                continue;
            }
            let to = tmp.join(f);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).map_err(io(&to))?;
            }
        }
        let weights = tmp.join("model.safetensors");
        let manifest = Manifest {
            name: name.clone(),
            file: "model.safetensors".into(),
            architecture: "bert".into(),
            quant_types: embedder.tensor_types(),
            file_type: None,
            size_bytes: std::fs::metadata(&weights).map_err(io(&weights))?.len(),
            context_length: Some(embedder.max_tokens() as u64),
            parameters: embedder.parameters(),
            sha256: sha256_file(&weights)?,
            imported_at: unix_now(),
            derived: None,
        };
        publish(&tmp, &dir, manifest)
    }

    pub fn get(&self, name: &str) -> Result<Manifest> {
        if !valid_name(name) {
            return Err(ModelStoreError::NotFound(name.to_owned()));
        }
        let path = self.dir(name).join("manifest.json");
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ModelStoreError::NotFound(name.to_owned()),
            _ => ModelStoreError::Io {
                path: path.clone(),
                source: e,
            },
        })?;
        serde_json::from_slice(&bytes).map_err(|source| ModelStoreError::Manifest { path, source })
    }

    /// A name as clients send it: exact, or with Ollama's `:latest` tag.
    pub fn lookup(&self, name: &str) -> Result<Manifest> {
        match self.get(name) {
            Err(ModelStoreError::NotFound(_)) if name.ends_with(":latest") => self
                .get(name.trim_end_matches(":latest"))
                .map_err(|e| match e {
                    ModelStoreError::NotFound(_) => ModelStoreError::NotFound(name.to_owned()),
                    e => e,
                }),
            other => other,
        }
    }

    /// Where models live (for readiness checks).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn file_path(&self, m: &Manifest) -> PathBuf {
        self.dir(&m.name).join(&m.file)
    }

    pub fn list(&self) -> Result<Vec<Manifest>> {
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.root)(e)),
        };
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            out.push(self.get(&name)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        self.get(name)?;
        let dir = self.dir(name);
        std::fs::remove_dir_all(&dir).map_err(io(&dir))
    }

    /// A second name for an imported model (Ollama's copy): its files hard-linked (copied where links fail)
    /// under the new name, with a manifest of its own.
    pub fn copy(&self, from: &str, to: &str) -> Result<Manifest> {
        let m = self.get(from)?;
        let dir = self.dir(to);
        if dir.exists() {
            return Err(ModelStoreError::Exists(to.to_owned()));
        }
        let derived = m.derived.clone();
        self.link_as(m, to, derived)
    }

    /// A model derived from `from` (Ollama's create): its files linked, `derived` over what `from` already
    /// changes. An existing derived model of that name is replaced (as Ollama's create does); an imported one is
    /// not.
    pub fn create(&self, from: &str, to: &str, derived: Derived) -> Result<Manifest> {
        let m = self.get(from)?;
        let derived = Derived {
            from: m.name.clone(),
            ..derived
        }
        .over(m.derived.as_ref());
        match self.get(to) {
            Ok(old) if old.derived.is_none() || old.name == m.name => {
                return Err(ModelStoreError::Exists(to.to_owned()))
            }
            Ok(_) => self.remove(to)?,
            Err(ModelStoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.link_as(m, to, Some(derived))
    }

    /// `m`'s files linked under the name `to`, with a manifest of its own.
    fn link_as(&self, m: Manifest, to: &str, derived: Option<Derived>) -> Result<Manifest> {
        if !valid_name(to) {
            return Err(ModelStoreError::BadName(to.to_owned()));
        }
        let dir = self.dir(to);
        let tmp = self.root.join(format!(".copy-{to}-{}", std::process::id()));
        link_tree(&self.dir(&m.name), &tmp)?;
        let manifest = Manifest {
            name: to.to_owned(),
            imported_at: unix_now(),
            derived,
            ..m
        };
        publish(&tmp, &dir, manifest)
    }

    /// A model argument: a path to a .gguf file, or the name of an imported model.
    pub fn resolve(&self, arg: &str) -> Result<PathBuf> {
        let p = Path::new(arg);
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        let m = self.get(arg)?;
        Ok(self.file_path(&m))
    }
}
