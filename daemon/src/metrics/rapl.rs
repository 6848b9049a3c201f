//! CPU energy from RAPL through the powercap sysfs interface (`<sysfs>/class/powercap/intel-rapl:*`; AMD's
//! driver uses the same layout). Each zone's `energy_uj` wraps at `max_energy_range_uj`: readings are turned into
//! a monotonic total here, so a wrap between two reads (read at least every second; a wrap takes a minute or more
//! at real power) is counted, never seen as a drop.

use std::path::{Path, PathBuf};

/// One RAPL zone as found on disk.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ZoneInfo {
    /// `package-0`, `psys`, or a sub-zone as `package-0/core`.
    pub name: String,
    pub path: PathBuf,
    pub readable: bool,
    /// Top-level zone other than `psys`: their sum is the CPU device's energy (`psys` already contains them).
    pub top_level: bool,
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

fn read_u64(p: &Path) -> Option<u64> {
    read_trimmed(p)?.parse().ok()
}

/// Every zone with an `energy_uj` file, sorted by directory name (`intel-rapl:0`, `intel-rapl:0:0`, ...).
pub fn discover(sysfs: &Path) -> Vec<ZoneInfo> {
    let root = sysfs.join("class/powercap");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    dirs.sort();
    let name_of = |dir: &Path| read_trimmed(&dir.join("name")).unwrap_or_else(|| "unknown".into());
    let mut zones = Vec::new();
    for dir in &dirs {
        let energy = dir.join("energy_uj");
        if !energy.exists() {
            continue;
        }
        let file = dir
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        // `intel-rapl:0` is a package; `intel-rapl:0:1` is a sub-zone of it.
        let depth = file.matches(':').count();
        let own = name_of(dir);
        let name = if depth >= 2 {
            let parent = file.rsplit_once(':').map(|(p, _)| root.join(p));
            match parent {
                Some(p) => format!("{}/{own}", name_of(&p)),
                None => own,
            }
        } else {
            own
        };
        zones.push(ZoneInfo {
            top_level: depth < 2 && name != "psys",
            readable: std::fs::read_to_string(&energy).is_ok(),
            name,
            path: energy,
        });
    }
    // A machine with only psys (some laptops): then psys is the whole.
    if !zones.iter().any(|z| z.top_level) {
        for z in zones.iter_mut().filter(|z| z.name == "psys") {
            z.top_level = true;
        }
    }
    zones
}

/// Turns a wrapping microjoule counter into a monotonic total.
#[derive(Debug, Clone, Default)]
pub struct WrapCounter {
    /// The counter's range; it restarts from 0 after this value. 0 = unknown (no wrap handling).
    pub range: u64,
    last: Option<u64>,
    total: u128,
}

impl WrapCounter {
    pub fn new(range: u64) -> WrapCounter {
        WrapCounter {
            range,
            ..Default::default()
        }
    }

    /// Feeds a raw reading; returns the microjoules since the previous one (0 for the first).
    pub fn update(&mut self, raw: u64) -> u64 {
        let delta = match self.last {
            None => 0,
            Some(last) if raw >= last => raw - last,
            // Wrapped: the rest of the range, then from zero.
            Some(last) if self.range > last => self.range - last + raw,
            // A counter reset without a known range: count from zero.
            Some(_) => raw,
        };
        self.last = Some(raw);
        self.total += u128::from(delta);
        delta
    }

    pub fn total_joules(&self) -> f64 {
        self.total as f64 / 1e6
    }
}

struct Zone {
    info: ZoneInfo,
    counter: WrapCounter,
}

/// The readable zones and their running totals.
pub struct Rapl {
    zones: Vec<Zone>,
}

/// One reading: each zone's total so far, and the CPU device's (sum of top-level zones).
#[derive(Debug, Clone, Default)]
pub struct RaplReading {
    pub zones: Vec<(String, f64)>,
    pub device_joules: f64,
}

impl Rapl {
    /// None when no zone is readable.
    pub fn open(sysfs: &Path) -> Option<Rapl> {
        let zones: Vec<Zone> = discover(sysfs)
            .into_iter()
            .filter(|z| z.readable)
            .map(|info| {
                let range = info
                    .path
                    .parent()
                    .and_then(|d| read_u64(&d.join("max_energy_range_uj")))
                    .unwrap_or(0);
                Zone {
                    info,
                    counter: WrapCounter::new(range),
                }
            })
            .collect();
        let mut rapl = (!zones.is_empty()).then_some(Rapl { zones })?;
        rapl.read();
        Some(rapl)
    }

    /// Reads every zone now. A zone that fails to read keeps its total (counted again at the next good read).
    pub fn read(&mut self) -> RaplReading {
        let mut out = RaplReading::default();
        for z in &mut self.zones {
            if let Some(raw) = read_u64(&z.info.path) {
                z.counter.update(raw);
            }
            let j = z.counter.total_joules();
            if z.info.top_level {
                out.device_joules += j;
            }
            out.zones.push((z.info.name.clone(), j));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_is_counted_not_dropped() {
        let mut c = WrapCounter::new(1_000);
        assert_eq!(c.update(900), 0);
        assert_eq!(c.update(950), 50);
        // 950 → 1000 (range) → 0 → 30.
        assert_eq!(c.update(30), 80);
        assert_eq!(c.total_joules(), 130e-6);
        // Unknown range: a smaller value is a restart from zero.
        let mut c = WrapCounter::new(0);
        c.update(500);
        assert_eq!(c.update(20), 20);
    }

    fn zone(root: &Path, dir: &str, name: &str, uj: u64) {
        let d = root.join("class/powercap").join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("name"), format!("{name}\n")).unwrap();
        std::fs::write(d.join("energy_uj"), format!("{uj}\n")).unwrap();
        std::fs::write(d.join("max_energy_range_uj"), "262143328850\n").unwrap();
    }

    #[test]
    fn zones_are_named_and_the_device_excludes_psys_and_subzones() {
        let t = tempfile::tempdir().unwrap();
        zone(t.path(), "intel-rapl:0", "package-0", 1_000_000);
        zone(t.path(), "intel-rapl:0:0", "core", 400_000);
        zone(t.path(), "intel-rapl:1", "psys", 3_000_000);
        std::fs::create_dir_all(t.path().join("class/powercap/intel-rapl")).unwrap();
        let zones = discover(t.path());
        let names: Vec<(&str, bool)> = zones
            .iter()
            .map(|z| (z.name.as_str(), z.top_level))
            .collect();
        assert_eq!(
            names,
            [
                ("package-0", true),
                ("package-0/core", false),
                ("psys", false)
            ]
        );
        let mut rapl = Rapl::open(t.path()).unwrap();
        zone(t.path(), "intel-rapl:0", "package-0", 3_000_000);
        zone(t.path(), "intel-rapl:0:0", "core", 900_000);
        zone(t.path(), "intel-rapl:1", "psys", 9_000_000);
        let r = rapl.read();
        assert_eq!(r.device_joules, 2.0);
        assert_eq!(r.zones[1], ("package-0/core".to_owned(), 0.5));
    }

    #[test]
    fn no_powercap_means_no_reader() {
        let t = tempfile::tempdir().unwrap();
        assert!(discover(t.path()).is_empty());
        assert!(Rapl::open(t.path()).is_none());
    }
}
