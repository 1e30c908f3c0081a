//! Planner: fingerprints, an address arena and compact chained hash indexes, so that holding a
//! large group costs little (docs/architecture.md §4 "Stream, don't load").
//!
//! The current group is the one thing the planner must hold. Its addresses are kept back to
//! back in one buffer, each as its part before the @ and the number of its domain, which is
//! kept once however many addresses share it ([`Addresses`]: about 16 bytes for
//! `bench-000123@example.com`), and instead of its person data and CRM records (a few hundred
//! bytes of strings per receiver) it keeps fingerprints of them. The indexes are arrays of
//! chain heads whose colliding entries are chained through the entries themselves
//! ([`ChainHeads`]): 2 to 4 bytes an entry (up to two entries a bucket), grown by doubling
//! without a second copy of the entries. Every hit is confirmed by the caller.
//!
//! Fingerprints are SipHash values under one key drawn per planner, of the value with a
//! one-byte prefix per half, which a keyed PRF such as SipHash makes independent; with a
//! secret key nobody can construct a collision. Their widths follow what a collision would
//! cost:
//! - an **address** (the key of what the plan decided about addresses new to the group): 128
//!   bits. A collision would merge two new addresses, so one person would not be added; two of
//!   n addresses share a fingerprint with a probability of about n²/2¹²⁹ (below 10⁻²⁶ for ten
//!   million).
//! - a **CRM record**: 96 bits. A collision would make a receiver of another person look like
//!   this candidate's (an e-mail change of the wrong receiver); for a group of n receivers and m
//!   candidates new to it the probability is at most n·m/2⁹⁶ (about 10⁻¹⁴ for ten million
//!   each), far below the odds of a hardware fault.
//! - **person data**: 64 bits. A collision only hides a change of name, salutation or company
//!   from the plan, so the attributes are updated one resync later (every plan draws a new
//!   key); each changed receiver escapes with a probability of 2⁻⁶⁴ (about 5·10⁻¹⁴ for a
//!   million changed receivers).

use std::hash::{BuildHasher, Hash, RandomState};

/// End of a chain: no (further) entry with this hash. Also the largest number of entries an
/// index holds (positions are below it).
pub(super) const NO_ENTRY: u32 = u32::MAX;

/// A 128-bit fingerprint of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AddressPrint([u32; 4]);

impl AddressPrint {
    /// Uniformly random already: a perfect hash-table hash.
    pub(super) fn table_hash(self) -> u64 {
        u64::from(self.0[0]) | (u64::from(self.0[1]) << 32)
    }
}

/// A 96-bit fingerprint of a CRM record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct CrmPrint([u32; 3]);

impl CrmPrint {
    pub(super) fn table_hash(self) -> u64 {
        u64::from(self.0[0]) | (u64::from(self.0[1]) << 32)
    }
}

/// A 64-bit fingerprint of person data, as two halves so that a receiver packs tightly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PersonPrint([u32; 2]);

fn halves(value: u64) -> [u32; 2] {
    // Truncation intended: the low and the high half.
    [value as u32, (value >> 32) as u32]
}

/// Makes fingerprints with a key drawn once per planner.
pub(super) struct Fingerprinter {
    keys: RandomState,
}

impl Fingerprinter {
    pub(super) fn new() -> Self {
        Fingerprinter {
            keys: RandomState::new(),
        }
    }

    fn half<T: Hash + ?Sized>(&self, prefix: u8, value: &T) -> u64 {
        self.keys.hash_one((prefix, value))
    }

    pub(super) fn address(&self, address: &str) -> AddressPrint {
        let [a, b] = halves(self.half(1, address));
        let [c, d] = halves(self.half(2, address));
        AddressPrint([a, b, c, d])
    }

    /// [`AddressPrint::table_hash`] of an address, at half the cost of the whole print.
    pub(super) fn address_hash(&self, address: &str) -> u64 {
        self.half(1, address)
    }

    pub(super) fn crm<T: Hash + ?Sized>(&self, record: &T) -> CrmPrint {
        let [a, b] = halves(self.half(1, record));
        let [c, _] = halves(self.half(2, record));
        CrmPrint([a, b, c])
    }

    pub(super) fn person<T: Hash + ?Sized>(&self, person: &T) -> PersonPrint {
        PersonPrint(halves(self.half(1, person)))
    }
}

/// Addresses between two recorded starts.
const STRIDE: usize = 64;
/// Bytes of a domain number in an entry.
const DOMAIN_BYTES: usize = 3;
/// Domains an [`Addresses`] can number.
const MAX_DOMAINS: u32 = 1 << (8 * DOMAIN_BYTES);

/// The group's addresses, by position, back to back in one buffer. An entry is the address's
/// part before its last @ followed by the number of its domain in 3 bytes; the domains are
/// kept once each ([`Domains`]). An entry's length is one byte, and where every 64th entry
/// starts is recorded, so that an entry is found by adding at most 63 lengths.
#[derive(Default)]
pub(super) struct Addresses {
    text: Vec<u8>,
    lens: Vec<u8>,
    starts: Vec<u32>,
    domains: Domains,
}

/// An address as [`Addresses`] compares it: its part before the @ and its domain's number.
pub(super) struct AddressKey<'a> {
    local: &'a [u8],
    domain: [u8; DOMAIN_BYTES],
}

fn split(address: &str) -> (&str, &str) {
    address.rsplit_once('@').unwrap_or((address, ""))
}

impl Addresses {
    /// Appends an address at the next position; false (nothing appended) when it cannot be
    /// kept: more than 16,777,216 domains, more than 4 GiB of entries, or a part before the @
    /// longer than 252 bytes (an [`super::Email`] has at most 64).
    pub(super) fn push(&mut self, address: &str) -> bool {
        let (local, domain) = split(address);
        let Ok(len) = u8::try_from(local.len() + DOMAIN_BYTES) else {
            return false;
        };
        let start = self.text.len();
        if u32::try_from(start + usize::from(len)).is_err() {
            return false;
        }
        let Some(number) = self.domains.intern(domain) else {
            return false;
        };
        if self.lens.len().is_multiple_of(STRIDE) {
            // Fits: checked against u32 above.
            self.starts.push(start as u32);
        }
        self.text.extend_from_slice(local.as_bytes());
        self.text
            .extend_from_slice(&number.to_le_bytes()[..DOMAIN_BYTES]);
        self.lens.push(len);
        true
    }

    /// How `address` compares with the entries; `None` when no entry has its domain (then
    /// none is the address).
    pub(super) fn key<'a>(&self, address: &'a str) -> Option<AddressKey<'a>> {
        let (local, domain) = split(address);
        let number = self.domains.find(domain)?;
        let mut bytes = [0; DOMAIN_BYTES];
        bytes.copy_from_slice(&number.to_le_bytes()[..DOMAIN_BYTES]);
        Some(AddressKey {
            local: local.as_bytes(),
            domain: bytes,
        })
    }

    fn entry(&self, position: usize) -> &[u8] {
        let first = position - position % STRIDE;
        let Some(start) = self.starts.get(position / STRIDE) else {
            return &[];
        };
        let before: usize = self
            .lens
            .get(first..position)
            .map_or(0, |lens| lens.iter().map(|len| usize::from(*len)).sum());
        let start = *start as usize + before;
        let len = self.lens.get(position).map_or(0, |len| usize::from(*len));
        self.text.get(start..start + len).unwrap_or(&[])
    }

    /// Whether the address at `position` is the one `key` stands for.
    pub(super) fn is(&self, position: usize, key: &AddressKey<'_>) -> bool {
        let entry = self.entry(position);
        entry.len() == key.local.len() + DOMAIN_BYTES
            && entry[..key.local.len()] == *key.local
            && entry[key.local.len()..] == key.domain
    }

    /// Writes the address at `position` into `out` (emptied first).
    pub(super) fn write(&self, position: usize, out: &mut String) {
        out.clear();
        let entry = self.entry(position);
        let Some(split) = entry.len().checked_sub(DOMAIN_BYTES) else {
            return;
        };
        let (local, number) = entry.split_at(split);
        let mut bytes = [0; 4];
        bytes[..DOMAIN_BYTES].copy_from_slice(number);
        // Entries are written from `&str`s and split at an ASCII @: valid UTF-8.
        out.push_str(std::str::from_utf8(local).unwrap_or(""));
        out.push('@');
        out.push_str(self.domains.get(u32::from_le_bytes(bytes)));
    }

    pub(super) fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.lens.shrink_to_fit();
        self.starts.shrink_to_fit();
    }
}

/// The domains of the group's addresses, each once, numbered in the order first seen.
struct Domains {
    text: String,
    ends: Vec<u32>,
    next: Vec<u32>,
    heads: ChainHeads,
    keys: RandomState,
}

impl Default for Domains {
    fn default() -> Self {
        Domains {
            text: String::new(),
            ends: Vec::new(),
            next: Vec::new(),
            heads: ChainHeads::with_capacity(0),
            keys: RandomState::new(),
        }
    }
}

impl Domains {
    fn get(&self, number: u32) -> &str {
        let number = number as usize;
        let start = match number.checked_sub(1) {
            Some(before) => self.ends.get(before).map_or(0, |end| *end as usize),
            None => 0,
        };
        let end = self.ends.get(number).map_or(start, |end| *end as usize);
        self.text.get(start..end).unwrap_or("")
    }

    fn find(&self, domain: &str) -> Option<u32> {
        let mut number = self.heads.head(self.keys.hash_one(domain));
        while let Some(next) = self.next.get(number as usize) {
            if self.get(number) == domain {
                return Some(number);
            }
            number = *next;
        }
        None
    }

    /// The domain's number, given it now if it has none; `None` when no more fit.
    fn intern(&mut self, domain: &str) -> Option<u32> {
        if let Some(number) = self.find(domain) {
            return Some(number);
        }
        let number = u32::try_from(self.ends.len())
            .ok()
            .filter(|n| *n < MAX_DOMAINS)?;
        let end = u32::try_from(self.text.len() + domain.len()).ok()?;
        if self.heads.full_for(self.ends.len() + 1) {
            let mut heads = self.heads.doubled();
            for at in 0..self.ends.len() {
                // Fits: numbers are below MAX_DOMAINS.
                let hash = self.keys.hash_one(self.get(at as u32));
                self.next[at] = heads.link(hash, at as u32);
            }
            self.heads = heads;
        }
        self.text.push_str(domain);
        self.ends.push(end);
        let next = self.heads.link(self.keys.hash_one(domain), number);
        self.next.push(next);
        Some(number)
    }
}

/// Entries a bucket holds on average before the table doubles.
const LOAD: usize = 2;

/// The heads of hash chains: bucket (low bits of a table hash) → the most recently linked
/// position in it; older ones follow the chain the caller keeps in its entries. A power of two
/// buckets, at least one per two entries once [`Self::full_for`] says so.
pub(super) struct ChainHeads {
    heads: Vec<u32>,
}

impl ChainHeads {
    /// Room for `entries` entries (at least 16 buckets).
    pub(super) fn with_capacity(entries: usize) -> Self {
        ChainHeads {
            heads: vec![NO_ENTRY; (entries / LOAD).max(16).next_power_of_two()],
        }
    }

    fn bucket(&self, hash: u64) -> usize {
        // Truncation intended: the low bits of a uniformly random hash pick the bucket.
        (hash as usize) & (self.heads.len() - 1)
    }

    /// Makes `position` the head of its chain and returns the previous head, which the caller
    /// stores as the position's successor.
    pub(super) fn link(&mut self, hash: u64, position: u32) -> u32 {
        let bucket = self.bucket(hash);
        std::mem::replace(&mut self.heads[bucket], position)
    }

    /// The first position of the chain for `hash`, or [`NO_ENTRY`].
    pub(super) fn head(&self, hash: u64) -> u32 {
        self.heads[self.bucket(hash)]
    }

    /// True when `entries` entries would be more than two a bucket: the caller then takes
    /// [`Self::doubled`] and links its entries into it again.
    pub(super) fn full_for(&self, entries: usize) -> bool {
        entries > LOAD * self.heads.len()
    }

    /// An empty table with twice the buckets.
    pub(super) fn doubled(&self) -> Self {
        ChainHeads {
            heads: vec![NO_ENTRY; 2 * self.heads.len()],
        }
    }
}

/// What the plan decided about an address that was not (or no longer) in the group: the
/// position of the receiver that moved there, or one of the values below.
pub(super) type Decision = u32;
/// Upserted with activation.
pub(super) const ADDED: Decision = NO_ENTRY - 1;
/// Not added: blocked, opted out here, or the person opted out.
pub(super) const SKIPPED: Decision = NO_ENTRY - 2;
/// An opt-out candidate decided it.
pub(super) const OPTED_OUT: Decision = NO_ENTRY - 3;
/// Receiver positions are below this, so that a decision is either a position or one of the
/// values above.
pub(super) const MAX_RECEIVERS: u32 = OPTED_OUT;

/// One address new to the group and what was decided about it: 24 bytes.
struct FreshEntry {
    address: AddressPrint,
    next: u32,
    decision: Decision,
}

/// The addresses this plan decided that were not (or no longer) in the group, by fingerprint.
/// Entries are appended and never removed; the chain heads double as entries come.
pub(super) struct FreshIndex {
    entries: Vec<FreshEntry>,
    heads: ChainHeads,
}

impl FreshIndex {
    pub(super) fn new() -> Self {
        FreshIndex {
            entries: Vec::new(),
            heads: ChainHeads::with_capacity(0),
        }
    }

    fn find(&self, address: AddressPrint) -> Option<usize> {
        let mut position = self.heads.head(address.table_hash());
        while let Some(entry) = self.entries.get(position as usize) {
            if entry.address == address {
                return Some(position as usize);
            }
            position = entry.next;
        }
        None
    }

    pub(super) fn contains(&self, address: AddressPrint) -> bool {
        self.find(address).is_some()
    }

    /// The decision recorded for `address`, to read and change.
    pub(super) fn get_mut(&mut self, address: AddressPrint) -> Option<&mut Decision> {
        let position = self.find(address)?;
        self.entries
            .get_mut(position)
            .map(|entry| &mut entry.decision)
    }

    /// Records a decision for an address not recorded yet. More than 4,294,967,294 addresses
    /// new to one group (about 100 GB of them) cannot be indexed: beyond that an address is
    /// not recorded, and a later candidate for it is decided again.
    pub(super) fn insert(&mut self, address: AddressPrint, decision: Decision) {
        let Ok(position) = u32::try_from(self.entries.len()) else {
            return;
        };
        if position == NO_ENTRY {
            return;
        }
        if self.heads.full_for(self.entries.len() + 1) {
            let mut heads = self.heads.doubled();
            for (at, entry) in self.entries.iter_mut().enumerate() {
                // Fits: positions below `position` are u32.
                entry.next = heads.link(entry.address.table_hash(), at as u32);
            }
            self.heads = heads;
        }
        let next = self.heads.link(address.table_hash(), position);
        self.entries.push(FreshEntry {
            address,
            next,
            decision,
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_fresh_index_finds_every_address_across_growth() {
        let prints = Fingerprinter::new();
        let mut fresh = FreshIndex::new();
        let address = |i: usize| prints.address(&format!("a{i}@example.de"));
        for i in 0..10_000 {
            fresh.insert(address(i), i as u32);
        }
        for i in 0..10_000 {
            assert_eq!(fresh.get_mut(address(i)).copied(), Some(i as u32));
        }
        assert!(!fresh.contains(address(10_000)));
        *fresh.get_mut(address(7)).unwrap() = SKIPPED;
        assert_eq!(fresh.get_mut(address(7)).copied(), Some(SKIPPED));
    }

    #[test]
    fn an_entry_is_24_bytes_and_a_print_of_an_address_hashes_like_its_half() {
        assert_eq!(std::mem::size_of::<FreshEntry>(), 24);
        let prints = Fingerprinter::new();
        let address = "anna@example.de";
        assert_eq!(
            prints.address(address).table_hash(),
            prints.address_hash(address)
        );
    }

    #[test]
    fn addresses_are_read_back_and_compared_across_strides_and_domains() {
        let mut addresses = Addresses::default();
        let address = |i: usize| format!("r{i}@d{}.example.de", i % 7);
        for i in 0..1000 {
            assert!(addresses.push(&address(i)));
        }
        assert!(addresses.push("odd"));
        let mut out = String::new();
        for i in 0..1000 {
            addresses.write(i, &mut out);
            assert_eq!(out, address(i));
            let text = address(i);
            let key = addresses.key(&text).unwrap();
            assert!(addresses.is(i, &key));
            assert!(!addresses.is(i + 1, &key));
        }
        addresses.write(1000, &mut out);
        assert_eq!(out, "odd@");
        assert!(addresses.key("r1@elsewhere.de").is_none());
        let other = addresses.key("r1@d2.example.de").unwrap();
        assert!(!addresses.is(1, &other));
    }
}
