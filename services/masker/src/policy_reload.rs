//! Keeps the masker's policy current: re-reads the policy file when its content changes (polled)
//! or on SIGHUP, and publishes a new [`Masker`] only when the new policy parses and checks. A bad
//! edit keeps the previous policy in force (and is logged); it never unmasks anything. The masking
//! loop takes a snapshot per batch, so a new policy applies only to events masked after the reload.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cdc_mask::{KeyRing, Masker, Policy, PolicyContext};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What building a masker from the policy file needs.
#[derive(Debug, Clone)]
pub struct PolicySource {
    pub path: PathBuf,
    pub keys: KeyRing,
    /// Key id of the vault's AES-256 key; `None` = no vault (tokenize is refused).
    pub vault_key_id: Option<String>,
}

impl PolicySource {
    /// Loads and checks the policy and builds a masker (fails naming the file and key).
    pub fn build(&self) -> Result<Masker, cdc_mask::Error> {
        let policy = Policy::load(
            &self.path,
            PolicyContext {
                keys: &self.keys,
                vault_configured: self.vault_key_id.is_some(),
            },
        )?;
        Masker::new(policy, self.keys.clone(), self.vault_key_id.clone())
    }
}

/// Watches the file every `interval` and on each change of `sighup`, publishing into `tx`.
pub async fn watch_policy(
    source: PolicySource,
    tx: watch::Sender<Arc<Masker>>,
    mut sighup: watch::Receiver<u64>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut last = std::fs::read(&source.path).ok();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => false,
            r = sighup.changed() => {
                if r.is_err() {
                    // No more SIGHUPs can come; keep polling the file.
                    sighup = watch::channel(0).1;
                }
                true
            }
        };
        let current = std::fs::read(&source.path).ok();
        if !forced && current == last {
            continue;
        }
        last = current;
        match source.build() {
            Ok(masker) => {
                let version = masker.policy().version;
                let previous = tx.borrow().policy().version;
                tx.send_replace(Arc::new(masker));
                tracing::info!(
                    file = %source.path.display(),
                    policy_version = version,
                    previous_version = previous,
                    "Masking policy reloaded"
                );
            }
            Err(e) => tracing::error!(
                file = %source.path.display(),
                error = %e,
                "Masking policy reload failed; the previous policy stays in force"
            ),
        }
    }
}
