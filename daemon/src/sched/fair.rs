//! Weighted fair queuing over users for one model's waiting jobs (start-time fair queuing): a job's start tag
//! is max(virtual time, the user's previous finish tag); its finish tag adds its cost (prompt + max_tokens, the
//! tokens it reserves) divided by the user's weight. Free slots go to the smallest start tag, and virtual time
//! becomes the start tag of the job last dispatched. One user's backlog therefore delays another user's first
//! request by about one job per slot, not by the whole backlog, and a user with weight 2 gets twice the tokens
//! of a user with weight 1 while both wait.

use std::collections::HashMap;

/// Who a job is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub user: String,
    /// The user's name: the `user` label of their metrics.
    pub name: String,
    /// The user's quota `weight` (≥ 1).
    pub weight: u64,
}

/// A waiting job's place in line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tag {
    pub start: f64,
    /// Arrival order: breaks ties, keeps one user's jobs in order.
    pub seq: u64,
}

impl Tag {
    /// Dispatch order: smaller start first, then earlier arrival.
    pub fn before(&self, other: &Tag) -> bool {
        (self.start, self.seq) < (other.start, other.seq)
    }
}

#[derive(Debug, Default)]
pub struct FairQueue {
    vtime: f64,
    last_finish: HashMap<String, f64>,
    seq: u64,
}

impl FairQueue {
    /// Tags a job as it joins the queue.
    pub fn tag(&mut self, owner: Option<&Owner>, cost: usize) -> Tag {
        let (user, weight) = owner.map_or(("", 1), |o| (o.user.as_str(), o.weight.max(1)));
        let start = self
            .last_finish
            .get(user)
            .copied()
            .unwrap_or(0.0)
            .max(self.vtime);
        self.last_finish
            .insert(user.to_owned(), start + cost.max(1) as f64 / weight as f64);
        self.seq += 1;
        Tag {
            start,
            seq: self.seq,
        }
    }

    /// A job left the queue for a batch slot.
    pub fn dispatched(&mut self, tag: &Tag) {
        self.vtime = self.vtime.max(tag.start);
        // Users whose last finish is behind virtual time are back to a fresh start: forget them.
        let v = self.vtime;
        self.last_finish.retain(|_, f| *f > v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(user: &str, weight: u64) -> Owner {
        Owner {
            user: user.into(),
            name: user.into(),
            weight,
        }
    }

    /// Simulates one slot: returns the users in dispatch order.
    fn drain(q: &mut FairQueue, mut waiting: Vec<(String, Tag)>) -> Vec<String> {
        let mut order = Vec::new();
        while !waiting.is_empty() {
            let i = (0..waiting.len())
                .reduce(|a, b| {
                    if waiting[b].1.before(&waiting[a].1) {
                        b
                    } else {
                        a
                    }
                })
                .unwrap();
            let (u, t) = waiting.remove(i);
            q.dispatched(&t);
            order.push(u);
        }
        order
    }

    #[test]
    fn a_late_user_does_not_wait_for_a_backlog() {
        let mut q = FairQueue::default();
        let a = owner("a", 1);
        let mut waiting: Vec<(String, Tag)> = (0..30)
            .map(|_| ("a".into(), q.tag(Some(&a), 100)))
            .collect();
        // Two of a's jobs have already started when b arrives.
        let first = waiting.remove(0);
        q.dispatched(&first.1);
        let second = waiting.remove(0);
        q.dispatched(&second.1);
        waiting.push(("b".into(), q.tag(Some(&owner("b", 1)), 100)));
        let order = drain(&mut q, waiting);
        let b_at = order.iter().position(|u| u == "b").unwrap();
        assert!(
            b_at <= 1,
            "b is served at once, not after 28 of a's: {order:?}"
        );
    }

    #[test]
    fn weights_share_tokens_proportionally() {
        let mut q = FairQueue::default();
        let (a, b) = (owner("a", 2), owner("b", 1));
        let mut waiting = Vec::new();
        for _ in 0..20 {
            waiting.push(("a".to_owned(), q.tag(Some(&a), 10)));
            waiting.push(("b".to_owned(), q.tag(Some(&b), 10)));
        }
        let order = drain(&mut q, waiting);
        let a_in_first_12 = order[..12].iter().filter(|u| *u == "a").count();
        assert_eq!(a_in_first_12, 8, "2:1 while both wait: {order:?}");
    }

    #[test]
    fn one_users_jobs_stay_in_arrival_order_and_state_is_forgotten() {
        let mut q = FairQueue::default();
        let a = owner("a", 1);
        let t1 = q.tag(Some(&a), 5);
        let t2 = q.tag(Some(&a), 5);
        assert!(t1.before(&t2));
        q.dispatched(&t1);
        q.dispatched(&t2);
        // a's last finish (10) is ahead of virtual time (5): remembered; after a later dispatch it is not.
        assert_eq!(q.last_finish.len(), 1);
        let t3 = q.tag(None, 20);
        let t4 = q.tag(None, 20);
        q.dispatched(&t3);
        q.dispatched(&t4);
        assert!(q.last_finish.keys().all(|u| u.is_empty()));
    }
}
