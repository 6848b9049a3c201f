//! The admin dashboard: `admin-ui/dist` (built by `npm run build` in admin-ui/) embedded in the binary and
//! served at `/` with a strict Content-Security-Policy. A build made without Node.js has no dist and serves a
//! page that says how to build it. The app routes by URL fragment (`/#/users`), so `/admin`, `/api` and `/v1`
//! stay the APIs'.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

#[derive(rust_embed::Embed)]
#[folder = "../admin-ui/dist"]
#[allow_missing = true]
struct Assets;

/// Scripts and styles only from this origin (no inline script, no eval), nothing may frame the dashboard, and
/// it talks to nothing but this daemon.
pub const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    for (path, page) in [("/", index as fn() -> _), ("/index.html", index)] {
        cfg.service(super::resource(path).route(super::get_or_head().to(page)));
    }
    cfg.service(super::resource("/assets/{file:.*}").route(super::get_or_head().to(asset)))
        .service(super::resource("/favicon.svg").route(super::get_or_head().to(asset_root)));
}

const NOT_BUILT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Hearth</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
<h1>Hearth is running</h1>
<p>This build of <code>hearth</code> has no dashboard: it was compiled without <code>admin-ui/dist</code>.
The APIs work as usual (<a href="/docs">API docs</a>).</p>
<p>To build the dashboard, install Node.js 20 or later and run, in the source tree:</p>
<pre>cd admin-ui &amp;&amp; npm ci &amp;&amp; npm run build &amp;&amp; cd .. &amp;&amp; cargo build --release -p hearth</pre>
<p><code>make run</code> and <code>make test</code> do this for you.</p>
</body></html>"#;

/// Whether this binary carries the dashboard.
pub fn built() -> bool {
    Assets::get("index.html").is_some()
}

fn page(body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

pub async fn index() -> HttpResponse {
    match Assets::get("index.html") {
        Some(f) => page(f.data.into_owned()),
        None => page(NOT_BUILT.as_bytes().to_vec()),
    }
}

fn serve(path: &str) -> HttpResponse {
    match Assets::get(path) {
        Some(f) => HttpResponse::Ok()
            .content_type(f.metadata.mimetype())
            .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
            // Vite names assets by content hash: a new build is a new name.
            .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
            .body(f.data.into_owned()),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(format!("no dashboard file {path}")),
    }
}

pub async fn asset(req: HttpRequest) -> HttpResponse {
    let file = req.match_info().query("file");
    serve(&format!("assets/{file}"))
}

pub async fn asset_root(req: HttpRequest) -> HttpResponse {
    serve(req.path().trim_start_matches('/'))
}
