//! End-to-end harness: the real `hearth` binary serving on a random loopback port with a temp state dir and the
//! demo model, plus a small HTTP/1.1 client (so the tests see exactly the bytes a client gets).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report
#![allow(dead_code)]

pub mod batches;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A greedy chat request for the demo model, with extra fields merged in.
pub fn chat(content: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({"model": "smollm2", "messages": [{"role": "user", "content": content}], "temperature": 0});
    for (k, x) in extra.as_object().expect("object") {
        v[k] = x.clone();
    }
    v
}

pub fn demo_model() -> PathBuf {
    let dir = std::env::var_os("HEARTH_MODELS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/hearth/models")
        });
    let p = dir.join("SmolLM2-135M-Instruct-Q4_1.gguf");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/fetch-models (make test does)",
        p.display()
    );
    p
}

pub fn hearth(state: &Path, args: &[&str]) -> Output {
    hearth_stdin(state, args, None)
}

pub fn hearth_stdin(state: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    hearth_with(state, args, stdin, &[])
}

pub fn hearth_with(
    state: &Path,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("HEARTH_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hearth");
    if let Some(s) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(s.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait hearth")
}

pub fn ok_stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "hearth failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).expect("UTF-8")
}

pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub state: tempfile::TempDir,
    pub admin_key: String,
    env: Vec<(String, String)>,
}

// The early-exit path reaps the child; the remaining panics (a failing pipe read) leave the test failing anyway.
#[allow(clippy::zombie_processes)]
fn spawn_serve(state: &Path, cfg: &Path, env: &[(String, String)]) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("daemon.log"))
        .expect("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--state-dir")
        .arg(state)
        .arg("--config")
        .arg(cfg)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("HEARTH_LOG", "debug")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn hearth serve");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).expect("read stdout") == 0 {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(state.join("daemon.log")).unwrap_or_default();
            panic!("hearth serve exited before listening:\n{log}");
        }
        // With [tls] the line says https; the address is what the tests need either way.
        let l = line.trim();
        if let Some(url) = l
            .strip_prefix("hearth: listening on http://")
            .or_else(|| l.strip_prefix("hearth: listening on https://"))
        {
            return (child, url.to_owned());
        }
    }
}

pub const BASE_CONFIG: &str = "[engine]\nthreads = 1\nmax_sequences = 4\ncontext = 2048\n";

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(BASE_CONFIG, &[])
    }

    /// Starts `hearth serve` with this config text and environment, the demo model imported as `smollm2`, and
    /// an admin key made with the CLI while the daemon runs.
    pub fn start_with(config: &str, env: &[(&str, &str)]) -> Daemon {
        let state = tempfile::tempdir().expect("tmp");
        let o = hearth(
            state.path(),
            &[
                "model",
                "import",
                demo_model().to_str().expect("path"),
                "--name",
                "smollm2",
            ],
        );
        ok_stdout(&o);
        let cfg = state.path().join("hearth.toml");
        std::fs::write(&cfg, config).expect("config");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, addr) = spawn_serve(state.path(), &cfg, &env);
        let mut d = Daemon {
            child,
            addr,
            state,
            admin_key: String::new(),
            env,
        };
        d.admin_key = ok_stdout(&d.cli(&["key", "create", "admin", "--name", "tests"]))
            .trim()
            .to_owned();
        d
    }

    /// Stops the daemon (SIGTERM, graceful) and starts it again on the same state and config.
    pub fn restart(&mut self) {
        self.signal("TERM");
        assert!(self
            .wait_exit(Duration::from_secs(30))
            .expect("exited")
            .success());
        let (child, addr) = spawn_serve(
            self.state.path(),
            &self.state.path().join("hearth.toml"),
            &self.env,
        );
        self.child = child;
        self.addr = addr;
    }

    /// Kills the daemon (SIGKILL: no drain, no last writes, as a crash or power loss) and starts it again on the
    /// same state and config.
    pub fn kill_and_restart(&mut self) {
        self.signal("KILL");
        assert!(
            self.wait_exit(Duration::from_secs(10)).is_some(),
            "not killed"
        );
        let (child, addr) = spawn_serve(
            self.state.path(),
            &self.state.path().join("hearth.toml"),
            &self.env,
        );
        self.child = child;
        self.addr = addr;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("daemon.log")).unwrap_or_default()
    }

    /// The CLI on this daemon's state dir and config (so it reaches the same database, SQLite or PostgreSQL).
    pub fn cli(&self, args: &[&str]) -> Output {
        let cfg = self.state.path().join("hearth.toml");
        let mut all = vec!["--config", cfg.to_str().expect("path")];
        all.extend_from_slice(args);
        hearth(self.state.path(), &all)
    }

    /// The CLI as `cli`, with extra environment variables.
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let cfg = self.state.path().join("hearth.toml");
        let mut all = vec!["--config", cfg.to_str().expect("path")];
        all.extend_from_slice(args);
        hearth_with(self.state.path(), &all, None, env)
    }

    /// A key for a new member (optionally scoped to models).
    pub fn member_key(&self, name: &str, models: Option<&str>) -> String {
        ok_stdout(&self.cli(&["user", "add", name]));
        let mut args = vec!["key", "create", name];
        if let Some(m) = models {
            args.extend(["--models", m]);
        }
        ok_stdout(&self.cli(&args)).trim().to_owned()
    }

    pub fn get(&self, path: &str, key: Option<&str>) -> Resp {
        request(&self.addr, "GET", path, key, b"")
    }

    pub fn post(&self, path: &str, key: Option<&str>, body: &serde_json::Value) -> Resp {
        request(&self.addr, "POST", path, key, body.to_string().as_bytes())
    }

    /// PUT / PATCH with a JSON body, as the admin.
    pub fn put_json(&self, path: &str, body: &serde_json::Value) -> Resp {
        request(
            &self.addr,
            "PUT",
            path,
            Some(&self.admin_key),
            body.to_string().as_bytes(),
        )
    }

    pub fn patch_json(&self, path: &str, body: &serde_json::Value) -> Resp {
        request(
            &self.addr,
            "PATCH",
            path,
            Some(&self.admin_key),
            body.to_string().as_bytes(),
        )
    }

    pub fn delete(&self, path: &str, key: Option<&str>) -> Resp {
        request(&self.addr, "DELETE", path, key, b"")
    }

    /// The request ledger as `GET /admin/usage/export` has it: one map per row, by column name.
    pub fn ledger(&self) -> Vec<std::collections::HashMap<String, String>> {
        let r = self.get("/admin/usage/export", Some(&self.admin_key));
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        let mut lines = text.lines();
        let head: Vec<String> = lines
            .next()
            .expect("header line")
            .split(',')
            .map(str::to_owned)
            .collect();
        lines
            .map(|l| {
                head.iter()
                    .cloned()
                    .zip(l.split(',').map(str::to_owned))
                    .collect()
            })
            .collect()
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
    }

    /// Waits for exit; None when it did not exit in time.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    /// The `data:` payloads of an SSE body.
    pub fn sse(&self) -> Vec<String> {
        self.text()
            .split("\n\n")
            .filter_map(|ev| ev.strip_prefix("data: ").map(str::to_owned))
            .collect()
    }
    pub fn ndjson(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("NDJSON line"))
            .collect()
    }
}

pub fn send_raw(addr: &str, head: &str, body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write body");
    s
}

pub fn request(addr: &str, method: &str, path: &str, key: Option<&str>, body: &[u8]) -> Resp {
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut s = send_raw(addr, &head, body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

/// A request with arbitrary headers (cookies, CSRF tokens), for the dashboard's session API.
pub fn request_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut s = send_raw(addr, &head, body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}

/// A throw-away database on the PostgreSQL server of the tests (`$HEARTH_TEST_POSTGRES_URL`, default
/// postgres://postgres@127.0.0.1:5432): created on `create`, dropped (with its connections) when this is dropped —
/// also when the test panics. Sync, so it works from sync and async tests alike.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

fn pg_base() -> String {
    std::env::var("HEARTH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Runs `work` on a connection to `url`, on a thread of its own with its own runtime (no nested runtimes), so it
/// works from sync and async tests alike.
fn on_pg<T: Send + 'static>(
    url: String,
    work: impl FnOnce(sqlx::PgConnection) -> futures_util::future::BoxFuture<'static, T>
        + Send
        + 'static,
) -> T {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let c = sqlx::PgConnection::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {url} is required for this test: {e}"));
            work(c).await
        })
    })
    .join()
    .unwrap()
}

/// Runs one statement on the server's `postgres` database.
fn pg_admin(sql: String) {
    pg_exec(&format!("{}/postgres", pg_base()), &sql);
}

/// Runs one query on a PostgreSQL database and returns its rows as (text, count) pairs.
pub fn pg_counts(url: &str, sql: &str) -> Vec<(String, i64)> {
    let sql = sql.to_owned();
    on_pg(url.to_owned(), move |mut c| {
        Box::pin(async move {
            use sqlx::Row;
            sqlx::query(&sql)
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get::<Option<String>, _>(0).unwrap_or_default(),
                        r.get::<i64, _>(1),
                    )
                })
                .collect()
        })
    })
}

/// Runs one statement on a PostgreSQL database.
pub fn pg_exec(url: &str, sql: &str) {
    let sql = sql.to_owned();
    on_pg(url.to_owned(), move |mut c| {
        Box::pin(async move {
            sqlx::query(&sql).execute(&mut c).await.unwrap();
        })
    })
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        let name = format!(
            "hearth_test_{}",
            hearth::auth::secrets::random_token(10).unwrap()
        );
        pg_admin(format!("CREATE DATABASE {name}"));
        PgDatabase {
            url: format!("{}/{name}", pg_base()),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        pg_admin(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// A one-file HTTP server on loopback: `GET /ok.gguf` → the file, `/junk.gguf` → not a GGUF file, anything else
/// → 404. Returns its base URL.
pub fn serve_file(file: std::path::PathBuf) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            reader.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split(' ').nth(1).unwrap_or("").to_owned();
            let body = match path.as_str() {
                "/ok.gguf" => std::fs::read(&file).unwrap(),
                "/junk.gguf" => b"this is not a GGUF file".to_vec(),
                _ => {
                    let _ = conn.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    base
}

/// Writes a CA and a certificate it signs for 127.0.0.1 (openssl): (ca.pem, node.pem, node.key).
pub fn ca_and_node_cert(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |n: &str| dir.join(n);
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let o = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=hearth test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "node.pem",
    ]);
    (p("ca.pem"), p("node.pem"), p("node.key"))
}
