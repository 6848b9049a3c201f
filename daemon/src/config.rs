//! One TOML file (`/etc/hearth/hearth.toml` when packaged, `./hearth.toml` in development), then `HEARTH_*`
//! environment variables, then flags. Errors name the file, line and column, or the variable.

use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_BIND: &str = "127.0.0.1:8383";
pub const PACKAGED_CONFIG: &str = "/etc/hearth/hearth.toml";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// State directory: the SQLite database and the models live under it unless configured.
    pub state_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`; default: SQLite in the state directory.
    pub database_url: Option<String>,
    /// Models directory; default `<state_dir>/models`.
    pub models_dir: Option<PathBuf>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests (streams included) before closing them.
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_timeout: Duration,
    pub tls: Option<TlsConfig>,
    pub engine: EngineConfig,
    /// IANA time zone for daily and monthly quota windows (default: the system's).
    pub timezone: Option<String>,
    /// Default limits per role; per-user values (`hearth quota set`) override them.
    pub quota: QuotaDefaults,
    pub usage: UsageConfig,
    pub power: PowerConfig,
    /// Who may read `/metrics`.
    pub metrics: MetricsConfig,
    /// Requests without a key from these networks act as this user (off by default; never on `/admin`).
    pub keyless: KeylessConfig,
    /// Per-model settings, by imported model name (`[models.smollm2]`).
    pub models: std::collections::BTreeMap<String, ModelConfig>,
    /// Models `/api/pull` (Ollama's `ollama pull NAME`) may fetch, by name (`[catalog."llama3.2:1b"]`).
    pub catalog: std::collections::BTreeMap<String, CatalogEntry>,
    /// Several nodes on one PostgreSQL database.
    pub cluster: ClusterConfig,
}

/// What nodes sharing a database agree on.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// How long a node's claim on a batch line holds without renewal (renewed every third of it): a dead node's
    /// lines go to the others after at most this long.
    #[serde(deserialize_with = "de_duration")]
    pub lease: Duration,
    /// This node's name in the registry, on its ledger rows and batch claims (default: host and state directory).
    pub name: Option<String>,
    /// Where other nodes and admins reach this node (`http(s)://host:port`), shown in `/admin/nodes`.
    pub url: Option<String>,
    /// How often the node records its heartbeat.
    #[serde(deserialize_with = "de_duration")]
    pub heartbeat: Duration,
    /// A node whose last heartbeat is older than this is shown expired.
    #[serde(deserialize_with = "de_duration")]
    pub expire: Duration,
    /// The credential nodes present to each other when one forwards a request (the same on every node). Without
    /// it a node neither forwards nor accepts forwarded requests.
    pub secret: Option<String>,
    /// A PEM file of the certificate authorities that sign the other nodes' `https://` URLs, when those are not
    /// signed by a public CA.
    pub ca: Option<PathBuf>,
}

/// `hearth config show` prints settings with `{:?}`: the secret stays out of it.
impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("lease", &self.lease)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("heartbeat", &self.heartbeat)
            .field("expire", &self.expire)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("ca", &self.ca)
            .finish()
    }
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            lease: Duration::from_secs(60),
            name: None,
            url: None,
            heartbeat: Duration::from_secs(10),
            expire: Duration::from_secs(30),
            secret: None,
            ca: None,
        }
    }
}

/// Where a catalog model's GGUF file is, and the digest it must have.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// `https://…` (or `http://…` on a trusted network: see `sha256` and Ollama's `insecure`).
    pub url: String,
    /// The file's SHA-256 (64 hex digits): a download that differs is refused.
    pub sha256: Option<String>,
}

impl CatalogEntry {
    fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err(format!("url '{}' must be http:// or https://", self.url));
        }
        if self
            .sha256
            .as_deref()
            .is_some_and(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err("sha256 must be 64 hex digits".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `auto` (default), `cpu`, `cuda:N` or `metal`.
    pub device: Option<String>,
    /// How long the model stays loaded when idle (default: `engine.keep_alive`).
    #[serde(deserialize_with = "de_opt_duration")]
    pub keep_alive: Option<Duration>,
    /// Load at start instead of on first use.
    pub preload: bool,
    /// How to read the output head: `i4-rescored` (an int4 copy finds the candidates, the file's head rescores
    /// them), `i8` (int8 rows, per-token activations) or `q8_0` (half a tied F16 head's bytes per token), `q4_0`
    /// (a quarter), `f16` (docs/benchmarks.md has speed and the quality effect). Default: the file's head.
    pub head: Option<String>,
    /// Convert every matrix at load: `f16` or `f32` — a higher-precision twin of a quantized file, e.g. as the
    /// target of a draft model made from the same file. Default: the file's types.
    pub dtype: Option<String>,
    /// Speculative decoding: this imported model drafts, this one verifies (greedy output is unchanged). The two
    /// must share the tokenizer; the model does not load otherwise.
    pub draft: Option<String>,
    /// Speculative decoding without a draft model: continuations are looked up in the prompt and the output so
    /// far (summaries, extraction, code edits). Ignored when `draft` is set.
    pub prompt_lookup: bool,
}

impl ModelConfig {
    /// The `dtype` option as a tensor type; config validation has already refused other values.
    pub fn dtype_type(&self) -> Option<hearth_engine::quant::GgmlType> {
        self.dtype
            .as_deref()
            .and_then(hearth_engine::model::parse_dtype)
    }

    /// The `head` option; config validation has already refused other values.
    pub fn head_type(&self) -> Option<hearth_engine::model::HeadOption> {
        self.head
            .as_deref()
            .and_then(hearth_engine::model::parse_head)
    }

    pub fn pin(&self) -> hearth_engine::devices::Pin {
        self.device
            .as_deref()
            .and_then(|d| d.parse().ok())
            .unwrap_or(hearth_engine::devices::Pin::Auto)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PowerConfig {
    /// Where sysfs is mounted (RAPL under `class/powercap`, hwmon under `class/hwmon`); tests point it at a
    /// fixture tree.
    pub sysfs_root: PathBuf,
    /// Sample power, energy and utilisation (off: those series are absent and requests carry no joules).
    pub sampling: bool,
    /// How often the sensors are read; energy is attributed to requests at least this often (at most 1 s).
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// For machines without a CPU energy sensor: the CPU's power while inferring, in watts. Energy derived from
    /// it is labelled `source="estimate"` and never summed with measured energy.
    pub cpu_watts_estimate: Option<f64>,
}

impl Default for PowerConfig {
    fn default() -> PowerConfig {
        PowerConfig {
            sysfs_root: PathBuf::from("/sys"),
            sampling: true,
            interval: Duration::from_secs(1),
            cpu_watts_estimate: None,
        }
    }
}

/// Clients that cannot send a key (older Home Assistant, scripts, editors): a request with no `Authorization`
/// header and no session, from one of `networks` (the TCP peer's address; a reverse proxy's own address is what
/// counts behind one), is served as `user` with a member's rights — its quotas and ledger apply, it may not
/// manage keys, and `/admin` stays closed to it.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct KeylessConfig {
    /// CIDR networks (`192.168.1.0/24`, `fd00::/8`, a bare address for one host); empty (default): off.
    pub networks: Vec<String>,
    /// The user such requests act as (required when `networks` is set).
    pub user: Option<String>,
}

impl KeylessConfig {
    /// The networks, parsed (validation already refused a bad one).
    pub fn cidrs(&self) -> Vec<crate::auth::networks::Cidr> {
        self.networks
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect()
    }

    /// The user a keyless request from `ip` acts as, if any.
    pub fn user_for(&self, ip: std::net::IpAddr) -> Option<&str> {
        let user = self.user.as_deref()?;
        self.cidrs().iter().any(|c| c.contains(ip)).then_some(user)
    }
}

#[derive(Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` without credentials (default: an admin key or `token` is required).
    pub public: bool,
    /// A bearer token for Prometheus alone (`Authorization: Bearer TOKEN`), so it needs no admin key.
    pub token: Option<String>,
}

/// `hearth config show` prints settings with `{:?}`: the token stays out of it.
impl std::fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("public", &self.public)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    /// How long raw ledger rows are kept (whole local days); older days survive as daily totals.
    #[serde(deserialize_with = "de_duration")]
    pub retain_raw: Duration,
}

impl Default for UsageConfig {
    fn default() -> UsageConfig {
        UsageConfig {
            retain_raw: Duration::from_secs(90 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaDefaults {
    pub member: crate::limits::Limits,
    pub admin: crate::limits::Limits,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Compute threads per loaded model; default: physical cores.
    pub threads: Option<usize>,
    /// Sequences decoded together per model (KV-cache slots).
    pub max_sequences: usize,
    /// Context length per sequence (capped by the model's).
    pub context: usize,
    /// Requests waiting for a slot per model before new ones get 503.
    pub queue_depth: usize,
    /// How long an idle model stays loaded (Ollama's `keep_alive` overrides it per request).
    #[serde(deserialize_with = "de_duration")]
    pub keep_alive: Duration,
    /// Memory the models on one device may take together (weights + full KV cache), e.g. "12GiB"; loading past it
    /// unloads the least recently used idle models first. Default: the device's memory.
    #[serde(deserialize_with = "de_opt_bytes")]
    pub memory_budget: Option<u64>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: DEFAULT_BIND
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8383))),
            state_dir: None,
            database_url: None,
            models_dir: None,
            max_body_bytes: 4 << 20,
            shutdown_timeout: Duration::from_secs(30),
            tls: None,
            engine: EngineConfig::default(),
            timezone: None,
            quota: QuotaDefaults::default(),
            usage: UsageConfig::default(),
            power: PowerConfig::default(),
            metrics: MetricsConfig::default(),
            keyless: KeylessConfig::default(),
            models: Default::default(),
            catalog: Default::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            threads: None,
            max_sequences: 4,
            context: 4096,
            queue_depth: 64,
            keep_alive: Duration::from_secs(300),
            memory_budget: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Variables that override settings, and whether their value is text (else parsed as a TOML value).
const ENV_OVERRIDES: &[(&str, &[&str], bool)] = &[
    ("HEARTH_BIND", &["bind"], true),
    ("HEARTH_DATABASE_URL", &["database_url"], true),
    ("HEARTH_MODELS_DIR", &["models_dir"], true),
    ("HEARTH_MAX_BODY_BYTES", &["max_body_bytes"], false),
    ("HEARTH_SHUTDOWN_TIMEOUT", &["shutdown_timeout"], true),
    ("HEARTH_TLS_CERT", &["tls", "cert"], true),
    ("HEARTH_TLS_KEY", &["tls", "key"], true),
    ("HEARTH_ENGINE_THREADS", &["engine", "threads"], false),
    (
        "HEARTH_ENGINE_MAX_SEQUENCES",
        &["engine", "max_sequences"],
        false,
    ),
    ("HEARTH_ENGINE_CONTEXT", &["engine", "context"], false),
    (
        "HEARTH_ENGINE_QUEUE_DEPTH",
        &["engine", "queue_depth"],
        false,
    ),
    ("HEARTH_ENGINE_KEEP_ALIVE", &["engine", "keep_alive"], true),
    (
        "HEARTH_ENGINE_MEMORY_BUDGET",
        &["engine", "memory_budget"],
        true,
    ),
    ("HEARTH_TIMEZONE", &["timezone"], true),
    ("HEARTH_USAGE_RETAIN_RAW", &["usage", "retain_raw"], true),
    ("HEARTH_POWER_SYSFS_ROOT", &["power", "sysfs_root"], true),
    ("HEARTH_POWER_SAMPLING", &["power", "sampling"], false),
    ("HEARTH_POWER_INTERVAL", &["power", "interval"], true),
    (
        "HEARTH_POWER_CPU_WATTS_ESTIMATE",
        &["power", "cpu_watts_estimate"],
        false,
    ),
    ("HEARTH_METRICS_PUBLIC", &["metrics", "public"], false),
    ("HEARTH_METRICS_TOKEN", &["metrics", "token"], true),
    ("HEARTH_CLUSTER_LEASE", &["cluster", "lease"], true),
    ("HEARTH_CLUSTER_SECRET", &["cluster", "secret"], true),
];

impl Config {
    /// Parses TOML text; errors carry the line and column.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The file (if any), then `HEARTH_*` overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| ConfigError::Read {
                path: p.to_owned(),
                message: e.to_string(),
            })?,
            None => String::new(),
        };
        let origin = path.unwrap_or(Path::new("<defaults>"));
        let cfg = Config::parse(&text, origin)?;
        let overrides: Vec<_> = ENV_OVERRIDES
            .iter()
            .filter_map(|&(var, key, text)| env(var).map(|v| (var, key, text, v)))
            .collect();
        if overrides.is_empty() {
            return Ok(cfg);
        }
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut blame: Option<String> = None;
        for (var, key, is_text, raw) in &overrides {
            let value = if *is_text {
                toml::Value::String(raw.clone())
            } else {
                toml::from_str::<toml::Table>(&format!("v = {raw}"))
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .unwrap_or_else(|| toml::Value::String(raw.clone()))
            };
            let mut t = &mut table;
            for part in &key[..key.len() - 1] {
                let entry = t
                    .entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(Default::default()));
                t = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
                    var: var.to_string(),
                    message: format!("'{part}' in the file is not a table"),
                })?;
            }
            t.insert(key[key.len() - 1].to_owned(), value);
            // Remember the first variable after which the result stops deserializing: the error is reported
            // against it (checked at the end, since e.g. tls.cert alone is incomplete until tls.key is set).
            if blame.is_none() && Config::deserialize(toml::Value::Table(table.clone())).is_err() {
                blame = Some(var.to_string());
            }
        }
        let cfg = Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Env {
            var: blame.clone().unwrap_or_default(),
            message: e.message().trim().to_owned(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.max_body_bytes < 1024 {
            return bad("max_body_bytes must be at least 1024");
        }
        let e = &self.engine;
        if e.max_sequences == 0 || e.max_sequences > 256 {
            return bad("engine.max_sequences must be between 1 and 256");
        }
        if e.context < 16 {
            return bad("engine.context must be at least 16");
        }
        if e.threads == Some(0) {
            return bad("engine.threads must be at least 1");
        }
        for n in &self.keyless.networks {
            if let Err(e) = n.parse::<crate::auth::networks::Cidr>() {
                return Err(ConfigError::Invalid(format!("keyless.networks: {e}")));
            }
        }
        if !self.keyless.networks.is_empty()
            && self.keyless.user.as_deref().is_none_or(str::is_empty)
        {
            return bad("keyless.user must name the user that requests without a key act as");
        }
        if self.usage.retain_raw < Duration::from_secs(86_400) {
            return bad("usage.retain_raw must be at least 1d");
        }
        if let Some(tz) = &self.timezone {
            if jiff::tz::TimeZone::get(tz).is_err() {
                return bad(&format!(
                    "timezone '{tz}' is not a known IANA time zone (e.g. Europe/Berlin)"
                ));
            }
        }
        for (role, l) in [("member", &self.quota.member), ("admin", &self.quota.admin)] {
            l.validate()
                .map_err(|e| ConfigError::Invalid(format!("quota.{role}: {e}")))?;
        }
        let p = &self.power;
        if p.interval < Duration::from_millis(10) || p.interval > Duration::from_secs(1) {
            return bad("power.interval must be between 10ms and 1s (energy is attributed at least every second)");
        }
        if p.cpu_watts_estimate
            .is_some_and(|w| !(w > 0.0 && w < 10_000.0))
        {
            return bad("power.cpu_watts_estimate must be a positive number of watts");
        }
        if self.metrics.token.as_deref().is_some_and(|t| t.len() < 16) {
            return bad("metrics.token must be at least 16 characters");
        }
        let c = &self.cluster;
        if c.lease < Duration::from_secs(3) {
            return bad("cluster.lease must be at least 3s (it is renewed every third of it)");
        }
        if c.heartbeat < Duration::from_secs(1) || c.expire < c.heartbeat * 2 {
            return bad(
                "cluster.heartbeat must be at least 1s and cluster.expire at least twice it",
            );
        }
        if c.name
            .as_deref()
            .is_some_and(|n| n.is_empty() || n.len() > 128)
        {
            return bad("cluster.name must be 1 to 128 characters");
        }
        if c.url
            .as_deref()
            .is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return bad("cluster.url must start with http:// or https://");
        }
        if c.secret.as_deref().is_some_and(|t| t.len() < 16) {
            return bad("cluster.secret must be at least 16 characters");
        }
        if c.secret.is_some()
            && self
                .database_url
                .as_deref()
                .is_none_or(|u| !u.starts_with("postgres"))
        {
            return bad("cluster.secret is for nodes that share a PostgreSQL database_url");
        }
        for (name, c) in &self.catalog {
            if !crate::models::valid_name(name.strip_suffix(":latest").unwrap_or(name)) {
                return bad(&format!("catalog.\"{name}\": not a valid model name"));
            }
            c.validate()
                .map_err(|e| ConfigError::Invalid(format!("catalog.\"{name}\": {e}")))?;
        }
        for (name, m) in &self.models {
            if let Some(d) = &m.device {
                d.parse::<hearth_engine::devices::Pin>()
                    .map_err(|e| ConfigError::Invalid(format!("models.{name}.device: {e}")))?;
            }
            if let Some(h) = &m.head {
                if hearth_engine::model::parse_head(h).is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "models.{name}.head: '{h}' (use {})",
                        hearth_engine::model::HeadOption::NAMES.join(", ")
                    )));
                }
            }
            if let Some(t) = &m.dtype {
                if hearth_engine::model::parse_dtype(t).is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "models.{name}.dtype: '{t}' (use f16 or f32)"
                    )));
                }
            }
            if m.draft.as_deref() == Some(name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "models.{name}.draft: a model cannot draft for itself"
                )));
            }
        }
        if let Some(url) = &self.database_url {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return bad("database_url must start with sqlite: or postgres://");
            }
        }
        Ok(())
    }

    /// Checks that referenced files exist (`hearth config check`, and `serve` before binding).
    pub fn check_files(&self) -> Result<(), ConfigError> {
        if let Some(tls) = &self.tls {
            for (what, p) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if let Err(e) = std::fs::metadata(p) {
                    return Err(ConfigError::Invalid(format!("{what} {}: {e}", p.display())));
                }
            }
        }
        if let Some(p) = &self.cluster.ca {
            if let Err(e) = std::fs::metadata(p) {
                return Err(ConfigError::Invalid(format!(
                    "cluster.ca {}: {e}",
                    p.display()
                )));
            }
        }
        Ok(())
    }
}

impl Config {
    /// The configured time zone, else the system's.
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        self.timezone
            .as_deref()
            .and_then(|n| jiff::tz::TimeZone::get(n).ok())
            .unwrap_or_else(jiff::tz::TimeZone::system)
    }
}

/// The config file to use when `--config` is not given: `./hearth.toml`, else the packaged one, if present.
pub fn default_path() -> Option<PathBuf> {
    [Path::new("hearth.toml"), Path::new(PACKAGED_CONFIG)]
        .into_iter()
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn de_opt_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| parse_bytes(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// `"512MiB"`, `"12GiB"`, `"8GB"`, `"1048576"` (bytes).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let err = || format!("invalid size '{s}' (examples: 512MiB, 12GiB, 8GB)");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().map_err(|_| err())?;
    let unit: u64 = match s[split..].trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "TiB" => 1 << 40,
        _ => return Err(err()),
    };
    n.checked_mul(unit).ok_or_else(err)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// `"500ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"7d"`, `"2w"`, `"0"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let err = || format!("invalid duration '{s}' (examples: 500ms, 30s, 5m, 1h30m, 7d)");
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            "w" => Duration::from_secs(n.saturating_mul(604_800)),
            _ => return Err(err()),
        };
        total = total.saturating_add(unit);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "5x", "m", "-1s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_line_and_column() {
        let text = "bind = \"127.0.0.1:9000\"\n\n[engine]\nmax_sequences = \"four\"\n";
        match Config::parse(text, Path::new("h.toml")) {
            Err(ConfigError::Parse {
                line,
                column,
                message,
                ..
            }) => {
                assert_eq!(line, 4);
                assert_eq!(column, 17);
                assert!(message.contains("invalid type"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let e = Config::parse("bnd = 1\n", Path::new("h.toml")).unwrap_err();
        assert!(
            e.to_string().starts_with("h.toml:1:1: unknown field `bnd`"),
            "{e}"
        );
        let e = Config::parse("bind = \"localhost\"\n", Path::new("h.toml")).unwrap_err();
        assert!(e.to_string().starts_with("h.toml:1:8:"), "{e}");
        let e = Config::parse("shutdown_timeout = \"soon\"\n", Path::new("h.toml")).unwrap_err();
        assert!(e.to_string().contains("invalid duration 'soon'"), "{e}");
    }

    #[test]
    fn catalog_entries_are_checked() {
        let sha = "ab".repeat(32);
        let ok = format!(
            "[catalog.\"llama3.2:1b\"]\nurl = \"https://m.example/l.gguf\"\nsha256 = \"{sha}\"\n"
        );
        let c = Config::parse(&ok, Path::new("h.toml")).unwrap();
        assert_eq!(
            c.catalog["llama3.2:1b"].sha256.as_deref(),
            Some(sha.as_str())
        );
        for (bad, needle) in [
            ("[catalog.x]\nurl = \"ftp://m/x.gguf\"\n", "http"),
            (
                "[catalog.x]\nurl = \"https://m/x.gguf\"\nsha256 = \"abc\"\n",
                "64 hex",
            ),
            (
                "[catalog.\"a/b\"]\nurl = \"https://m/x.gguf\"\n",
                "not a valid model name",
            ),
        ] {
            let e = Config::parse(bad, Path::new("h.toml")).unwrap_err();
            assert!(e.to_string().contains(needle), "{bad}: {e}");
        }
        assert!(Config::parse(
            "[catalog.x]\nurl = \"https://m\"\nmirror = 1\n",
            Path::new("h.toml")
        )
        .is_err());
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.toml");
        std::fs::write(&p, "bind = \"127.0.0.1:9000\"\n[engine]\ncontext = 1024\n").unwrap();
        let env = |k: &str| match k {
            "HEARTH_BIND" => Some("0.0.0.0:1234".to_owned()),
            "HEARTH_ENGINE_THREADS" => Some("3".to_owned()),
            "HEARTH_TLS_CERT" => Some("/c.pem".to_owned()),
            "HEARTH_TLS_KEY" => Some("/k.pem".to_owned()),
            _ => None,
        };
        let c = Config::load(Some(&p), env).unwrap();
        assert_eq!(c.bind, "0.0.0.0:1234".parse().unwrap());
        assert_eq!(c.engine.threads, Some(3));
        assert_eq!(c.engine.context, 1024);
        assert_eq!(c.tls.unwrap().key, PathBuf::from("/k.pem"));
        let e = Config::load(Some(&p), |k| {
            (k == "HEARTH_ENGINE_CONTEXT").then(|| "big".into())
        })
        .unwrap_err();
        assert!(
            matches!(e, ConfigError::Env { ref var, .. } if var == "HEARTH_ENGINE_CONTEXT"),
            "{e}"
        );
        assert_eq!(Config::load(None, |_| None).unwrap(), Config::default());
    }

    /// Power and metrics settings: environment overrides, bounds, and the token kept out of `config show`.
    #[test]
    fn power_and_metrics_settings() {
        let env = |k: &str| match k {
            "HEARTH_POWER_SAMPLING" => Some("false".to_owned()),
            "HEARTH_POWER_INTERVAL" => Some("250ms".to_owned()),
            "HEARTH_POWER_CPU_WATTS_ESTIMATE" => Some("45.5".to_owned()),
            "HEARTH_METRICS_TOKEN" => Some("0123456789abcdef-secret".to_owned()),
            _ => None,
        };
        let c = Config::load(None, env).unwrap();
        assert!(!c.power.sampling);
        assert_eq!(c.power.interval, Duration::from_millis(250));
        assert_eq!(c.power.cpu_watts_estimate, Some(45.5));
        assert!(!format!("{c:?}").contains("0123456789abcdef-secret"));
        let clustered = Config::parse(
            "database_url = \"postgres://h@db/h\"\n[cluster]\nsecret = \"a-cluster-secret-value\"\n",
            Path::new("h.toml"),
        )
        .unwrap();
        assert!(!format!("{clustered:?}").contains("a-cluster-secret-value"));
        let p = Path::new("h.toml");
        for (text, why) in [
            ("[power]\ninterval = \"2s\"\n", "power.interval"),
            (
                "[power]\ncpu_watts_estimate = -3\n",
                "power.cpu_watts_estimate",
            ),
            ("[metrics]\ntoken = \"short\"\n", "metrics.token"),
            (
                "database_url = \"postgres://h@db/h\"\n[cluster]\nsecret = \"short\"\n",
                "cluster.secret must be at least 16",
            ),
            (
                "[cluster]\nsecret = \"long-enough-but-no-postgres\"\n",
                "cluster.secret is for nodes that share a PostgreSQL",
            ),
        ] {
            let e = Config::parse(text, p).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
