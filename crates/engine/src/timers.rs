//! Timers are data: each machine keeps a small table of named deadlines and reports the earliest.

use std::collections::BTreeMap;
use std::time::Instant;

/// A table of deadlines keyed by a machine's own `Timer` enum.
#[derive(Clone, Debug)]
pub(crate) struct Timers<T: Ord + Copy> {
    deadlines: BTreeMap<T, Instant>,
}

impl<T: Ord + Copy> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            deadlines: BTreeMap::new(),
        }
    }
}

impl<T: Ord + Copy> Timers<T> {
    pub fn set(&mut self, timer: T, at: Instant) {
        self.deadlines.insert(timer, at);
    }

    pub fn stop(&mut self, timer: T) {
        self.deadlines.remove(&timer);
    }

    pub fn get(&self, timer: T) -> Option<Instant> {
        self.deadlines.get(&timer).copied()
    }

    /// True (and the timer is cleared) when `timer` was set and its deadline has passed.
    pub fn expired(&mut self, timer: T, now: Instant) -> bool {
        match self.deadlines.get(&timer) {
            Some(at) if *at <= now => {
                self.deadlines.remove(&timer);
                true
            }
            _ => false,
        }
    }

    pub fn next(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }
}
