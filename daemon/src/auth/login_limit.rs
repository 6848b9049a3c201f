//! Password-guessing brakes for the dashboard's sign-in: one token bucket per user name and one per client
//! address. A failed attempt takes a token from both; a request that finds either bucket empty is refused
//! before any password is checked, with the wait until a token is back. Successes cost nothing, so a member
//! signing in never locks anyone out. Buckets live in this process: each node of a cluster brakes on its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts a user name may take in a burst, and the pace they come back at afterwards.
pub const USER_BURST: f64 = 5.0;
pub const USER_REFILL: Duration = Duration::from_secs(60);
/// The same for one client address (it may try several names: a wider burst, a faster refill).
pub const ADDR_BURST: f64 = 20.0;
pub const ADDR_REFILL: Duration = Duration::from_secs(15);
/// Buckets kept before full ones are forgotten (a flood of names must not grow memory without bound).
const MAX_BUCKETS: usize = 100_000;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn level(&self, burst: f64, refill: Duration, now: Instant) -> f64 {
        let back = now.saturating_duration_since(self.at).as_secs_f64() / refill.as_secs_f64();
        (self.tokens + back).min(burst)
    }
}

#[derive(Default)]
pub struct LoginLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

fn user_key(name: &str) -> String {
    format!("u:{}", name.to_ascii_lowercase())
}

fn addr_key(ip: IpAddr) -> String {
    format!("a:{ip}")
}

fn limits(key: &str) -> (f64, Duration) {
    if key.starts_with("u:") {
        (USER_BURST, USER_REFILL)
    } else {
        (ADDR_BURST, ADDR_REFILL)
    }
}

impl LoginLimiter {
    /// Err(wait) when the user name or the address has no attempt left.
    pub fn check(&self, name: &str, ip: Option<IpAddr>) -> Result<(), Duration> {
        self.check_at(name, ip, Instant::now())
    }

    /// Records a failed attempt.
    pub fn failed(&self, name: &str, ip: Option<IpAddr>) {
        self.failed_at(name, ip, Instant::now())
    }

    fn keys(name: &str, ip: Option<IpAddr>) -> impl Iterator<Item = String> {
        std::iter::once(user_key(name)).chain(ip.map(addr_key))
    }

    fn check_at(&self, name: &str, ip: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let Ok(map) = self.buckets.lock() else {
            return Ok(());
        };
        let mut wait = Duration::ZERO;
        for key in Self::keys(name, ip) {
            let (burst, refill) = limits(&key);
            if let Some(b) = map.get(&key) {
                let level = b.level(burst, refill, now);
                if level < 1.0 {
                    wait = wait.max(refill.mul_f64(1.0 - level));
                }
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    fn failed_at(&self, name: &str, ip: Option<IpAddr>, now: Instant) {
        let Ok(mut map) = self.buckets.lock() else {
            return;
        };
        if map.len() >= MAX_BUCKETS {
            map.retain(|k, b| {
                let (burst, refill) = limits(k);
                b.level(burst, refill, now) < burst
            });
        }
        for key in Self::keys(name, ip) {
            let (burst, refill) = limits(&key);
            let level = map.get(&key).map_or(burst, |b| b.level(burst, refill, now));
            map.insert(
                key,
                Bucket {
                    tokens: (level - 1.0).max(0.0),
                    at: now,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn a_user_name_gets_its_burst_then_one_attempt_per_refill() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..USER_BURST as usize {
            assert!(
                l.check_at("alice", ip("10.0.0.1"), t0).is_ok(),
                "attempt {i}"
            );
            l.failed_at("alice", ip("10.0.0.1"), t0);
        }
        let wait = l.check_at("alice", ip("10.0.0.2"), t0).unwrap_err();
        assert_eq!(wait, USER_REFILL);
        // Names are case-insensitive here, so `Alice` is the same bucket.
        assert!(l.check_at("Alice", None, t0).is_err());
        // Another user from the same address is still allowed.
        assert!(l.check_at("bob", ip("10.0.0.1"), t0).is_ok());
        // Half a refill later the wait has halved; a full one later one attempt is back.
        let half = l.check_at("alice", None, t0 + USER_REFILL / 2).unwrap_err();
        assert_eq!(half, USER_REFILL / 2);
        assert!(l.check_at("alice", None, t0 + USER_REFILL).is_ok());
    }

    #[test]
    fn an_address_trying_many_names_is_braked() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..ADDR_BURST as usize {
            let name = format!("user{i}");
            assert!(l.check_at(&name, ip("192.0.2.7"), t0).is_ok());
            l.failed_at(&name, ip("192.0.2.7"), t0);
        }
        assert_eq!(
            l.check_at("fresh", ip("192.0.2.7"), t0).unwrap_err(),
            ADDR_REFILL
        );
        assert!(l.check_at("fresh", ip("192.0.2.8"), t0).is_ok());
    }
}
