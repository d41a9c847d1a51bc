//! The shutdown signal: one value cloned into every task. Triggering it stops the
//! schedulers from starting new passes and makes publish retries give up; work already
//! confirmed by the broker is still recorded, anything else is redone on the next start.

use std::sync::Arc;

use tokio::sync::watch;

/// A latch that, once triggered, stays triggered. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Asks every holder to stop.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether [`Shutdown::trigger`] has been called.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once the signal is triggered (at once if it already was).
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Triggers the signal on SIGINT (Ctrl-C) or SIGTERM.
    pub fn trigger_on_signals(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                match signal(SignalKind::terminate()) {
                    Ok(mut term) => {
                        tokio::select! {
                            _ = ctrl_c => {}
                            _ = term.recv() => {}
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for sigterm");
                        let _ = ctrl_c.await;
                    }
                }
            }
            #[cfg(not(unix))]
            {
                let _ = ctrl_c.await;
            }
            tracing::info!("shutdown requested");
            this.trigger();
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_completes_after_trigger_and_stays_triggered() {
        let s = Shutdown::new();
        assert!(!s.is_triggered());
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait().await }
        });
        s.clone().trigger();
        waiter.await.unwrap();
        assert!(s.is_triggered());
        // Waiting again returns at once.
        s.wait().await;
    }
}
