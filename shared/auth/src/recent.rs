//! What an instance read a moment ago, kept so that repeated unauthenticated or
//! failed attempts cost no further store reads. Each caller decides how old an entry it
//! accepts (`get(key, max_age)`), so one read can serve a strict and a lenient use.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries before the map is emptied: a bound on memory under a flood of distinct keys, not an
/// eviction policy (a flood only costs the reads it would have cost without the cache).
const MAX_ENTRIES: usize = 4096;

pub struct Recent<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Self { entries: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash, V: Clone> Recent<K, V> {
    /// The value stored for `key` if it was read less than `max_age` ago.
    pub fn get(&self, key: &K, max_age: Duration) -> Option<V> {
        let map = self.entries.lock().expect("not poisoned");
        map.get(key).filter(|(at, _)| at.elapsed() < max_age).map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: K, value: V) {
        let mut map = self.entries.lock().expect("not poisoned");
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, (Instant::now(), value));
    }

    pub fn forget(&self, key: &K) {
        self.entries.lock().expect("not poisoned").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_age_out_per_caller_and_the_map_stays_bounded() {
        let r = Recent::default();
        r.put(1, "a");
        assert_eq!(r.get(&1, Duration::from_secs(60)), Some("a"));
        assert_eq!(r.get(&1, Duration::ZERO), None, "older than a zero max age");
        assert_eq!(r.get(&2, Duration::from_secs(60)), None);
        for k in 0..(MAX_ENTRIES as i32 + 10) {
            r.put(k, "x");
        }
        assert!(r.entries.lock().unwrap().len() <= MAX_ENTRIES);
        r.forget(&(MAX_ENTRIES as i32 + 9));
        assert_eq!(r.get(&(MAX_ENTRIES as i32 + 9), Duration::from_secs(60)), None);
    }
}
