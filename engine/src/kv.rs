//! The KV cache: per sequence slot and layer, keys and values for every position, f32, grown on demand so a
//! slot costs memory only for the positions it has used.

pub struct KvCache {
    n_layers: usize,
    kv_dim: usize,
    slots: Vec<SlotKv>,
}

#[derive(Default)]
struct SlotKv {
    /// Positions allocated.
    capacity: usize,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

/// Growth step in positions (amortises reallocation during long generations).
const GROW: usize = 256;

impl KvCache {
    pub fn new(n_layers: usize, kv_dim: usize, n_slots: usize) -> KvCache {
        KvCache {
            n_layers,
            kv_dim,
            slots: (0..n_slots).map(|_| SlotKv::default()).collect(),
        }
    }

    /// Makes room for positions `0..n_pos` in `slot`.
    pub fn reserve(&mut self, slot: usize, n_pos: usize) {
        let (n_layers, kv_dim) = (self.n_layers, self.kv_dim);
        let s = &mut self.slots[slot];
        if n_pos <= s.capacity {
            return;
        }
        let cap = n_pos.div_ceil(GROW) * GROW;
        s.k.resize_with(n_layers, Vec::new);
        s.v.resize_with(n_layers, Vec::new);
        for l in 0..n_layers {
            s.k[l].resize(cap * kv_dim, 0.0);
            s.v[l].resize(cap * kv_dim, 0.0);
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

    pub fn write(&mut self, slot: usize, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let d = self.kv_dim;
        let s = &mut self.slots[slot];
        s.k[layer][pos * d..(pos + 1) * d].copy_from_slice(k);
        s.v[layer][pos * d..(pos + 1) * d].copy_from_slice(v);
    }

    /// Keys and values of `slot` in `layer` for positions `0..n_pos`, laid out [pos][kv_dim].
    pub fn layer(&self, slot: usize, layer: usize, n_pos: usize) -> (&[f32], &[f32]) {
        let d = self.kv_dim;
        let s = &self.slots[slot];
        (&s.k[layer][..n_pos * d], &s.v[layer][..n_pos * d])
    }

    pub fn bytes_used(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.capacity * self.kv_dim * self.n_layers * 2 * 4)
            .sum()
    }
}
