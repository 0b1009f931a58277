//! Exact message accounting. Every published message carries a sequence number; each receiver marks
//! it in a bitmap, so a message that never arrived (loss), arrived twice (duplicate) or carries a
//! number nobody sent is found, not just a count that happens to add up.

use serde::Serialize;

/// The sequence numbers one receiver has seen, out of `0..expected`.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    bits: Vec<u64>,
    expected: u64,
    received: u64,
    duplicates: u64,
    out_of_range: u64,
    no_seq: u64,
}

impl SeqTracker {
    pub fn new(expected: u64) -> Self {
        SeqTracker {
            bits: vec![0; expected.div_ceil(64) as usize],
            expected,
            received: 0,
            duplicates: 0,
            out_of_range: 0,
            no_seq: 0,
        }
    }

    /// Mark one delivered message (`None` = the payload was too short to carry a number).
    #[inline]
    pub fn record(&mut self, seq: Option<u64>) {
        self.received += 1;
        let Some(seq) = seq else {
            self.no_seq += 1;
            return;
        };
        if seq >= self.expected {
            self.out_of_range += 1;
            return;
        }
        let (w, b) = ((seq / 64) as usize, seq % 64);
        let mask = 1u64 << b;
        if self.bits[w] & mask != 0 {
            self.duplicates += 1;
        } else {
            self.bits[w] |= mask;
        }
    }

    /// Messages delivered to this receiver so far, duplicates included.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// This receiver alone must have seen every number exactly once (fan-out, 1 → 1).
    pub fn tally(&self) -> Tally {
        self.combine_with(&[])
    }

    /// Queue group: the members together must have seen every number exactly once; a number seen
    /// by two members is a duplicate just like one seen twice by the same member.
    pub fn tally_group(members: &[SeqTracker]) -> Tally {
        match members.split_first() {
            None => Tally::default(),
            Some((first, rest)) => first.combine_with(rest),
        }
    }

    fn combine_with(&self, rest: &[SeqTracker]) -> Tally {
        let mut t = Tally {
            expected: self.expected,
            ..Tally::default()
        };
        for m in std::iter::once(self).chain(rest) {
            assert_eq!(
                m.expected, self.expected,
                "group members track the same numbers"
            );
            t.received += m.received;
            t.duplicates += m.duplicates;
            t.foreign += m.out_of_range + m.no_seq;
        }
        let mut distinct = 0u64;
        for w in 0..self.bits.len() {
            let mut seen = 0u64;
            for m in std::iter::once(self).chain(rest) {
                t.duplicates += u64::from((seen & m.bits[w]).count_ones());
                seen |= m.bits[w];
            }
            distinct += u64::from(seen.count_ones());
        }
        t.missing = self.expected - distinct;
        t
    }
}

/// The verdict on one receiver (or one queue group): all zeros but `expected`/`received` is a pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub expected: u64,
    pub received: u64,
    /// Numbers that never arrived.
    pub missing: u64,
    /// Extra copies of numbers that did arrive.
    pub duplicates: u64,
    /// Messages with a number nobody sent, or too short to carry one.
    pub foreign: u64,
}

impl Tally {
    pub fn is_exact(&self) -> bool {
        self.missing == 0
            && self.duplicates == 0
            && self.foreign == 0
            && self.received == self.expected
    }

    /// Add up several receivers' verdicts (e.g. all 1000 subscribers of a broadcast).
    pub fn sum(all: impl IntoIterator<Item = Tally>) -> Tally {
        all.into_iter().fold(Tally::default(), |a, t| Tally {
            expected: a.expected + t.expected,
            received: a.received + t.received,
            missing: a.missing + t.missing,
            duplicates: a.duplicates + t.duplicates,
            foreign: a.foreign + t.foreign,
        })
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "expected {} deliveries, received {}: {} missing, {} duplicated, {} with unknown sequence numbers",
            self.expected, self.received, self.missing, self.duplicates, self.foreign
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_once_is_exact() {
        let mut t = SeqTracker::new(130);
        for s in (0..130).rev() {
            t.record(Some(s));
        }
        let v = t.tally();
        assert!(v.is_exact(), "{v}");
        assert_eq!(v.received, 130);
    }

    #[test]
    fn a_dropped_message_is_reported() {
        let mut t = SeqTracker::new(100);
        (0..100)
            .filter(|&s| s != 63)
            .for_each(|s| t.record(Some(s)));
        let v = t.tally();
        assert!(!v.is_exact());
        assert_eq!((v.missing, v.duplicates, v.received), (1, 0, 99));
    }

    #[test]
    fn a_duplicate_is_reported_even_when_the_count_adds_up() {
        // 0..99 plus 5 twice: 100 deliveries for 100 expected, but 99 is missing and 5 doubled.
        let mut t = SeqTracker::new(100);
        (0..99).for_each(|s| t.record(Some(s)));
        t.record(Some(5));
        let v = t.tally();
        assert_eq!(v.received, 100);
        assert_eq!((v.missing, v.duplicates), (1, 1));
        assert!(!v.is_exact());
    }

    #[test]
    fn foreign_numbers_are_reported() {
        let mut t = SeqTracker::new(2);
        t.record(Some(0));
        t.record(Some(1));
        t.record(Some(2));
        t.record(None);
        let v = t.tally();
        assert_eq!(v.foreign, 2);
        assert!(!v.is_exact());
    }

    #[test]
    fn queue_group_split_is_exact_and_overlap_is_a_duplicate() {
        let mut members: Vec<SeqTracker> = (0..4).map(|_| SeqTracker::new(1000)).collect();
        for s in 0..1000u64 {
            members[(s * 7 % 4) as usize].record(Some(s));
        }
        let v = SeqTracker::tally_group(&members);
        assert!(v.is_exact(), "{v}");

        // The same message delivered to two members.
        members[1].record(Some(500));
        let v = SeqTracker::tally_group(&members);
        assert_eq!((v.duplicates, v.missing, v.received), (1, 0, 1001));

        // And one the group never got.
        let mut members: Vec<SeqTracker> = (0..2).map(|_| SeqTracker::new(10)).collect();
        (0..10)
            .filter(|&s| s != 9)
            .for_each(|s| members[(s % 2) as usize].record(Some(s)));
        let v = SeqTracker::tally_group(&members);
        assert_eq!((v.missing, v.duplicates), (1, 0));
    }

    #[test]
    fn sums_add_up() {
        let a = Tally {
            expected: 5,
            received: 4,
            missing: 1,
            duplicates: 0,
            foreign: 0,
        };
        let b = Tally {
            expected: 5,
            received: 6,
            missing: 0,
            duplicates: 1,
            foreign: 0,
        };
        let s = Tally::sum([a, b]);
        assert_eq!(
            (s.expected, s.received, s.missing, s.duplicates),
            (10, 10, 1, 1)
        );
        assert!(!s.is_exact());
    }
}
