//! The subject trie: which subscriptions does a published subject reach?
//!
//! Modelled on nats-server's `sublist.go`: a trie of [`trie::Level`]s whose nodes are keyed by
//! subject token, with separate `*` (one token) and `>` (one or more trailing tokens) child
//! pointers, plus a bounded cache of match results in front of it ([`cache::MatchCache`]) and a
//! generation counter so callers can keep their own per-connection caches.
//!
//! Concurrency (a publish-heavy broker calls [`Sublist::matches`] from every worker thread):
//! - a cache hit takes only the read lock of one cache shard, never a trie lock, and returns the
//!   cached `Arc` (no allocation);
//! - a miss walks the trie under its *read* lock and stores the result while still holding it;
//! - insert/remove take the trie write lock, change the trie, drop the cached results the
//!   changed subscription could have matched, and only then bump the generation.
//!
//! Lock order is always trie → cache shard, so there is no deadlock; and because writers
//! invalidate under the trie write lock, a miss (which holds the trie read lock while it fills
//! the cache) can never store a result computed from an older trie.

mod cache;
mod trie;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use cache::MatchCache;
use trie::Trie;

/// Match results cached at most (nats-server's `slCacheMax`).
pub const DEFAULT_CACHE_SIZE: usize = 1024;

/// The subscriptions a published subject reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SublistResult<T> {
    /// Plain subscriptions: every one of them gets the message.
    pub psubs: Vec<T>,
    /// Queue subscriptions: one `Vec` of members per queue group (grouped by queue name across
    /// all matching subjects, as in nats-server); each group gets the message once.
    pub qsubs: Vec<Vec<T>>,
}

impl<T> SublistResult<T> {
    /// A result with no subscriptions.
    pub fn empty() -> Self {
        SublistResult {
            psubs: Vec::new(),
            qsubs: Vec::new(),
        }
    }

    /// True when nothing is interested in the subject.
    pub fn is_empty(&self) -> bool {
        self.psubs.is_empty() && self.qsubs.is_empty()
    }
}

impl<T> Default for SublistResult<T> {
    fn default() -> Self {
        Self::empty()
    }
}

/// Why a subscription could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectError {
    /// The subject (or queue name) breaks the rules of [`valid_subject`].
    Invalid,
}

impl fmt::Display for SubjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectError::Invalid => f.write_str(
                "invalid subject: tokens are separated by '.', none may be empty or contain \
                 whitespace, and '>' may only be the last token",
            ),
        }
    }
}

impl std::error::Error for SubjectError {}

/// Subscriptions by subject, with `*`/`>` wildcards, queue groups and a match cache.
///
/// `Send + Sync` when `T` is; share it behind an `Arc`. All methods take `&self`.
pub struct Sublist<T> {
    trie: RwLock<Trie<T>>,
    cache: MatchCache<T>,
    /// Bumped after every change, once the cache no longer holds results it invalidated.
    generation: AtomicU64,
    /// Only written under the trie write lock; atomic so `count()` takes no lock.
    count: AtomicUsize,
    /// Shared "no interest" result, so misses on dead subjects allocate nothing either.
    empty: Arc<SublistResult<T>>,
}

impl<T: Clone + PartialEq> Sublist<T> {
    /// A sublist with the default match cache of [`DEFAULT_CACHE_SIZE`] results.
    pub fn new() -> Self {
        Self::with_cache_size(DEFAULT_CACHE_SIZE)
    }

    /// A sublist whose cache holds about `entries` results; 0 disables the cache (nats-server's
    /// `no_sublist_cache`, for workloads where every publish uses a new subject).
    pub fn with_cache_size(entries: usize) -> Self {
        Sublist {
            trie: RwLock::new(Trie::new()),
            cache: MatchCache::new(entries),
            generation: AtomicU64::new(0),
            count: AtomicUsize::new(0),
            empty: Arc::new(SublistResult::empty()),
        }
    }

    /// Stores `sub` under `subject` (wildcards allowed), in queue group `queue` if given.
    ///
    /// Inserting an equal `sub` twice stores it twice (nats-server keeps one copy per sid).
    pub fn insert(&self, subject: &[u8], queue: Option<&[u8]>, sub: T) -> Result<(), SubjectError> {
        if !valid_subject(subject) || !queue.is_none_or(valid_queue) {
            return Err(SubjectError::Invalid);
        }
        let mut trie = self.trie.write();
        trie.insert(subject, queue, sub);
        self.changed(&trie, subject);
        drop(trie);
        Ok(())
    }

    /// Removes one occurrence of `sub` stored under exactly `subject` and `queue`; returns
    /// whether one was found. Nodes left empty are freed, so churn does not grow memory.
    pub fn remove(&self, subject: &[u8], queue: Option<&[u8]>, sub: &T) -> bool {
        if !valid_subject(subject) || !queue.is_none_or(valid_queue) {
            return false;
        }
        let mut trie = self.trie.write();
        let removed = trie.remove(subject, queue, sub);
        if removed {
            self.changed(&trie, subject);
        }
        drop(trie);
        removed
    }

    /// The subscriptions interested in the published `subject`.
    ///
    /// The subject is taken literally: a `*` or `>` token in it is an ordinary token, reached
    /// only by wildcard subscriptions (as in nats-server). A subject with an empty token
    /// matches nothing. Results are cached; a cache hit returns the cached `Arc`.
    pub fn matches(&self, subject: &[u8]) -> Arc<SublistResult<T>> {
        let hash = self.cache.hash(subject);
        if let Some(hit) = self.cache.get(hash, subject) {
            return hit;
        }
        if !publishable(subject) {
            return Arc::clone(&self.empty);
        }
        // Hold the read lock until the result is cached: writers invalidate under the write
        // lock, so what we store cannot be older than the trie.
        let trie = self.trie.read();
        let result = match trie.collect(subject) {
            Some(r) => Arc::new(r),
            None => Arc::clone(&self.empty),
        };
        let result = self.cache.insert(hash, subject, result);
        drop(trie);
        result
    }

    /// Changes on every successful insert and remove. Per-connection caches must read it
    /// *before* calling [`matches`](Self::matches) and keep a result only while it is unchanged.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Number of stored subscriptions (duplicates counted).
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Number of match results currently cached (for monitoring and tests).
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Bookkeeping after a change to `subject`; `trie` is the write-locked trie.
    fn changed(&self, trie: &Trie<T>, subject: &[u8]) {
        self.cache.invalidate(subject);
        self.count.store(trie.count(), Ordering::Relaxed);
        // Release after invalidating: whoever sees the new generation also sees the cache
        // without the stale entries.
        self.generation.fetch_add(1, Ordering::Release);
    }
}

impl<T: Clone + PartialEq> Default for Sublist<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Sublist<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sublist")
            .field("count", &self.count.load(Ordering::Relaxed))
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Whitespace never appears inside a subject (it separates protocol arguments).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0c)
}

/// Valid for SUB: tokens separated by '.', none empty, no whitespace, `>` only as the last
/// token. `*` and `>` are wildcards only as whole tokens; inside a token (`foo.*bar`) they are
/// ordinary characters, exactly as nats-server accepts them.
pub fn valid_subject(s: &[u8]) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut after_fwc = false;
    for t in s.split(|&b| b == b'.') {
        if t.is_empty() || after_fwc || t.iter().any(|&b| is_space(b)) {
            return false;
        }
        after_fwc = t == b">";
    }
    true
}

/// Valid for a pedantic PUB: [`valid_subject`] and no wildcard token.
pub fn valid_literal_subject(s: &[u8]) -> bool {
    valid_subject(s) && s.split(|&b| b == b'.').all(|t| t != b"*" && t != b">")
}

/// A queue name is a single non-empty word.
fn valid_queue(q: &[u8]) -> bool {
    !q.is_empty() && !q.iter().any(|&b| is_space(b))
}

/// What `matches` can look up: no empty token (nats-server's Match returns nothing for those).
/// Cheaper than `valid_subject`, and only run on cache misses.
fn publishable(s: &[u8]) -> bool {
    !s.is_empty()
        && s[0] != b'.'
        && s[s.len() - 1] != b'.'
        && memchr::memmem::find(s, b"..").is_none()
}

/// Splits off the first token: `("foo", Some("bar.baz"))` for `foo.bar.baz`, `("baz", None)`
/// for `baz`. Allocation-free tokenizing for the trie walks.
#[inline]
fn split_token(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr(b'.', s) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// Does subscription `pattern` match published `subject` (no empty tokens)? Used to find the
/// cached results a changed subscription affects; must agree with the trie walk.
fn pattern_matches(pattern: &[u8], subject: &[u8]) -> bool {
    let mut p = pattern.split(|&b| b == b'.');
    let mut s = subject.split(|&b| b == b'.');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(b">"), Some(_)) => return true,
            (Some(b"*"), Some(_)) => {}
            (Some(pt), Some(st)) if pt == st => {}
            _ => return false,
        }
    }
}

/// True when `s` has a `*` or `>` token.
fn has_wildcard(s: &[u8]) -> bool {
    s.split(|&b| b == b'.').any(|t| t == b"*" || t == b">")
}
