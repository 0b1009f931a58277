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

/// One shard per 128-byte line (two 64-byte lines: x86 prefetches in pairs), so threads
/// taking the read locks of neighbouring shards do not bounce each other's cache line.
#[repr(align(128))]
struct Shard<T>(RwLock<HashTable<Entry<T>>>);

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
            (0..n)
                .map(|_| Shard(RwLock::new(HashTable::new())))
                .collect()
        };
        MatchCache {
            hasher: DefaultHashBuilder::default(),
            shards: shards.into_boxed_slice(),
            shard_cap: entries.div_ceil(n),
        }
    }

    /// The cache key (hash) of `subject`, or `None` when it is never cached (cache disabled,
    /// or subject too long): then it is not even hashed.
    pub(super) fn key(&self, subject: &[u8]) -> Option<u64> {
        if self.shards.is_empty() || subject.len() > MAX_CACHED_SUBJECT {
            return None;
        }
        Some(self.hasher.hash_one(subject))
    }

    fn shard(&self, hash: u64) -> &RwLock<HashTable<Entry<T>>> {
        // hashbrown uses the low bits for the bucket and the top 7 for its tag; take the shard
        // from the middle so it correlates with neither.
        &self.shards[(hash >> 32) as usize & (self.shards.len() - 1)].0
    }

    /// `hash` comes from [`key`](Self::key).
    pub(super) fn get(&self, hash: u64, subject: &[u8]) -> Option<Arc<SublistResult<T>>> {
        let shard = self.shard(hash).read();
        shard
            .find(hash, |e| e.hash == hash && *e.subject == *subject)
            .map(|e| Arc::clone(&e.result))
    }

    /// Caches `result` for `subject` (`hash` from [`key`](Self::key)) and returns what is
    /// cached now. Caller holds the trie
    /// read lock, so a racing miss on the same subject computed the same result: keep the one
    /// already stored (one `Arc` per subject keeps per-connection caches pointer-comparable).
    pub(super) fn insert(
        &self,
        hash: u64,
        subject: &[u8],
        result: Arc<SublistResult<T>>,
    ) -> Arc<SublistResult<T>> {
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
            let Some(hash) = self.key(pattern) else {
                return; // too long to have been cached
            };
            let mut shard = self.shard(hash).write();
            if let Ok(e) = shard.find_entry(hash, |e| e.hash == hash && *e.subject == *pattern) {
                e.remove();
            }
            return;
        }
        // Every subject the pattern matches starts with its literal head (`app.3.` for
        // `app.3.*.x`): a cheap prefix compare rejects most entries before the token walk.
        let head = literal_head(pattern);
        for shard in self.shards.iter() {
            shard
                .0
                .write()
                .retain(|e| !(e.subject.starts_with(head) && pattern_matches(pattern, &e.subject)));
        }
    }

    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.read().len()).sum()
    }
}

/// The bytes of `pattern` before its first wildcard token, separator included.
fn literal_head(pattern: &[u8]) -> &[u8] {
    let mut end = 0;
    for t in pattern.split(|&b| b == b'.') {
        if t == b"*" || t == b">" {
            break;
        }
        end += t.len() + 1;
    }
    &pattern[..end.min(pattern.len())]
}

#[cfg(test)]
mod tests {
    use super::literal_head;

    #[test]
    fn literal_head_stops_at_the_first_wildcard() {
        assert_eq!(literal_head(b"app.3.*.x"), b"app.3.");
        assert_eq!(literal_head(b"a.>"), b"a.");
        assert_eq!(literal_head(b"*.a"), b"");
        assert_eq!(literal_head(b">"), b"");
        assert_eq!(literal_head(b"a.*bar.*"), b"a.*bar.");
        assert_eq!(literal_head(b"a.b"), b"a.b");
    }
}
