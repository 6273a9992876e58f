//! The task histories intake has read or written, so that a task's later reports cost one
//! append instead of a read and an append.
//!
//! A cached history may be stale (another service appended to the task since): an append
//! based on it fails with a conflict and the entry is dropped, and a report it would
//! reject is judged again on a fresh read before it is parked. So the cache changes speed,
//! never a verdict.

use std::collections::HashMap;
use std::sync::Mutex;

use fleet_events::store::History;

/// Histories by task subject, at most `capacity` of them (the cache is emptied when full).
#[derive(Debug)]
pub struct HistoryCache {
    entries: Mutex<HashMap<String, History>>,
    capacity: usize,
}

impl HistoryCache {
    /// An empty cache holding at most `capacity` histories.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The cached history of `subject`.
    pub fn get(&self, subject: &str) -> Option<History> {
        self.entries.lock().ok()?.get(subject).cloned()
    }

    /// Remembers `history` for `subject`.
    pub fn put(&self, subject: String, history: History) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.capacity && !entries.contains_key(&subject) {
                entries.clear();
            }
            entries.insert(subject, history);
        }
    }

    /// Forgets `subject` (its task ended, or the cached history proved stale).
    pub fn forget(&self, subject: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(subject);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_back_until_forgotten_and_the_cache_stays_bounded() {
        let cache = HistoryCache::new(2);
        let h = History {
            events: Vec::new(),
            last_seq: 7,
        };
        cache.put("a".into(), h.clone());
        assert_eq!(cache.get("a").map(|h| h.last_seq), Some(7));
        cache.forget("a");
        assert!(cache.get("a").is_none());
        cache.put("a".into(), h.clone());
        cache.put("b".into(), h.clone());
        cache.put("c".into(), h);
        assert!(cache.get("a").is_none() && cache.get("c").is_some());
    }
}
