//! The sampling thread: every `power.interval` it settles device energy (which attributes it to running
//! requests), and refreshes the power, utilisation and GPU series. It never touches the request path; stopping
//! is dropping the `Sampler`.

use super::energy::EnergyMeter;
use super::hwmon;
use super::Metrics;
use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Sampler {
    _stop: Sender<()>,
}

/// Counters that mirror a cumulative reading: each sample adds what grew since the last.
#[derive(Default)]
struct Mirror(HashMap<String, f64>);

impl Mirror {
    /// The growth since the previous reading of `key` (0 for the first).
    fn delta(&mut self, key: &str, total: f64) -> f64 {
        let prev = self.0.insert(key.to_owned(), total);
        prev.map_or(0.0, |p| (total - p).max(0.0))
    }
}

struct State {
    metrics: Arc<Metrics>,
    meter: Arc<EnergyMeter>,
    nvml: Option<Arc<nvml_wrapper::Nvml>>,
    hwmon: Vec<hwmon::Sensor>,
    sys: sysinfo::System,
    pid: sysinfo::Pid,
    mirror: Mirror,
    last: Instant,
}

impl Sampler {
    pub fn start(
        metrics: Arc<Metrics>,
        meter: Arc<EnergyMeter>,
        nvml: Option<Arc<nvml_wrapper::Nvml>>,
        sysfs: &Path,
        interval: Duration,
    ) -> std::io::Result<Sampler> {
        let (stop, rx) = channel::<()>();
        let mut state = State::new(metrics, meter, nvml, sysfs);
        state.sample();
        std::thread::Builder::new()
            .name("power-sampler".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(interval) {
                    state.sample();
                }
            })?;
        Ok(Sampler { _stop: stop })
    }
}

/// The mean cost of one sampler tick (energy settlement, RAPL/hwmon reads, utilisation, GPUs) over `n` ticks,
/// for `examples/sampler_cost.rs`: what sampling takes from the machine, independent of generation noise.
pub fn tick_cost(sysfs: &Path, cpu_watts_estimate: Option<f64>, n: u32) -> Duration {
    let meter = Arc::new(EnergyMeter::new(sysfs, cpu_watts_estimate, None));
    let nvml = nvml_wrapper::Nvml::init().ok().map(Arc::new);
    let mut state = State::new(Metrics::new(Some(meter.clone())), meter, nvml, sysfs);
    state.sample();
    let t = Instant::now();
    for _ in 0..n {
        state.sample();
    }
    t.elapsed() / n.max(1)
}

impl State {
    fn new(
        metrics: Arc<Metrics>,
        meter: Arc<EnergyMeter>,
        nvml: Option<Arc<nvml_wrapper::Nvml>>,
        sysfs: &Path,
    ) -> State {
        State {
            metrics,
            meter,
            nvml,
            hwmon: hwmon::discover(sysfs),
            sys: sysinfo::System::new(),
            pid: sysinfo::Pid::from_u32(std::process::id()),
            mirror: Mirror::default(),
            last: Instant::now(),
        }
    }

    fn sample(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        let h = &self.metrics.host;
        let (devices, zones) = self.meter.tick();
        for d in devices {
            let source = d.source.as_str();
            let grew = self.mirror.delta(&format!("dev/{}", d.device), d.joules);
            h.device_energy
                .with_label_values(&[&d.device, source])
                .inc_by(grew);
            if dt > 0.0 {
                h.device_power
                    .with_label_values(&[&d.device, source])
                    .set(grew / dt);
            }
        }
        for (zone, joules) in zones {
            let grew = self.mirror.delta(&format!("rapl/{zone}"), joules);
            h.cpu_energy.with_label_values(&[&zone]).inc_by(grew);
        }
        for s in &self.hwmon {
            let Some(v) = s.read() else { continue };
            let labels = [s.chip.as_str(), s.sensor.as_str()];
            match s.kind {
                hwmon::Kind::Power => h.hwmon_power.with_label_values(&labels).set(v),
                hwmon::Kind::Energy => {
                    let grew = self
                        .mirror
                        .delta(&format!("hwmon/{}/{}", s.chip, s.sensor), v);
                    h.hwmon_energy.with_label_values(&labels).inc_by(grew);
                }
            }
        }
        self.utilisation();
        self.gpus();
    }

    fn utilisation(&mut self) {
        use sysinfo::{ProcessRefreshKind, ProcessesToUpdate};
        let h = &self.metrics.host;
        // CPU usage is the share since the previous refresh: one refresh per interval gives the interval's.
        self.sys.refresh_cpu_usage();
        h.cpu_busy
            .set(f64::from(self.sys.global_cpu_usage()) / 100.0);
        for (i, c) in self.sys.cpus().iter().enumerate() {
            h.cpu_core_busy
                .with_label_values(&[&i.to_string()])
                .set(f64::from(c.cpu_usage()) / 100.0);
        }
        self.sys.refresh_memory();
        h.memory_used.set(self.sys.used_memory() as f64);
        h.memory_available.set(self.sys.available_memory() as f64);
        h.memory_total.set(self.sys.total_memory() as f64);
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        if let Some(p) = self.sys.process(self.pid) {
            h.process_rss.set(p.memory() as f64);
        }
    }

    fn gpus(&mut self) {
        use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
        let Some(nvml) = &self.nvml else { return };
        let h = &self.metrics.host;
        for i in 0..nvml.device_count().unwrap_or(0) {
            let Ok(d) = nvml.device_by_index(i) else {
                continue;
            };
            let id = format!("cuda:{i}");
            let uuid = d.uuid().unwrap_or_default();
            let name = d.name().unwrap_or_default();
            let l = [id.as_str(), uuid.as_str(), name.as_str()];
            if let Ok(u) = d.utilization_rates() {
                h.gpu_utilization
                    .with_label_values(&l)
                    .set(f64::from(u.gpu) / 100.0);
            }
            if let Ok(m) = d.memory_info() {
                h.gpu_memory_used.with_label_values(&l).set(m.used as f64);
                h.gpu_memory_total.with_label_values(&l).set(m.total as f64);
            }
            if let Ok(t) = d.temperature(TemperatureSensor::Gpu) {
                h.gpu_temperature.with_label_values(&l).set(f64::from(t));
            }
            if let Ok(mw) = d.power_usage() {
                h.gpu_power
                    .with_label_values(&l)
                    .set(f64::from(mw) / 1000.0);
            }
            if let Ok(mw) = d.power_management_limit() {
                h.gpu_power_limit
                    .with_label_values(&l)
                    .set(f64::from(mw) / 1000.0);
            }
            if let Ok(mj) = d.total_energy_consumption() {
                let grew = self.mirror.delta(&format!("gpu/{id}"), mj as f64 / 1000.0);
                h.gpu_energy.with_label_values(&l).inc_by(grew);
            }
            if let Ok(mhz) = d.clock_info(Clock::SM) {
                h.gpu_sm_clock
                    .with_label_values(&l)
                    .set(f64::from(mhz) * 1e6);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_counters_grow_by_the_reading_delta() {
        let mut m = Mirror::default();
        assert_eq!(m.delta("a", 10.0), 0.0);
        assert_eq!(m.delta("a", 12.5), 2.5);
        assert_eq!(m.delta("b", 1.0), 0.0);
        // A reading that went down (sensor reset) adds nothing rather than subtracting.
        assert_eq!(m.delta("a", 3.0), 0.0);
    }
}
