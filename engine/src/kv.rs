//! The KV cache: per sequence slot and layer, keys and values for every position, f32, grown on demand so a
//! slot costs memory only for the positions it has used.
//!
//! Stored head-major: each KV head of each layer has its own [position][head width] array. Attention reads one
//! head's keys and values across positions; laid out [position][all heads] (a row of 2 KiB at Llama 3's 8 × 64),
//! those reads stride by the row and land in a handful of L1 sets, evicting each other before the next query row
//! can reuse them. Head-major, a head's positions are one contiguous stream.

pub struct KvCache {
    n_layers: usize,
    /// Arrays per layer (KV heads; 1 for the row layout of `new`).
    heads: usize,
    /// Floats per position in each array.
    width: usize,
    slots: Vec<SlotKv>,
}

#[derive(Default)]
struct SlotKv {
    /// Positions allocated.
    capacity: usize,
    /// Index layer × heads + head.
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

/// One KV head's keys and values for positions 0..n: rows of `stride` floats, the head's starting at `offset`.
pub struct HeadKv<'a> {
    pub keys: &'a [f32],
    pub vals: &'a [f32],
    pub stride: usize,
    pub offset: usize,
}

/// Growth step in positions (amortises reallocation during long generations).
const GROW: usize = 256;

impl KvCache {
    /// One array per layer of `kv_dim` floats per position (all heads in a row).
    pub fn new(n_layers: usize, kv_dim: usize, n_slots: usize) -> KvCache {
        Self::with_heads(n_layers, 1, kv_dim, n_slots)
    }

    /// Head-major: an array per (layer, KV head) of `head_dim` floats per position — what models use.
    pub fn with_heads(
        n_layers: usize,
        n_kv_heads: usize,
        head_dim: usize,
        n_slots: usize,
    ) -> KvCache {
        KvCache {
            n_layers,
            heads: n_kv_heads.max(1),
            width: head_dim,
            slots: (0..n_slots).map(|_| SlotKv::default()).collect(),
        }
    }

    /// Makes room for positions `0..n_pos` in `slot`.
    pub fn reserve(&mut self, slot: usize, n_pos: usize) {
        let (arrays, width) = (self.n_layers * self.heads, self.width);
        let s = &mut self.slots[slot];
        if n_pos <= s.capacity {
            return;
        }
        let cap = n_pos.div_ceil(GROW) * GROW;
        s.k.resize_with(arrays, Vec::new);
        s.v.resize_with(arrays, Vec::new);
        for a in 0..arrays {
            s.k[a].resize(cap * width, 0.0);
            s.v[a].resize(cap * width, 0.0);
        }
        s.capacity = cap;
    }

    /// Frees a slot's memory when it held a long sequence; short ones keep theirs — and with it the keys and
    /// values of the positions written, which the next sequence may reuse (prefix reuse). Returns whether they
    /// were kept.
    pub fn release(&mut self, slot: usize) -> bool {
        let s = &mut self.slots[slot];
        if s.capacity > 4 * GROW {
            *s = SlotKv::default();
            return false;
        }
        true
    }

    /// Stores position `pos`'s keys and values (all KV heads, `heads × width` floats each).
    pub fn write(&mut self, slot: usize, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let (heads, w) = (self.heads, self.width);
        let s = &mut self.slots[slot];
        for h in 0..heads {
            let a = layer * heads + h;
            s.k[a][pos * w..(pos + 1) * w].copy_from_slice(&k[h * w..(h + 1) * w]);
            s.v[a][pos * w..(pos + 1) * w].copy_from_slice(&v[h * w..(h + 1) * w]);
        }
    }

    /// Keys and values of KV head `g` (`hd` floats wide) of `slot` in `layer` for positions `0..n_pos`.
    pub fn head(&self, slot: usize, layer: usize, g: usize, hd: usize, n_pos: usize) -> HeadKv<'_> {
        let s = &self.slots[slot];
        if self.heads == 1 {
            // Row layout: every head in one row per position.
            let w = self.width;
            return HeadKv {
                keys: &s.k[layer][..n_pos * w],
                vals: &s.v[layer][..n_pos * w],
                stride: w,
                offset: g * hd,
            };
        }
        assert_eq!(
            hd, self.width,
            "a head-major cache holds heads of its own width"
        );
        let a = layer * self.heads + g;
        HeadKv {
            keys: &s.k[a][..n_pos * hd],
            vals: &s.v[a][..n_pos * hd],
            stride: hd,
            offset: 0,
        }
    }

    pub fn bytes_used(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.capacity * self.width * self.heads * self.n_layers * 2 * 4)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_major_and_row_layouts_hold_the_same_heads() {
        let (layers, heads, hd) = (2, 3, 4);
        let mut rows = KvCache::new(layers, heads * hd, 1);
        let mut major = KvCache::with_heads(layers, heads, hd, 1);
        for c in [&mut rows, &mut major] {
            c.reserve(0, 300); // past one growth step: contents survive the resize
        }
        for pos in 0..300 {
            for l in 0..layers {
                let k: Vec<f32> = (0..heads * hd)
                    .map(|i| (pos * 100 + l * 10 + i) as f32)
                    .collect();
                let v: Vec<f32> = k.iter().map(|x| -x).collect();
                rows.write(0, l, pos, &k, &v);
                major.write(0, l, pos, &k, &v);
            }
        }
        for l in 0..layers {
            for g in 0..heads {
                let (a, b) = (rows.head(0, l, g, hd, 300), major.head(0, l, g, hd, 300));
                for p in 0..300 {
                    let at =
                        |h: &HeadKv<'_>, x: &[f32]| x[p * h.stride + h.offset..][..hd].to_vec();
                    assert_eq!(at(&a, a.keys), at(&b, b.keys));
                    assert_eq!(at(&a, a.vals), at(&b, b.vals));
                }
            }
        }
        assert_eq!(rows.bytes_used(), major.bytes_used());
    }
}
