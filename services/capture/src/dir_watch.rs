//! Wakes the capture loop when `cdc_raw` changes (inotify on Linux), so a new `_cdc.idx` offset is
//! read at once instead of at the next poll. Polling stays the source of truth: events can be lost
//! (queue overflow) and writes through mmap raise none, so the loop still polls at
//! `poll_interval`; a watcher that cannot be set up only costs latency.

use std::path::Path;
use std::sync::Arc;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// A live watch on one directory; dropping it stops the watch.
pub struct DirWatch {
    _watcher: RecommendedWatcher,
    changed: Arc<Notify>,
}

impl std::fmt::Debug for DirWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatch").finish_non_exhaustive()
    }
}

impl DirWatch {
    /// Watches `dir` (not recursively). `None`, with a warning, when the platform refuses.
    pub fn start(dir: &Path) -> Option<DirWatch> {
        let changed = Arc::new(Notify::new());
        let signal = Arc::clone(&changed);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if wakes(&event) {
                signal.notify_one();
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "File-system watch unavailable; polling only");
                return None;
            }
        };
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(error = %e, dir = %dir.display(), "Cannot watch cdc_raw; polling only");
            return None;
        }
        Some(DirWatch {
            _watcher: watcher,
            changed,
        })
    }

    /// Resolves at the next change (or immediately if one happened since the last call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// Writes, creations and removals wake the loop; opens and reads (our own included) must not, or
/// every pass would wake the next one. Errors (e.g. a queue overflow) wake it: it re-lists anyway.
fn wakes(event: &notify::Result<notify::Event>) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    match event {
        Err(_) => true,
        Ok(e) => matches!(
            e.kind,
            EventKind::Create(_)
                | EventKind::Modify(_)
                | EventKind::Remove(_)
                | EventKind::Access(AccessKind::Close(AccessMode::Write))
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_new_file_wakes_the_waiter() {
        let dir = std::env::temp_dir().join(format!("capture-watch-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir: {e}"));
        let watch = DirWatch::start(&dir).unwrap_or_else(|| panic!("inotify available on Linux"));
        let path = dir.join("CommitLog-7-1_cdc.idx");
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            std::fs::write(path, "10").unwrap_or_else(|e| panic!("write: {e}"));
        });
        let woke = tokio::time::timeout(Duration::from_secs(5), watch.changed()).await;
        assert!(woke.is_ok(), "no wake-up within 5 s");
        writer.await.unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reads_do_not_wake() {
        use notify::EventKind;
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
        let ev = |kind| Ok(notify::Event::new(kind));
        assert!(!wakes(&ev(EventKind::Access(AccessKind::Open(
            AccessMode::Any
        )))));
        assert!(!wakes(&ev(EventKind::Access(AccessKind::Close(
            AccessMode::Read
        )))));
        assert!(wakes(&ev(EventKind::Access(AccessKind::Close(
            AccessMode::Write
        )))));
        assert!(wakes(&ev(EventKind::Modify(ModifyKind::Any))));
        assert!(wakes(&ev(EventKind::Create(CreateKind::File))));
        assert!(wakes(&Err(notify::Error::generic("overflow"))));
    }

    #[tokio::test]
    async fn reading_a_file_does_not_wake_the_waiter() {
        let dir = std::env::temp_dir().join(format!("capture-watch-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir: {e}"));
        let path = dir.join("CommitLog-7-1_cdc.idx");
        std::fs::write(&path, "10").unwrap_or_else(|e| panic!("write: {e}"));
        let watch = DirWatch::start(&dir).unwrap_or_else(|| panic!("inotify available on Linux"));
        for _ in 0..3 {
            let _ = std::fs::read(&path);
        }
        let woke = tokio::time::timeout(Duration::from_millis(300), watch.changed()).await;
        assert!(woke.is_err(), "a read woke the loop");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
