//! `hearth doctor` and `GET /admin/devices`: the device inventory, the back ends this build has, where each
//! imported model would run and why, and the problems an operator can fix (state directory, models directory,
//! power sensors, NVIDIA driver).

use crate::config::{Config, PowerConfig};
use crate::models::ModelStore;
use hearth_engine::devices::Inventory;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct ModelPlan {
    pub model: String,
    pub device: Option<String>,
    pub backend: Option<&'static str>,
    /// Why there, or why nowhere.
    pub reason: String,
}

/// A RAPL zone as found (`metrics::rapl`).
pub use crate::metrics::rapl::ZoneInfo as PowerZone;

#[derive(Debug, Serialize)]
pub struct Report {
    pub inventory: Inventory,
    pub backends_built: Vec<&'static str>,
    pub models: Vec<ModelPlan>,
    pub power_zones: Vec<PowerZone>,
    pub checks: Vec<Check>,
}

fn check(name: &str, result: Result<String, String>) -> Check {
    let ok = result.is_ok();
    Check {
        name: name.to_owned(),
        ok,
        detail: result.unwrap_or_else(|e| e),
    }
}

fn state_dir_writable(dir: &Path) -> Result<String, String> {
    crate::paths::probe_writable(dir)
        .map(|()| format!("{} is writable", dir.display()))
        .map_err(|e| format!("{} is not writable: {e}", dir.display()))
}

fn power_check(zones: &[PowerZone], power: &PowerConfig) -> Result<String, String> {
    if !power.sampling {
        return Err(
            "power.sampling is off: no power, energy or utilisation series, and requests carry no joules".into(),
        );
    }
    if zones.is_empty() {
        let instead = match power.cpu_watts_estimate {
            Some(w) => format!(
                "; power.cpu_watts_estimate = {w} W is used instead (exported with source=\"estimate\")"
            ),
            None => "; set power.cpu_watts_estimate to estimate it".into(),
        };
        return Err(format!(
            "no RAPL energy counters under {}/class/powercap (not exposed on this machine or VM): \
             hearth_cpu_energy_joules_total and measured joules per CPU request are absent{instead}",
            power.sysfs_root.display()
        ));
    }
    let unreadable: Vec<&str> = zones
        .iter()
        .filter(|z| !z.readable)
        .map(|z| z.name.as_str())
        .collect();
    if unreadable.is_empty() {
        Ok(format!("{} RAPL zone(s) readable", zones.len()))
    } else {
        Err(format!(
            "RAPL zone(s) {} not readable by this user: since Linux 5.10 energy_uj is root-only; the packages \
             grant group 'hearth' read access (tmpfiles.d/hearth-power.conf) — run as the hearth user or add yourself \
             to the group",
            unreadable.join(", ")
        ))
    }
}

pub fn run(cfg: &Config, state_dir: &Path, models: &ModelStore) -> Report {
    let sysfs = cfg.power.sysfs_root.as_path();
    let inventory = Inventory::detect();
    let mut checks = vec![check("state directory", state_dir_writable(state_dir))];
    checks.push(check(
        "models directory",
        std::fs::read_dir(models.root())
            .map(|_| format!("{} is readable", models.root().display()))
            .map_err(|e| format!("{}: {e}", models.root().display())),
    ));
    let zones = crate::metrics::rapl::discover(sysfs);
    checks.push(check("CPU power sensors", power_check(&zones, &cfg.power)));
    let hwmon = crate::metrics::hwmon::discover(sysfs);
    checks.push(check(
        "hwmon power sensors",
        Ok(if hwmon.is_empty() {
            "none (hearth_hwmon_* series absent)".into()
        } else {
            let names: Vec<String> = hwmon
                .iter()
                .map(|s| format!("{}/{}", s.chip, s.sensor))
                .collect();
            names.join(", ")
        }),
    ));
    checks.push(check(
        "NVIDIA GPUs",
        match (&inventory.gpu_note, inventory.gpus.len()) {
            (None, n) => Ok(format!("{n} GPU(s) through NVML")),
            (Some(note), _) => Err(note.clone()),
        },
    ));
    let plans = match models.list() {
        Ok(list) => list
            .iter()
            .map(|m| {
                let planned = crate::sched::plan_placement(
                    models,
                    m,
                    cfg.engine.context,
                    cfg.engine.max_sequences,
                    cfg.models.get(&m.name),
                    &inventory,
                );
                match planned {
                    Ok((_, p)) => ModelPlan {
                        model: m.name.clone(),
                        device: Some(p.device),
                        backend: Some(p.backend),
                        reason: p.reason,
                    },
                    Err(e) => ModelPlan {
                        model: m.name.clone(),
                        device: None,
                        backend: None,
                        reason: e,
                    },
                }
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    Report {
        backends_built: inventory.backends.names(),
        inventory,
        models: plans,
        power_zones: zones,
        checks,
    }
}

/// The cluster lines (nodes sharing a PostgreSQL database): this node's clock against the database server's,
/// whether this node is registered with a URL others can reach, and, from here, whether every live node answers
/// at its advertised URL and accepts this node's `cluster.secret` (a signed `GET /health`).
pub async fn cluster_checks(cfg: &Config, me: &str, store: &crate::store::Store) -> Vec<Check> {
    use crate::cluster::{credential, forward};
    let mut out = Vec::new();
    let Ok(Some(db)) = store.database_clock().await else {
        return out;
    };
    let now = crate::store::now();
    let skew = now - db;
    let allowed = (cfg.cluster.lease.as_secs() / 3).max(1) as i64;
    out.push(check(
        "cluster clock",
        if skew.abs() <= allowed {
            Ok(format!("{skew:+} s from PostgreSQL's clock"))
        } else {
            Err(format!(
                "{skew:+} s from PostgreSQL's clock (more than a third of cluster.lease, {allowed} s): batch leases \
                 and cron ticks misbehave; keep the clocks in step (NTP)"
            ))
        },
    ));
    let nodes = match store.nodes().await {
        Ok(n) => n,
        Err(e) => {
            out.push(check("cluster registry", Err(e.to_string())));
            return out;
        }
    };
    out.push(check(
        "cluster registration",
        match nodes.iter().find(|n| n.name == me) {
            None => Err(format!(
                "no node '{me}' in the registry: this node's hearth serve is not running (or uses another cluster.name)"
            )),
            Some(n) if n.url.is_none() => Err(format!(
                "node '{me}' has no advertised URL (it listens on every address): set cluster.url, or other nodes \
                 cannot forward requests to it"
            )),
            Some(n) => Ok(format!(
                "node '{me}' at {}; routing {}",
                n.url.as_deref().unwrap_or_default(),
                if cfg.cluster.secret.is_some() { "on (cluster.secret set)" } else { "off (no cluster.secret)" }
            )),
        },
    ));
    let client = match forward::Client::new(cfg.cluster.ca.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            out.push(check("cluster TLS", Err(e.to_string())));
            return out;
        }
    };
    let credential = cfg
        .cluster
        .secret
        .as_deref()
        .map(credential::Credential::new);
    let expire = cfg.cluster.expire.as_secs() as i64;
    for n in nodes.iter().filter(|n| now - n.last_seen <= expire) {
        let Some(url) = n.url.as_deref() else {
            continue;
        };
        let url = url.trim_end_matches('/');
        let mut headers = Vec::new();
        if let Some(c) = &credential {
            headers.push((
                credential::HEADER.to_owned(),
                c.sign(me, now, "GET", "/health"),
            ));
        }
        let t = std::time::Instant::now();
        let sent = client
            .send(forward::Outgoing {
                node: n.name.clone(),
                method: "GET".into(),
                url: format!("{url}/health"),
                headers,
                body: Vec::new(),
            })
            .await;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let result = match sent {
            Ok(r) if r.status == 200 => Ok(format!(
                "{url} answers ({ms:.0} ms){}",
                if credential.is_some() { " and accepts this node's cluster.secret" } else { "" }
            )),
            Ok(r) if r.status == 403 => Err(format!(
                "{url} answers but refuses this node's cluster.secret: it must be the same on every node"
            )),
            Ok(r) => Err(format!("{url} answers {} to GET /health", r.status)),
            Err(e) => Err(format!("{url} cannot be reached from here: {e}")),
        };
        out.push(check(&format!("cluster node {}", n.name), result));
    }
    out
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

/// The report as text for a terminal.
pub fn render(r: &Report) -> String {
    let c = &r.inventory.cpu;
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("CPU     {} ({})", c.brand, c.arch));
    line(format!(
        "        {} physical / {} logical cores, memory {} total, {} available",
        c.physical_cores.map_or("?".into(), |n| n.to_string()),
        c.logical_cores,
        gib(c.memory_total_bytes),
        gib(c.memory_available_bytes)
    ));
    line(format!(
        "        SIMD: {}; kernels: {}",
        if c.simd.is_empty() {
            "none".to_owned()
        } else {
            c.simd.join(" ")
        },
        c.kernels
    ));
    line(format!("        ternary kernels: {}", c.ternary_kernels));
    for g in &r.inventory.gpus {
        line(format!(
            "GPU     {} {} ({}), {} free of {}, compute {}, power limit {}",
            g.id,
            g.name,
            g.uuid,
            gib(g.memory_free_bytes),
            gib(g.memory_total_bytes),
            g.compute_capability.as_deref().unwrap_or("?"),
            g.power_limit_watts
                .map_or("?".into(), |w| format!("{w:.0} W"))
        ));
    }
    if let Some(note) = &r.inventory.gpu_note {
        line(format!("GPU     none: {note}"));
    }
    match (&r.inventory.metal, &r.inventory.metal_note) {
        (Some(m), _) => line(format!(
            "Metal   {} ({}{}{}): {} free of a {} working set, largest buffer {}",
            m.name,
            m.architecture.as_deref().unwrap_or("architecture ?"),
            m.families
                .iter()
                .map(|f| format!(", {f}"))
                .collect::<String>(),
            if m.unified_memory {
                ", unified memory"
            } else {
                ""
            },
            gib(m.available_bytes()),
            gib(m.working_set_bytes),
            gib(m.max_buffer_bytes)
        )),
        (None, Some(note)) => line(format!("Metal   none: {note}")),
        (None, None) => {}
    }
    line(format!(
        "Back ends in this build: {}",
        r.backends_built.join(", ")
    ));
    if r.models.is_empty() {
        line("Models  none imported".into());
    }
    for m in &r.models {
        match &m.device {
            Some(d) => line(format!("Model   {} → {d} — {}", m.model, m.reason)),
            None => line(format!("Model   {} → nowhere — {}", m.model, m.reason)),
        }
    }
    for ch in &r.checks {
        line(format!(
            "{}  {}: {}",
            if ch.ok { "ok  " } else { "WARN" },
            ch.name,
            ch.detail
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_engine::devices::MetalInfo;

    #[test]
    fn a_macs_gpu_is_rendered_with_its_family_and_free_working_set() {
        let mut inventory = Inventory::detect();
        inventory.metal = Some(MetalInfo {
            name: "Apple M3 Pro".into(),
            registry_id: 4294969000,
            architecture: Some("applegpu_g15s".into()),
            unified_memory: true,
            working_set_bytes: 27 << 30,
            allocated_bytes: 3 << 30,
            max_buffer_bytes: 18 << 30,
            low_power: false,
            families: vec!["apple9", "metal3"],
        });
        inventory.metal_note = None;
        let r = Report {
            inventory,
            backends_built: vec!["cpu", "ternary"],
            models: Vec::new(),
            power_zones: Vec::new(),
            checks: Vec::new(),
        };
        let text = render(&r);
        assert!(
            text.contains(
                "Metal   Apple M3 Pro (applegpu_g15s, apple9, metal3, unified memory): \
                 24.0 GiB free of a 27.0 GiB working set, largest buffer 18.0 GiB\n"
            ),
            "{text}"
        );
    }
}
