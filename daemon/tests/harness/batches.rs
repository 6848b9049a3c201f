//! OpenAI's Files and Batch API as the tests drive it: upload a JSONL file, create a batch, wait for it, read the
//! output.

use super::*;
use serde_json::{json, Value};

pub const BOUNDARY: &str = "hearthtestboundary7MA4YWxk";

/// `POST /v1/files` as multipart/form-data.
pub fn upload(d: &Daemon, key: &str, purpose: &str, content: &[u8]) -> Resp {
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n\
             --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"input.jsonl\"\r\n\
             Content-Type: application/jsonl\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let head = format!(
        "POST /v1/files HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        d.addr,
        body.len()
    );
    let mut s = send_raw(&d.addr, &head, &body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

pub fn line(id: &str, url: &str, content: &str, max_tokens: u32) -> String {
    json!({"custom_id": id, "method": "POST", "url": url,
           "body": {"model": "smollm2", "messages": [{"role": "user", "content": content}],
                    "max_tokens": max_tokens, "temperature": 0}})
    .to_string()
}

pub fn create(d: &Daemon, key: &str, file: &str) -> Resp {
    d.post(
        "/v1/batches",
        Some(key),
        &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
    )
}

/// Polls a batch until `done` holds for it (120 s at most).
pub fn wait_batch(d: &Daemon, key: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let t = Instant::now();
    loop {
        let b = d.get(&format!("/v1/batches/{id}"), Some(key)).json();
        if done(&b) {
            return b;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "batch stuck: {b}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn ended(b: &Value) -> bool {
    ["completed", "failed", "cancelled", "expired"].contains(&b["status"].as_str().unwrap_or(""))
}

pub fn jsonl(d: &Daemon, key: &str, file: &Value) -> Vec<Value> {
    let r = d.get(
        &format!("/v1/files/{}/content", file.as_str().unwrap()),
        Some(key),
    );
    assert_eq!(r.status, 200);
    r.text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
