//! What this machine has to run models on: the CPU (cores, memory, SIMD), NVIDIA GPUs (NVML, loaded at run
//! time), Apple Metal (macOS builds with the `metal` feature), which back ends this build has, and where a model
//! goes (`placement`).

pub mod apple;
pub mod cpu;
pub mod nvidia;
pub mod placement;

pub use apple::MetalInfo;
pub use cpu::CpuInfo;
pub use nvidia::GpuInfo;
pub use placement::{place, Footprint, Pin, Placement, PlacementError};

use serde::Serialize;

/// The back ends compiled into this build.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Backends {
    pub cpu: bool,
    /// The CPU ternary (1.58-bit) kernels.
    pub ternary: bool,
    pub cuda: bool,
    pub metal: bool,
}

impl Backends {
    /// This build's.
    pub const BUILT: Backends = Backends {
        cpu: true,
        ternary: true,
        cuda: false,
        metal: false,
    };

    pub fn names(&self) -> Vec<&'static str> {
        [
            ("cpu", self.cpu),
            ("ternary", self.ternary),
            ("cuda", self.cuda),
            ("metal", self.metal),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Inventory {
    pub cpu: CpuInfo,
    pub gpus: Vec<GpuInfo>,
    /// Why `gpus` is empty when it is (no driver, NVML error).
    pub gpu_note: Option<String>,
    pub metal: Option<MetalInfo>,
    pub metal_note: Option<String>,
    pub backends: Backends,
}

impl Inventory {
    /// Probes the machine (NVML is loaded here; a missing driver is a note, not an error).
    pub fn detect() -> Inventory {
        let (gpus, gpu_note) = match nvidia::detect() {
            Ok(g) if g.is_empty() => (g, Some("NVML found no NVIDIA GPU".to_owned())),
            Ok(g) => (g, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let (metal, metal_note) = match apple::detect() {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e)),
        };
        Inventory {
            cpu: cpu::detect(),
            gpus,
            gpu_note,
            metal,
            metal_note,
            backends: Backends::BUILT,
        }
    }

    /// Device ids in preference order: GPUs, Metal, CPU.
    pub fn device_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.gpus.iter().map(|g| g.id.clone()).collect();
        if self.metal.is_some() {
            ids.push("metal".into());
        }
        ids.push("cpu".into());
        ids
    }
}
