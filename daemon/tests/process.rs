//! Process life of `hearth serve`: systemd notifications, graceful shutdown that drains and then ends streams
//! cleanly, TLS, and `hearth config check`.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod harness;

use harness::*;
use serde_json::json;
use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

fn recv_until(sock: &UnixDatagram, want: &str, limit: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    let t = Instant::now();
    let mut buf = [0u8; 256];
    while t.elapsed() < limit {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.contains(want);
            seen.push(msg);
            if done {
                break;
            }
        }
    }
    seen
}

#[test]
fn sd_notify_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut d = Daemon::start_with(
        &format!("shutdown_timeout = \"1s\"\n{BASE_CONFIG}"),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let seen = recv_until(&sock, "READY=1", Duration::from_secs(5));
    assert!(seen.iter().any(|m| m == "READY=1"), "{seen:?}");
    let seen = recv_until(&sock, "WATCHDOG=1", Duration::from_secs(2));
    assert!(seen.iter().any(|m| m == "WATCHDOG=1"), "{seen:?}");

    // A stream that would outlive the 1 s drain: it must end with a final event and [DONE], not a cut.
    let k = d.admin_key.clone();
    let body = json!({"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 1500, "stream": true,
        "temperature": 0.8, "seed": 3}).to_string();
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {k}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut s = send_raw(&d.addr, &head, body.as_bytes());
    let mut first = [0u8; 256];
    assert!(s.read(&mut first).unwrap() > 0);
    let t = Instant::now();
    d.signal("TERM");
    let seen = recv_until(&sock, "STOPPING=1", Duration::from_secs(5));
    assert!(seen.iter().any(|m| m == "STOPPING=1"), "{seen:?}");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let mut raw = first.to_vec();
    raw.retain(|&b| b != 0);
    raw.extend(rest);
    let r = parse_response(&raw);
    let events = r.sse();
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "stream was cut: {}",
        r.text()
    );
    let fin: serde_json::Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(fin["choices"][0]["finish_reason"], "abort");
    let status = d
        .wait_exit(Duration::from_secs(10))
        .expect("the daemon exits after the drain");
    assert!(status.success(), "{status:?}");
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "shutdown took {:?}",
        t.elapsed()
    );
    let log = d.log();
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );
}

#[test]
fn short_requests_finish_during_a_drain() {
    let mut d = Daemon::start_with(&format!("shutdown_timeout = \"20s\"\n{BASE_CONFIG}"), &[]);
    let (addr, k) = (d.addr.clone(), d.admin_key.clone());
    let h = std::thread::spawn(move || {
        let body = json!({"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 60, "temperature": 0});
        request(
            &addr,
            "POST",
            "/v1/completions",
            Some(&k),
            body.to_string().as_bytes(),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    d.signal("TERM");
    let r = h.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["finish_reason"], "length");
    assert!(d.wait_exit(Duration::from_secs(15)).unwrap().success());
    // New connections are refused once it stopped.
    assert!(std::net::TcpStream::connect(&d.addr).is_err());
}

#[test]
fn tls() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_node_cert(dir.path());
    let cfg = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n{BASE_CONFIG}",
        cert.display(),
        key.display()
    );
    let d = Daemon::start_with(&cfg, &[]);
    let curl = std::process::Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&ca)
        .arg(format!("https://{}/health", d.addr))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        r#"{"status":"ok"}"#,
        "{curl:?}"
    );
}

#[test]
fn config_check_reports_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "bind = \"0.0.0.0:8383\"\nshutdown_timeout = \"10s\"\n[engine]\ncontext = 2048\n",
    )
    .unwrap();
    let o = hearth(dir.path(), &["config", "check", good.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).ends_with(": ok\n"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "bind = \"0.0.0.0:8383\"\n\n[engine]\nmax_sequences = \"four\"\n",
    )
    .unwrap();
    let o = hearth(dir.path(), &["config", "check", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{}:4:17: invalid type", bad.display())),
        "{err}"
    );

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "bnid = \"0.0.0.0:1\"\n").unwrap();
    let err = String::from_utf8_lossy(
        &hearth(dir.path(), &["config", "check", typo.to_str().unwrap()]).stderr,
    )
    .into_owned();
    assert!(err.contains("typo.toml:1:1: unknown field `bnid`"), "{err}");

    // The example in docs/configuration.md is valid.
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap();
    let example = doc
        .split("```toml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let documented = dir.path().join("documented.toml");
    std::fs::write(&documented, example).unwrap();
    let o = hearth(
        dir.path(),
        &["config", "check", documented.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A bad environment override names the variable.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--config")
        .arg(&good)
        .args(["config", "show"])
        .env("HEARTH_ENGINE_CONTEXT", "lots")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("HEARTH_ENGINE_CONTEXT"));
}
