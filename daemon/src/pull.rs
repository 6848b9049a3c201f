//! Model downloads — `hearth model pull URL` and `POST /admin/models/pull`: an HTTP(S) GET streamed into the models
//! directory's staging area with its progress, then the same validation and atomic publish as `import`. No
//! registry is assumed: the URL is a GGUF file on a mirror, a NAS or a model hub the server can reach.

use crate::models::{Manifest, ModelStore, ModelStoreError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("invalid URL '{0}': use http:// or https://")]
    BadUrl(String),
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model '{0}' is already being pulled")]
    Busy(String),
    #[error("{url}: the file's sha256 is {got}, expected {want}")]
    Digest {
        url: String,
        want: String,
        got: String,
    },
    #[error(transparent)]
    Store(#[from] ModelStoreError),
}

/// A download's state, as the dashboard's progress bar shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PullStatus {
    pub name: String,
    pub url: String,
    /// `downloading`, `verifying`, `done` or `failed`.
    pub state: &'static str,
    pub bytes: u64,
    /// From Content-Length; None when the server does not say.
    pub total: Option<u64>,
    pub error: Option<String>,
    pub started_at: i64,
}

/// What a pull is refused for before any download: a non-http(s) URL, a bad or taken name.
fn check(models: &ModelStore, url: &str, name: &str) -> Result<(), PullError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(PullError::BadUrl(url.to_owned()));
    }
    if !crate::models::valid_name(name) {
        return Err(ModelStoreError::BadName(name.to_owned()).into());
    }
    if models.get(name).is_ok() {
        return Err(ModelStoreError::Exists(name.to_owned()).into());
    }
    Ok(())
}

/// The `.gguf` file name a URL ends in, if it names one.
pub fn file_name_of(url: &str) -> Option<&str> {
    url.rsplit('/')
        .next()
        .and_then(|f| f.split(['?', '#']).next())
        .filter(|f| f.ends_with(".gguf") && !f.starts_with('.'))
}

/// Streams `url` into `dest`, reporting (bytes so far, total) about every MiB.
fn download(
    url: &str,
    dest: &Path,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<(), PullError> {
    let http = |message: String| PullError::Http {
        url: url.to_owned(),
        message,
    };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(60))
        .build();
    let resp = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Status(code, r) => {
            http(format!("the server answered {code} {}", r.status_text()))
        }
        e => http(e.to_string()),
    })?;
    let total = resp
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok());
    let io = |source| PullError::Io {
        path: dest.to_owned(),
        source,
    };
    let mut out = std::fs::File::create(dest).map_err(io)?;
    let mut body = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let (mut got, mut reported) = (0u64, 0u64);
    progress(0, total);
    loop {
        let n = body.read(&mut buf).map_err(|e| http(e.to_string()))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(io)?;
        got += n as u64;
        if got - reported >= 1 << 20 {
            progress(got, total);
            reported = got;
        }
    }
    out.sync_all().map_err(io)?;
    if total.is_some_and(|t| t != got) {
        return Err(http(format!(
            "the connection ended after {got} of {} bytes",
            total.unwrap_or(0)
        )));
    }
    progress(got, total);
    Ok(())
}

/// Downloads then imports: the file is staged in the models directory and published only once it validates
/// (and, with `sha256`, only if it is that file).
pub fn pull(
    models: &ModelStore,
    url: &str,
    name: &str,
    sha256: Option<&str>,
    progress: impl FnMut(u64, Option<u64>),
) -> Result<Manifest, PullError> {
    check(models, url, name)?;
    let staging = models
        .root()
        .join(format!(".pull-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(|source| PullError::Io {
        path: staging.clone(),
        source,
    })?;
    let file_name = file_name_of(url)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{name}.gguf"));
    let file = staging.join(file_name);
    let result = download(url, &file, progress)
        .and_then(|()| verify(url, &file, sha256))
        .and_then(|()| Ok(models.import(&file, Some(name))?));
    // The import hard-linked (or copied) what it kept; the staged copy goes either way.
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Checks a downloaded file against the digest it should have.
fn verify(url: &str, file: &Path, sha256: Option<&str>) -> Result<(), PullError> {
    let Some(want) = sha256 else {
        return Ok(());
    };
    let got = crate::models::sha256_file(file)?;
    if got.eq_ignore_ascii_case(want) {
        Ok(())
    } else {
        Err(PullError::Digest {
            url: url.to_owned(),
            want: want.to_owned(),
            got,
        })
    }
}

/// What a watched pull reports as it goes (Ollama's `/api/pull` progress lines).
#[derive(Debug, Clone, PartialEq)]
pub enum PullEvent {
    Progress {
        bytes: u64,
        total: Option<u64>,
    },
    /// The model is imported (Ok) or the pull failed (the error's text); nothing follows.
    Done(Result<(), String>),
}

/// One download: where from, under which name, the digest it must have, and who watches it.
pub struct PullJob {
    pub url: String,
    pub name: String,
    pub sha256: Option<String>,
    pub watch: Option<tokio::sync::mpsc::UnboundedSender<PullEvent>>,
}

/// The daemon's downloads in flight and recently ended, by model name.
#[derive(Default)]
pub struct Pulls {
    map: Mutex<BTreeMap<String, PullStatus>>,
}

impl Pulls {
    pub fn list(&self) -> Vec<PullStatus> {
        self.map
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn set(&self, name: &str, f: impl FnOnce(&mut PullStatus)) {
        if let Ok(mut m) = self.map.lock() {
            if let Some(s) = m.get_mut(name) {
                f(s);
            }
        }
    }

    /// Starts a download on its own thread; its progress is in `list()` (and goes to `job.watch`).
    pub fn start(self: &Arc<Self>, models: ModelStore, job: PullJob) -> Result<(), PullError> {
        let PullJob {
            url,
            name,
            sha256,
            watch,
        } = job;
        check(&models, &url, &name)?;
        {
            let mut m = self.map.lock().map_err(|_| PullError::Busy(name.clone()))?;
            if m.get(&name)
                .is_some_and(|s| s.state == "downloading" || s.state == "verifying")
            {
                return Err(PullError::Busy(name));
            }
            m.insert(
                name.clone(),
                PullStatus {
                    name: name.clone(),
                    url: url.clone(),
                    state: "downloading",
                    bytes: 0,
                    total: None,
                    error: None,
                    started_at: crate::store::now(),
                },
            );
        }
        let me = self.clone();
        std::thread::Builder::new()
            .name(format!("pull-{name}"))
            .spawn(move || {
                let tell = |e: PullEvent| {
                    if let Some(w) = &watch {
                        let _ = w.send(e);
                    }
                };
                let result = pull(&models, &url, &name, sha256.as_deref(), |bytes, total| {
                    tell(PullEvent::Progress { bytes, total });
                    me.set(&name, |s| {
                        s.bytes = bytes;
                        s.total = total;
                        if total == Some(bytes) {
                            s.state = "verifying";
                        }
                    })
                });
                match result {
                    Ok(m) => {
                        tracing::info!(model = %m.name, url = %url, "model pulled");
                        me.set(&name, |s| s.state = "done");
                        tell(PullEvent::Done(Ok(())));
                    }
                    Err(e) => {
                        tracing::warn!(model = %name, url = %url, error = %e, "model pull failed");
                        me.set(&name, |s| {
                            s.state = "failed";
                            s.error = Some(e.to_string());
                        });
                        tell(PullEvent::Done(Err(e.to_string())));
                    }
                }
            })
            .map_err(|source| PullError::Io {
                path: PathBuf::from("pull thread"),
                source,
            })?;
        Ok(())
    }
}
