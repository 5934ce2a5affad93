//! Randomness for the client: the operating system's generator, handed to
//! the crypto layer (which takes its RNG as an argument) and used for ids.

use rand_core::{Rng, UnwrapErr};

/// The operating system's random generator as the crypto layer's RNG.
pub(crate) fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

/// Random bytes from the operating system.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rng().fill_bytes(&mut out);
    out
}
