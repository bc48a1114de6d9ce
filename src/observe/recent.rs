//! The last requests the proxy served, in memory, for the control API's `GET /requests`: each
//! one the request log's JSON line, kept when the request is over (its response body done, or
//! the client gone). Bounded: the oldest line goes when a new one comes past [`Recent::CAPACITY`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

/// The last request records, oldest first.
#[derive(Debug)]
pub struct Recent {
    capacity: usize,
    lines: Mutex<VecDeque<Arc<[u8]>>>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent::new(Recent::CAPACITY)
    }
}

impl Recent {
    /// How many records the proxy keeps.
    pub const CAPACITY: usize = 10_000;

    /// Keeps the last `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Recent {
            capacity,
            lines: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keeps one record: a request-log line, without its newline.
    pub fn push(&self, line: &[u8]) {
        let line: Arc<[u8]> = Arc::from(line.strip_suffix(b"\n").unwrap_or(line));
        let mut lines = self.lock();
        if lines.len() == self.capacity {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The last `n` records, oldest first (fewer when fewer were kept).
    pub fn last(&self, n: usize) -> Vec<Arc<[u8]>> {
        let lines = self.lock();
        let skip = lines.len().saturating_sub(n);
        lines.iter().skip(skip).cloned().collect()
    }

    /// Forgets every record.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<[u8]>>> {
        // A push never leaves the queue half-changed: a poisoned lock still holds a sound queue.
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_oldest_first() {
        let recent = Recent::new(3);
        for i in 0..5 {
            recent.push(format!("{i}\n").as_bytes());
        }
        let kept = recent.last(10);
        let last: Vec<&[u8]> = kept.iter().map(|l| &**l).collect();
        assert_eq!(last, [b"2".as_slice(), b"3", b"4"]);
        assert_eq!(&*recent.last(1)[0], b"4");
        assert!(recent.last(0).is_empty());
        recent.clear();
        assert!(recent.last(10).is_empty());
    }
}
