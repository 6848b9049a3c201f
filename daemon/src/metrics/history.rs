//! The dashboard's last hour: every `INTERVAL` the registry's serving and power series are read into a ring of
//! samples, so the Overview's charts are full the moment the page opens (Prometheus keeps the long history).

use super::Metrics;
use prometheus::proto::MetricFamily;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const INTERVAL: Duration = Duration::from_secs(2);
/// One hour of samples.
pub const KEEP: usize = 1800;

/// What the Overview shows, now and over the last hour.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub t: f64,
    /// Generated tokens per second over the last interval (all models).
    pub tokens_per_s: f64,
    pub running: f64,
    pub waiting: f64,
    /// 0..1, all cores.
    pub cpu_busy: f64,
    /// 0..1 per GPU.
    pub gpu_utilization: BTreeMap<String, f64>,
    /// Watts per inference device (`hearth_device_power_watts`).
    pub watts: BTreeMap<String, f64>,
}

/// The ring, column-wise (what uPlot takes).
#[derive(Debug, Default, Serialize)]
pub struct Columns {
    pub interval_s: f64,
    pub t: Vec<f64>,
    pub tokens_per_s: Vec<f64>,
    pub running: Vec<f64>,
    pub waiting: Vec<f64>,
    pub cpu_busy: Vec<f64>,
    /// Missing readings are null.
    pub gpu_utilization: BTreeMap<String, Vec<Option<f64>>>,
    pub watts: BTreeMap<String, Vec<Option<f64>>>,
}

#[derive(Default)]
struct Ring {
    samples: VecDeque<Sample>,
    /// The generation counter's total at the last sample, and when it was read.
    last_tokens: Option<(Instant, f64)>,
}

#[derive(Default)]
pub struct History {
    ring: Mutex<Ring>,
}

fn family<'a>(fams: &'a [MetricFamily], name: &str) -> Option<&'a MetricFamily> {
    fams.iter().find(|f| f.name() == name)
}

fn values(f: &MetricFamily) -> impl Iterator<Item = (&prometheus::proto::Metric, f64)> {
    let counter = f.get_field_type() == prometheus::proto::MetricType::COUNTER;
    f.get_metric().iter().map(move |m| {
        let v = if counter {
            m.get_counter().get_value()
        } else {
            m.get_gauge().get_value()
        };
        (m, v)
    })
}

/// The sum of a family's series.
fn total(fams: &[MetricFamily], name: &str) -> f64 {
    family(fams, name).map_or(0.0, |f| values(f).map(|(_, v)| v).sum())
}

/// A family's series summed by one label.
fn by_label(fams: &[MetricFamily], name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Some(f) = family(fams, name) {
        for (m, v) in values(f) {
            let key = m
                .get_label()
                .iter()
                .find(|l| l.name() == label)
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            *out.entry(key).or_insert(0.0) += v;
        }
    }
    out
}

impl History {
    /// Samples `metrics` every `INTERVAL` for as long as the runtime lives.
    pub fn start(metrics: Arc<Metrics>) -> Arc<History> {
        let h = Arc::new(History::default());
        let h2 = h.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                h2.sample(
                    &metrics.gather(),
                    Instant::now(),
                    crate::store::now() as f64,
                );
            }
        });
        h
    }

    fn sample(&self, fams: &[MetricFamily], at: Instant, unix: f64) {
        let tokens = total(fams, "hearth_generation_tokens_total");
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        let tokens_per_s = match ring.last_tokens {
            Some((t0, n0)) if at > t0 => (tokens - n0).max(0.0) / (at - t0).as_secs_f64(),
            _ => 0.0,
        };
        ring.last_tokens = Some((at, tokens));
        let s = Sample {
            t: unix,
            tokens_per_s,
            running: total(fams, "hearth_num_requests_running"),
            waiting: total(fams, "hearth_num_requests_waiting"),
            cpu_busy: total(fams, "hearth_cpu_busy_ratio"),
            gpu_utilization: by_label(fams, "hearth_gpu_utilization_ratio", "gpu"),
            watts: by_label(fams, "hearth_device_power_watts", "device"),
        };
        if ring.samples.len() == KEEP {
            ring.samples.pop_front();
        }
        ring.samples.push_back(s);
    }

    pub fn latest(&self) -> Sample {
        self.ring
            .lock()
            .ok()
            .and_then(|r| r.samples.back().cloned())
            .unwrap_or_default()
    }

    pub fn columns(&self) -> Columns {
        let Ok(ring) = self.ring.lock() else {
            return Columns::default();
        };
        let mut c = Columns {
            interval_s: INTERVAL.as_secs_f64(),
            ..Columns::default()
        };
        let n = ring.samples.len();
        for s in &ring.samples {
            for k in s.gpu_utilization.keys() {
                c.gpu_utilization
                    .entry(k.clone())
                    .or_insert_with(|| vec![None; n]);
            }
            for k in s.watts.keys() {
                c.watts.entry(k.clone()).or_insert_with(|| vec![None; n]);
            }
        }
        for (i, s) in ring.samples.iter().enumerate() {
            c.t.push(s.t);
            c.tokens_per_s.push(s.tokens_per_s);
            c.running.push(s.running);
            c.waiting.push(s.waiting);
            c.cpu_busy.push(s.cpu_busy);
            for (k, col) in c.gpu_utilization.iter_mut() {
                col[i] = s.gpu_utilization.get(k).copied();
            }
            for (k, col) in c.watts.iter_mut() {
                col[i] = s.watts.get(k).copied();
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_turn_the_token_counter_into_a_rate_and_keep_one_hour() {
        let m = Metrics::new(None);
        let h = History::default();
        let t0 = Instant::now();
        h.sample(&m.gather(), t0, 1000.0);
        m.serving
            .generation_tokens
            .with_label_values(&["smollm2", "alice"])
            .inc_by(30);
        m.serving
            .generation_tokens
            .with_label_values(&["gemma", "bob"])
            .inc_by(10);
        m.serving
            .running
            .with_label_values(&["smollm2", "cpu"])
            .set(2);
        m.host
            .device_power
            .with_label_values(&["cpu", "rapl"])
            .set(12.5);
        h.sample(&m.gather(), t0 + Duration::from_secs(2), 1002.0);
        let s = h.latest();
        assert_eq!(s.tokens_per_s, 20.0);
        assert_eq!(s.running, 2.0);
        assert_eq!(s.watts.get("cpu"), Some(&12.5));
        let c = h.columns();
        assert_eq!(c.t, vec![1000.0, 1002.0]);
        assert_eq!(c.tokens_per_s, vec![0.0, 20.0]);
        // The first sample had no power series yet: a gap, not a zero.
        assert_eq!(c.watts.get("cpu"), Some(&vec![None, Some(12.5)]));
        for i in 0..KEEP + 5 {
            h.sample(
                &m.gather(),
                t0 + Duration::from_secs(4 + i as u64),
                2000.0 + i as f64,
            );
        }
        assert_eq!(h.columns().t.len(), KEEP);
    }
}
