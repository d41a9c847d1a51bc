//! The PAS messages (by MSH-10) being handled in this process. A second copy of a message
//! still being handled (a broker redelivery after a channel loss, a PAS resend before our
//! reply, the consumer and the retry loop on the same row) waits here for the first copy
//! to finish, then finds its outcome in the store and repeats its reply; it is never
//! handled beside it. Like the per-UBRN claims this holds per process (ARCHITECTURE.md).

use std::collections::HashSet;
use std::sync::Mutex;

use crate::hl7::ControlId;

/// The MSH-10s being handled, and a wake-up for copies waiting for one.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    set: Mutex<HashSet<ControlId>>,
    /// Woken whenever a message is no longer in flight.
    released: tokio::sync::Notify,
}

impl InFlight {
    /// Marks `id` as being handled until the guard is dropped, waiting first for a copy
    /// already in flight to finish.
    pub(super) async fn take(&self, id: &ControlId) -> Handling<'_> {
        loop {
            // Registered before the check, so a release in between is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut s = self.set.lock().unwrap_or_else(|e| e.into_inner());
                if s.insert(id.clone()) {
                    return Handling {
                        owner: self,
                        id: id.clone(),
                    };
                }
            }
            released.await;
        }
    }
}

/// One message being handled; released on drop (also when its task is cancelled).
#[derive(Debug)]
pub(super) struct Handling<'a> {
    owner: &'a InFlight,
    id: ControlId,
}

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        self.owner
            .set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        self.owner.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_copy_waits_for_the_first() {
        let f = InFlight::default();
        let id = ControlId::parse("PAS00001").unwrap();
        let first = f.take(&id).await;
        let other = f.take(&ControlId::parse("PAS00002").unwrap()).await;
        let mut second = std::pin::pin!(f.take(&id));
        assert!(
            futures_util::FutureExt::now_or_never(second.as_mut()).is_none(),
            "waits while the first is in flight"
        );
        drop(first);
        let _second = second.await;
        drop(other);
    }
}
