//! NVIDIA GPUs through NVML. nvml-wrapper loads `libnvidia-ml.so` at run time: without a driver there are no
//! GPUs and one explanation, never a failure.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GpuInfo {
    /// `cuda:N`, N being NVML's index.
    pub id: String,
    pub name: String,
    pub uuid: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
    pub power_limit_watts: Option<f64>,
    /// e.g. "8.9".
    pub compute_capability: Option<String>,
}

/// The GPUs, or why there are none (no driver, NVML error).
pub fn detect() -> Result<Vec<GpuInfo>, String> {
    let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("NVML unavailable: {e}"))?;
    let n = nvml
        .device_count()
        .map_err(|e| format!("NVML device count: {e}"))?;
    let mut gpus = Vec::new();
    for i in 0..n {
        let d = nvml
            .device_by_index(i)
            .map_err(|e| format!("NVML device {i}: {e}"))?;
        let mem = d
            .memory_info()
            .map_err(|e| format!("NVML device {i} memory: {e}"))?;
        gpus.push(GpuInfo {
            id: format!("cuda:{i}"),
            name: d.name().unwrap_or_else(|_| "unknown".into()),
            uuid: d.uuid().unwrap_or_default(),
            memory_total_bytes: mem.total,
            memory_free_bytes: mem.free,
            power_limit_watts: d
                .power_management_limit()
                .ok()
                .map(|mw| f64::from(mw) / 1000.0),
            compute_capability: d
                .cuda_compute_capability()
                .ok()
                .map(|c| format!("{}.{}", c.major, c.minor)),
        });
    }
    Ok(gpus)
}
