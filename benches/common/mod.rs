//! What the criterion benches share.

/// `len` incompressible bytes, like a compressed layer, the same for the same `seed`, so every
/// run hashes and writes the same data.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    hpn_testkit::Rng::new(seed).bytes(len)
}
