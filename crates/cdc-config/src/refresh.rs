//! Secrets that follow rotation: a [`RefreshingSecret`] resolves its reference once (failing like
//! [`SecretRef::resolve_with`] when it cannot), then re-resolves `file:` and `vault:` references every
//! `secrets.refresh_interval_secs` in a background task, so a rotated key or password is picked up without
//! restarting the service. A failed refresh keeps the last good value (and reports the error through
//! [`RefreshingSecret::last_error`]); it never replaces a secret with nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::secret::{SecretRef, SecretResolver};

/// A resolved secret whose value is re-read on a period. Cloning shares the value and the refresh task;
/// the task stops when the last clone is dropped.
#[derive(Clone)]
pub struct RefreshingSecret {
    reference: SecretRef,
    value: watch::Receiver<SecretString>,
    state: Arc<Shared>,
}

struct Shared {
    last_error: Mutex<Option<String>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Ok(mut task) = self.task.lock()
            && let Some(task) = task.take()
        {
            task.abort();
        }
    }
}

impl std::fmt::Debug for RefreshingSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshingSecret")
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

impl RefreshingSecret {
    /// Resolves `reference` now; with `interval` set and a reference that can change (`file:`, `vault:`),
    /// also starts a task on the current Tokio runtime that re-resolves it every `interval`.
    /// Use `config.secrets.refresh_interval()` for `interval`.
    pub async fn start(
        reference: SecretRef,
        resolver: SecretResolver,
        interval: Option<Duration>,
    ) -> Result<Self, Error> {
        let first = reference.resolve_with(&resolver).await?;
        let (tx, rx) = watch::channel(first);
        let state = Arc::new(Shared {
            last_error: Mutex::new(None),
            task: Mutex::new(None),
        });
        if let Some(interval) = interval.filter(|_| reference.can_change()) {
            // The task holds only a weak link to the shared state, so dropping every handle stops it.
            let weak = Arc::downgrade(&state);
            let task_reference = reference.clone();
            let task = tokio::spawn(async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticker.tick().await; // the first tick is immediate; the value was just resolved
                loop {
                    ticker.tick().await;
                    let Some(state) = weak.upgrade() else { break };
                    let outcome = task_reference.resolve_with(&resolver).await;
                    let mut last_error = state.last_error.lock().unwrap_or_else(|e| e.into_inner());
                    match outcome {
                        Ok(value) => {
                            *last_error = None;
                            tx.send_if_modified(|current| {
                                let changed = current.expose_secret() != value.expose_secret();
                                if changed {
                                    *current = value;
                                }
                                changed
                            });
                        }
                        // Keep serving the last good value; the error names the reference, never a value.
                        Err(e) => *last_error = Some(e.to_string()),
                    }
                }
            });
            *state.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        }
        Ok(RefreshingSecret {
            reference,
            value: rx,
            state,
        })
    }

    /// The reference this secret follows (safe to log).
    pub fn reference(&self) -> &SecretRef {
        &self.reference
    }

    /// The current value.
    pub fn current(&self) -> SecretString {
        self.value.borrow().clone()
    }

    /// A receiver that sees every new value (`changed().await`), for components that rebuild a client or
    /// key ring when a secret rotates.
    pub fn subscribe(&self) -> watch::Receiver<SecretString> {
        self.value.clone()
    }

    /// True when a background task re-reads the reference.
    pub fn is_refreshing(&self) -> bool {
        self.state.task.lock().map(|t| t.is_some()).unwrap_or(false)
    }

    /// The error of the latest refresh when it failed (the previous value is still served), else `None`.
    pub fn last_error(&self) -> Option<String> {
        self.state
            .last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_secret_follows_rotation_and_survives_a_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "fake-key-1\n").expect("write");
        let reference: SecretRef = format!("file:{}", path.display()).parse().expect("ref");
        let secret = RefreshingSecret::start(
            reference,
            SecretResolver::from_env(),
            Some(Duration::from_millis(50)),
        )
        .await
        .expect("start");
        assert!(secret.is_refreshing());
        assert_eq!(secret.current().expose_secret(), "fake-key-1");

        let mut rx = secret.subscribe();
        std::fs::write(&path, "fake-key-2\n").expect("rotate");
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("rotation seen within 5 s")
            .expect("sender alive");
        assert_eq!(secret.current().expose_secret(), "fake-key-2");

        std::fs::remove_file(&path).expect("remove");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(secret.current().expose_secret(), "fake-key-2");
        let err = secret.last_error().expect("refresh error recorded");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!err.contains("fake-key"), "{err}");
    }

    #[tokio::test]
    async fn env_and_unset_interval_do_not_refresh() {
        let resolver = SecretResolver::from_env().with_env_map(
            [("CDC_TEST_FAKE".to_owned(), "fake-env-value".to_owned())]
                .into_iter()
                .collect(),
        );
        let env_ref: SecretRef = "env:CDC_TEST_FAKE".parse().expect("ref");
        let s = RefreshingSecret::start(env_ref, resolver.clone(), Some(Duration::from_millis(10)))
            .await
            .expect("start");
        assert!(!s.is_refreshing());
        assert_eq!(s.current().expose_secret(), "fake-env-value");

        let missing: SecretRef = "env:CDC_TEST_MISSING".parse().expect("ref");
        let err = RefreshingSecret::start(missing, resolver, None)
            .await
            .expect_err("unresolvable at start");
        assert!(matches!(err, Error::SecretEnvMissing { .. }), "{err}");
    }
}
