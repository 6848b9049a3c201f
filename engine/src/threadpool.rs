//! A fixed pool of compute threads for the forward pass.
//!
//! A decode step runs ~100 small parallel regions (one per matmul group), so the hand-off must cost
//! microseconds: workers spin briefly on an epoch counter before parking on a condvar. The calling thread takes
//! part as worker 0.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type Job = dyn Fn(usize, usize) + Sync;

struct Shared {
    epoch: AtomicU64,
    done: AtomicUsize,
    stop: AtomicBool,
    sleepers: AtomicUsize,
    /// The job of the current epoch; written only by `run` while every worker is idle.
    job: UnsafeCell<Option<*const Job>>,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written by `run` before the epoch is published (Release) and read by workers after they observe
// the new epoch (Acquire); `run` does not return (and so the pointee outlives every use) until all workers are done.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

pub struct ThreadPool {
    n_threads: usize,
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    /// Serialises `run` callers.
    running: Mutex<()>,
}

const SPIN_ITERS: u32 = 1 << 17;

impl ThreadPool {
    /// A pool of `n_threads` including the caller (so `n_threads - 1` spawned workers).
    pub fn new(n_threads: usize) -> std::io::Result<ThreadPool> {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut handles = Vec::with_capacity(n_threads - 1);
        for idx in 1..n_threads {
            let for_worker = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("hearth-compute-{idx}"))
                .spawn(move || worker(for_worker, idx, n_threads));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // Stop the workers already started before reporting.
                    drop(ThreadPool {
                        n_threads,
                        shared,
                        handles,
                        running: Mutex::new(()),
                    });
                    return Err(e);
                }
            }
        }
        Ok(ThreadPool {
            n_threads,
            shared,
            handles,
            running: Mutex::new(()),
        })
    }

    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `f` over `0..n` in contiguous chunks the threads claim as they go, so a thread the host slows down
    /// takes fewer rows instead of holding up the others at the end of a static split. Chunks shrink with what is
    /// left (guided self-scheduling: a few large claims, fine ones at the end), are at least `min` long and start
    /// at multiples of `align` (a kernel's row group).
    pub fn run_chunks(
        &self,
        n: usize,
        align: usize,
        min: usize,
        f: &(dyn Fn(std::ops::Range<usize>) + Sync),
    ) {
        if self.n_threads == 1 || n <= min {
            f(0..n);
            return;
        }
        if static_split() {
            self.run(&|ti, nt| f(split_range(n, nt, ti)));
            return;
        }
        let claims = Claims::new(n, self.n_threads, align, min);
        self.run(&|_, _| {
            while let Some(r) = claims.next() {
                f(r);
            }
        });
    }

    /// Runs `f(thread_index, n_threads)` on every thread of the pool and returns when all have finished.
    pub fn run(&self, f: &(dyn Fn(usize, usize) + Sync)) {
        if self.n_threads == 1 {
            f(0, 1);
            return;
        }
        let _guard = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: all workers finished the previous epoch (we waited for `done`), so none reads `job` now.
        // The lifetime is erased; we wait for every worker below before `f` can go out of scope.
        unsafe {
            let ptr: *const Job =
                std::mem::transmute::<&(dyn Fn(usize, usize) + Sync), &'static Job>(f);
            *s.job.get() = Some(ptr);
        }
        s.done.store(0, Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        f(0, self.n_threads);
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < self.n_threads - 1 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

fn worker(s: Arc<Shared>, idx: usize, n: usize) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        let epoch = loop {
            let e = s.epoch.load(Ordering::Acquire);
            if e != seen || s.stop.load(Ordering::Relaxed) {
                break e;
            }
            spins += 1;
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
                continue;
            }
            // Park until the next job.
            let mut guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            while s.epoch.load(Ordering::SeqCst) == seen && !s.stop.load(Ordering::SeqCst) {
                guard = s.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
            drop(guard);
            spins = 0;
        };
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        seen = epoch;
        // SAFETY: see `Shared`; the job pointer is valid for this epoch.
        if let Some(job) = unsafe { *s.job.get() } {
            unsafe { (*job)(idx, n) };
        }
        s.done.fetch_add(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _l = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// `HEARTH_SPLIT=static` makes `run_chunks` split statically (one range per thread), for comparisons.
fn static_split() -> bool {
    static STATIC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STATIC.get_or_init(|| std::env::var("HEARTH_SPLIT").is_ok_and(|v| v == "static"))
}

/// The shared cursor of `run_chunks`.
struct Claims {
    cursor: AtomicUsize,
    n: usize,
    /// Threads sharing the range: each claim takes 1 / (2·parts) of what is left.
    parts: usize,
    align: usize,
    min: usize,
}

impl Claims {
    fn new(n: usize, parts: usize, align: usize, min: usize) -> Claims {
        let align = align.max(1);
        Claims {
            cursor: AtomicUsize::new(0),
            n,
            parts: parts.max(1),
            align,
            min: min.max(1).next_multiple_of(align),
        }
    }

    fn next(&self) -> Option<std::ops::Range<usize>> {
        let mut start = self.cursor.load(Ordering::Relaxed);
        loop {
            if start >= self.n {
                return None;
            }
            let len = ((self.n - start) / (2 * self.parts))
                .next_multiple_of(self.align)
                .max(self.min);
            let end = (start + len).min(self.n);
            match self.cursor.compare_exchange_weak(
                start,
                end,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(start..end),
                Err(now) => start = now,
            }
        }
    }
}

/// Splits `0..n` into `parts` contiguous ranges and returns range `i`.
pub fn split_range(n: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let per = n / parts;
    let rem = n % parts;
    let start = i * per + i.min(rem);
    start..start + per + usize::from(i < rem)
}

/// A raw pointer that may cross to pool threads; each thread writes a disjoint part of the buffer.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub *mut T);
impl<T> SharedMut<T> {
    /// Through a method, so closures capture the Sync wrapper rather than the bare pointer field.
    #[inline]
    pub fn ptr(&self) -> *mut T {
        self.0
    }
}
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_runs_each_job_once() {
        let pool = ThreadPool::new(3).expect("threads");
        for round in 0..200 {
            let hits = AtomicUsize::new(0);
            pool.run(&|i, n| {
                assert_eq!(n, 3);
                hits.fetch_add(1 << (8 * i), Ordering::SeqCst);
            });
            assert_eq!(
                hits.load(Ordering::SeqCst),
                1 | 1 << 8 | 1 << 16,
                "round {round}"
            );
        }
    }

    #[test]
    fn chunks_cover_everything_once_at_aligned_starts() {
        let pool = ThreadPool::new(3).expect("threads");
        for (n, align, min) in [
            (0, 4, 32),
            (5, 4, 32),
            (2560, 4, 32),
            (13824, 4, 64),
            (1001, 1, 1),
        ] {
            let seen: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            let starts = Mutex::new(Vec::new());
            pool.run_chunks(n, align, min, &|r| {
                starts.lock().expect("lock").push(r.start);
                for i in r {
                    seen[i].fetch_add(1, Ordering::Relaxed);
                }
            });
            assert!(seen.iter().all(|c| c.load(Ordering::Relaxed) == 1), "n {n}");
            let starts = starts.into_inner().expect("lock");
            assert!(starts.iter().all(|s| s % align == 0), "n {n}: {starts:?}");
        }
    }

    #[test]
    fn claims_shrink_towards_the_minimum() {
        let c = Claims::new(2560, 2, 4, 32);
        let lens: Vec<usize> = std::iter::from_fn(|| c.next()).map(|r| r.len()).collect();
        assert_eq!(lens.iter().sum::<usize>(), 2560);
        assert_eq!(lens[0], 640);
        assert!(lens.windows(2).all(|w| w[0] >= w[1]), "{lens:?}");
        assert!(*lens.last().expect("claims") <= 32, "{lens:?}");
        assert!(lens.len() < 24, "{} claims", lens.len());
    }

    #[test]
    fn split_range_covers_everything() {
        let mut all = Vec::new();
        for i in 0..4 {
            all.extend(split_range(10, 4, i));
        }
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }
}
