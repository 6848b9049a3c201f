//! Request extractors that fail in the API's own error shape: a JSON body (size limit, UTF-8, the failing
//! field named) and the caller's identity.

use super::error::{ApiError, Flavor, OpenAi, Rendered};
use super::AppState;
use crate::auth::sessions::{self, SessionCaller};
use crate::auth::Principal;
use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::HttpMessage;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// A JSON request body.
pub struct ApiJson<T, F>(pub T, PhantomData<F>);

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("application state missing".into()))
}

/// A request body type. serde cannot name the failing field inside a `#[serde(flatten)]` part; such types
/// re-run that part alone over the parsed JSON (`refine`) so the error still names it.
pub trait Body: DeserializeOwned {
    fn refine(_json: &serde_json::Value) -> Option<ApiError> {
        None
    }
    /// A flattened body's members that no field took (refused by name later), where it keeps them.
    fn unclaimed(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        None
    }
}

/// Deserializes `T` from parsed JSON, returning the error that names the field, if `T` fails.
pub fn field_error<T: DeserializeOwned>(json: &serde_json::Value) -> Option<ApiError> {
    serde_path_to_error::deserialize::<_, T>(json)
        .err()
        .map(|e| {
            let path = e.path().to_string();
            if let Some(name) = unknown_field(&e.inner().to_string()) {
                return not_supported(&path, name);
            }
            let field = path.trim_start_matches('.').to_owned();
            ApiError::invalid(
                format!("invalid value for '{field}': {}", e.into_inner()),
                Some(&field),
            )
        })
}

/// Parses JSON text, naming the field that failed (`messages[1].content: invalid type …`).
pub fn parse_json<T: Body>(body: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::invalid(
            format!(
                "request body is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
            None,
        )
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::invalid(
            "request body is empty; expected a JSON object",
            None,
        ));
    }
    // Every body is an object: serde would otherwise read a struct from an array by position.
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::invalid(
            "the request body must be a JSON object",
            None,
        ));
    }
    let mut json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ApiError::invalid(format!("malformed JSON: {e}"), None))?;
    let mut nulls = Vec::new();
    strip_nulls(&mut json, &mut Vec::new(), &mut nulls);
    let body = deserialize::<T>(&json)?;
    // A `null` member no field takes is refused like any unknown member: `null` means "not given" only for
    // members the body has.
    for at in &nulls {
        if let Some(e) = unknown_null::<T>(&json, at) {
            return Err(e);
        }
    }
    Ok(body)
}

/// Where a stripped `null` member was: the keys and indices down to it.
#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// The refusal of the `null` member at `at` if the body has no such member: put back with a value, it is an
/// unknown field (or lands among a flattened body's unclaimed members).
fn unknown_null<T: Body>(json: &serde_json::Value, at: &[Step]) -> Option<ApiError> {
    let (Step::Key(name), parents) = at.split_last()? else {
        return None;
    };
    let mut probe = json.clone();
    let mut node = &mut probe;
    for step in parents {
        node = match step {
            Step::Key(k) => node.get_mut(k.as_str())?,
            Step::Index(i) => node.get_mut(*i)?,
        };
    }
    node.as_object_mut()?
        .insert(name.clone(), serde_json::json!({}));
    let parent: String = parents
        .iter()
        .map(|s| match s {
            Step::Key(k) => format!(".{k}"),
            Step::Index(i) => format!("[{i}]"),
        })
        .collect();
    match serde_path_to_error::deserialize::<_, T>(&probe) {
        Err(e) if unknown_field(&e.inner().to_string()) == Some(name.as_str()) => {
            Some(not_supported(&parent, name))
        }
        Ok(t) if parents.is_empty() && t.unclaimed().is_some_and(|u| u.contains_key(name)) => {
            Some(not_supported(".", name))
        }
        _ => None,
    }
}

fn deserialize<T: Body>(json: &serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // A flattened part loses the path: its own pass (`refine`) finds it again.
        if let Some(refined) = (path == ".").then(|| T::refine(json)).flatten() {
            return refined;
        }
        if let Some(name) = unknown_field(&inner) {
            return not_supported(&path, name);
        }
        if path == "." {
            ApiError::invalid(format!("invalid request: {inner}"), None)
        } else {
            let field = path.trim_start_matches('.');
            ApiError::invalid(format!("invalid value for '{field}': {inner}"), Some(field))
        }
    })
}

/// `null` means "not given", for every member of every object: clients that serialise each optional field
/// (generated SDKs do) send the same request as those that leave it out. Array elements are kept.
/// Records where each removed member was (`at` is the path so far).
fn strip_nulls(v: &mut serde_json::Value, at: &mut Vec<Step>, removed: &mut Vec<Vec<Step>>) {
    match v {
        serde_json::Value::Object(o) => {
            o.retain(|k, m| {
                if m.is_null() {
                    let mut p = at.clone();
                    p.push(Step::Key(k.clone()));
                    removed.push(p);
                }
                !m.is_null()
            });
            for (k, m) in o.iter_mut() {
                at.push(Step::Key(k.clone()));
                strip_nulls(m, at, removed);
                at.pop();
            }
        }
        serde_json::Value::Array(a) => {
            for (i, m) in a.iter_mut().enumerate() {
                at.push(Step::Index(i));
                strip_nulls(m, at, removed);
                at.pop();
            }
        }
        _ => {}
    }
}

/// The field serde's `deny_unknown_fields` refused (its message is "unknown field `x`, expected …").
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(name, _)| name)
}

/// The refusal of a field Hearth does not act on: a 400 that names it (`messages[0].images`), never a silent
/// drop. `parent` is serde's path of the object holding it ("." at the top).
pub fn not_supported(parent: &str, name: &str) -> ApiError {
    let parent = parent.trim_start_matches('.');
    // serde_path_to_error's path may already end at the member itself.
    let field = if parent.is_empty() {
        name.to_owned()
    } else if parent == name || parent.ends_with(&format!(".{name}")) {
        parent.to_owned()
    } else {
        format!("{parent}.{name}")
    };
    let hint = match name {
        "num_thread" | "num_gpu" | "main_gpu" | "num_batch" | "use_mmap" | "use_mlock" | "numa"
        | "low_vram" | "f16_kv" | "vocab_only" | "embedding_only" | "logits_all" => {
            " (a server setting here: see [engine] and [models.NAME] in docs/configuration.md)"
        }
        _ => " (docs/api.md lists the fields Hearth acts on)",
    };
    ApiError::invalid(
        format!("'{field}' is not supported by this server{hint}"),
        Some(&field),
    )
}

impl<T: Body + 'static, F: Flavor> FromRequest for ApiJson<T, F> {
    type Error = Rendered<F>;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = state(req).map(|s| s.config.max_body_bytes);
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            let limit = limit?;
            if declared.is_some_and(|n| n > limit) {
                return Err(ApiError::PayloadTooLarge(limit).into());
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    ApiError::invalid(format!("cannot read the request body: {e}"), None)
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge(limit).into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(ApiJson(parse_json(&body)?, PhantomData))
        })
    }
}

/// The authenticated caller: an API key (`Authorization: Bearer hth_…`) or, without one, a dashboard session
/// cookie. A session's state-changing requests must echo its CSRF token in `X-CSRF-Token`, and a session whose
/// user must change the password reaches nothing but `/auth/*` until it has.
pub struct Caller<F>(pub Principal, PhantomData<F>);

/// The session cookie's value, if the request has one.
pub fn session_cookie(req: &HttpRequest) -> Option<String> {
    req.cookie(sessions::COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Checks the CSRF header of a session's request (safe methods need none).
pub fn check_csrf(req: &HttpRequest, session: &SessionCaller) -> Result<(), ApiError> {
    if is_safe(req.method()) {
        return Ok(());
    }
    let sent = req
        .headers()
        .get(sessions::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if crate::auth::secrets::same_secret(sent.as_bytes(), session.csrf.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "missing or invalid CSRF token: a signed-in browser request that changes state must send the \
             session's token in X-CSRF-Token"
                .into(),
        ))
    }
}

impl<F: Flavor> FromRequest for Caller<F> {
    type Error = Rendered<F>;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Already resolved for this request (by `admin_first`): the same principal, no second look-up.
        if let Some(p) = req.extensions().get::<Principal>().cloned() {
            return Box::pin(async move { Ok(Caller(p, PhantomData)) });
        }
        let state = state(req);
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_owned));
        let cookie = session_cookie(req);
        let req = req.clone();
        Box::pin(async move {
            let state = state?;
            let p = match (header, cookie) {
                (Some(Ok(h)), _) => state.auth.authenticate(Some(&h)).await?,
                (Some(Err(_)), _) => {
                    return Err(ApiError::Unauthorized("invalid API key".into()).into())
                }
                (None, Some(c)) => {
                    let s = state.auth.verify_session(&c).await?;
                    check_csrf(&req, &s)?;
                    if s.must_change_password {
                        return Err(ApiError::Forbidden(
                            "change your password first (POST /auth/password)".into(),
                        )
                        .into());
                    }
                    s.principal
                }
                (None, None) => match req
                    .peer_addr()
                    .and_then(|a| state.config.keyless.user_for(a.ip()))
                {
                    // A listed network's keyless client: the configured user, as a member.
                    Some(user) => state.auth.keyless_principal(user).await?,
                    None => state.auth.authenticate(None).await?,
                },
            };
            // For the response middleware (`rate_headers`): whose limits to report.
            req.extensions_mut().insert(p.clone());
            Ok(Caller(p, PhantomData))
        })
    }
}

/// Middleware on `/admin`: the caller must be an admin before anything else happens, so a member or a stranger
/// gets 403 / 401 whatever the body (a handler's extractors run side by side, and a bad body could answer 400
/// first). The principal is kept in the request's extensions, where the handler's own `Admin` finds it.
pub async fn admin_first(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody>>,
    actix_web::Error,
> {
    match Admin::<OpenAi>::from_request(req.request(), &mut Payload::None).await {
        Ok(_) => Ok(next.call(req).await?.map_into_left_body()),
        Err(e) => Ok(req.error_response(e).map_into_right_body()),
    }
}

/// A dashboard session, for `/auth/*` (CSRF checked; a pending password change does not block it).
pub struct Session(pub SessionCaller);

impl FromRequest for Session {
    type Error = Rendered<OpenAi>;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = state(req);
        let cookie = session_cookie(req);
        let req = req.clone();
        Box::pin(async move {
            let state = state?;
            let cookie = cookie.ok_or_else(|| ApiError::Unauthorized("not signed in".into()))?;
            let s = state.auth.verify_session(&cookie).await?;
            check_csrf(&req, &s)?;
            Ok(Session(s))
        })
    }
}

/// An authenticated caller with the admin role.
pub struct Admin<F>(pub Principal, PhantomData<F>);

impl<F: Flavor> FromRequest for Admin<F> {
    type Error = Rendered<F>;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::<F>::from_request(req, payload);
        Box::pin(async move {
            let Caller(p, _) = caller.await?;
            if !p.is_admin() {
                return Err(
                    ApiError::Forbidden("this endpoint requires the admin role".into()).into(),
                );
            }
            Ok(Admin(p, PhantomData))
        })
    }
}
