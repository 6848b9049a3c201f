//! Synthetic GGUF models: the real architectures' tensor names and metadata at a chosen shape, random weights and a
//! working tokenizer, so loading, serving and speed are measured at real shapes without downloading real weights.
//! `llama` writes the Llama 3 shapes in the block formats users download (Q4_K_M, Q4_0, Q8_0, Q6_K); the ternary
//! BitNet files are `ternary::synth`'s. Both share the seeded generator and the tokenizers here.
//!
//! **Invariant: a file is a function of its arguments** — the same shape, type and seed write the same bytes on
//! every platform, so a benchmark's cached file is the file that was measured.

pub mod llama;
pub(crate) mod tokenizer;

/// SplitMix64: small, seedable, and the same on every platform.
pub(crate) struct Rng(u64);
impl Rng {
    pub(crate) fn new(seed: u64, name: &str) -> Rng {
        // FNV-1a of the tensor name, so each tensor's stream is independent of the others' sizes.
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        Rng(seed ^ h)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}
