//! Bounded memory of key secrets that already passed argon2id, keyed by key id. An entry is only trusted for
//! the exact stored hash it was verified against, so re-keying a row can never reuse a stale entry.

use std::collections::HashMap;
use std::sync::Mutex;

struct Entry {
    secret_hash: String,
    digest: [u8; 32],
}

pub struct KeyCache {
    cap: usize,
    map: Mutex<HashMap<String, Entry>>,
}

impl KeyCache {
    pub fn new(cap: usize) -> KeyCache {
        KeyCache {
            cap: cap.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn verified(&self, id: &str, secret_hash: &str, digest: &[u8; 32]) -> bool {
        let Ok(m) = self.map.lock() else { return false };
        m.get(id)
            .is_some_and(|e| e.secret_hash == secret_hash && constant_time_eq(&e.digest, digest))
    }

    pub fn insert(&self, id: &str, secret_hash: &str, digest: [u8; 32]) {
        let Ok(mut m) = self.map.lock() else { return };
        if m.len() >= self.cap && !m.contains_key(id) {
            // Evict an arbitrary entry: the cost of a miss is one argon2 run, so precision does not matter.
            if let Some(k) = m.keys().next().cloned() {
                m.remove(&k);
            }
        }
        m.insert(
            id.to_owned(),
            Entry {
                secret_hash: secret_hash.to_owned(),
                digest,
            },
        );
    }

    pub fn remove(&self, id: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_bound_to_the_stored_hash() {
        let c = KeyCache::new(2);
        c.insert("a", "h1", [1; 32]);
        assert!(c.verified("a", "h1", &[1; 32]));
        assert!(!c.verified("a", "h1", &[2; 32]));
        assert!(!c.verified("a", "h2", &[1; 32]));
        c.insert("b", "h", [0; 32]);
        c.insert("c", "h", [0; 32]);
        assert_eq!(c.len(), 2);
        c.remove("c");
        assert!(!c.verified("c", "h", &[0; 32]));
    }
}
