//! Planner: fingerprints and a compact hash index, so that holding a large group costs little.
//!
//! The current group is the one thing the planner must hold. Instead of its person data and CRM
//! records (a few hundred bytes of strings per receiver) it keeps 128-bit fingerprints of them,
//! and instead of `HashMap<Email, _>`s that would copy every address a second time it keeps an
//! index of fingerprint halves whose colliding entries are chained through the receivers
//! themselves; every hit is confirmed by the caller.
//!
//! Fingerprints are two SipHash values under one key drawn per planner, of the value with two
//! different prefixes, which a keyed PRF such as SipHash makes independent. Two different values
//! share a fingerprint with a probability of about n²/2¹²⁹ (below 10⁻²⁶ for ten million values),
//! far below the odds of a hardware fault; and with a secret key nobody can construct a pair.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};

/// End of a chain: no (further) receiver with this hash.
pub(super) const NO_RECEIVER: u32 = u32::MAX;

/// A 128-bit fingerprint of a value (an address, person data, a CRM record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint([u64; 2]);

impl Fingerprint {
    /// Uniformly random already: one half is a perfect hash-table hash.
    pub(super) fn table_hash(self) -> u64 {
        self.0[0]
    }
}

impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.table_hash());
    }
}

/// Makes [`Fingerprint`]s with a key drawn once per planner.
pub(super) struct Fingerprinter {
    keys: RandomState,
}

impl Fingerprinter {
    pub(super) fn new() -> Self {
        Fingerprinter {
            keys: RandomState::new(),
        }
    }

    pub(super) fn of<T: Hash + ?Sized>(&self, value: &T) -> Fingerprint {
        Fingerprint([
            self.keys.hash_one((1u8, value)),
            self.keys.hash_one((2u8, value)),
        ])
    }
}

/// Hashes that are random already: hashing them again would only cost time.
#[derive(Default)]
pub(super) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// A map keyed by fingerprints.
pub(super) type FingerprintMap<V> = HashMap<Fingerprint, V, BuildHasherDefault<PassThrough>>;

/// Table hash → the most recently linked position with that hash; older ones follow its chain.
pub(super) struct HashIndex {
    heads: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
}

impl HashIndex {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        HashIndex {
            heads: HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
        }
    }

    /// Makes `position` the head of the chain for `hash` and returns the previous head, which
    /// the caller stores as the position's successor.
    pub(super) fn link(&mut self, hash: u64, position: u32) -> u32 {
        self.heads.insert(hash, position).unwrap_or(NO_RECEIVER)
    }

    /// The first position of the chain for `hash`, or [`NO_RECEIVER`].
    pub(super) fn head(&self, hash: u64) -> u32 {
        self.heads.get(&hash).copied().unwrap_or(NO_RECEIVER)
    }
}
