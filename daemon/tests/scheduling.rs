//! Devices and scheduling against the real daemon: fair queuing between users, `hearth doctor` on this machine,
//! `/admin/devices`.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod harness;

use harness::*;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Ann queues 30 requests on a model with two slots, then Bob sends one: Bob is served as soon as a slot frees,
/// not after Ann's backlog. Asserted on completion order, not time.
#[test]
fn a_late_user_is_not_stuck_behind_a_backlog() {
    let d = Daemon::start_with(
        "[engine]\nthreads = 1\nmax_sequences = 2\ncontext = 1024\nqueue_depth = 64\n",
        &[],
    );
    let ann = d.member_key("ann", None);
    let bob = d.member_key("bob", None);
    // Verify both keys once (argon2 runs on first use) so queueing, not authentication, decides the order.
    for k in [&ann, &bob] {
        assert_eq!(d.get("/v1/models", Some(k)).status, 200);
    }
    let done = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let ask = |who: &'static str, key: String, max_tokens: u32| {
        let (addr, done, order) = (d.addr.clone(), done.clone(), order.clone());
        std::thread::spawn(move || {
            let body = json!({"model": "smollm2", "prompt": "Count: 1, 2, 3,", "max_tokens": max_tokens,
                "temperature": 0});
            let r = request(
                &addr,
                "POST",
                "/v1/completions",
                Some(&key),
                body.to_string().as_bytes(),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            let n = done.fetch_add(1, Ordering::SeqCst);
            order.lock().unwrap().push((who, n));
        })
    };
    // Long enough that the backlog outlasts its own arrival on a fast machine (12 tokens each drained 14 of
    // them within the 1.5 s that used to be slept here).
    let mut threads: Vec<_> = (0..30).map(|_| ask("ann", ann.clone(), 32)).collect();
    // Wait for Ann's requests to reach the queue (each is tokenized and admitted in milliseconds, or more on a
    // loaded machine: a request waits behind its quota admission before it may take a slot); the admin API shows
    // the backlog: two in the batch, the rest waiting.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let m = loop {
        let m = d.get("/admin/models", Some(&d.admin_key.clone())).json();
        let backlog = m[0]["waiting"].as_u64().unwrap_or(0) >= 20 && m[0]["running"] == 2;
        if backlog || std::time::Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(m[0]["running"], 2, "{m}");
    assert!(m[0]["waiting"].as_u64().unwrap() >= 20, "{m}");
    threads.push(ask("bob", bob.clone(), 4));
    for t in threads {
        t.join().unwrap();
    }
    let order = order.lock().unwrap();
    let bob_at = order.iter().find(|(w, _)| *w == "bob").unwrap().1;
    let ann_done_at_bob = order
        .iter()
        .filter(|(w, n)| *w == "ann" && *n < bob_at)
        .count();
    eprintln!("Ann's requests finished before Bob's: {ann_done_at_bob} of 30");
    // FIFO would finish all 30 of Ann's first; fair queuing lets Bob in at the next free slot. Ann's requests
    // that finished before Bob's: those running or finishing while Bob's 4 tokens ran, plus the ones done in the
    // wait before Bob arrived.
    assert!(
        ann_done_at_bob < 20,
        "{ann_done_at_bob} of Ann's 30 requests finished before Bob's one: {order:?}"
    );
    assert_eq!(order.len(), 31);
}

fn cpu_flags() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    info.lines()
        .find(|l| l.starts_with("flags") || l.starts_with("Features"))
        .map(|l| {
            l.split(':')
                .nth(1)
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `hearth doctor` reports this machine's SIMD features as /proc/cpuinfo has them, where the demo model would run,
/// and power sensors from the configured sysfs root; `/admin/devices` says the same, to admins only.
#[test]
fn doctor_and_admin_devices_report_this_machine() {
    let sysfs = tempfile::tempdir().unwrap();
    let zone = sysfs.path().join("class/powercap/intel-rapl:0");
    std::fs::create_dir_all(&zone).unwrap();
    std::fs::write(zone.join("name"), "package-0\n").unwrap();
    std::fs::write(zone.join("energy_uj"), "123456\n").unwrap();
    let d = Daemon::start_with(
        &format!(
            "{BASE_CONFIG}\n[power]\nsysfs_root = \"{}\"\n",
            sysfs.path().display()
        ),
        &[],
    );
    let r: serde_json::Value =
        serde_json::from_str(&ok_stdout(&d.cli(&["doctor", "--json"]))).unwrap();
    let simd: Vec<String> = r["inventory"]["cpu"]["simd"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let flags = cpu_flags();
    for (ours, kernel) in [
        ("avx2", "avx2"),
        ("fma", "fma"),
        ("f16c", "f16c"),
        ("avx512f", "avx512f"),
        ("avx512_vnni", "avx512_vnni"),
        ("avx_vnni", "avx_vnni"),
        ("neon", "asimd"),
        ("dotprod", "asimddp"),
        ("i8mm", "i8mm"),
    ] {
        assert_eq!(
            simd.iter().any(|s| s == ours),
            flags.iter().any(|f| f == kernel),
            "{ours}: doctor says {simd:?}, /proc/cpuinfo says {flags:?}"
        );
    }
    assert!(r["inventory"]["cpu"]["logical_cores"].as_u64().unwrap() >= 1);
    assert!(
        r["inventory"]["cpu"]["memory_total_bytes"]
            .as_u64()
            .unwrap()
            > 1 << 30
    );
    assert_eq!(r["backends_built"], json!(["cpu", "ternary"]));
    assert!(
        r["inventory"]["cpu"]["ternary_kernels"]
            .as_str()
            .unwrap()
            .contains("i2 4-row groups"),
        "{r}"
    );
    assert_eq!(r["models"][0]["model"], "smollm2");
    assert_eq!(r["models"][0]["device"], "cpu");
    assert_eq!(r["power_zones"][0]["name"], "package-0");
    assert_eq!(r["power_zones"][0]["readable"], true);
    let check = |name: &str| {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(check("CPU power sensors")["ok"], true);
    assert_eq!(check("state directory")["ok"], true);
    // No NVIDIA driver here: no GPUs, and the reason, never a failure.
    if !std::path::Path::new("/proc/driver/nvidia").exists() {
        assert_eq!(r["inventory"]["gpus"], json!([]));
        assert_eq!(check("NVIDIA GPUs")["ok"], false);
    }

    let text = ok_stdout(&d.cli(&["doctor"]));
    assert!(text.contains("Back ends in this build: cpu"), "{text}");
    assert!(text.contains("Model   smollm2 → cpu"), "{text}");
    assert!(
        text.contains(&format!("SIMD: {}", simd.join(" "))),
        "{text}"
    );

    let api = d.get("/admin/devices", Some(&d.admin_key.clone()));
    assert_eq!(api.status, 200, "{}", api.text());
    assert_eq!(api.json()["inventory"]["cpu"]["simd"], json!(simd));
    let member = d.member_key("mia", None);
    assert_eq!(d.get("/admin/devices", Some(&member)).status, 403);

    // No sensors: the check says why.
    let empty = tempfile::tempdir().unwrap();
    let o = d.cli_env(
        &["doctor"],
        &[("HEARTH_POWER_SYSFS_ROOT", empty.path().to_str().unwrap())],
    );
    let text = ok_stdout(&o);
    assert!(
        text.contains("WARN  CPU power sensors: no RAPL energy counters"),
        "{text}"
    );
}

/// `[models.NAME]`: a preloaded model is loaded at start with its own keep_alive; `/admin/models` shows where it
/// runs and why; load and unload on demand.
#[test]
fn admin_models_placement_preload_load_unload() {
    let d = Daemon::start_with(
        &format!("{BASE_CONFIG}\n[models.smollm2]\npreload = true\nkeep_alive = \"1h\"\n"),
        &[],
    );
    let a = d.admin_key.clone();
    let state = |want: &str| {
        for _ in 0..100 {
            let list = d.get("/admin/models", Some(&a)).json();
            if list[0]["state"] == want {
                return list[0].clone();
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "smollm2 never became {want}: {}",
            d.get("/admin/models", Some(&a)).text()
        );
    };
    // Loaded at start, without any request.
    let m = state("loaded");
    assert_eq!(m["name"], "smollm2");
    assert_eq!(m["device"], "cpu");
    assert_eq!(m["backend"], "cpu");
    assert_eq!(m["preload"], true);
    assert!(m["placement"].as_str().unwrap().starts_with("auto"), "{m}");
    let left = m["expires_at"].as_u64().unwrap() as i64 - hearth::store::now();
    assert!((3500..=3600).contains(&left), "keep_alive 1h: {m}");

    let post = |path: &str, key: &str| request(&d.addr, "POST", path, Some(key), b"");
    let r = post("/admin/models/smollm2/unload", &a);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["unloaded"], true);
    state("unloaded");
    let r = post("/admin/models/smollm2:latest/load", &a);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "loaded");
    state("loaded");
    assert_eq!(post("/admin/models/nope/load", &a).status, 404);
    let member = d.member_key("max", None);
    assert_eq!(post("/admin/models/smollm2/load", &member).status, 403);
    assert_eq!(d.get("/admin/models", Some(&member)).status, 403);
}

/// A device pin this build or machine cannot honour is a clear error naming it, before any work; a malformed
/// device name is a config error.
#[test]
fn device_pins_are_checked() {
    let d = Daemon::start_with(
        &format!("{BASE_CONFIG}\n[models.smollm2]\ndevice = \"cuda:0\"\n"),
        &[],
    );
    let k = d.member_key("nia", None);
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat("hi", json!({"max_tokens": 2})),
    );
    assert_eq!(r.status, 500, "{}", r.text());
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("device 'cuda:0' needs the cuda back end, which this build does not have"),
        "{msg}"
    );
    let m = d.get("/admin/models", Some(&d.admin_key.clone())).json();
    assert_eq!(m[0]["device"], json!(null));
    assert!(m[0]["placement"].as_str().unwrap().contains("cuda"), "{m}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("hearth.toml");
    std::fs::write(&bad, "[models.smollm2]\ndevice = \"gpu0\"\n").unwrap();
    let o = hearth(dir.path(), &["config", "check", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("models.smollm2.device: unknown device 'gpu0'"),
        "{err}"
    );
}

/// Loading past `engine.memory_budget` unloads the least recently used idle model on that device.
#[test]
fn memory_budget_unloads_the_least_recently_used_model() {
    let d = Daemon::start_with(
        "[engine]\nthreads = 1\nmax_sequences = 4\ncontext = 2048\nmemory_budget = \"700MiB\"\n",
        &[],
    );
    ok_stdout(&d.cli(&[
        "model",
        "import",
        demo_model().to_str().unwrap(),
        "--name",
        "smol-b",
    ]));
    let k = d.member_key("lea", None);
    let a = d.admin_key.clone();
    let states = || {
        let list = d.get("/admin/models", Some(&a)).json();
        list.as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_owned(),
                    m["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let ask = |model: &str| {
        let r = d.post(
            "/v1/chat/completions",
            Some(&k),
            &json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    };
    ask("smollm2");
    assert!(states().contains(&("smollm2".into(), "loaded".into())));
    // Each needs 476 MB (weights + 377 MB of KV for 4 × 2048 positions): two do not fit in 700 MiB.
    ask("smol-b");
    let want = vec![
        ("smol-b".to_owned(), "loaded".to_owned()),
        ("smollm2".to_owned(), "unloaded".to_owned()),
    ];
    for _ in 0..100 {
        if states() == want {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("expected {want:?}, got {:?}\n{}", states(), d.log());
}

/// A BitNet b1.58 model (synthetic, real format) is placed on the ternary back end and served over the API, with
/// the `head = "i8"` option from config.
#[test]
fn bitnet_model_is_served_on_the_ternary_back_end() {
    let d = Daemon::start_with(
        &format!("{BASE_CONFIG}\n[models.bitnet]\nhead = \"i8\"\n"),
        &[],
    );
    let file = d.state.path().join("bitnet-tiny.gguf");
    let f = file.to_str().unwrap();
    ok_stdout(&d.cli(&[
        "model", "synth", "bitnet", "--preset", "tiny", "--format", "i2_s", "--out", f,
    ]));
    ok_stdout(&d.cli(&["model", "import", f, "--name", "bitnet"]));
    let a = d.admin_key.clone();
    let r = d.post(
        "/v1/chat/completions",
        Some(&a),
        &json!({"model": "bitnet", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6,
                "temperature": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["usage"]["completion_tokens"], 6, "{j}");
    let list = d.get("/admin/models", Some(&a)).json();
    let m = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "bitnet")
        .unwrap()
        .clone();
    assert_eq!(m["architecture"], "bitnet-b1.58", "{m}");
    assert_eq!(m["backend"], "ternary", "{m}");
    assert!(m["placement"].as_str().unwrap().contains("ternary"), "{m}");
}
