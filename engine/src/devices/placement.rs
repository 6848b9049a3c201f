//! Where a model runs: pinned in config (`device = "cuda:0"`, `"cpu"`) or chosen: ternary models → the CPU ternary
//! back end; others → the GPU with the most free memory that holds weights + KV cache, else Metal, else the CPU.
//! A pure function of the model's footprint, the inventory and the built back ends, so any machine can be tested.

use super::{Backends, Inventory};
use crate::gguf::GgufFile;
use crate::Result;
use serde::Serialize;
use std::path::Path;

/// What a model needs on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub weights_bytes: u64,
    /// The KV cache with every slot at full context (f32 keys and values).
    pub kv_bytes: u64,
    /// Stored in a ternary type (I2_S, TQ1_0, TQ2_0).
    pub ternary: bool,
}

impl Footprint {
    pub fn total(&self) -> u64 {
        self.weights_bytes + self.kv_bytes
    }

    /// From a GGUF's metadata (no tensor data is read).
    pub fn of_gguf(path: &Path, context: usize, slots: usize) -> Result<Footprint> {
        let f = GgufFile::open(path)?;
        let arch = f.architecture()?.to_owned();
        let key = |k: &str| f.get_u64(&format!("{arch}.{k}"));
        let layers = key("block_count").unwrap_or(0);
        let heads = key("attention.head_count").unwrap_or(1).max(1);
        let kv_heads = key("attention.head_count_kv").unwrap_or(heads);
        let embd = key("embedding_length").unwrap_or(0);
        let head_dim = key("attention.key_length").unwrap_or(embd / heads);
        let kv_bytes = 2 * layers * kv_heads * head_dim * (context as u64) * (slots as u64) * 4;
        let ternary = f.type_counts().keys().any(|t| t.is_ternary());
        Ok(Footprint {
            weights_bytes: f.file_size(),
            kv_bytes,
            ternary,
        })
    }
}

/// A device named in config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    Auto,
    Cpu,
    Cuda(usize),
    Metal,
}

impl std::str::FromStr for Pin {
    type Err = PlacementError;

    fn from_str(s: &str) -> std::result::Result<Pin, PlacementError> {
        match s {
            "auto" | "" => Ok(Pin::Auto),
            "cpu" => Ok(Pin::Cpu),
            "metal" => Ok(Pin::Metal),
            "cuda" => Ok(Pin::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Pin::Cuda)
                .ok_or_else(|| PlacementError::BadDevice(s.to_owned())),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Placement {
    /// `cpu`, `cuda:N` or `metal`.
    pub device: String,
    /// `cpu`, `ternary`, `cuda` or `metal`.
    pub backend: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    #[error("unknown device '{0}' (use \"auto\", \"cpu\", \"cuda:N\" or \"metal\")")]
    BadDevice(String),
    #[error("device '{device}' is not on this machine (devices: {available})")]
    NoSuchDevice { device: String, available: String },
    #[error("device '{device}' needs the {backend} back end, which this build does not have")]
    NotBuilt {
        device: String,
        backend: &'static str,
    },
    #[error("the model needs {} (weights {} + KV cache {}); {device} has {}", gib(*need), gib(*weights), gib(*kv), gib(*have))]
    DoesNotFit {
        device: String,
        need: u64,
        weights: u64,
        kv: u64,
        have: u64,
    },
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

fn cpu_backend(fp: &Footprint, built: &Backends) -> (&'static str, &'static str) {
    if fp.ternary && built.ternary {
        ("ternary", "the CPU ternary back end")
    } else {
        ("cpu", "the CPU back end")
    }
}

pub fn place(
    fp: &Footprint,
    pin: &Pin,
    inv: &Inventory,
) -> std::result::Result<Placement, PlacementError> {
    let built = &inv.backends;
    let need = fp.total();
    let fits = |device: &str, have: u64| {
        if need <= have {
            Ok(())
        } else {
            Err(PlacementError::DoesNotFit {
                device: device.to_owned(),
                need,
                weights: fp.weights_bytes,
                kv: fp.kv_bytes,
                have,
            })
        }
    };
    let on_cpu = |why: String| -> std::result::Result<Placement, PlacementError> {
        fits("the CPU's memory", inv.cpu.memory_total_bytes)?;
        let (backend, what) = cpu_backend(fp, built);
        Ok(Placement {
            device: "cpu".into(),
            backend,
            reason: format!("{why}: {what} ({} kernels)", inv.cpu.kernels),
        })
    };
    match pin {
        Pin::Cpu => on_cpu("pinned in config".into()),
        Pin::Cuda(i) => {
            let id = format!("cuda:{i}");
            if !built.cuda {
                return Err(PlacementError::NotBuilt {
                    device: id,
                    backend: "cuda",
                });
            }
            let Some(g) = inv.gpus.iter().find(|g| g.id == id) else {
                return Err(PlacementError::NoSuchDevice {
                    device: id,
                    available: inv.device_ids().join(", "),
                });
            };
            fits(&id, g.memory_free_bytes)?;
            Ok(Placement {
                device: id,
                backend: "cuda",
                reason: format!(
                    "pinned in config: {} ({} free)",
                    g.name,
                    gib(g.memory_free_bytes)
                ),
            })
        }
        Pin::Metal => {
            if !built.metal {
                return Err(PlacementError::NotBuilt {
                    device: "metal".into(),
                    backend: "metal",
                });
            }
            let Some(m) = &inv.metal else {
                return Err(PlacementError::NoSuchDevice {
                    device: "metal".into(),
                    available: inv.device_ids().join(", "),
                });
            };
            fits("metal", m.available_bytes())?;
            Ok(Placement {
                device: "metal".into(),
                backend: "metal",
                reason: format!("pinned in config: {}", m.name),
            })
        }
        Pin::Auto => {
            if fp.ternary {
                return on_cpu("auto, ternary model".into());
            }
            let mut skipped = Vec::new();
            if built.cuda {
                let best = inv
                    .gpus
                    .iter()
                    .filter(|g| g.memory_free_bytes >= need)
                    .max_by_key(|g| g.memory_free_bytes);
                if let Some(g) = best {
                    return Ok(Placement {
                        device: g.id.clone(),
                        backend: "cuda",
                        reason: format!(
                            "auto: {} has {} free, the model needs {}",
                            g.name,
                            gib(g.memory_free_bytes),
                            gib(need)
                        ),
                    });
                }
                skipped.extend(
                    inv.gpus
                        .iter()
                        .map(|g| format!("{} has {} free", g.id, gib(g.memory_free_bytes))),
                );
            } else if !inv.gpus.is_empty() {
                skipped.push("this build has no CUDA back end".to_owned());
            }
            if let Some(m) = &inv.metal {
                if !built.metal {
                    skipped.push(format!(
                        "{} found, this build has no Metal back end",
                        m.name
                    ));
                } else if m.available_bytes() >= need {
                    return Ok(Placement {
                        device: "metal".into(),
                        backend: "metal",
                        reason: format!(
                            "auto: {} has {} of its working set free, the model needs {}",
                            m.name,
                            gib(m.available_bytes()),
                            gib(need)
                        ),
                    });
                } else {
                    skipped.push(format!("metal has {} free", gib(m.available_bytes())));
                }
            }
            let why = if skipped.is_empty() {
                "auto, no GPU".to_owned()
            } else {
                format!("auto, needs {} ({})", gib(need), skipped.join("; "))
            };
            on_cpu(why)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::{CpuInfo, GpuInfo, MetalInfo};

    const GIB: u64 = 1 << 30;

    fn inventory(gpus: &[(u64, u64)], backends: Backends) -> Inventory {
        Inventory {
            cpu: CpuInfo {
                brand: "Test CPU".into(),
                arch: "x86_64",
                physical_cores: Some(8),
                logical_cores: 16,
                simd: vec!["avx2", "fma"],
                kernels: "avx2",
                ternary_kernels: "avx2",
                memory_total_bytes: 32 * GIB,
                memory_available_bytes: 20 * GIB,
            },
            gpus: gpus
                .iter()
                .enumerate()
                .map(|(i, (total, free))| GpuInfo {
                    id: format!("cuda:{i}"),
                    name: format!("GPU {i}"),
                    uuid: format!("GPU-{i}"),
                    memory_total_bytes: total * GIB,
                    memory_free_bytes: free * GIB,
                    power_limit_watts: Some(300.0),
                    compute_capability: Some("8.9".into()),
                })
                .collect(),
            gpu_note: None,
            metal: None,
            metal_note: None,
            backends,
        }
    }

    const ALL: Backends = Backends {
        cpu: true,
        ternary: true,
        cuda: true,
        metal: true,
    };

    fn model(weights_gib: u64, kv_gib: u64, ternary: bool) -> Footprint {
        Footprint {
            weights_bytes: weights_gib * GIB,
            kv_bytes: kv_gib * GIB,
            ternary,
        }
    }

    #[test]
    fn auto_prefers_the_gpu_with_most_free_memory_that_fits() {
        let inv = inventory(&[(24, 6), (24, 20), (80, 10)], ALL);
        let p = place(&model(7, 1, false), &Pin::Auto, &inv).unwrap();
        assert_eq!((p.device.as_str(), p.backend), ("cuda:1", "cuda"));
        assert!(
            p.reason.contains("GPU 1 has 20.00 GiB free"),
            "{}",
            p.reason
        );
        // Too big for every GPU: the CPU, saying why.
        let p = place(&model(20, 2, false), &Pin::Auto, &inv).unwrap();
        assert_eq!((p.device.as_str(), p.backend), ("cpu", "cpu"));
        assert!(
            p.reason.contains("cuda:1 has 20.00 GiB free"),
            "{}",
            p.reason
        );
    }

    #[test]
    fn ternary_models_go_to_the_ternary_cpu_back_end() {
        let inv = inventory(&[(24, 24)], ALL);
        let p = place(&model(1, 1, true), &Pin::Auto, &inv).unwrap();
        assert_eq!((p.device.as_str(), p.backend), ("cpu", "ternary"));
        // A build without the ternary kernels still runs them on the CPU back end.
        let no_ternary = Backends {
            ternary: false,
            ..Backends::BUILT
        };
        let p = place(&model(1, 1, true), &Pin::Auto, &inventory(&[], no_ternary)).unwrap();
        assert_eq!(p.backend, "cpu");
    }

    fn m2_max(working_set_gib: u64, allocated_gib: u64) -> MetalInfo {
        MetalInfo {
            name: "Apple M2 Max".into(),
            registry_id: 4294968585,
            architecture: Some("applegpu_g14s".into()),
            unified_memory: true,
            working_set_bytes: working_set_gib * GIB,
            allocated_bytes: allocated_gib * GIB,
            max_buffer_bytes: 36 * GIB,
            low_power: false,
            families: vec!["apple8", "metal3"],
        }
    }

    #[test]
    fn metal_when_there_is_no_fitting_gpu() {
        let mut inv = inventory(&[(24, 8)], ALL);
        inv.metal = Some(m2_max(48, 0));
        let p = place(&model(20, 4, false), &Pin::Auto, &inv).unwrap();
        assert_eq!((p.device.as_str(), p.backend), ("metal", "metal"));
        assert!(p.reason.contains("48.00 GiB"), "{}", p.reason);
        // What this process already holds on the GPU counts against the working set.
        inv.metal = Some(m2_max(48, 30));
        let p = place(&model(20, 4, false), &Pin::Auto, &inv).unwrap();
        assert_eq!(p.device, "cpu");
        assert!(
            p.reason.contains("metal has 18.00 GiB free"),
            "{}",
            p.reason
        );
        let e = place(&model(20, 4, false), &Pin::Metal, &inv).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the model needs 24.00 GiB (weights 20.00 GiB + KV cache 4.00 GiB); metal has 18.00 GiB"
        );
    }

    #[test]
    fn a_mac_with_a_build_without_the_metal_back_end_uses_the_cpu_and_says_why() {
        let mut inv = inventory(&[], Backends::BUILT);
        inv.metal = Some(m2_max(48, 0));
        let p = place(&model(1, 0, false), &Pin::Auto, &inv).unwrap();
        assert_eq!(p.device, "cpu");
        assert!(
            p.reason
                .contains("Apple M2 Max found, this build has no Metal back end"),
            "{}",
            p.reason
        );
        assert_eq!(
            place(&model(1, 0, false), &Pin::Metal, &inv),
            Err(PlacementError::NotBuilt {
                device: "metal".into(),
                backend: "metal"
            })
        );
    }

    #[test]
    fn this_build_on_a_gpu_machine_uses_the_cpu_and_says_why() {
        let inv = inventory(&[(24, 24)], Backends::BUILT);
        let p = place(&model(1, 0, false), &Pin::Auto, &inv).unwrap();
        assert_eq!(p.device, "cpu");
        assert!(p.reason.contains("no CUDA back end"), "{}", p.reason);
        assert_eq!(
            place(&model(1, 0, false), &Pin::Cuda(0), &inv),
            Err(PlacementError::NotBuilt {
                device: "cuda:0".into(),
                backend: "cuda"
            })
        );
    }

    #[test]
    fn pins_are_checked() {
        let inv = inventory(&[(24, 10)], ALL);
        let p = place(&model(4, 1, false), &Pin::Cuda(0), &inv).unwrap();
        assert_eq!(p.device, "cuda:0");
        assert!(p.reason.starts_with("pinned in config"));
        let e = place(&model(4, 1, false), &Pin::Cuda(3), &inv).unwrap_err();
        assert_eq!(
            e.to_string(),
            "device 'cuda:3' is not on this machine (devices: cuda:0, cpu)"
        );
        let e = place(&model(9, 2, false), &Pin::Cuda(0), &inv).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the model needs 11.00 GiB (weights 9.00 GiB + KV cache 2.00 GiB); cuda:0 has 10.00 GiB"
        );
        let p = place(&model(4, 1, false), &Pin::Cpu, &inv).unwrap();
        assert_eq!((p.device.as_str(), p.backend), ("cpu", "cpu"));
        let e = place(&model(40, 1, false), &Pin::Cpu, &inv).unwrap_err();
        assert!(matches!(e, PlacementError::DoesNotFit { .. }));
        assert!(matches!(
            place(&model(1, 0, false), &Pin::Metal, &inv),
            Err(PlacementError::NoSuchDevice { .. })
        ));
    }

    #[test]
    fn device_names_parse() {
        assert_eq!("cuda:2".parse::<Pin>(), Ok(Pin::Cuda(2)));
        assert_eq!("cuda".parse::<Pin>(), Ok(Pin::Cuda(0)));
        assert_eq!("cpu".parse::<Pin>(), Ok(Pin::Cpu));
        assert_eq!("auto".parse::<Pin>(), Ok(Pin::Auto));
        assert_eq!(
            "gpu0".parse::<Pin>(),
            Err(PlacementError::BadDevice("gpu0".into()))
        );
        assert!("cuda:x".parse::<Pin>().is_err());
    }
}
