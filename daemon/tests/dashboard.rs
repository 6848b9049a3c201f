//! The dashboard's server side over real HTTP: the embedded app and its security headers, sign-in with the
//! first admin's forced password change, session cookies, CSRF, sign-in brakes, the member's own keys and the
//! refusal of admin pages, sign-out, and usage reports carrying joules.
#![allow(clippy::unwrap_used)]

mod harness;

use harness::*;
use serde_json::json;

/// A browser-like client: one session cookie and its CSRF token.
struct Browser<'a> {
    d: &'a Daemon,
    cookie: String,
    csrf: String,
}

impl Browser<'_> {
    fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>, csrf: bool) -> Resp {
        let cookie = format!("hearth_session={}", self.cookie);
        let mut headers = vec![("Cookie", cookie.as_str())];
        if csrf {
            headers.push(("X-CSRF-Token", self.csrf.as_str()));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        request_with(&self.d.addr, method, path, &headers, body.as_bytes())
    }
    fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None, false)
    }
    fn post(&self, path: &str, body: serde_json::Value) -> Resp {
        self.call("POST", path, Some(body), true)
    }
}

fn login_raw(d: &Daemon, user: &str, password: &str) -> Resp {
    request_with(
        &d.addr,
        "POST",
        "/auth/login",
        &[],
        json!({"user": user, "password": password})
            .to_string()
            .as_bytes(),
    )
}

fn sign_in<'a>(d: &'a Daemon, user: &str, password: &str) -> (Browser<'a>, serde_json::Value) {
    let r = login_raw(d, user, password);
    assert_eq!(r.status, 200, "{}", r.text());
    let set = r.header("set-cookie").unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "cookie lacks {attr}: {set}");
    }
    assert!(
        !set.contains("Secure"),
        "plain HTTP: no Secure flag ({set})"
    );
    let cookie = set
        .strip_prefix("hearth_session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let info = r.json();
    let b = Browser {
        d,
        cookie,
        csrf: info["csrf"].as_str().unwrap().to_owned(),
    };
    (b, info)
}

#[test]
fn the_dashboard_is_served_with_a_strict_policy() {
    let d = Daemon::start();
    let r = request(&d.addr, "GET", "/", None, b"");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let csp = r.header("content-security-policy").unwrap();
    for part in [
        "script-src 'self'",
        "frame-ancestors 'none'",
        "default-src 'self'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    let html = r.text();
    if html.contains("/assets/") {
        // Built with the app: no inline script, and every asset it names is served.
        assert!(!html.contains("<script>"), "inline script in {html}");
        for part in html.split("\"/assets/").skip(1) {
            let file = part.split('"').next().unwrap();
            let a = request(&d.addr, "GET", &format!("/assets/{file}"), None, b"");
            assert_eq!(a.status, 200, "/assets/{file}");
            assert!(a.header("cache-control").unwrap().contains("immutable"));
        }
    } else {
        assert!(html.contains("npm run build"), "{html}");
    }
    // The APIs keep their own 404s; the app routes by fragment.
    assert_eq!(
        request(&d.addr, "GET", "/assets/nothing.js", None, b"").status,
        404
    );
    assert_eq!(request(&d.addr, "HEAD", "/", None, b"").status, 200);
}

#[test]
fn sign_in_sessions_csrf_and_the_members_own_keys() {
    let d = Daemon::start();
    let first = std::fs::read_to_string(d.state.path().join("initial-admin-password")).unwrap();
    let first = first.trim();

    // Wrong password, unknown user: the same answer.
    for (u, p) in [("admin", "wrong-password"), ("nobody", first)] {
        let r = login_raw(&d, u, p);
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "invalid_credentials");
    }

    // The first admin must choose a password before anything else.
    let (admin, info) = sign_in(&d, "admin", first);
    assert_eq!(info["role"], "admin");
    assert_eq!(info["must_change_password"], true);
    let r = admin.get("/admin/users");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("change your password first"));
    // A state-changing request without the CSRF token is refused, even with a valid cookie.
    let r = admin.call(
        "POST",
        "/auth/password",
        Some(json!({"current_password": first, "new_password": "hearth-admin-pw"})),
        false,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("CSRF"));
    let r = admin.post(
        "/auth/password",
        json!({"current_password": "not-it", "new_password": "hearth-admin-pw"}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = admin.post(
        "/auth/password",
        json!({"current_password": first, "new_password": "hearth-admin-pw"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["must_change_password"], false);
    assert!(
        !d.state.path().join("initial-admin-password").exists(),
        "the generated password's file is deleted once replaced"
    );
    assert_eq!(admin.get("/admin/users").status, 200);
    assert_eq!(login_raw(&d, "admin", first).status, 401);

    // The admin creates a member through the same API the dashboard uses (cookie + CSRF).
    let r = admin.call(
        "POST",
        "/admin/users",
        Some(json!({"name": "bob", "password": "bob-password"})),
        false,
    );
    assert_eq!(r.status, 403, "CSRF-less POST refused: {}", r.text());
    let r = admin.post(
        "/admin/users",
        json!({"name": "bob", "password": "bob-password"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = admin.post(
        "/admin/keys",
        json!({"user": "admin", "name": "admin-laptop"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let admins_key_id = r.json()["id"].as_str().unwrap().to_owned();

    // The member: no admin pages, but their own usage and keys.
    let (bob, info) = sign_in(&d, "bob", "bob-password");
    assert_eq!(info["role"], "member");
    assert_eq!(info["must_change_password"], false);
    for path in [
        "/admin/users",
        "/admin/usage",
        "/admin/overview",
        "/admin/models",
    ] {
        assert_eq!(bob.get(path).status, 403, "{path}");
    }
    assert_eq!(bob.get("/v1/me/usage").json()["user"], "bob");
    let r = bob.post("/v1/me/keys", json!({"name": "phone", "expires": "30d"}));
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["id"].as_str().unwrap().to_owned();
    assert!(created["expires_at"].as_i64().is_some());
    let mine = bob.get("/v1/me/keys").json();
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert!(
        !mine.to_string().contains(&key),
        "listings never show secrets"
    );
    // The new key works through the OpenAI API…
    let r = d.post(
        "/v1/chat/completions",
        Some(&key),
        &chat("Hi", json!({"max_tokens": 4})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // …and a member cannot revoke someone else's key: it does not exist for them.
    let r = bob.call(
        "DELETE",
        &format!("/v1/me/keys/{admins_key_id}"),
        None,
        true,
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = bob.call("DELETE", &format!("/v1/me/keys/{key_id}"), None, false);
    assert_eq!(r.status, 403, "DELETE without CSRF: {}", r.text());
    let r = bob.call("DELETE", &format!("/v1/me/keys/{key_id}"), None, true);
    assert_eq!(r.status, 204, "{}", r.text());
    let r = d.post(
        "/v1/chat/completions",
        Some(&key),
        &chat("Hi", json!({"max_tokens": 4})),
    );
    assert_eq!(r.status, 401, "revoked at once: {}", r.text());

    // The session chats through the OpenAI API too (the Playground), CSRF included.
    let body = chat("Hi", json!({"max_tokens": 4}));
    assert_eq!(
        bob.call("POST", "/v1/chat/completions", Some(body.clone()), false)
            .status,
        403
    );
    assert_eq!(
        bob.call("POST", "/v1/chat/completions", Some(body), true)
            .status,
        200
    );

    // Usage reports carry joules (a number, zero without a power sensor).
    let u = admin.get("/admin/usage?group_by=user").json();
    let row = u["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "bob")
        .unwrap()
        .clone();
    assert!(row["joules"].as_f64().is_some(), "{row}");
    assert_eq!(row["requests"], 2);
    // What bob sees of himself, the admin sees of bob.
    let mine = bob.get("/v1/me/usage").json();
    let theirs = admin.get("/admin/users/bob/usage").json();
    assert_eq!(mine["today"], theirs["today"]);
    assert_eq!(mine["limits"], theirs["limits"]);
    assert_eq!(bob.get("/admin/users/bob/usage").status, 403);

    // An admin resetting bob's password signs bob out everywhere; so does disabling.
    let r = admin.call(
        "PATCH",
        "/admin/users/bob",
        Some(json!({"password": "bob-new-password"})),
        true,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(bob.get("/v1/me/usage").status, 401);
    let (bob, _) = sign_in(&d, "bob", "bob-new-password");
    let r = admin.call(
        "PATCH",
        "/admin/users/bob",
        Some(json!({"disabled": true})),
        true,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(bob.get("/v1/me/usage").status, 401);
    assert_eq!(login_raw(&d, "bob", "bob-new-password").status, 401);

    // Sign-out ends the session on the server, not just in the browser.
    let r = admin.post("/auth/logout", json!({}));
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(admin.get("/auth/session").status, 401);
    assert_eq!(admin.get("/admin/users").status, 401);
    // The API key of the same admin is unaffected.
    assert_eq!(d.get("/admin/users", Some(&d.admin_key)).status, 200);
}

#[test]
fn sign_in_attempts_are_braked_per_user() {
    let d = Daemon::start();
    ok_stdout(&hearth_stdin(
        d.state.path(),
        &["user", "add", "carol", "--password-stdin"],
        Some("carol-password\n"),
    ));
    for i in 0..5 {
        let r = login_raw(&d, "carol", "guess-number-x");
        assert_eq!(r.status, 401, "attempt {i}: {}", r.text());
    }
    let r = login_raw(&d, "carol", "guess-number-x");
    assert_eq!(r.status, 429, "{}", r.text());
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(r.text().contains("too many failed sign-in attempts"));
    // Braked means braked: the right password waits too, and nothing was checked.
    assert_eq!(login_raw(&d, "carol", "carol-password").status, 429);
    // Another user from the same address still signs in.
    let first = std::fs::read_to_string(d.state.path().join("initial-admin-password")).unwrap();
    assert_eq!(login_raw(&d, "admin", first.trim()).status, 200);
}

#[test]
fn admins_import_a_server_file_and_bad_files_are_clear_errors() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("broken.gguf");
    std::fs::write(&corrupt, b"GGUF\x03\x00\x00\x00 not really").unwrap();
    let import =
        |body: serde_json::Value| d.post("/admin/models/import", Some(&d.admin_key), &body);
    let r = import(json!({"path": corrupt.to_str().unwrap()}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("broken.gguf"),
        "names the file: {}",
        r.text()
    );
    let r = import(json!({"path": "/nonexistent/model.gguf"}));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = import(json!({"path": demo_model().to_str().unwrap(), "name": "smollm2"}));
    assert_eq!(r.status, 409, "{}", r.text());
    let r = import(json!({"path": demo_model().to_str().unwrap(), "name": "bad name!"}));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = import(json!({"path": demo_model().to_str().unwrap(), "name": "smol-copy"}));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["architecture"], "llama");
    let listed = d.get("/admin/models", Some(&d.admin_key)).json();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "smol-copy"));
    // Members may not.
    let member = d.member_key("eve", None);
    let r = d.post(
        "/admin/models/import",
        Some(&member),
        &json!({"path": demo_model().to_str().unwrap(), "name": "x"}),
    );
    assert_eq!(r.status, 403);
}

fn wait_pull(d: &Daemon, name: &str) -> serde_json::Value {
    for _ in 0..600 {
        let list = d.get("/admin/models/pulls", Some(&d.admin_key)).json();
        if let Some(p) = list.as_array().unwrap().iter().find(|p| p["name"] == name) {
            if p["state"] == "done" || p["state"] == "failed" {
                return p.clone();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("pull of {name} did not end");
}

#[test]
fn models_are_pulled_over_http_with_progress_and_bad_downloads_are_clear_errors() {
    let d = Daemon::start();
    let base = serve_file(demo_model());
    let pull = |url: String, name: &str| {
        d.post(
            "/admin/models/pull",
            Some(&d.admin_key),
            &json!({"url": url, "name": name}),
        )
    };
    assert_eq!(pull("ftp://x/y.gguf".into(), "x").status, 400);
    assert_eq!(pull(format!("{base}/ok.gguf"), "smollm2").status, 409);
    let r = pull(format!("{base}/ok.gguf"), "pulled");
    assert_eq!(r.status, 202, "{}", r.text());
    let p = wait_pull(&d, "pulled");
    assert_eq!(p["state"], "done", "{p}");
    let size = std::fs::metadata(demo_model()).unwrap().len();
    assert_eq!(p["bytes"], size);
    assert_eq!(p["total"], size);
    let listed = d.get("/admin/models", Some(&d.admin_key)).json();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "pulled"));
    // The pulled model serves.
    let mut body = chat("Hi", json!({"max_tokens": 3}));
    body["model"] = json!("pulled");
    assert_eq!(
        d.post("/v1/chat/completions", Some(&d.admin_key), &body)
            .status,
        200
    );

    assert_eq!(pull(format!("{base}/missing.gguf"), "missing").status, 202);
    let p = wait_pull(&d, "missing");
    assert_eq!(p["state"], "failed");
    assert!(p["error"].as_str().unwrap().contains("404"), "{p}");
    assert_eq!(pull(format!("{base}/junk.gguf"), "junk").status, 202);
    let p = wait_pull(&d, "junk");
    assert_eq!(p["state"], "failed");
    assert!(
        p["error"].as_str().unwrap().to_lowercase().contains("gguf"),
        "{p}"
    );
    // Failed pulls leave nothing behind.
    let listed = d.get("/admin/models", Some(&d.admin_key)).json();
    assert!(!listed
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "junk" || m["name"] == "missing"));
    let leftovers: Vec<_> = std::fs::read_dir(d.state.path().join("models"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".pull-"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind");

    // The CLI does the same, with progress on stderr.
    let o = d.cli(&[
        "model",
        "pull",
        &format!("{base}/ok.gguf"),
        "--name",
        "pulled-cli",
    ]);
    let out = ok_stdout(&o);
    assert!(out.contains("pulled-cli"), "{out}");
}
