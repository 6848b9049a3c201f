//! The Prometheus registry (`GET /metrics`) and the power readers. Serving series are observed where things
//! happen (`api` counts requests, `sched` times tokens and finishes, `quota` counts refusals); power, energy and
//! utilisation are read by the `sampler` thread; `energy` attributes device energy to requests. Names take the
//! prefix `hearth_`, vLLM's stems and base units (docs/metrics.md lists them). Labels are bounded (model, user
//! name, device, zone).

pub mod energy;
pub mod history;
pub mod hwmon;
pub mod rapl;
pub mod sampler;

use prometheus::{
    CounterVec, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry,
};
use std::sync::Arc;

/// Latency buckets (seconds) for time to first token and end-to-end latency, as vLLM's.
const LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0, 160.0, 640.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
const ENERGY_PER_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Serving series.
pub struct Serving {
    pub requests: IntCounterVec,
    pub prompt_tokens: IntCounterVec,
    pub prompt_tokens_cached: IntCounterVec,
    pub generation_tokens: IntCounterVec,
    pub spec_draft_tokens: IntCounterVec,
    pub spec_accepted_tokens: IntCounterVec,
    pub time_to_first_token: HistogramVec,
    pub inter_token_latency: HistogramVec,
    pub e2e_latency: HistogramVec,
    pub queue_time: HistogramVec,
    pub running: IntGaugeVec,
    pub waiting: IntGaugeVec,
    pub batch_size: IntGaugeVec,
    pub model_loaded: IntGaugeVec,
    pub model_load: HistogramVec,
    pub rate_limited: IntCounterVec,
    pub interrupted: IntCounterVec,
    pub forwarded: IntCounterVec,
    pub cluster_refused: IntCounterVec,
    pub quota_remaining: IntGaugeVec,
    pub request_energy: CounterVec,
    pub energy_per_token: HistogramVec,
}

/// Host, GPU and power series, written by the sampler.
pub struct Host {
    pub cpu_busy: Gauge,
    pub cpu_core_busy: GaugeVec,
    pub memory_used: Gauge,
    pub memory_available: Gauge,
    pub memory_total: Gauge,
    pub process_rss: Gauge,
    pub cpu_energy: CounterVec,
    pub device_energy: CounterVec,
    pub device_power: GaugeVec,
    pub hwmon_power: GaugeVec,
    pub hwmon_energy: CounterVec,
    pub gpu_utilization: GaugeVec,
    pub gpu_memory_used: GaugeVec,
    pub gpu_memory_total: GaugeVec,
    pub gpu_temperature: GaugeVec,
    pub gpu_power: GaugeVec,
    pub gpu_power_limit: GaugeVec,
    pub gpu_energy: CounterVec,
    pub gpu_sm_clock: GaugeVec,
}

pub struct Metrics {
    registry: Registry,
    /// Every family's name, for the docs test (the registry only lists families with series).
    names: Vec<String>,
    pub serving: Serving,
    pub host: Host,
    /// None when power sampling is off.
    pub energy: Option<Arc<energy::EnergyMeter>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// A registry that remembers what was registered.
#[derive(Default)]
struct Reg {
    registry: Registry,
    names: Vec<String>,
}

/// Registers a metric; names and labels are constants, so a failure is a programming error caught by every test.
fn reg<M: prometheus::core::Collector + Clone + 'static>(r: &mut Reg, m: M) -> M {
    r.names.extend(m.desc().iter().map(|d| d.fq_name.clone()));
    if let Err(e) = r.registry.register(Box::new(m.clone())) {
        tracing::error!(error = %e, "metric registration failed");
    }
    m
}

fn counter(r: &mut Reg, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition"),
    )
}

fn fcounter(r: &mut Reg, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    reg(
        r,
        CounterVec::new(Opts::new(name, help), labels).expect("valid metric definition"),
    )
}

fn igauge(r: &mut Reg, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition"),
    )
}

fn gauge(r: &mut Reg, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    reg(
        r,
        GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition"),
    )
}

fn gauge1(r: &mut Reg, name: &str, help: &str) -> Gauge {
    reg(
        r,
        Gauge::with_opts(Opts::new(name, help)).expect("valid metric definition"),
    )
}

fn histogram(
    r: &mut Reg,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    reg(
        r,
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )
        .expect("valid metric definition"),
    )
}

const GPU: &[&str] = &["device", "uuid", "name"];

impl Metrics {
    /// A fresh registry; `energy` is the meter when power sampling is on.
    pub fn new(energy: Option<Arc<energy::EnergyMeter>>) -> Arc<Metrics> {
        let mut reg = Reg::default();
        let r = &mut reg;
        let serving = Serving {
            requests: counter(r, "hearth_requests_total", "HTTP requests to the OpenAI and Ollama APIs, by response status.", &["api", "model", "status"]),
            prompt_tokens: counter(r, "hearth_prompt_tokens_total", "Prompt tokens processed.", &["model", "user"]),
            prompt_tokens_cached: counter(r, "hearth_prompt_tokens_cached_total", "Prompt tokens not computed again: reused from the batch slot's previous sequence (a shared prefix).", &["model", "user"]),
            generation_tokens: counter(r, "hearth_generation_tokens_total", "Tokens generated.", &["model", "user"]),
            spec_draft_tokens: counter(r, "hearth_spec_draft_tokens_total", "Speculative decoding: tokens proposed (draft model or prompt lookup) for the model to verify.", &["model"]),
            spec_accepted_tokens: counter(r, "hearth_spec_accepted_tokens_total", "Speculative decoding: proposed tokens the model kept (acceptance rate = accepted / draft).", &["model"]),
            time_to_first_token: histogram(r, "hearth_time_to_first_token_seconds", "From acceptance by the model's worker (queue included) to the first generated token.", &["model"], LATENCY_BUCKETS),
            inter_token_latency: histogram(r, "hearth_inter_token_latency_seconds", "Time between consecutive generated tokens of one request.", &["model"], ITL_BUCKETS),
            e2e_latency: histogram(r, "hearth_e2e_request_latency_seconds", "From acceptance by the model's worker to the request's end.", &["model"], LATENCY_BUCKETS),
            queue_time: histogram(r, "hearth_request_queue_time_seconds", "Time a request waited for a batch slot.", &["model"], LATENCY_BUCKETS),
            running: igauge(r, "hearth_num_requests_running", "Requests in the model's batch.", &["model", "device"]),
            waiting: igauge(r, "hearth_num_requests_waiting", "Requests waiting for a batch slot.", &["model"]),
            batch_size: igauge(r, "hearth_batch_size", "Sequences advanced by the model's last forward pass.", &["model"]),
            model_loaded: igauge(r, "hearth_model_loaded", "1 while the model is loaded on the device.", &["model", "device"]),
            model_load: histogram(r, "hearth_model_load_seconds", "Time to load a model.", &["model"], LATENCY_BUCKETS),
            rate_limited: counter(r, "hearth_rate_limited_requests_total", "Requests refused by a quota or rate limit, by the limit.", &["user", "reason"]),
            interrupted: counter(r, "hearth_interrupted_requests_total", "Requests a dead process left running, settled when its node started again (charged nothing).", &[]),
            forwarded: counter(r, "hearth_forwarded_requests_total", "Requests this node sent on to another node, by that node and outcome (ok, unreachable, refused, broken).", &["node", "outcome"]),
            cluster_refused: counter(r, "hearth_cluster_refused_total", "Forwarded requests this node refused: a cluster credential that does not match (bad_signature, malformed) or a clock too far off (skew).", &["reason"]),
            quota_remaining: igauge(r, "hearth_quota_remaining_tokens", "Tokens left in the user's window as of their last admission (reservations counted).", &["user", "window"]),
            request_energy: fcounter(r, "hearth_request_energy_joules_total", "Device energy attributed to requests.", &["model", "user", "device", "source"]),
            energy_per_token: histogram(r, "hearth_energy_per_token_joules", "Energy per processed token (prompt and generated) of each request.", &["model", "device", "source"], ENERGY_PER_TOKEN_BUCKETS),
        };
        let host = Host {
            cpu_busy: gauge1(
                r,
                "hearth_cpu_busy_ratio",
                "Busy share of all CPU cores over the last sampling interval.",
            ),
            cpu_core_busy: gauge(
                r,
                "hearth_cpu_core_busy_ratio",
                "Busy share of one CPU core over the last sampling interval.",
                &["core"],
            ),
            memory_used: gauge1(r, "hearth_memory_used_bytes", "Memory in use on the host."),
            memory_available: gauge1(
                r,
                "hearth_memory_available_bytes",
                "Memory available to new allocations on the host.",
            ),
            memory_total: gauge1(r, "hearth_memory_total_bytes", "Host memory."),
            process_rss: gauge1(
                r,
                "hearth_process_resident_memory_bytes",
                "Resident memory of the hearth process (models included).",
            ),
            cpu_energy: fcounter(
                r,
                "hearth_cpu_energy_joules_total",
                "CPU energy by RAPL zone since the daemon started (counter wraps handled).",
                &["zone"],
            ),
            device_energy: fcounter(
                r,
                "hearth_device_energy_joules_total",
                "Energy of each inference device since the daemon started.",
                &["device", "source"],
            ),
            device_power: gauge(
                r,
                "hearth_device_power_watts",
                "Average power of each inference device over the last sampling interval.",
                &["device", "source"],
            ),
            hwmon_power: gauge(
                r,
                "hearth_hwmon_power_watts",
                "hwmon power sensors.",
                &["chip", "sensor"],
            ),
            hwmon_energy: fcounter(
                r,
                "hearth_hwmon_energy_joules_total",
                "hwmon energy sensors, since the daemon started.",
                &["chip", "sensor"],
            ),
            gpu_utilization: gauge(
                r,
                "hearth_gpu_utilization_ratio",
                "Share of time a kernel ran on the GPU (NVML).",
                GPU,
            ),
            gpu_memory_used: gauge(r, "hearth_gpu_memory_used_bytes", "GPU memory in use.", GPU),
            gpu_memory_total: gauge(r, "hearth_gpu_memory_total_bytes", "GPU memory.", GPU),
            gpu_temperature: gauge(
                r,
                "hearth_gpu_temperature_celsius",
                "GPU die temperature.",
                GPU,
            ),
            gpu_power: gauge(r, "hearth_gpu_power_watts", "GPU power draw (NVML).", GPU),
            gpu_power_limit: gauge(
                r,
                "hearth_gpu_power_limit_watts",
                "GPU power management limit.",
                GPU,
            ),
            gpu_energy: fcounter(
                r,
                "hearth_gpu_energy_joules_total",
                "GPU energy since the driver loaded (NVML).",
                GPU,
            ),
            gpu_sm_clock: gauge(
                r,
                "hearth_gpu_sm_clock_hertz",
                "GPU streaming-multiprocessor clock.",
                GPU,
            ),
        };
        Arc::new(Metrics {
            registry: reg.registry,
            names: reg.names,
            serving,
            host,
            energy,
        })
    }

    /// Every family this registry can export.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The text exposition format (version 0.0.4).
    /// Every family, for readers other than the exposition (the dashboard's history).
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let families: Vec<_> = self
            .registry
            .gather()
            .into_iter()
            // A family without series (no sensor, nothing served yet) is left out rather than shown empty.
            .filter(|f| !f.get_metric().is_empty())
            .collect();
        let mut out = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(path: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(path),
        )
        .unwrap()
    }

    /// docs/metrics.md describes every series, and the Grafana dashboard uses only series that exist.
    #[test]
    fn docs_and_dashboard_match_the_registry() {
        let m = Metrics::new(None);
        let md = doc("docs/metrics.md");
        for name in m.names() {
            assert!(
                md.contains(&format!("`{name}`")),
                "docs/metrics.md does not describe {name}"
            );
        }
        let dash = doc("docs/grafana/hearth.json");
        let json: serde_json::Value = serde_json::from_str(&dash).unwrap();
        assert!(json["panels"].as_array().unwrap().len() >= 10);
        let mut used = 0;
        for word in dash.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Some(base) = word.strip_prefix("hearth_").map(|_| word) {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| base.strip_suffix(s))
                    .unwrap_or(base);
                assert!(
                    m.names().iter().any(|n| n == family),
                    "the dashboard uses unknown series {word}"
                );
                used += 1;
            }
        }
        assert!(used > 20);
    }

    #[test]
    fn a_family_without_series_is_absent() {
        let m = Metrics::new(None);
        assert!(!m.render().contains("hearth_cpu_energy_joules_total"));
        m.host
            .cpu_energy
            .with_label_values(&["package-0"])
            .inc_by(1.5);
        assert!(m
            .render()
            .contains("hearth_cpu_energy_joules_total{zone=\"package-0\"} 1.5"));
    }
}
