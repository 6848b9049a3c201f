//! The credential one node presents to another when it forwards a request: an HMAC-SHA256, under the cluster's
//! shared secret, of the sending node, the time and the request line. The secret itself never crosses the wire,
//! and a signature copied off the network is good only for that method and path within `WINDOW` of its time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries it: `v1 node=NAME ts=UNIX sig=HEX`.
pub const HEADER: &str = "x-hearth-cluster";

/// How far the sender's clock may be from ours before a forwarded request is refused (a signature older than
/// this is not accepted again).
pub const WINDOW: i64 = 600;

#[derive(Clone)]
pub struct Credential {
    secret: Vec<u8>,
}

/// Why a forwarded request was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refusal {
    #[error("malformed cluster credential")]
    Malformed,
    #[error("the cluster credential of node '{0}' does not match this node's cluster.secret")]
    BadSignature(String),
    #[error("node '{node}' signed its request {skew} s away from this node's clock (more than {WINDOW} s)")]
    Skew { node: String, skew: i64 },
}

/// A verified forward: who sent it and how far its clock is from ours (seconds, positive when ahead).
#[derive(Debug, PartialEq)]
pub struct Sender {
    pub node: String,
    pub skew: i64,
}

impl Credential {
    pub fn new(secret: &str) -> Credential {
        Credential {
            secret: secret.as_bytes().to_vec(),
        }
    }

    fn mac(&self, node: &str, ts: i64, method: &str, path: &str) -> Hmac<Sha256> {
        // Any key length is valid for HMAC; `new_from_slice` cannot fail here.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(format!("v1\n{node}\n{ts}\n{method}\n{path}").as_bytes());
        m
    }

    /// The header value for a request `node` sends at `ts`.
    pub fn sign(&self, node: &str, ts: i64, method: &str, path: &str) -> String {
        let sig = self.mac(node, ts, method, path).finalize().into_bytes();
        let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
        format!("v1 node={} ts={ts} sig={hex}", escape(node))
    }

    /// Checks a header value against the request it came with, at our time `now`.
    pub fn verify(
        &self,
        value: &str,
        method: &str,
        path: &str,
        now: i64,
    ) -> Result<Sender, Refusal> {
        let mut parts = value.split(' ');
        if parts.next() != Some("v1") {
            return Err(Refusal::Malformed);
        }
        let (mut node, mut ts, mut sig) = (None, None, None);
        for p in parts {
            match p.split_once('=') {
                Some(("node", v)) => node = unescape(v),
                Some(("ts", v)) => ts = v.parse::<i64>().ok(),
                Some(("sig", v)) => sig = decode_hex(v),
                _ => return Err(Refusal::Malformed),
            }
        }
        let (Some(node), Some(ts), Some(sig)) = (node, ts, sig) else {
            return Err(Refusal::Malformed);
        };
        self.mac(&node, ts, method, path)
            .verify_slice(&sig)
            .map_err(|_| Refusal::BadSignature(node.clone()))?;
        let skew = ts - now;
        if skew.abs() > WINDOW {
            return Err(Refusal::Skew { node, skew });
        }
        Ok(Sender { node, skew })
    }
}

/// A node name in a header value: bytes outside visible ASCII (a state directory with a space, say) and `%` as
/// `%XX`.
fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'!'..=b'~' if b != b'%' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn unescape(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_request_only() {
        let c = Credential::new("0123456789abcdef");
        let h = c.sign("a", 1000, "POST", "/v1/chat/completions");
        let ok = c.verify(&h, "POST", "/v1/chat/completions", 1005);
        assert_eq!(
            ok,
            Ok(Sender {
                node: "a".into(),
                skew: -5
            })
        );
        assert_eq!(
            c.verify(&h, "POST", "/api/chat", 1000),
            Err(Refusal::BadSignature("a".into()))
        );
        let other = Credential::new("another secret of 16+");
        assert_eq!(
            other.verify(&h, "POST", "/v1/chat/completions", 1000),
            Err(Refusal::BadSignature("a".into()))
        );
        // A changed node name or time breaks the signature too.
        let forged = h.replace("node=a", "node=b");
        assert!(matches!(
            c.verify(&forged, "POST", "/v1/chat/completions", 1000),
            Err(Refusal::BadSignature(_))
        ));
        assert!(matches!(
            c.verify(&h, "POST", "/v1/chat/completions", 1000 + WINDOW + 1),
            Err(Refusal::Skew { skew, .. }) if skew == -WINDOW - 1
        ));
        // Names with spaces and non-ASCII letters travel escaped.
        let odd = "höst:/var/lib/my hearth";
        let h = c.sign(odd, 7, "POST", "/api/chat");
        assert!(h.is_ascii() && h.split(' ').count() == 4, "{h}");
        assert_eq!(
            c.verify(&h, "POST", "/api/chat", 7).map(|s| s.node),
            Ok(odd.to_owned())
        );
        for bad in [
            "",
            "v2 node=a ts=1 sig=00",
            "v1 node=a ts=x sig=00",
            "v1 node=a sig=zz",
        ] {
            assert_eq!(
                c.verify(bad, "POST", "/", 0),
                Err(Refusal::Malformed),
                "{bad}"
            );
        }
    }
}
