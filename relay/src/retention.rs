//! How much of each stream's log the relay keeps.
//!
//! A device behind the log gets a snapshot (the canonical states), so the
//! log only has to reach back as far as devices usually lag. It is bounded
//! twice: by ops (`--log-keep`) and by bytes (`--log-keep-bytes`, each op
//! counted by its stored text). The count alone is not a bound on memory:
//! an op can be as large as a frame, and a peer holding a write token
//! could keep `--log-keep` frames per stream in Redis.
//!
//! Both stores trim by the same rule, [`Walk`]: the oldest ops go while
//! either bound is exceeded, never the newest. The Redis trim script runs
//! the same steps in Lua; the tests of this module state the rule.

/// The bounds of each stream's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most ops kept.
    pub ops: u64,
    /// Most bytes of ops kept (the newest op stays however large).
    pub bytes: u64,
}

/// A stream's log after a trim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    /// The oldest number the log holds now.
    pub first: u64,
    /// The bytes of the ops it holds.
    pub bytes: u64,
}

impl Retention {
    /// Whether a log of `ops` ops and `bytes` bytes is due a trim: past
    /// either bound by a quarter of it (the slack spares a trim on every
    /// commit), and holding an op a trim may drop. A log of its newest op
    /// alone, larger than the bound (a bound below the frame size), is not
    /// due: it would stay due after every trim.
    pub fn due(&self, ops: u64, bytes: u64) -> bool {
        ops > 1
            && (ops > self.ops.saturating_add(self.ops / 4)
                || bytes > self.bytes.saturating_add(self.bytes / 4))
    }
}

/// A trim in progress: shown the log's ops oldest first, it says which go.
#[derive(Debug, Clone, Copy)]
pub struct Walk {
    keep: Retention,
    head: u64,
    /// The oldest number the count bound keeps.
    goal: u64,
    first: u64,
    bytes: u64,
}

impl Walk {
    /// Starts a trim of a log whose newest number is `head`, whose oldest
    /// is `first`, holding `bytes` bytes of ops.
    pub fn new(keep: Retention, head: u64, first: u64, bytes: u64) -> Self {
        Self {
            keep,
            head,
            goal: head.saturating_sub(keep.ops).saturating_add(1),
            first,
            bytes,
        }
    }

    /// Whether the op `seq` of `size` bytes, the oldest the log still
    /// holds, goes (counted out if so); once one stays, the walk is over.
    pub fn drops(&mut self, seq: u64, size: u64) -> bool {
        let goes = seq < self.head && (seq < self.goal || self.bytes > self.keep.bytes);
        if goes {
            self.bytes = self.bytes.saturating_sub(size);
            self.first = self.first.max(seq.saturating_add(1));
        }
        goes
    }

    /// Where the log starts now, and what it holds.
    pub fn end(self) -> Trimmed {
        Trimmed {
            first: self.first.max(self.goal),
            bytes: self.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: Retention = Retention {
        ops: 10,
        bytes: 100,
    };

    /// Walks the log `sizes` (ops 1, 2, … oldest first) as a store does.
    fn trim(keep: Retention, sizes: &[u64]) -> Trimmed {
        let head = sizes.len() as u64;
        let mut walk = Walk::new(keep, head, 1, sizes.iter().sum());
        for (seq, size) in (1..).zip(sizes) {
            if !walk.drops(seq, *size) {
                break;
            }
        }
        walk.end()
    }

    #[test]
    fn a_log_within_both_bounds_keeps_every_op() {
        assert_eq!(
            trim(KEEP, &[10; 10]),
            Trimmed {
                first: 1,
                bytes: 100
            }
        );
        assert_eq!(trim(KEEP, &[]), Trimmed { first: 1, bytes: 0 });
    }

    #[test]
    fn the_oldest_ops_go_until_the_bytes_fit() {
        // 30 + 40 + 50 + 20 = 140: 30 and 40 go, 70 left.
        assert_eq!(
            trim(KEEP, &[30, 40, 50, 20]),
            Trimmed {
                first: 3,
                bytes: 70
            }
        );
        // Exactly the bound fits.
        assert_eq!(
            trim(KEEP, &[1, 50, 50]),
            Trimmed {
                first: 2,
                bytes: 100
            }
        );
    }

    #[test]
    fn the_count_bound_holds_when_the_bytes_fit() {
        assert_eq!(
            trim(KEEP, &[1; 15]),
            Trimmed {
                first: 6,
                bytes: 10
            }
        );
        // Whichever bound keeps fewer ops wins.
        let mut sizes = vec![1; 12];
        sizes.extend([60, 60]);
        assert_eq!(
            trim(KEEP, &sizes),
            Trimmed {
                first: 14,
                bytes: 60
            }
        );
    }

    #[test]
    fn the_newest_op_stays_however_large() {
        assert_eq!(
            trim(KEEP, &[10, 10, 500]),
            Trimmed {
                first: 3,
                bytes: 500
            }
        );
        assert_eq!(
            trim(KEEP, &[500]),
            Trimmed {
                first: 1,
                bytes: 500
            }
        );
    }

    #[test]
    fn a_walk_started_past_trimmed_ops_keeps_its_first() {
        // Ops 1 to 4 went in an earlier trim: the walk starts at 5.
        let mut walk = Walk::new(KEEP, 7, 5, 90);
        assert!(!walk.drops(5, 30));
        assert_eq!(
            walk.end(),
            Trimmed {
                first: 5,
                bytes: 90
            }
        );
    }

    #[test]
    fn a_trim_is_due_only_past_a_quarter_more_than_either_bound() {
        assert!(!KEEP.due(12, 125));
        assert!(KEEP.due(13, 0));
        assert!(KEEP.due(2, 126));
        // Its newest op alone: nothing a trim may drop.
        assert!(!KEEP.due(1, 126));
        let huge = Retention {
            ops: u64::MAX,
            bytes: u64::MAX,
        };
        assert!(!huge.due(u64::MAX, u64::MAX));
    }
}
