//! Apple GPUs through Metal. Only a macOS build with the `metal` feature asks Metal; every other build reports
//! why there is nothing to ask, so the inventory has the same shape everywhere.

use serde::Serialize;

/// The Metal device a process gets by default (the one Metal back ends use).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MetalInfo {
    pub name: String,
    /// IOKit's registry id: stable for the device while the machine is up.
    pub registry_id: u64,
    /// e.g. `applegpu_g14s` (macOS 14 and later; the last letter tells base/pro `g`, max `s`, ultra `d`).
    pub architecture: Option<String>,
    /// The GPU shares the CPU's memory (Apple Silicon), so model weights need no copy.
    pub unified_memory: bool,
    /// The memory Metal recommends a process keep resident: what placement may use.
    pub working_set_bytes: u64,
    /// What this process has allocated on the device already.
    pub allocated_bytes: u64,
    /// The largest single buffer (a model's largest tensor must fit in one).
    pub max_buffer_bytes: u64,
    pub low_power: bool,
    /// The highest Apple GPU family and Metal feature set the device supports, e.g. `["apple9", "metal3"]`.
    pub families: Vec<&'static str>,
}

impl MetalInfo {
    /// Memory placement may still give to a model: the recommended working set less what is allocated.
    pub fn available_bytes(&self) -> u64 {
        self.working_set_bytes.saturating_sub(self.allocated_bytes)
    }
}

/// The highest family in each ladder (Apple GPU families, Metal feature sets) for which `supports` says yes.
/// Metal answers per family; the ladders are ordered, so the first yes from the top is the device's level.
pub fn highest_families(supports: impl Fn(&'static str) -> bool) -> Vec<&'static str> {
    const APPLE: [&str; 10] = [
        "apple10", "apple9", "apple8", "apple7", "apple6", "apple5", "apple4", "apple3", "apple2",
        "apple1",
    ];
    const METAL: [&str; 2] = ["metal4", "metal3"];
    [&APPLE[..], &METAL[..]]
        .iter()
        .filter_map(|ladder| ladder.iter().copied().find(|f| supports(f)))
        .collect()
}

/// The default Metal device, or why there is none.
pub fn detect() -> Result<MetalInfo, String> {
    probe::detect()
}

#[cfg(all(target_os = "macos", feature = "metal"))]
mod probe {
    use super::{highest_families, MetalInfo};
    use objc2::runtime::{NSObjectProtocol, ProtocolObject};
    use objc2::sel;
    use objc2_metal::{MTLCopyAllDevices, MTLCreateSystemDefaultDevice, MTLDevice, MTLGPUFamily};

    // MTLCreateSystemDefaultDevice returns nil unless the process links CoreGraphics (Apple's documented rule).
    #[link(name = "CoreGraphics", kind = "framework")]
    extern "C" {}

    fn family(name: &str) -> Option<MTLGPUFamily> {
        Some(match name {
            "apple1" => MTLGPUFamily::Apple1,
            "apple2" => MTLGPUFamily::Apple2,
            "apple3" => MTLGPUFamily::Apple3,
            "apple4" => MTLGPUFamily::Apple4,
            "apple5" => MTLGPUFamily::Apple5,
            "apple6" => MTLGPUFamily::Apple6,
            "apple7" => MTLGPUFamily::Apple7,
            "apple8" => MTLGPUFamily::Apple8,
            "apple9" => MTLGPUFamily::Apple9,
            "apple10" => MTLGPUFamily::Apple10,
            "metal3" => MTLGPUFamily::Metal3,
            "metal4" => MTLGPUFamily::Metal4,
            _ => return None,
        })
    }

    pub fn detect() -> Result<MetalInfo, String> {
        // The system default, else the first device (headless Macs can have no default).
        let device = MTLCreateSystemDefaultDevice()
            .or_else(|| MTLCopyAllDevices().to_vec().into_iter().next())
            .ok_or_else(|| "Metal reports no GPU on this Mac".to_owned())?;
        Ok(describe(&device))
    }

    fn describe(d: &ProtocolObject<dyn MTLDevice>) -> MetalInfo {
        // `architecture` exists from macOS 14; asking an older Metal for it would raise an Objective-C exception.
        let architecture = d
            .respondsToSelector(sel!(architecture))
            .then(|| d.architecture().name().to_string());
        MetalInfo {
            name: d.name().to_string(),
            registry_id: d.registryID(),
            architecture,
            unified_memory: d.hasUnifiedMemory(),
            working_set_bytes: d.recommendedMaxWorkingSetSize(),
            allocated_bytes: d.currentAllocatedSize() as u64,
            max_buffer_bytes: d.maxBufferLength() as u64,
            low_power: d.isLowPower(),
            families: highest_families(|f| family(f).is_some_and(|g| d.supportsFamily(g))),
        }
    }
}

#[cfg(not(all(target_os = "macos", feature = "metal")))]
mod probe {
    use super::MetalInfo;

    pub fn detect() -> Result<MetalInfo, String> {
        Err(if cfg!(target_os = "macos") {
            "this build does not ask Metal (build with --features metal)".to_owned()
        } else {
            "Apple Metal exists only on macOS".to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_family_of_each_ladder_is_reported() {
        // An M3-class device: Apple GPU family 9 and below, Metal 3 but not Metal 4.
        let m3 = |f: &str| {
            f.strip_prefix("apple")
                .and_then(|n| n.parse::<u32>().ok())
                .map_or(f == "metal3", |n| n <= 9)
        };
        assert_eq!(highest_families(m3), vec!["apple9", "metal3"]);
        // An Intel Mac's AMD GPU: no Apple family, Metal 3.
        assert_eq!(highest_families(|f| f == "metal3"), vec!["metal3"]);
        assert!(highest_families(|_| false).is_empty());
    }

    #[test]
    fn available_memory_is_the_working_set_less_what_is_allocated() {
        let mut m = MetalInfo {
            name: "Apple M2".into(),
            registry_id: 1,
            architecture: Some("applegpu_g14g".into()),
            unified_memory: true,
            working_set_bytes: 16 << 30,
            allocated_bytes: 1 << 30,
            max_buffer_bytes: 8 << 30,
            low_power: false,
            families: vec!["apple8", "metal3"],
        };
        assert_eq!(m.available_bytes(), 15 << 30);
        m.allocated_bytes = 20 << 30;
        assert_eq!(m.available_bytes(), 0);
    }

    #[cfg(not(target_os = "macos"))]
    #[test]
    fn off_macos_there_is_no_metal_and_a_reason() {
        assert_eq!(detect(), Err("Apple Metal exists only on macOS".to_owned()));
    }
}
