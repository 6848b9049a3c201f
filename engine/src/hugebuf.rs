//! Large weight buffers on transparent huge pages.
//!
//! A decode step streams every repacked weight once (520 MB at BitNet 2B4T's shape). On 4 KB pages that is
//! ~130 000 TLB misses a token, each a page walk (a two-dimensional one in a VM), and the hardware prefetchers
//! stop at every 4 KB boundary. `HugeBuf` maps anonymous memory with the data start aligned to 2 MB and asks
//! the kernel for huge pages (`MADV_HUGEPAGE`, honoured under the common `madvise` THP setting). Where huge
//! pages are unavailable the advice is a no-op and the buffer is ordinary memory.

use memmap2::MmapMut;

/// Transparent huge page size on x86-64 and most AArch64 kernels.
const HUGE: usize = 2 << 20;

/// Buffers smaller than this stay on the heap: a huge page would waste most of itself.
const MIN_LEN: usize = HUGE / 2;

/// A byte buffer of fixed length, filled with `fill` at creation.
pub enum HugeBuf {
    Heap(Vec<u8>),
    Mapped {
        map: MmapMut,
        offset: usize,
        len: usize,
    },
}

impl HugeBuf {
    /// `len` bytes, each `fill`. Falls back to the heap when the mapping cannot be made.
    pub fn new(len: usize, fill: u8) -> HugeBuf {
        if len >= MIN_LEN && !disabled() {
            if let Ok(mut map) = MmapMut::map_anon(len + HUGE) {
                let offset = (map.as_ptr() as usize).next_multiple_of(HUGE) - map.as_ptr() as usize;
                #[cfg(target_os = "linux")]
                {
                    // Advice failing (THP off, an old kernel) only loses the speed-up.
                    let _ = map.advise_range(memmap2::Advice::HugePage, offset, len);
                }
                if fill != 0 {
                    map[offset..offset + len].fill(fill);
                }
                return HugeBuf::Mapped { map, offset, len };
            }
        }
        HugeBuf::Heap(vec![fill; len])
    }

    /// Whether the data lies in huge-page-advised memory rather than on the heap.
    pub fn is_mapped(&self) -> bool {
        matches!(self, HugeBuf::Mapped { .. })
    }
}

/// `HEARTH_HUGEPAGES=0` keeps every buffer on the heap (for comparisons).
fn disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var("HEARTH_HUGEPAGES").is_ok_and(|v| v == "0"))
}

impl std::ops::Deref for HugeBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            HugeBuf::Heap(v) => v,
            HugeBuf::Mapped { map, offset, len } => &map[*offset..*offset + *len],
        }
    }
}

impl std::ops::DerefMut for HugeBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            HugeBuf::Heap(v) => v,
            HugeBuf::Mapped { map, offset, len } => &mut map[*offset..*offset + *len],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_hold_their_fill_and_large_ones_are_aligned() {
        for (len, fill) in [(10, 7u8), (3 << 20, 0x55), (5 << 20, 0)] {
            let mut b = HugeBuf::new(len, fill);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == fill));
            b[len - 1] = 1;
            assert_eq!(b[len - 1], 1);
            if b.is_mapped() {
                assert_eq!(b.as_ptr() as usize % HUGE, 0);
            }
            assert_eq!(b.is_mapped(), len >= MIN_LEN && !disabled());
        }
    }
}
