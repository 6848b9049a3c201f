//! `/metrics` against the real daemon and the demo model: a fixture powercap tree whose counters advance (and
//! wrap) while requests run, energy attributed to each request in the ledger, token counters equal to the
//! ledger's sums, `promtool check metrics`, who may read it, and what is absent without a sensor.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod harness;

use harness::*;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One series' value: `name{k="v",...}` whose labels include all of `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, v) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        if n != name {
            return None;
        }
        let have: Vec<(&str, &str)> = rest
            .trim_end_matches('}')
            .split(',')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k, v.trim_matches('"')))
            })
            .collect();
        labels
            .iter()
            .all(|want| have.contains(want))
            .then(|| v.parse().ok())?
    })
}

/// A RAPL package zone (and its core sub-zone) whose `energy_uj` advance at fixed power and wrap at `range`,
/// written atomically every 2 ms; `true_uj` is the package's unwrapped energy since the fixture started.
struct RaplFixture {
    stop: Arc<AtomicBool>,
    true_uj: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const PACKAGE_WATTS: f64 = 40.0;
// Real RAPL ranges take minutes to wrap; this one wraps every 1.5 s at 40 W (the test also waits for the total
// to pass it, however fast the machine ran the requests), which is still far longer than the daemon's reads are
// apart even on a loaded test machine (a read per 100 ms tick).
const RANGE_UJ: u64 = 60_000_000;

fn write_atomic(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

impl RaplFixture {
    fn start(sysfs: &Path) -> RaplFixture {
        let pkg = sysfs.join("class/powercap/intel-rapl:0");
        let core = sysfs.join("class/powercap/intel-rapl:0:0");
        for (dir, name) in [(&pkg, "package-0"), (&core, "core")] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("name"), format!("{name}\n")).unwrap();
            std::fs::write(dir.join("max_energy_range_uj"), format!("{RANGE_UJ}\n")).unwrap();
            std::fs::write(dir.join("energy_uj"), "0\n").unwrap();
        }
        // A hwmon power sensor, exported as it is.
        let hw = sysfs.join("class/hwmon/hwmon0");
        std::fs::create_dir_all(&hw).unwrap();
        std::fs::write(hw.join("name"), "fake_psu\n").unwrap();
        std::fs::write(hw.join("power1_input"), "55000000\n").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let true_uj = Arc::new(AtomicU64::new(0));
        let (s, t) = (stop.clone(), true_uj.clone());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            // Start 3 J before the wrap, so it wraps within the first 100 ms and then every 5 s.
            let offset = RANGE_UJ - 3_000_000;
            while !s.load(Ordering::SeqCst) {
                let secs = start.elapsed().as_secs_f64();
                let e = (PACKAGE_WATTS * 1e6 * secs) as u64;
                write_atomic(&pkg, "energy_uj", &format!("{}\n", (offset + e) % RANGE_UJ));
                write_atomic(&core, "energy_uj", &format!("{}\n", (e / 2) % RANGE_UJ));
                t.store(e, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        RaplFixture {
            stop,
            true_uj,
            thread: Some(thread),
        }
    }

    fn joules(&self) -> f64 {
        self.true_uj.load(Ordering::SeqCst) as f64 / 1e6
    }
}

impl Drop for RaplFixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until no ledger row is still `running` (completions are written off the request path).
fn settled_ledger(d: &Daemon) -> Vec<HashMap<String, String>> {
    let t = Instant::now();
    loop {
        let rows = d.ledger();
        if rows.iter().all(|r| r["status"] != "running") || t.elapsed() > Duration::from_secs(20) {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn promtool() -> PathBuf {
    let p = std::env::var_os("HEARTH_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/hearth/tools/promtool")
        });
    assert!(
        p.is_file(),
        "{} is missing: run scripts/test-tools (make test does)",
        p.display()
    );
    p
}

fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Four requests run together while the fixture's package counter advances at 40 W and wraps: every request gets
/// joules, their sum is the package's energy over the busy interval (within 5%), the energy counters only grow
/// (also across wraps), the token counters equal the ledger's sums, and the exposition passes promtool.
#[test]
fn energy_follows_a_wrapping_rapl_counter_and_counters_match_the_ledger() {
    let sysfs = tempfile::tempdir().unwrap();
    let fixture = RaplFixture::start(sysfs.path());
    let token = "prometheus-scrape-token-0123";
    let d = Daemon::start_with(
        &format!(
            "{BASE_CONFIG}\n[power]\nsysfs_root = \"{}\"\ninterval = \"100ms\"\n\n[metrics]\ntoken = \"{token}\"\n",
            sysfs.path().display()
        ),
        &[],
    );
    let ann = d.member_key("ann", None);
    let bob = d.member_key("bob", None);
    // Load the model and verify both keys first: loading is nobody's energy, and t0..t1 should be busy time.
    for k in [&ann, &bob] {
        let r = d.post(
            "/v1/chat/completions",
            Some(k),
            &chat("Hi", json!({"max_tokens": 4})),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The warm-up rows, by id: the export orders rows by start second, then id, so position says nothing.
    let warm: std::collections::HashSet<String> = settled_ledger(&d)
        .into_iter()
        .map(|r| r["id"].clone())
        .collect();

    // Scrape while it runs: the energy counters must never go down.
    let scraping = Arc::new(AtomicBool::new(true));
    let scraper = {
        let (addr, on) = (d.addr.clone(), scraping.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while on.load(Ordering::SeqCst) {
                let text = request(&addr, "GET", "/metrics", Some(token), b"").text();
                seen.push((
                    value(
                        &text,
                        "hearth_cpu_energy_joules_total",
                        &[("zone", "package-0")],
                    ),
                    value(
                        &text,
                        "hearth_device_energy_joules_total",
                        &[("device", "cpu")],
                    ),
                ));
                std::thread::sleep(Duration::from_millis(150));
            }
            seen
        })
    };
    let t0 = fixture.joules();
    let threads: Vec<_> = [&ann, &bob, &ann, &bob]
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let (addr, key) = (d.addr.clone(), k.to_string());
            std::thread::spawn(move || {
                let body = chat(
                    &format!("Write a short poem about the number {i}."),
                    json!({"max_tokens": 40 + 8 * i}),
                );
                request(
                    &addr,
                    "POST",
                    "/v1/chat/completions",
                    Some(&key),
                    body.to_string().as_bytes(),
                )
            })
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let t1 = fixture.joules();
    scraping.store(false, Ordering::SeqCst);
    let seen = scraper.join().unwrap();

    let rows = settled_ledger(&d);
    let burst: Vec<_> = rows.iter().filter(|r| !warm.contains(&r["id"])).collect();
    assert_eq!(burst.len(), 4);
    let mut attributed = 0.0;
    for r in &rows {
        assert_eq!(r["energy_source"], "rapl");
    }
    // Each of the burst's requests ran for seconds while the counter advanced. (A warm-up request can finish
    // within one sampling interval in which a starved fixture thread moved nothing: 0 J is then its true share.)
    for r in &burst {
        let j: f64 = r["energy_joules"].parse().unwrap();
        assert!(j > 0.0, "{r:?}");
    }
    for r in &burst {
        attributed += r["energy_joules"].parse::<f64>().unwrap();
    }
    let delta = t1 - t0;
    eprintln!("attributed {attributed:.3} J to 4 requests; package energy over the burst {delta:.3} J ({:.2}%)", attributed / delta * 100.0);
    let device: Vec<f64> = seen.iter().filter_map(|s| s.1).collect();
    assert!(
        attributed <= delta * 1.01 && attributed >= delta * 0.95,
        "requests got {attributed:.3} J; the package used {delta:.3} J from the first request to the last answer \
         (the daemon's cpu energy counter grew {:.3} J over the scrapes in between)",
        device.last().unwrap_or(&0.0) - device.first().unwrap_or(&0.0)
    );

    // Monotonic counters, also across wraps of the 60 J range (one every 1.5 s).
    let pkg: Vec<f64> = seen.iter().filter_map(|s| s.0).collect();
    assert!(pkg.len() >= 3, "{seen:?}");
    assert!(pkg.windows(2).all(|w| w[1] >= w[0]), "{pkg:?}");
    // The counter keeps advancing after the burst: the daemon's total must pass the range (at least one wrap
    // followed, whatever the burst took) and stay within what the package really used.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (text, pkg_total) = loop {
        let text = d.get("/metrics", Some(&d.admin_key)).text();
        let total = value(
            &text,
            "hearth_cpu_energy_joules_total",
            &[("zone", "package-0")],
        )
        .unwrap();
        if total > RANGE_UJ as f64 / 1e6 || Instant::now() > deadline {
            break (text, total);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // A lost wrap would leave the total 60 J short of what the package used since t0 (the daemon was sampling
    // by then: the warm-up requests had already been measured); the last 100 ms tick may not be counted yet.
    let used = fixture.joules();
    assert!(
        pkg_total <= used + 1e-6 && pkg_total >= used - t0 - 0.5 * PACKAGE_WATTS,
        "{pkg_total} J counted; the package used {used:.3} J in all, {:.3} J since t0",
        used - t0
    );
    assert!(
        pkg_total > RANGE_UJ as f64 / 1e6,
        "{pkg_total} J: the wrap was lost"
    );
    assert!(value(
        &text,
        "hearth_cpu_energy_joules_total",
        &[("zone", "package-0/core")]
    )
    .is_some());
    // The device is the package (the core sub-zone is part of it, not added to it).
    let device = value(
        &text,
        "hearth_device_energy_joules_total",
        &[("device", "cpu"), ("source", "rapl")],
    )
    .unwrap();
    assert!((device - pkg_total).abs() < 1e-6, "{device} vs {pkg_total}");
    assert!(value(&text, "hearth_device_power_watts", &[("device", "cpu")]).is_some());
    assert_eq!(
        value(
            &text,
            "hearth_hwmon_power_watts",
            &[("chip", "fake_psu"), ("sensor", "power1")]
        ),
        Some(55.0)
    );

    // Token counters equal the ledger's sums, per user; per-request energy too.
    for user in ["ann", "bob"] {
        let mine: Vec<_> = rows.iter().filter(|r| r["user"] == user).collect();
        let sum = |col: &str| {
            mine.iter()
                .map(|r| r[col].parse::<f64>().unwrap())
                .sum::<f64>()
        };
        let l = [("model", "smollm2"), ("user", user)];
        assert_eq!(
            value(&text, "hearth_prompt_tokens_total", &l),
            Some(sum("prompt_tokens"))
        );
        assert_eq!(
            value(&text, "hearth_generation_tokens_total", &l),
            Some(sum("completion_tokens"))
        );
        let j = value(
            &text,
            "hearth_request_energy_joules_total",
            &[
                ("model", "smollm2"),
                ("user", user),
                ("device", "cpu"),
                ("source", "rapl"),
            ],
        )
        .unwrap();
        assert!(
            (j - sum("energy_joules")).abs() < 1e-6 * j.max(1.0),
            "{user}: {j} vs ledger"
        );
    }
    // Bob's warm-up repeated Ann's prompt exactly: all but its last token were reused from her slot.
    assert!(
        value(
            &text,
            "hearth_prompt_tokens_cached_total",
            &[("model", "smollm2"), ("user", "bob")]
        )
        .unwrap()
            > 10.0
    );
    let ok = [("api", "openai"), ("model", "smollm2"), ("status", "200")];
    assert_eq!(
        value(&text, "hearth_requests_total", &ok),
        Some(rows.len() as f64)
    );
    let m = [("model", "smollm2")];
    assert_eq!(
        value(&text, "hearth_time_to_first_token_seconds_count", &m),
        Some(rows.len() as f64)
    );
    assert_eq!(
        value(&text, "hearth_e2e_request_latency_seconds_count", &m),
        Some(rows.len() as f64)
    );
    assert!(value(&text, "hearth_inter_token_latency_seconds_count", &m).unwrap() > 0.0);
    assert_eq!(
        value(&text, "hearth_energy_per_token_joules_count", &m),
        Some(rows.len() as f64)
    );
    assert_eq!(
        value(
            &text,
            "hearth_model_loaded",
            &[("model", "smollm2"), ("device", "cpu")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "hearth_model_load_seconds_count", &m),
        Some(1.0)
    );
    assert_eq!(value(&text, "hearth_num_requests_running", &m), Some(0.0));
    assert!(value(&text, "hearth_cpu_busy_ratio", &[]).is_some());
    assert!(value(&text, "hearth_process_resident_memory_bytes", &[]).unwrap() > 50e6);
    promtool_check(&text);

    // J/token per model for admins, per user for themselves.
    let models = d.get("/admin/models", Some(&d.admin_key)).json();
    let e = &models[0]["energy"][0];
    assert_eq!(e["source"], "rapl");
    assert!(e["joules_per_token"].as_f64().unwrap() > 0.0, "{models}");
    let me = d.get("/v1/me/usage", Some(&ann)).json();
    assert_eq!(me["energy"]["today"][0]["source"], "rapl", "{me}");
    assert!(me["energy"]["month"][0]["joules"].as_f64().unwrap() > 0.0);

    // A refused request is counted by user and limit; the remaining allowance is exported.
    let cid = d.member_key("cid", None);
    ok_stdout(&d.cli(&[
        "quota",
        "set",
        "cid",
        "--requests-per-minute",
        "1",
        "--tokens-per-day",
        "100000",
    ]));
    let first = d.post(
        "/v1/chat/completions",
        Some(&cid),
        &chat("Hi", json!({"max_tokens": 2})),
    );
    assert_eq!(first.status, 200, "{}", first.text());
    let second = d.post(
        "/v1/chat/completions",
        Some(&cid),
        &chat("Hi", json!({"max_tokens": 2})),
    );
    assert_eq!(second.status, 429);
    let text = d.get("/metrics", Some(token)).text();
    assert_eq!(
        value(
            &text,
            "hearth_rate_limited_requests_total",
            &[("user", "cid"), ("reason", "requests_per_minute")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "hearth_requests_total",
            &[("api", "openai"), ("model", "smollm2"), ("status", "429")]
        ),
        Some(1.0)
    );
    let left = value(
        &text,
        "hearth_quota_remaining_tokens",
        &[("user", "cid"), ("window", "day")],
    )
    .unwrap();
    assert!(left > 0.0 && left < 100_000.0, "{left}");
    // A name that resolves to no imported model never becomes a label (labels stay bounded).
    let unknown = d.post(
        "/v1/chat/completions",
        Some(&cid),
        &json!({"model": "no-such-model-7f3a", "messages": [{"role": "user", "content": "Hi"}]}),
    );
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    let text = d.get("/metrics", Some(token)).text();
    assert!(!text.contains("no-such-model-7f3a"), "{text}");
}

/// Without credentials `/metrics` is 401, with a member key 403, with a wrong token 401; admins and the token read
/// it; `metrics.public` opens it. Without a sensor the power series are absent (not zero) and requests carry no
/// joules; with `power.cpu_watts_estimate` they carry estimated joules, labelled so.
#[test]
fn metrics_auth_and_absent_or_estimated_energy() {
    let empty = tempfile::tempdir().unwrap();
    let token = "another-scrape-token-456789";
    let d = Daemon::start_with(
        &format!(
            "{BASE_CONFIG}\n[power]\nsysfs_root = \"{}\"\n\n[metrics]\ntoken = \"{token}\"\n",
            empty.path().display()
        ),
        &[],
    );
    let member = d.member_key("mia", None);
    assert_eq!(d.get("/metrics", None).status, 401);
    assert_eq!(d.get("/metrics", Some(&member)).status, 403);
    assert_eq!(
        d.get("/metrics", Some("not-the-token-at-all-0000")).status,
        401
    );
    let r = d.get("/metrics", Some(token));
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let r = d.post(
        "/v1/chat/completions",
        Some(&member),
        &chat("Hi", json!({"max_tokens": 3})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = d.get("/metrics", Some(&d.admin_key)).text();
    for absent in [
        "hearth_cpu_energy_joules_total",
        "hearth_device_energy_joules_total",
        "hearth_device_power_watts",
        "hearth_request_energy_joules_total",
        "hearth_energy_per_token_joules_count",
        "hearth_hwmon_power_watts",
        "hearth_gpu_power_watts",
    ] {
        assert!(
            !text.contains(absent),
            "{absent} present without a sensor:\n{text}"
        );
    }
    assert!(value(&text, "hearth_generation_tokens_total", &[("user", "mia")]).unwrap() > 0.0);
    promtool_check(&text);
    let rows = settled_ledger(&d);
    assert!(
        rows.iter().all(|r| r["energy_joules"].is_empty()),
        "{rows:?}"
    );

    // Public, and an estimate instead of a sensor.
    let e = Daemon::start_with(
        &format!(
            "{BASE_CONFIG}\n[power]\nsysfs_root = \"{}\"\ncpu_watts_estimate = 30\n\n[metrics]\npublic = true\n",
            empty.path().display()
        ),
        &[],
    );
    let key = e.member_key("ned", None);
    let r = e.post(
        "/v1/chat/completions",
        Some(&key),
        &chat("Hi", json!({"max_tokens": 8})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = e.get("/metrics", None).text();
    let j = value(
        &text,
        "hearth_request_energy_joules_total",
        &[("user", "ned"), ("source", "estimate")],
    )
    .unwrap();
    assert!(j > 0.0);
    assert!(
        !text.contains("hearth_cpu_energy_joules_total"),
        "estimates are not RAPL readings"
    );
    let rows = settled_ledger(&e);
    let row = rows.iter().find(|r| r["user"] == "ned").unwrap();
    assert_eq!(row["energy_source"], "estimate");
    // 30 W over at most the request's duration.
    let ms: f64 = row["duration_ms"].parse().unwrap();
    assert!(
        row["energy_joules"].parse::<f64>().unwrap() <= 30.0 * (ms + 5.0) / 1000.0,
        "{row:?}"
    );
}
