//! Dashboard sign-in (`/auth/*`): password → session cookie + CSRF token, sign-out, the first admin's forced
//! password change, and the member's own keys (`/v1/me/keys`, any caller, own keys only).

use super::error::{ApiError, OpenAi, OpenAiErrorBody, Rendered};
use super::extract::{ApiJson, Body, Caller, Session};
use super::AppState;
use crate::auth::accounts::{self, INITIAL_PASSWORD_FILE};
use crate::auth::sessions::{self, SessionCaller, ABSOLUTE, COOKIE};
use crate::store::KeyRecord;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, Rendered<OpenAi>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/auth")
            .service(super::resource("/login").route(web::post().to(login)))
            .service(super::resource("/logout").route(web::post().to(logout)))
            .service(super::resource("/session").route(super::get_or_head().to(session)))
            .service(super::resource("/password").route(web::post().to(change_password))),
    )
    .service(super::resource("/v1/me/requests/{id}").route(super::get_or_head().to(my_request)))
    .service(
        web::scope("/v1/me/keys")
            .service(
                super::resource("")
                    .route(super::get_or_head().to(my_keys))
                    .route(web::post().to(create_my_key)),
            )
            .service(super::resource("/{id}").route(web::delete().to(revoke_my_key))),
    );
}

#[derive(Deserialize, ToSchema)]
pub struct Login {
    pub user: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordChange {
    pub current_password: String,
    #[schema(min_length = 8)]
    pub new_password: String,
}

impl Body for Login {}
impl Body for PasswordChange {}

/// What the dashboard knows about its session.
#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    pub user: String,
    /// `admin` or `member`.
    pub role: &'static str,
    /// Echo this in `X-CSRF-Token` on every POST/PUT/PATCH/DELETE made with the session cookie.
    pub csrf: String,
    /// The dashboard must ask for a new password before anything else.
    pub must_change_password: bool,
}

fn info(s: &SessionCaller) -> SessionInfo {
    SessionInfo {
        user: s.principal.user_name.clone(),
        role: s.principal.role.as_str(),
        csrf: s.csrf.clone(),
        must_change_password: s.must_change_password,
    }
}

/// Secure whenever the browser reached us over TLS: our own, or a proxy's that says so.
fn cookie<'a>(state: &AppState, req: &HttpRequest, value: &'a str, max_age: i64) -> Cookie<'a> {
    let tls = state.config.tls.is_some() || req.connection_info().scheme() == "https";
    Cookie::build(COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(tls)
        .max_age(actix_web::cookie::time::Duration::seconds(max_age))
        .finish()
}

/// Signs in with a user name and password; sets the session cookie.
#[utoipa::path(post, path = "/auth/login", tag = "dashboard", request_body = Login,
    responses((status = 200, body = SessionInfo), (status = 401, body = OpenAiErrorBody),
        (status = 429, description = "too many failed attempts for this user or address", body = OpenAiErrorBody)))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<Login, OpenAi>,
) -> Result<HttpResponse> {
    let ip = req.peer_addr().map(|a| a.ip());
    let new = state
        .auth
        .login(body.0.user.trim(), &body.0.password, ip)
        .await?;
    tracing::info!(user = %new.user.name, "dashboard sign-in");
    let role = crate::auth::Role::parse(&new.user.role)
        .ok_or_else(|| ApiError::Internal("bad role".into()))?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .cookie(cookie(&state, &req, &new.cookie, ABSOLUTE))
        .json(SessionInfo {
            user: new.user.name,
            role: role.as_str(),
            csrf: new.csrf,
            must_change_password: new.user.must_change_password,
        }))
}

/// Ends the session.
#[utoipa::path(post, path = "/auth/logout", tag = "dashboard",
    responses((status = 204, description = "signed out"), (status = 401, body = OpenAiErrorBody),
        (status = 403, description = "no CSRF token", body = OpenAiErrorBody)))]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: Session,
) -> Result<HttpResponse> {
    state.auth.logout(&s.0.id_hash).await?;
    Ok(HttpResponse::NoContent()
        .cookie(cookie(&state, &req, "", 0))
        .finish())
}

/// The signed-in user and the session's CSRF token.
#[utoipa::path(get, path = "/auth/session", tag = "dashboard",
    responses((status = 200, body = SessionInfo), (status = 401, body = OpenAiErrorBody)))]
pub async fn session(s: Session) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(info(&s.0)))
}

/// Changes the signed-in user's password (the current one is checked, under the sign-in brakes); other
/// sessions of the user end. Clears the first admin's forced change and deletes its password file.
#[utoipa::path(post, path = "/auth/password", tag = "dashboard", request_body = PasswordChange,
    responses((status = 200, body = SessionInfo), (status = 400, body = OpenAiErrorBody),
        (status = 401, body = OpenAiErrorBody), (status = 429, body = OpenAiErrorBody)))]
pub async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: Session,
    body: ApiJson<PasswordChange, OpenAi>,
) -> Result<HttpResponse> {
    let mut s = s.0;
    let b = body.0;
    let name = s.principal.user_name.clone();
    let ip = req.peer_addr().map(|a| a.ip());
    state
        .auth
        .check_password(&name, &b.current_password, ip)
        .await
        .map_err(|e| match e {
            sessions::LoginError::BadCredentials => {
                ApiError::invalid("the current password is wrong", Some("current_password"))
            }
            e => e.into(),
        })?;
    if b.new_password == b.current_password {
        return Err(ApiError::invalid(
            "the new password must differ from the current one",
            Some("new_password"),
        )
        .into());
    }
    accounts::set_password(&state.store, &name, &b.new_password).await?;
    state
        .store
        .delete_user_sessions(&s.principal.user_id, Some(&s.id_hash))
        .await?;
    if s.must_change_password {
        state
            .store
            .set_must_change_password(&s.principal.user_id, false)
            .await?;
        let file = state.state_dir.join(INITIAL_PASSWORD_FILE);
        if let Err(e) = std::fs::remove_file(&file) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %file.display(), error = %e, "could not delete the initial password file");
            }
        }
        s.must_change_password = false;
    }
    tracing::info!(user = %name, "password changed from the dashboard");
    Ok(HttpResponse::Ok().json(info(&s)))
}

#[derive(Deserialize, ToSchema)]
pub struct MyNewKey {
    #[serde(default)]
    pub name: String,
    /// Restrict the key to these models.
    pub models: Option<Vec<String>>,
    /// Lifetime, e.g. `"30d"`.
    #[schema(pattern = "^(0|([0-9]+(ms|s|m|h|d|w))+)$")]
    pub expires: Option<String>,
}

impl Body for MyNewKey {}

/// The caller's own API keys (never their secrets).
#[utoipa::path(get, path = "/v1/me/keys", tag = "openai", security(("api_key" = [])),
    responses((status = 200, body = Vec<KeyRecord>), (status = 401, body = OpenAiErrorBody)))]
pub async fn my_keys(state: web::Data<AppState>, who: Caller<OpenAi>) -> Result<HttpResponse> {
    refuse_keyless(&who)?;
    Ok(HttpResponse::Ok().json(state.store.list_keys(Some(&who.0.user_name)).await?))
}

/// A client admitted by its network alone may use the models, never mint or see keys (a key would carry that
/// access outside the network).
fn refuse_keyless(who: &Caller<OpenAi>) -> std::result::Result<(), ApiError> {
    if who.0.keyless {
        return Err(ApiError::Forbidden(
            "a client admitted without a key (keyless network) may not manage keys".into(),
        ));
    }
    Ok(())
}

/// Creates an API key for the caller; the response holds the only copy of it.
#[utoipa::path(post, path = "/v1/me/keys", tag = "openai", security(("api_key" = [])), request_body = MyNewKey,
    responses((status = 201, body = super::admin::CreatedKey), (status = 400, body = OpenAiErrorBody)))]
pub async fn create_my_key(
    state: web::Data<AppState>,
    who: Caller<OpenAi>,
    body: ApiJson<MyNewKey, OpenAi>,
) -> Result<HttpResponse> {
    refuse_keyless(&who)?;
    let k = body.0;
    // A key cannot widen what the key that made it may do.
    if let (Some(scope), Some(asked)) = (&who.0.models, &k.models) {
        if let Some(m) = asked.iter().find(|m| !scope.contains(m)) {
            return Err(ApiError::Forbidden(format!(
                "this key may not create a key for model '{m}'"
            ))
            .into());
        }
    }
    let models = k.models.or_else(|| who.0.models.clone());
    super::admin::issue_key(
        &state,
        &who.0.user_name,
        &k.name,
        models,
        k.expires.as_deref(),
    )
    .await
}

/// Revokes one of the caller's own keys.
#[utoipa::path(delete, path = "/v1/me/keys/{id}", tag = "openai", security(("api_key" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "revoked"), (status = 404, body = OpenAiErrorBody)))]
pub async fn revoke_my_key(
    state: web::Data<AppState>,
    who: Caller<OpenAi>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    refuse_keyless(&who)?;
    let id = path.into_inner();
    // Someone else's key is "not found", so ids cannot be probed.
    let mine = state
        .store
        .key(&id)
        .await?
        .is_some_and(|k| k.user_id == who.0.user_id && k.revoked_at.is_none());
    if !mine {
        return Err(ApiError::NotFound(format!("key '{id}' not found or already revoked")).into());
    }
    super::admin::withdraw_key(&state, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// One of the caller's requests as the ledger has it: tokens, duration, device and energy (written when the
/// request ends; 404 until then). The id is the `x-request-id` header of the generation's response.
#[utoipa::path(get, path = "/v1/me/requests/{id}", tag = "openai", security(("api_key" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::store::UsageRow), (status = 404, body = OpenAiErrorBody)))]
pub async fn my_request(
    state: web::Data<AppState>,
    who: Caller<OpenAi>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    match state.store.request_of(&who.0.user_id, &id).await? {
        Some(row) => Ok(HttpResponse::Ok().json(row)),
        None => Err(ApiError::NotFound(format!("request '{id}' not found")).into()),
    }
}
