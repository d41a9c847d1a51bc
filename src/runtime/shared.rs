//! What both directions share, owned by [`crate::app::App`]: the e-RS client, the store, the
//! link to the PAS ([`PasLink`]), the A004 cache, the per-UBRN claims, the shutdown signal and the event
//! hub. A pipeline holds an `Arc<Shared>` and never builds or closes these itself.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Shutdown;
use crate::ers::{ErsClient, Promotion, RefDataCache};
use crate::events::Events;
use crate::ids::Ubrn;
use crate::store::Store;
use crate::transport::PasLink;

/// The parts every direction uses.
#[derive(Debug)]
pub struct Shared {
    pub ers: ErsClient,
    pub store: Store,
    /// The way to the PAS (the broker by default): what the pipelines deliver through.
    pub pas: PasLink,
    /// A004 code systems (the specialty filter's system, rejection reasons), refreshed
    /// daily.
    pub refdata: RefDataCache,
    /// UBRNs a task of either direction is working on now: an inbound write and an outbound
    /// fetch of the same referral never run at once.
    pub claims: Claims,
    pub shutdown: Shutdown,
    pub events: Events,
}

/// The UBRNs being worked on in this process; [`Claims::take`] gives at most one
/// [`Claim`] per UBRN at a time.
///
/// Today the set is in memory, which makes the rule hold within one bridge process. For two
/// bridges on one store the claim must also be a row in the store (a lease with an owner
/// and an expiry, so a crashed instance's claims lapse); `take` is async so that lease can
/// be added behind this API without changing its callers (ARCHITECTURE.md, invariants).
#[derive(Debug, Default)]
pub struct Claims {
    /// Each held UBRN with the promotion a waiting decision raises for its holder.
    set: Mutex<HashMap<Ubrn, Promotion>>,
    /// Woken whenever a claim is released, for [`Claims::take_when_free`].
    released: tokio::sync::Notify,
}

impl Claims {
    /// Claims `ubrn` until the returned guard is dropped; `None` when another task holds it.
    pub async fn take(&self, ubrn: &Ubrn) -> Option<Claim<'_>> {
        let mut s = self.set.lock().unwrap_or_else(|e| e.into_inner());
        if s.contains_key(ubrn) {
            return None;
        }
        let promotion = Promotion::default();
        s.insert(ubrn.clone(), promotion.clone());
        Some(Claim {
            claims: self,
            ubrn: ubrn.clone(),
            promotion,
        })
    }

    /// Asks the holder of `ubrn`'s claim to hurry: its e-RS reads (when it runs them under
    /// [`Claim::promotion`]) now pass the queue of outbound reads.
    fn hurry(&self, ubrn: &Ubrn) {
        let s = self.set.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = s.get(ubrn) {
            p.promote();
        }
    }

    /// Claims `ubrn`, waiting for the task that holds it to finish (an inbound decision
    /// behind an outbound fetch of the same referral).
    pub async fn take_when_free(&self, ubrn: &Ubrn) -> Claim<'_> {
        loop {
            // Registered before the check, so a release in between is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(c) = self.take(ubrn).await {
                return c;
            }
            self.hurry(ubrn);
            released.await;
        }
    }
}

/// A claimed UBRN; released on drop.
#[derive(Debug)]
pub struct Claim<'a> {
    claims: &'a Claims,
    ubrn: Ubrn,
    promotion: Promotion,
}

impl Claim<'_> {
    /// Raised when a PAS decision waits for this claim: run the holder's e-RS calls under
    /// it ([`crate::ers::with_promotion`]).
    pub fn promotion(&self) -> Promotion {
        self.promotion.clone()
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut s = self.claims.set.lock().unwrap_or_else(|e| e.into_inner());
        s.remove(&self.ubrn);
        drop(s);
        self.claims.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ubrn_is_claimed_once_until_released() {
        let claims = Claims::default();
        let a = Ubrn::parse("000000070000").unwrap();
        let b = Ubrn::parse("000000070001").unwrap();
        let first = claims.take(&a).await.expect("free");
        assert!(claims.take(&a).await.is_none(), "already claimed");
        let other = claims.take(&b).await;
        assert!(other.is_some(), "another UBRN is independent");
        drop(first);
        assert!(claims.take(&a).await.is_some(), "released on drop");
    }

    #[tokio::test]
    async fn a_waiter_gets_the_claim_when_it_is_released() {
        let claims = std::sync::Arc::new(Claims::default());
        let a = Ubrn::parse("000000070000").unwrap();
        let held = claims.take(&a).await.unwrap();
        let waiter = {
            let (claims, a) = (claims.clone(), a.clone());
            tokio::spawn(async move {
                let _c = claims.take_when_free(&a).await;
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "waits while the claim is held");
        drop(held);
        waiter.await.unwrap();
        assert!(claims.take(&a).await.is_some(), "and released it in turn");
    }
}
