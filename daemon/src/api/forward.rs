//! Routing at the door (with `cluster.secret`). A generation or embedding request for a model that another node
//! should serve (`cluster::placement`) is sent there before any handler runs: this node neither admits it nor
//! writes a ledger row, the serving node does both, so quota is charged once and the ledger names the node that
//! did the work. The answer — a stream included — passes back unchanged; if the other node dies mid-stream the
//! stream ends with an error event in the API's own shape. A request another node forwarded must carry a valid
//! cluster credential and is always served here (never forwarded again).

use super::error::ApiError;
use super::AppState;
use crate::cluster::credential::{self, Refusal};
use crate::cluster::forward::{ForwardError, Outgoing, Reply};
use crate::cluster::placement::Target;
use crate::cluster::{InFlight, Router};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};
use futures_util::StreamExt;

/// The requests that name a model in their body: these are routed.
const ROUTED: &[&str] = &[
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/api/show",
];

/// The models a caller can reach through this node: its own, then the ones only other live nodes have (with
/// `cluster.secret`; their requests are forwarded).
pub async fn reachable_models(state: &AppState) -> Result<Vec<crate::models::Manifest>, ApiError> {
    let mut list = state
        .sched
        .models()
        .list()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(router) = &state.router {
        match router.peer_models(&list).await {
            Ok(more) => list.extend(more),
            Err(e) => {
                tracing::warn!(error = %e, "reading other nodes' models failed; listing this node's")
            }
        }
    }
    Ok(list)
}

/// Request headers that belong to one connection, not to the request (RFC 9110 §7.6.1), and ours.
const HOP: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "content-length",
    "accept-encoding",
    credential::HEADER,
];

/// Tells the forwarding node that this node refused its credential (as opposed to the caller's API key).
const REFUSED: &str = "x-hearth-cluster-refused";
/// The node that served a routed request.
pub const SERVED_BY: &str = "x-hearth-node";

type Res<B> = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>;

pub async fn route<B: MessageBody + 'static>(mut req: ServiceRequest, next: Next<B>) -> Res<B> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let Some(router) = state.router.clone() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let routed = req.method() == actix_web::http::Method::POST && ROUTED.contains(&req.path());
    if let Some(value) = req.headers().get(credential::HEADER).cloned() {
        return match refusal(&state, &router, &req, &value) {
            None => served_here(next, req, &router.me, routed).await,
            Some(resp) => Ok(req.into_response(resp).map_into_right_body()),
        };
    }
    if !routed {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let body = match read_body(&mut req, state.config.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            let resp = super::render_for_path(req.request(), &e);
            return Ok(req.into_response(resp).map_into_right_body());
        }
    };
    // The body goes back for the handler whatever happens next (it reports a malformed one).
    req.set_payload(Payload::from(body.clone()));
    let Some(model) = serde_json::from_slice::<Peek>(&body)
        .ok()
        .and_then(|p| p.model)
    else {
        return served_here(next, req, &router.me, true).await;
    };
    let targets = match router.targets(&model).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "reading the node registry failed; serving here");
            vec![Target::Here]
        }
    };
    let mut failures = Vec::new();
    for t in targets {
        let peer = match t {
            Target::Here => return served_here(next, req, &router.me, true).await,
            Target::Peer(p) => p,
        };
        let inflight = router.sending(&peer.name);
        let out = outgoing(&router, &req, &peer.name, &peer.url, body.to_vec());
        let count = |outcome: &str| {
            state
                .metrics
                .serving
                .forwarded
                .with_label_values(&[&peer.name, outcome])
                .inc()
        };
        match router.client.send(out).await {
            Ok(reply)
                if reply
                    .headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case(REFUSED)) =>
            {
                count("refused");
                tracing::error!(node = %peer.name, "that node refused this node's cluster credential: \
                    cluster.secret differs between them (or their clocks are more than 10 minutes apart)");
                failures.push(format!(
                    "node '{}' refused this node's cluster credential",
                    peer.name
                ));
            }
            Ok(reply) => {
                count("ok");
                tracing::debug!(node = %peer.name, model = %model, status = reply.status, "forwarded");
                let resp = relayed(reply, inflight, &peer.name);
                return Ok(req.into_response(resp).map_into_right_body());
            }
            Err(e @ ForwardError::Unreachable { .. }) => {
                count("unreachable");
                tracing::warn!(error = %e, "forwarding: trying the next node");
                failures.push(e.to_string());
            }
            Err(e) => {
                // The request reached the node: running it again elsewhere could run it twice.
                count("broken");
                tracing::warn!(error = %e, "forwarding failed");
                let resp =
                    super::render_for_path(req.request(), &ApiError::Upstream(e.to_string()));
                return Ok(req.into_response(resp).map_into_right_body());
            }
        }
    }
    let e = ApiError::Unavailable(format!(
        "model '{model}' is served by other nodes, and none could take the request: {}",
        failures.join("; ")
    ));
    let resp = super::render_for_path(req.request(), &e);
    Ok(req.into_response(resp).map_into_right_body())
}

#[derive(serde::Deserialize)]
struct Peek {
    model: Option<String>,
}

/// The handlers, with the serving node named on a routed request's answer.
async fn served_here<B: MessageBody + 'static>(
    next: Next<B>,
    req: ServiceRequest,
    me: &str,
    routed: bool,
) -> Res<B> {
    let mut res = next.call(req).await?;
    if routed {
        if let Ok(v) = HeaderValue::from_str(me) {
            res.headers_mut()
                .insert(HeaderName::from_static(SERVED_BY), v);
        }
    }
    Ok(res.map_into_left_body())
}

/// Checks the credential of a request another node forwarded: None when it holds; else the 403 (logged and
/// counted).
fn refusal(
    state: &AppState,
    router: &Router,
    req: &ServiceRequest,
    value: &HeaderValue,
) -> Option<HttpResponse> {
    let path = path_and_query(req);
    let checked = value
        .to_str()
        .map_err(|_| Refusal::Malformed)
        .and_then(|v| {
            router
                .credential
                .verify(v, req.method().as_str(), path, crate::store::now())
        });
    match checked {
        Ok(sender) => {
            if sender.skew.unsigned_abs() > state.config.cluster.lease.as_secs() {
                tracing::warn!(node = %sender.node, skew_s = sender.skew,
                    "that node's clock is further from this one's than cluster.lease: batch leases and cron \
                     ticks will misbehave; keep the clocks in step (NTP)");
            }
            None
        }
        Err(r) => {
            let reason = match r {
                Refusal::Malformed => "malformed",
                Refusal::BadSignature(_) => "bad_signature",
                Refusal::Skew { .. } => "skew",
            };
            state
                .metrics
                .serving
                .cluster_refused
                .with_label_values(&[reason])
                .inc();
            let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::error!(from = %peer, path = %req.path(), error = %r, "refused a forwarded request");
            let e = ApiError::Forbidden(format!("refused by node '{}': {r}", router.me));
            let mut resp = super::render_for_path(req.request(), &e);
            resp.headers_mut().insert(
                HeaderName::from_static(REFUSED),
                HeaderValue::from_static("1"),
            );
            Some(resp)
        }
    }
}

/// What a credential signs and a forward requests: the path with its query.
fn path_and_query(req: &ServiceRequest) -> &str {
    req.uri()
        .path_and_query()
        .map_or(req.path(), |p| p.as_str())
}

/// The request body, up to the configured limit (413 past it, in the API's shape).
async fn read_body(req: &mut ServiceRequest, limit: usize) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut payload = req.take_payload();
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("reading the body: {e}"), None))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The request as it goes to `peer`: its method, path, query and headers, signed with this node's credential.
fn outgoing(
    router: &Router,
    req: &ServiceRequest,
    peer: &str,
    url: &str,
    body: Vec<u8>,
) -> Outgoing {
    let path = path_and_query(req).to_owned();
    let method = req.method().as_str().to_owned();
    let mut headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter(|(k, _)| !HOP.contains(&k.as_str()) && k.as_str() != "x-forwarded-for")
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let client = req.peer_addr().map(|a| a.ip().to_string());
    let chain = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    if let Some(ip) = client {
        let v = chain.map_or_else(|| ip.clone(), |c| format!("{c}, {ip}"));
        headers.push(("x-forwarded-for".into(), v));
    }
    headers.push(("accept-encoding".into(), "identity".into()));
    let signed = router
        .credential
        .sign(&router.me, crate::store::now(), &method, &path);
    headers.push((credential::HEADER.into(), signed));
    Outgoing {
        node: peer.to_owned(),
        method,
        url: format!("{url}{path}"),
        headers,
        body,
    }
}

/// What a streamed answer must end with; anything else means the serving node stopped mid-stream.
#[derive(Clone, Copy, PartialEq)]
enum Stream {
    /// OpenAI's server-sent events: the last is `data: [DONE]`.
    Events,
    /// Ollama's NDJSON: the last line has `"done": true`.
    Lines,
    Whole,
}

impl Stream {
    fn ended(self, last: &[u8]) -> bool {
        match self {
            Stream::Events => last == b"data: [DONE]",
            Stream::Lines => {
                serde_json::from_slice::<serde_json::Value>(last).is_ok_and(|v| v["done"] == true)
            }
            Stream::Whole => true,
        }
    }

    /// The event that ends a stream cut short, in its API's shape.
    fn error_event(self, message: &str) -> web::Bytes {
        match self {
            Stream::Events => {
                let e = serde_json::json!({"error": {"message": message, "type": "server_error",
                                                     "param": null, "code": "upstream_error"}});
                web::Bytes::from(format!("data: {e}\n\n"))
            }
            Stream::Lines => {
                web::Bytes::from(format!("{}\n", serde_json::json!({"error": message})))
            }
            Stream::Whole => web::Bytes::new(),
        }
    }
}

/// The other node's answer as this node's response. Its body passes through piece by piece; the last complete
/// line is kept to tell a finished stream from one whose node died.
fn relayed(reply: Reply, inflight: InFlight, node: &str) -> HttpResponse {
    let mut b =
        HttpResponse::build(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY));
    let mut kind = Stream::Whole;
    for (k, v) in &reply.headers {
        let lower = k.to_ascii_lowercase();
        if HOP.contains(&lower.as_str()) || lower == "date" || lower == REFUSED {
            continue;
        }
        if lower == "content-type" && reply.status == 200 {
            if v.starts_with("text/event-stream") {
                kind = Stream::Events;
            } else if v.starts_with("application/x-ndjson") {
                kind = Stream::Lines;
            }
        }
        b.append_header((k.as_str(), v.as_str()));
    }
    struct Relay {
        body: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
        kind: Stream,
        line: Vec<u8>,
        last: Vec<u8>,
        node: String,
        finished: bool,
        _inflight: InFlight,
    }
    let relay = Relay {
        body: reply.body,
        kind,
        line: Vec::new(),
        last: Vec::new(),
        node: node.to_owned(),
        finished: false,
        _inflight: inflight,
    };
    let body = futures_util::stream::unfold(relay, |mut r| async move {
        if r.finished {
            return None;
        }
        let piece = r.body.recv().await;
        let out = match piece {
            Some(Ok(bytes)) => {
                if r.kind != Stream::Whole {
                    for &c in &bytes {
                        if c == b'\n' {
                            let line = std::mem::take(&mut r.line);
                            let line = line.strip_suffix(b"\r").unwrap_or(&line).to_vec();
                            if !line.is_empty() {
                                r.last = line;
                            }
                        } else {
                            r.line.push(c);
                        }
                    }
                }
                web::Bytes::from(bytes)
            }
            Some(Err(e)) => {
                r.finished = true;
                tracing::warn!(node = %r.node, error = %e, "the serving node broke off its answer");
                r.kind
                    .error_event(&format!("node '{}' stopped answering mid-stream: {e}", r.node))
            }
            None if r.kind.ended(&r.last) => return None,
            None => {
                r.finished = true;
                tracing::warn!(node = %r.node, "the serving node's stream ended before its last event");
                r.kind.error_event(&format!(
                    "node '{}' stopped answering mid-stream (its stream ended early)",
                    r.node
                ))
            }
        };
        Some((Ok::<_, actix_web::Error>(out), r))
    })
    .filter(|b| std::future::ready(!matches!(b, Ok(b) if b.is_empty())));
    b.streaming(body)
}
