//! Planner: a compact hash index from a key to positions in the planner's receiver list.
//!
//! The current group is the one thing the planner must hold; indexing it by e-mail and by CRM
//! record with ordinary `HashMap<Email, _>`s would copy every key a second time. This index keeps
//! only a 64-bit hash and a position per entry; colliding entries are chained through the
//! receivers themselves and every hit is confirmed against the real key by the caller.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};

/// End of a chain: no (further) receiver with this hash.
pub(super) const NO_RECEIVER: u32 = u32::MAX;

/// The keys are already SipHash outputs: hashing them again would only cost time.
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

/// Hash → the most recently linked position with that hash; older ones follow its chain.
pub(super) struct HashIndex {
    heads: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    keys: RandomState,
}

impl HashIndex {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        HashIndex {
            heads: HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
            keys: RandomState::new(),
        }
    }

    pub(super) fn hash<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        self.keys.hash_one(key)
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
