//! Cached dependency health. Background checkers write it; `/readyz` only reads it, so a probe never
//! opens a connection.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// State of one dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyState {
    /// Registered, not checked yet (not ready).
    Unknown,
    /// Last check succeeded.
    Up,
    /// Last check failed.
    Down,
}

#[derive(Debug, Clone)]
struct Entry {
    state: DependencyState,
    message: Option<String>,
    last_checked: Option<OffsetDateTime>,
}

/// One dependency as reported by `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencyStatus {
    /// Dependency name (`kafka`, `postgres`, ...).
    pub name: String,
    /// Current state.
    pub state: DependencyState,
    /// Why it is down (an error message without secrets), if it is.
    pub message: Option<String>,
    /// RFC 3339 time of the last update, if any.
    pub last_checked: Option<String>,
}

/// What `/readyz` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthSnapshot {
    /// True when not shutting down and every dependency is up.
    pub ready: bool,
    /// True once shutdown began (ready is then false so traffic drains away).
    pub shutting_down: bool,
    /// Every registered dependency, by name.
    pub dependencies: Vec<DependencyStatus>,
}

#[derive(Debug, Default)]
struct Inner {
    dependencies: BTreeMap<String, Entry>,
    shutting_down: bool,
}

/// Shared, cheaply cloneable health state.
#[derive(Debug, Clone, Default)]
pub struct HealthState {
    inner: Arc<RwLock<Inner>>,
}

impl HealthState {
    /// An empty state (ready until a dependency is registered).
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while holding the lock cannot leave the map inconsistent (single inserts), so a
    // poisoned lock is still usable.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a dependency in state `Unknown` (no-op when already registered).
    pub fn register(&self, name: impl Into<String>) {
        self.write()
            .dependencies
            .entry(name.into())
            .or_insert(Entry {
                state: DependencyState::Unknown,
                message: None,
                last_checked: None,
            });
    }

    /// Marks `name` up (registering it if needed).
    pub fn set_up(&self, name: impl Into<String>) {
        self.set(name.into(), DependencyState::Up, None);
    }

    /// Marks `name` down with a reason (registering it if needed). Keep secrets out of `reason`.
    pub fn set_down(&self, name: impl Into<String>, reason: impl Into<String>) {
        self.set(name.into(), DependencyState::Down, Some(reason.into()));
    }

    fn set(&self, name: String, state: DependencyState, message: Option<String>) {
        let entry = Entry {
            state,
            message,
            last_checked: Some(OffsetDateTime::now_utc()),
        };
        self.write().dependencies.insert(name, entry);
    }

    /// Reports not-ready from now on, so load balancers stop sending work while the service drains.
    pub fn set_shutting_down(&self) {
        self.write().shutting_down = true;
    }

    /// True when every dependency is up and shutdown has not begun.
    pub fn is_ready(&self) -> bool {
        let inner = self.read();
        !inner.shutting_down
            && inner
                .dependencies
                .values()
                .all(|e| e.state == DependencyState::Up)
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> HealthSnapshot {
        let inner = self.read();
        let dependencies: Vec<DependencyStatus> = inner
            .dependencies
            .iter()
            .map(|(name, e)| DependencyStatus {
                name: name.clone(),
                state: e.state,
                message: e.message.clone(),
                last_checked: e.last_checked.and_then(|t| t.format(&Rfc3339).ok()),
            })
            .collect();
        let ready =
            !inner.shutting_down && dependencies.iter().all(|d| d.state == DependencyState::Up);
        HealthSnapshot {
            ready,
            shutting_down: inner.shutting_down,
            dependencies,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_all_up_and_not_shutting_down() {
        let h = HealthState::new();
        assert!(h.is_ready());
        h.register("kafka");
        h.register("postgres");
        assert!(!h.is_ready());
        h.set_up("kafka");
        h.set_down("postgres", "connection refused");
        let snap = h.snapshot();
        assert!(!snap.ready);
        assert_eq!(snap.dependencies[1].state, DependencyState::Down);
        assert_eq!(
            snap.dependencies[1].message.as_deref(),
            Some("connection refused")
        );
        assert!(snap.dependencies[1].last_checked.is_some());
        h.set_up("postgres");
        assert!(h.is_ready() && h.snapshot().ready);
        assert_eq!(h.snapshot().dependencies[1].message, None);
        h.register("postgres");
        assert!(h.is_ready(), "re-registering keeps the state");
        h.set_shutting_down();
        assert!(!h.is_ready() && !h.snapshot().ready);
    }
}
