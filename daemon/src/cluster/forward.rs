//! Sending a request on to another node and passing its answer back as it arrives. One thread per forwarded
//! request runs a blocking HTTP(S) client (ureq, already used for model downloads) and hands the answer's body
//! over in pieces as they come off the socket, so a stream reaches the client token by token. Nothing here knows
//! which API the request speaks: bytes in, bytes out.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long to wait for a node to accept the connection before trying the next one.
const CONNECT: Duration = Duration::from_secs(3);
/// The longest silence between two pieces of an answer (a long prompt's prefill, a slow non-streamed answer);
/// a node that vanishes without closing its connections is noticed after this.
const SILENCE: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No connection was made: nothing reached the node, the next one may be tried.
    #[error("cannot reach node '{node}' at {url}: {message}")]
    Unreachable {
        node: String,
        url: String,
        message: String,
    },
    /// The request was sent and the node failed before answering.
    #[error("node '{node}' failed before answering: {message}")]
    Broken { node: String, message: String },
    #[error("cluster.ca {path}: {message}")]
    Ca { path: String, message: String },
}

/// A request as it goes to the other node.
pub struct Outgoing {
    pub node: String,
    pub method: String,
    /// The node's URL with the request's path and query.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The other node's answer: its status and headers, and its body as it arrives (an `Err` piece when the
/// connection broke before the body ended).
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: mpsc::Receiver<Result<Vec<u8>, String>>,
}

#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    /// A client that trusts the public CAs, or only the ones in `ca` when given.
    pub fn new(ca: Option<&Path>) -> Result<Client, ForwardError> {
        let mut b = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT)
            .timeout_read(SILENCE)
            .timeout_write(Duration::from_secs(30))
            // Nodes talk to nodes: a proxy in the environment is for the internet, not the LAN.
            .try_proxy_from_env(false)
            .redirects(0);
        if let Some(path) = ca {
            b = b.tls_config(Arc::new(tls_trusting(path)?));
        }
        Ok(Client { agent: b.build() })
    }

    /// Sends the request; resolves with the answer's head once the node has answered.
    pub async fn send(&self, out: Outgoing) -> Result<Reply, ForwardError> {
        let (head_tx, head_rx) = oneshot::channel();
        let agent = self.agent.clone();
        let node = out.node.clone();
        let spawned = std::thread::Builder::new()
            .name("hearth-forward".into())
            .spawn(move || relay(agent, out, head_tx));
        if let Err(e) = spawned {
            return Err(ForwardError::Broken {
                node,
                message: format!("cannot start a thread: {e}"),
            });
        }
        head_rx.await.unwrap_or_else(|_| {
            Err(ForwardError::Broken {
                node,
                message: "the forwarding thread ended".into(),
            })
        })
    }
}

fn tls_trusting(path: &Path) -> Result<rustls::ClientConfig, ForwardError> {
    let fail = |message: String| ForwardError::Ca {
        path: path.display().to_string(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::io::BufReader::new(file)) {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The forwarding thread: the request, then the body piece by piece until it ends, breaks, or the client that
/// asked goes away (the receiver is dropped; dropping the connection tells the other node to stop).
fn relay(agent: ureq::Agent, out: Outgoing, head: oneshot::Sender<Result<Reply, ForwardError>>) {
    let mut req = agent.request(&out.method, &out.url);
    for (k, v) in &out.headers {
        req = req.set(k, v);
    }
    let resp = match req.send_bytes(&out.body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => {
            let message = t.to_string();
            let e = match t.kind() {
                ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => {
                    ForwardError::Unreachable {
                        node: out.node,
                        url: out.url,
                        message,
                    }
                }
                _ => ForwardError::Broken {
                    node: out.node,
                    message,
                },
            };
            let _ = head.send(Err(e));
            return;
        }
    };
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_owned())))
        .collect();
    let (tx, rx) = mpsc::channel(32);
    let reply = Reply {
        status: resp.status(),
        headers,
        body: rx,
    };
    if head.send(Ok(reply)).is_err() {
        return;
    }
    let mut body = resp.into_reader();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let piece = match body.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => Ok(buf[..n].to_vec()),
            Err(e) => Err(e.to_string()),
        };
        let broke = piece.is_err();
        if tx.blocking_send(piece).is_err() || broke {
            return;
        }
    }
}
