//! The bounded cache of match results in front of the trie.
//!
//! Sharded by subject hash so publishers on many threads do not all bounce one lock's cache
//! line; each shard is an `RwLock`, so the common case (a hit) only takes a read lock. The
//! subject is hashed once and that hash is reused for the shard choice and the table lookup.
//! Keys are published subjects, i.e. client-controlled: the entry count is bounded, and
//! subjects longer than [`MAX_CACHED_SUBJECT`] are never cached.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::RwLock;

use super::{has_wildcard, pattern_matches, SublistResult};

/// Shards of a full-size cache (a power of two keeps the index a mask).
const SHARDS: usize = 8;
/// Longer subjects are matched every time: they are rare, and caching them would let a client
/// pin up to `entries * its control line` bytes.
pub(super) const MAX_CACHED_SUBJECT: usize = 512;

struct Entry<T> {
    hash: u64,
    subject: Box<[u8]>,
    result: Arc<SublistResult<T>>,
}

type Shard<T> = RwLock<HashTable<Entry<T>>>;

pub(super) struct MatchCache<T> {
    hasher: DefaultHashBuilder,
    /// Empty when caching is disabled.
    shards: Box<[Shard<T>]>,
    /// Entries per shard before eviction.
    shard_cap: usize,
}

impl<T> MatchCache<T> {
    /// A cache of about `entries` results; 0 disables it.
    pub(super) fn new(entries: usize) -> Self {
        // Small caches (tests, tiny boards) are not worth splitting.
        let n = if entries >= 16 * SHARDS { SHARDS } else { 1 };
        let shards = if entries == 0 {
            Vec::new()
        } else {
            (0..n).map(|_| RwLock::new(HashTable::new())).collect()
        };
        MatchCache {
            hasher: DefaultHashBuilder::default(),
            shards: shards.into_boxed_slice(),
            shard_cap: entries.div_ceil(n),
        }
    }

    pub(super) fn hash(&self, subject: &[u8]) -> u64 {
        if self.shards.is_empty() {
            return 0;
        }
        self.hasher.hash_one(subject)
    }

    fn shard(&self, hash: u64) -> &Shard<T> {
        // hashbrown uses the low bits for the bucket and the top 7 for its tag; take the shard
        // from the middle so it correlates with neither.
        &self.shards[(hash >> 32) as usize & (self.shards.len() - 1)]
    }

    pub(super) fn get(&self, hash: u64, subject: &[u8]) -> Option<Arc<SublistResult<T>>> {
        if self.shards.is_empty() {
            return None;
        }
        let shard = self.shard(hash).read();
        shard
            .find(hash, |e| e.hash == hash && *e.subject == *subject)
            .map(|e| Arc::clone(&e.result))
    }

    /// Caches `result` for `subject` and returns what is cached now. Caller holds the trie
    /// read lock, so a racing miss on the same subject computed the same result: keep the one
    /// already stored (one `Arc` per subject keeps per-connection caches pointer-comparable).
    pub(super) fn insert(
        &self,
        hash: u64,
        subject: &[u8],
        result: Arc<SublistResult<T>>,
    ) -> Arc<SublistResult<T>> {
        if self.shards.is_empty() || subject.len() > MAX_CACHED_SUBJECT {
            return result;
        }
        let mut shard = self.shard(hash).write();
        if let Some(e) = shard.find(hash, |e| e.hash == hash && *e.subject == *subject) {
            return Arc::clone(&e.result);
        }
        if shard.len() >= self.shard_cap {
            // Like nats-server: drop down to half in one go, in table order (which is hash
            // order, so effectively random), instead of paying for LRU bookkeeping on hits.
            let mut excess = shard.len() - self.shard_cap / 2;
            shard.retain(|_| {
                let keep = excess == 0;
                excess = excess.saturating_sub(1);
                keep
            });
        }
        let entry = Entry {
            hash,
            subject: subject.into(),
            result: Arc::clone(&result),
        };
        shard.insert_unique(hash, entry, |e| e.hash);
        result
    }

    /// Drops every cached result the subscription subject `pattern` could be part of.
    /// Caller holds the trie write lock.
    pub(super) fn invalidate(&self, pattern: &[u8]) {
        if self.shards.is_empty() {
            return;
        }
        if !has_wildcard(pattern) {
            // A literal subscription only matches its own subject: one lookup.
            let hash = self.hash(pattern);
            let mut shard = self.shard(hash).write();
            if let Ok(e) = shard.find_entry(hash, |e| e.hash == hash && *e.subject == *pattern) {
                e.remove();
            }
            return;
        }
        for shard in self.shards.iter() {
            shard
                .write()
                .retain(|e| !pattern_matches(pattern, &e.subject));
        }
    }

    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}
