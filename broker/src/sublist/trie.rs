//! The trie itself: levels of nodes keyed by token, with `*` and `>` kept out of the token map
//! in their own child pointers (so a published `*` token, looked up in the map, is never
//! mistaken for a wildcard). No locking here; `Sublist` wraps it in an `RwLock`.

use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;

use super::{split_token, SublistResult};

/// One token position: literal children by token, plus the two wildcard children.
pub(super) struct Level<T> {
    nodes: HashMap<Box<[u8]>, Node<T>>,
    pwc: Option<Box<Node<T>>>,
    fwc: Option<Box<Node<T>>>,
}

/// The subscriptions whose subject ends at this token, and the level below it.
/// Invariant: `next` is `None` or non-empty (empty levels are pruned).
struct Node<T> {
    next: Option<Box<Level<T>>>,
    psubs: Vec<T>,
    /// Few groups per subject in practice; a Vec scans faster than a map and keeps order cheap.
    qsubs: Vec<QueueGroup<T>>,
}

struct QueueGroup<T> {
    name: Box<[u8]>,
    members: Vec<T>,
}

/// Which child of a level a subscription token selects.
enum Child<'a> {
    Pwc,
    Fwc,
    Lit(&'a [u8]),
}

fn child(tok: &[u8]) -> Child<'_> {
    match tok {
        b"*" => Child::Pwc,
        b">" => Child::Fwc,
        t => Child::Lit(t),
    }
}

pub(super) struct Trie<T> {
    root: Level<T>,
    count: usize,
}

impl<T> Level<T> {
    fn new() -> Self {
        Level {
            nodes: HashMap::new(),
            pwc: None,
            fwc: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.pwc.is_none() && self.fwc.is_none()
    }

    #[cfg(test)]
    fn node_count(&self) -> usize {
        let nodes = self.nodes.values();
        let wild = self.pwc.iter().chain(self.fwc.iter()).map(|b| &**b);
        nodes
            .chain(wild)
            .map(|n| 1 + n.next.as_ref().map_or(0, |l| l.node_count()))
            .sum()
    }
}

impl<T: Clone + PartialEq> Node<T> {
    fn new() -> Self {
        Node {
            next: None,
            psubs: Vec::new(),
            qsubs: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.psubs.is_empty() && self.qsubs.is_empty() && self.next.is_none()
    }

    fn add(&mut self, queue: Option<&[u8]>, sub: T) {
        match queue {
            None => self.psubs.push(sub),
            Some(q) => match self.qsubs.iter_mut().find(|g| &*g.name == q) {
                Some(g) => g.members.push(sub),
                None => self.qsubs.push(QueueGroup {
                    name: q.into(),
                    members: vec![sub],
                }),
            },
        }
    }

    /// Removes one occurrence of `sub`. Linear in the node's subscriptions: `T` is only
    /// `PartialEq`, and a node rarely holds more than a handful.
    fn remove(&mut self, queue: Option<&[u8]>, sub: &T) -> bool {
        match queue {
            None => remove_one(&mut self.psubs, sub),
            Some(q) => {
                let Some(gi) = self.qsubs.iter().position(|g| &*g.name == q) else {
                    return false;
                };
                let removed = remove_one(&mut self.qsubs[gi].members, sub);
                if self.qsubs[gi].members.is_empty() {
                    self.qsubs.swap_remove(gi);
                    shrink(&mut self.qsubs);
                }
                removed
            }
        }
    }
}

fn remove_one<T: PartialEq>(v: &mut Vec<T>, sub: &T) -> bool {
    match v.iter().position(|x| x == sub) {
        Some(i) => {
            v.swap_remove(i);
            shrink(v);
            true
        }
        None => false,
    }
}

/// Gives memory back after a burst (e.g. 10k subscribers that left); the 4x hysteresis keeps
/// steady churn from reallocating.
fn shrink<T>(v: &mut Vec<T>) {
    if v.capacity() > 16 && v.len() * 4 < v.capacity() {
        v.shrink_to(v.len() * 2);
    }
}

/// Gathers a match; queue groups are keyed by name while collecting, dropped at the end.
struct Collector<'a, T> {
    psubs: Vec<T>,
    qsubs: Vec<(&'a [u8], Vec<T>)>,
}

impl<'a, T: Clone> Collector<'a, T> {
    fn add(&mut self, n: &'a Node<T>) {
        self.psubs.extend_from_slice(&n.psubs);
        for g in &n.qsubs {
            match self.qsubs.iter_mut().find(|(name, _)| *name == &*g.name) {
                Some((_, members)) => members.extend_from_slice(&g.members),
                None => self.qsubs.push((&g.name, g.members.clone())),
            }
        }
    }
}

impl<T: Clone + PartialEq> Trie<T> {
    pub(super) fn new() -> Self {
        Trie {
            root: Level::new(),
            count: 0,
        }
    }

    pub(super) fn count(&self) -> usize {
        self.count
    }

    /// `subject` must be a valid subscription subject.
    pub(super) fn insert(&mut self, subject: &[u8], queue: Option<&[u8]>, sub: T) {
        let mut level = &mut self.root;
        let mut rest = subject;
        loop {
            let (tok, more) = split_token(rest);
            let node: &mut Node<T> = match child(tok) {
                Child::Pwc => level.pwc.get_or_insert_with(|| Box::new(Node::new())),
                Child::Fwc => level.fwc.get_or_insert_with(|| Box::new(Node::new())),
                Child::Lit(t) => match level.nodes.entry_ref(t) {
                    EntryRef::Occupied(o) => o.into_mut(),
                    EntryRef::Vacant(v) => v.insert_with_key(t.into(), Node::new()),
                },
            };
            match more {
                None => {
                    node.add(queue, sub);
                    self.count += 1;
                    return;
                }
                Some(r) => {
                    level = node.next.get_or_insert_with(|| Box::new(Level::new()));
                    rest = r;
                }
            }
        }
    }

    /// `subject` must be a valid subscription subject.
    pub(super) fn remove(&mut self, subject: &[u8], queue: Option<&[u8]>, sub: &T) -> bool {
        let removed = remove_in(&mut self.root, subject, queue, sub);
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Everything matching the published `subject` (no empty tokens); `None` when nothing does.
    pub(super) fn collect(&self, subject: &[u8]) -> Option<SublistResult<T>> {
        let mut c = Collector {
            psubs: Vec::new(),
            qsubs: Vec::new(),
        };
        collect_in(&self.root, subject, &mut c);
        if c.psubs.is_empty() && c.qsubs.is_empty() {
            return None;
        }
        Some(SublistResult {
            psubs: c.psubs,
            qsubs: c.qsubs.into_iter().map(|(_, m)| m).collect(),
        })
    }

    #[cfg(test)]
    pub(super) fn node_count(&self) -> usize {
        self.root.node_count()
    }
}

/// Walks literal children iteratively; recurses only into `*` branches, so the depth is at
/// most the number of tokens in the subject.
fn collect_in<'a, T: Clone>(mut level: &'a Level<T>, mut rest: &[u8], c: &mut Collector<'a, T>) {
    loop {
        let (tok, more) = split_token(rest);
        // `>` here covers this token and everything after it.
        if let Some(f) = level.fwc.as_deref() {
            c.add(f);
        }
        if let Some(p) = level.pwc.as_deref() {
            match more {
                None => c.add(p),
                Some(r) => {
                    if let Some(next) = p.next.as_deref() {
                        collect_in(next, r, c);
                    }
                }
            }
        }
        let Some(n) = level.nodes.get(tok) else {
            return;
        };
        match (more, n.next.as_deref()) {
            (None, _) => return c.add(n),
            (Some(r), Some(next)) => {
                level = next;
                rest = r;
            }
            (Some(_), None) => return,
        }
    }
}

/// Removes one occurrence and prunes every node the removal left empty, bottom-up.
fn remove_in<T: Clone + PartialEq>(
    level: &mut Level<T>,
    rest: &[u8],
    queue: Option<&[u8]>,
    sub: &T,
) -> bool {
    let (tok, more) = split_token(rest);
    let node = match child(tok) {
        Child::Pwc => level.pwc.as_deref_mut(),
        Child::Fwc => level.fwc.as_deref_mut(),
        Child::Lit(t) => level.nodes.get_mut(t),
    };
    let Some(node) = node else {
        return false;
    };
    let removed = match more {
        None => node.remove(queue, sub),
        Some(r) => match node.next.as_deref_mut() {
            None => false,
            Some(next) => {
                let removed = remove_in(next, r, queue, sub);
                if next.is_empty() {
                    node.next = None;
                }
                removed
            }
        },
    };
    if node.is_empty() {
        match child(tok) {
            Child::Pwc => level.pwc = None,
            Child::Fwc => level.fwc = None,
            Child::Lit(t) => {
                level.nodes.remove(t);
                // Same reason as `shrink`: a level that once held many tokens gives the
                // table back once most are gone.
                if level.nodes.capacity() > 64 && level.nodes.len() * 4 < level.nodes.capacity() {
                    level.nodes.shrink_to(level.nodes.len() * 2);
                }
            }
        }
    }
    removed
}
