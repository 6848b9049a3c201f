//! hwmon power and energy sensors (`<sysfs>/class/hwmon/hwmonN/{power,energy}M_{input,average}`), e.g. AMD's
//! `amd_energy`, server PSUs or laptop batteries. Exported as they are; RAPL stays the CPU device's energy source
//! because hwmon chips measure overlapping things that cannot be summed blindly.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Microwatts, instantaneous or averaged.
    Power,
    /// Microjoules, monotonic.
    Energy,
}

#[derive(Debug, Clone)]
pub struct Sensor {
    pub chip: String,
    /// The sensor's label file, else its file stem (`power1`).
    pub sensor: String,
    pub kind: Kind,
    path: PathBuf,
}

impl Sensor {
    /// Watts for power sensors, joules for energy sensors.
    pub fn read(&self) -> Option<f64> {
        let raw: u64 = std::fs::read_to_string(&self.path)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some(raw as f64 / 1e6)
    }
}

/// Every readable power or energy sensor.
pub fn discover(sysfs: &Path) -> Vec<Sensor> {
    let Ok(chips) = std::fs::read_dir(sysfs.join("class/hwmon")) else {
        return Vec::new();
    };
    let mut chips: Vec<PathBuf> = chips.flatten().map(|e| e.path()).collect();
    chips.sort();
    let mut out = Vec::new();
    for dir in chips {
        let chip = std::fs::read_to_string(dir.join("name"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<String> = files
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        for f in files {
            let (stem, kind) = if let Some(s) = f.strip_suffix("_input") {
                let kind = if s.starts_with("energy") {
                    Kind::Energy
                } else if s.starts_with("power") {
                    Kind::Power
                } else {
                    continue;
                };
                (s.to_owned(), kind)
            } else if let Some(s) = f
                .strip_suffix("_average")
                .filter(|s| s.starts_with("power"))
            {
                // Only when the sensor has no instantaneous reading.
                if dir.join(format!("{s}_input")).exists() {
                    continue;
                }
                (s.to_owned(), Kind::Power)
            } else {
                continue;
            };
            let sensor = std::fs::read_to_string(dir.join(format!("{stem}_label")))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| stem.clone());
            let s = Sensor {
                chip: chip.clone(),
                sensor,
                kind,
                path: dir.join(&f),
            };
            if s.read().is_some() {
                out.push(s);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_and_energy_sensors_with_labels() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("class/hwmon/hwmon3");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("name"), "amd_energy\n").unwrap();
        std::fs::write(d.join("energy1_input"), "5000000\n").unwrap();
        std::fs::write(d.join("energy1_label"), "Esocket0\n").unwrap();
        std::fs::write(d.join("power1_average"), "42500000\n").unwrap();
        std::fs::write(d.join("temp1_input"), "40000\n").unwrap();
        let s = discover(t.path());
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].chip.as_str(), s[0].sensor.as_str(), &s[0].kind),
            ("amd_energy", "Esocket0", &Kind::Energy)
        );
        assert_eq!(s[0].read(), Some(5.0));
        assert_eq!((s[1].sensor.as_str(), s[1].read()), ("power1", Some(42.5)));
    }
}
