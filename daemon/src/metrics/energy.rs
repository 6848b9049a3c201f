//! Energy per request. Each device's cumulative energy (RAPL for `cpu`, NVML for `cuda:N`, or the configured
//! estimate) is read whenever a sequence joins or leaves the device and at every sampler tick (≤ 1 s); the energy
//! of each interval is shared among the sequences active on the device in proportion to the tokens each
//! processed in it (equally when none did). Idle intervals belong to nobody. So the per-request joules of a busy
//! period add up to the device's energy over it.

use super::rapl::Rapl;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A sequence's handle in the meter.
pub type JobKey = u64;

/// Where a device's joules come from; the label `source` of every energy series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Rapl,
    Nvml,
    /// `power.cpu_watts_estimate` × busy time: kept apart from measured energy everywhere.
    Estimate,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Rapl => "rapl",
            Source::Nvml => "nvml",
            Source::Estimate => "estimate",
        }
    }
}

/// The sharing of one device's energy among its active sequences.
#[derive(Debug, Default)]
pub struct Attribution {
    last: Option<f64>,
    /// Per active sequence: tokens processed since the last settlement, joules so far.
    jobs: HashMap<JobKey, (u64, f64)>,
}

impl Attribution {
    /// Shares the energy since the previous reading (`total` is the device's cumulative joules).
    pub fn settle(&mut self, total: f64) {
        let delta = self.last.map_or(0.0, |l| (total - l).max(0.0));
        self.last = Some(total);
        let tokens: u64 = self.jobs.values().map(|j| j.0).sum();
        let n = self.jobs.len() as f64;
        for j in self.jobs.values_mut() {
            j.1 += if tokens > 0 {
                delta * j.0 as f64 / tokens as f64
            } else {
                delta / n
            };
            j.0 = 0;
        }
    }

    pub fn join(&mut self, key: JobKey) {
        self.jobs.insert(key, (0, 0.0));
    }

    pub fn work(&mut self, key: JobKey, tokens: u64) {
        if let Some(j) = self.jobs.get_mut(&key) {
            j.0 += tokens;
        }
    }

    /// Removes a sequence (settle first); its joules.
    pub fn leave(&mut self, key: JobKey) -> Option<f64> {
        self.jobs.remove(&key).map(|j| j.1)
    }

    pub fn is_busy(&self) -> bool {
        !self.jobs.is_empty()
    }
}

/// One device's energy counter.
enum Reader {
    Rapl(Rapl),
    Nvml {
        nvml: Arc<nvml_wrapper::Nvml>,
        index: u32,
    },
    Estimate {
        watts: f64,
        total: f64,
        at: Instant,
    },
}

struct Device {
    reader: Reader,
    source: Source,
    share: Attribution,
    /// The device's latest cumulative joules (for the sampler's exposition).
    total: f64,
    /// RAPL only: each zone's latest total.
    zones: Vec<(String, f64)>,
}

impl Device {
    fn read(&mut self) -> f64 {
        let busy = self.share.is_busy();
        match &mut self.reader {
            Reader::Rapl(r) => {
                let reading = r.read();
                self.total = reading.device_joules;
                self.zones = reading.zones;
            }
            Reader::Nvml { nvml, index } => {
                if let Ok(mj) = nvml
                    .device_by_index(*index)
                    .and_then(|d| d.total_energy_consumption())
                {
                    self.total = mj as f64 / 1000.0;
                }
            }
            Reader::Estimate { watts, total, at } => {
                let now = Instant::now();
                if busy {
                    *total += *watts * now.duration_since(*at).as_secs_f64();
                }
                *at = now;
                self.total = *total;
            }
        }
        self.total
    }

    fn settle(&mut self) {
        let t = self.read();
        self.share.settle(t);
    }
}

/// What a finished sequence consumed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spent {
    pub joules: f64,
    pub source: Source,
}

/// The devices with an energy source, and the sharing of their energy among sequences.
pub struct EnergyMeter {
    devices: Mutex<HashMap<String, Device>>,
    next_key: AtomicU64,
}

/// A device's cumulative energy as last read.
#[derive(Debug, Clone)]
pub struct DeviceEnergy {
    pub device: String,
    pub source: Source,
    pub joules: f64,
}

impl EnergyMeter {
    /// RAPL for `cpu` (else the estimate, if configured), NVML's energy counter for each GPU.
    pub fn new(
        sysfs: &Path,
        cpu_watts_estimate: Option<f64>,
        nvml: Option<Arc<nvml_wrapper::Nvml>>,
    ) -> EnergyMeter {
        let mut devices = HashMap::new();
        let cpu = match (Rapl::open(sysfs), cpu_watts_estimate) {
            (Some(r), _) => Some((Reader::Rapl(r), Source::Rapl)),
            (None, Some(watts)) => Some((
                Reader::Estimate {
                    watts,
                    total: 0.0,
                    at: Instant::now(),
                },
                Source::Estimate,
            )),
            (None, None) => None,
        };
        if let Some((reader, source)) = cpu {
            devices.insert("cpu".to_owned(), (reader, source));
        }
        if let Some(nvml) = nvml {
            let n = nvml.device_count().unwrap_or(0);
            for index in 0..n {
                let has_counter = nvml
                    .device_by_index(index)
                    .and_then(|d| d.total_energy_consumption())
                    .is_ok();
                if has_counter {
                    devices.insert(
                        format!("cuda:{index}"),
                        (
                            Reader::Nvml {
                                nvml: nvml.clone(),
                                index,
                            },
                            Source::Nvml,
                        ),
                    );
                }
            }
        }
        let devices = devices
            .into_iter()
            .map(|(id, (reader, source))| {
                let mut d = Device {
                    reader,
                    source,
                    share: Attribution::default(),
                    total: 0.0,
                    zones: Vec::new(),
                };
                d.settle();
                (id, d)
            })
            .collect();
        EnergyMeter {
            devices: Mutex::new(devices),
            next_key: AtomicU64::new(1),
        }
    }

    /// Whether `device` has an energy source (else its sequences carry no joules).
    pub fn measures(&self, device: &str) -> bool {
        self.devices.lock().is_ok_and(|d| d.contains_key(device))
    }

    /// A sequence starts on `device`: energy until now is settled without it.
    pub fn join(&self, device: &str) -> Option<JobKey> {
        let mut devices = self.devices.lock().ok()?;
        let d = devices.get_mut(device)?;
        d.settle();
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        d.share.join(key);
        Some(key)
    }

    /// Tokens each sequence processed in one forward pass.
    pub fn work(&self, device: &str, done: impl Iterator<Item = (JobKey, u64)>) {
        if let Ok(mut devices) = self.devices.lock() {
            if let Some(d) = devices.get_mut(device) {
                for (key, n) in done {
                    d.share.work(key, n);
                }
            }
        }
    }

    /// A sequence ends: settles the device and returns what the sequence consumed.
    pub fn leave(&self, device: &str, key: JobKey) -> Option<Spent> {
        let mut devices = self.devices.lock().ok()?;
        let d = devices.get_mut(device)?;
        d.settle();
        let joules = d.share.leave(key)?;
        Some(Spent {
            joules,
            source: d.source,
        })
    }

    /// The sampler's tick: reads every device, settling the busy ones; returns the cumulative totals and the
    /// RAPL zones'.
    pub fn tick(&self) -> (Vec<DeviceEnergy>, Vec<(String, f64)>) {
        let Ok(mut devices) = self.devices.lock() else {
            return Default::default();
        };
        let mut zones = Vec::new();
        let mut out: Vec<DeviceEnergy> = devices
            .iter_mut()
            .map(|(id, d)| {
                d.settle();
                zones.extend(d.zones.iter().cloned());
                DeviceEnergy {
                    device: id.clone(),
                    source: d.source,
                    joules: d.total,
                }
            })
            .collect();
        out.sort_by(|a, b| a.device.cmp(&b.device));
        (out, zones)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_is_shared_by_tokens_and_idle_energy_is_nobodys() {
        let mut a = Attribution::default();
        a.settle(100.0);
        // Idle: 10 J pass with no sequence.
        a.settle(110.0);
        a.join(1);
        a.join(2);
        a.work(1, 30);
        a.work(2, 10);
        a.settle(150.0);
        // No tokens in this interval (a long prompt step still running): shared equally.
        a.settle(160.0);
        assert_eq!(a.leave(1), Some(30.0 + 5.0));
        a.work(2, 5);
        a.settle(170.0);
        assert_eq!(a.leave(2), Some(10.0 + 5.0 + 10.0));
        assert!(!a.is_busy());
        a.settle(500.0);
        assert_eq!(a.leave(3), None);
    }

    #[test]
    fn the_estimate_counts_busy_time_only() {
        let t = tempfile::tempdir().unwrap();
        let m = EnergyMeter::new(t.path(), Some(50.0), None);
        assert!(m.measures("cpu"));
        std::thread::sleep(std::time::Duration::from_millis(30));
        let t0 = Instant::now();
        let k = m.join("cpu").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(40));
        let spent = m.leave("cpu", k).unwrap();
        let busy = t0.elapsed().as_secs_f64();
        assert_eq!(spent.source, Source::Estimate);
        // 50 W for the 40+ ms it ran, and nothing for the idle 30 ms before.
        assert!(
            spent.joules >= 2.0 && spent.joules <= 50.0 * busy,
            "{spent:?}"
        );
        let total = m.tick().0[0].joules;
        assert!((total - spent.joules).abs() < 1e-9);
        assert!(!EnergyMeter::new(t.path(), None, None).measures("cpu"));
    }
}
