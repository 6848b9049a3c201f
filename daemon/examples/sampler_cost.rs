//! What power sampling costs, measured directly: the mean time of one sampler tick on this machine, and of the
//! per-step energy accounting a worker does (`EnergyMeter::work` for a batch of 8 sequences), and of the per-token
//! histogram observation.
//! Usage: cargo run --release -p hearth --example sampler_cost [SYSFS_ROOT]

use hearth::metrics::energy::EnergyMeter;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let sysfs = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "/sys".into()));
    let tick = hearth::metrics::sampler::tick_cost(&sysfs, Some(65.0), 500);
    let meter = EnergyMeter::new(&sysfs, Some(65.0), None);
    let keys: Vec<u64> = (0..8).filter_map(|_| meter.join("cpu")).collect();
    let n = 100_000u32;
    let t = Instant::now();
    for _ in 0..n {
        meter.work("cpu", keys.iter().map(|k| (*k, 1)));
    }
    let step = t.elapsed() / n;
    let metrics = hearth::metrics::Metrics::new(None);
    let ttft = metrics
        .serving
        .time_to_first_token
        .with_label_values(&["m"]);
    let t = Instant::now();
    for i in 0..n {
        ttft.observe(f64::from(i % 100) * 0.01);
    }
    let observe = t.elapsed() / n;
    println!(
        "sampler tick: {tick:?} (at power.interval = 1s: {:.4}% of one core)",
        tick.as_secs_f64() * 100.0
    );
    println!("per-step energy accounting, 8 sequences: {step:?}");
    println!("one histogram observation (per token): {observe:?}");
}
