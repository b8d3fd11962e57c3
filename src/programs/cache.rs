//! Compiled programs, kept per program id and version so that a document is compiled once per
//! version on each instance. Every resolution still reads the org's program heads (id, version,
//! default flag) from the database, so instances sharing one PostgreSQL never serve a stale
//! version: the cache only saves the parse and compile.

use std::collections::HashMap;
use std::sync::Mutex;

use super::engine::CompiledProgram;

/// Programs the cache holds before it evicts the least recently used.
pub const PROGRAM_CACHE_CAPACITY: usize = 1024;

struct Entry {
    program: CompiledProgram,
    is_default: bool,
    last_used: u64,
}

struct Inner {
    entries: HashMap<i64, Entry>,
    clock: u64,
}

/// A bounded map from program id to its compiled form.
pub struct ProgramCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Default for ProgramCache {
    fn default() -> Self {
        ProgramCache::new(PROGRAM_CACHE_CAPACITY)
    }
}

impl ProgramCache {
    pub fn new(capacity: usize) -> ProgramCache {
        ProgramCache {
            inner: Mutex::new(Inner { entries: HashMap::new(), clock: 0 }),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts and
        // removals), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The compiled program `id` if the cache holds exactly `version` with that default flag.
    pub fn get(&self, id: i64, version: i64, is_default: bool) -> Option<CompiledProgram> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.entries.get_mut(&id)?;
        if entry.program.version != version || entry.is_default != is_default {
            return None;
        }
        entry.last_used = now;
        Some(entry.program.clone())
    }

    /// Stores `program` (replacing any other version of it), evicting the least recently used
    /// entry when full.
    pub fn put(&self, program: CompiledProgram, is_default: bool) {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let id = program.id.0;
        if !inner.entries.contains_key(&id) && inner.entries.len() >= self.capacity {
            let oldest = inner.entries.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                inner.entries.remove(&oldest);
            }
        }
        inner.entries.insert(id, Entry { program, is_default, last_used: now });
    }

    /// Forgets program `id` (after a write on this instance; other instances notice the version).
    pub fn invalidate(&self, id: i64) {
        self.lock().entries.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::programs::model::{ProgramDoc, ProgramId};

    fn program(id: i64, version: i64) -> CompiledProgram {
        CompiledProgram::compile(ProgramId(id), version, ProgramDoc::starter(), Vec::new()).unwrap()
    }

    #[test]
    fn hits_only_the_same_version_and_default_flag() {
        let cache = ProgramCache::new(4);
        cache.put(program(1, 2), true);
        assert!(cache.get(1, 2, true).is_some());
        assert!(cache.get(1, 3, true).is_none());
        assert!(cache.get(1, 2, false).is_none());
        assert!(cache.get(2, 2, true).is_none());
        cache.invalidate(1);
        assert!(cache.is_empty());
    }

    #[test]
    fn is_bounded_and_evicts_the_least_recently_used() {
        let cache = ProgramCache::new(2);
        cache.put(program(1, 1), true);
        cache.put(program(2, 1), false);
        assert!(cache.get(1, 1, true).is_some());
        cache.put(program(3, 1), false);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(1, 1, true).is_some());
        assert!(cache.get(2, 1, false).is_none());
        assert!(cache.get(3, 1, false).is_some());
    }
}
