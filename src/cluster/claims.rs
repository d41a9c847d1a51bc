//! The per-UBRN claim: at most one task, of any direction and of any instance, works on a
//! referral at a time (an inbound write never runs beside an outbound fetch of the same
//! referral, here or in another bridge).
//!
//! Within the process the claim is a set in memory, with a wake-up when one is released
//! and the promotion a waiting decision raises. When the store is shared (PostgreSQL), a
//! claim is also the store lease `ubrn:<UBRN>` ([`super::Cluster`]), whose [`Fence`] the
//! claim's writes carry. A decision waiting for a claim another instance holds asks it to
//! hurry (the lease's `hurry` flag, seen at its next renewal) and waits with a bounded
//! backoff (25 ms doubling to 400 ms), woken at once by a release in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Cluster;
use crate::ers::Promotion;
use crate::ids::Ubrn;
use crate::store::{Fence, StoreError};

/// The UBRNs being worked on; [`Claims::take`] gives at most one [`Claim`] per UBRN at a
/// time, across instances when the store is shared.
#[derive(Debug, Default)]
pub struct Claims {
    /// Each UBRN held in this process with the promotion a waiting decision raises.
    set: Mutex<HashMap<Ubrn, Promotion>>,
    /// Woken whenever a claim is released, for [`Claims::take_when_free`].
    released: tokio::sync::Notify,
    /// Set when the store is shared: claims are also leases.
    cluster: Option<Arc<Cluster>>,
}

impl Claims {
    /// Claims in memory only (one instance: SQLite, tests).
    pub fn local() -> Self {
        Self::default()
    }

    /// Claims that are also store leases when `cluster`'s store is shared.
    pub fn for_cluster(cluster: &Arc<Cluster>) -> Self {
        Self {
            cluster: cluster.is_shared().then(|| cluster.clone()),
            ..Self::default()
        }
    }

    fn lease_name(ubrn: &Ubrn) -> String {
        format!("ubrn:{ubrn}")
    }

    fn unset(&self, ubrn: &Ubrn) {
        let mut s = self.set.lock().unwrap_or_else(|e| e.into_inner());
        s.remove(ubrn);
        drop(s);
        self.released.notify_waiters();
    }

    /// Claims `ubrn` until the returned guard is dropped; `None` when another task (or
    /// instance) holds it.
    pub async fn take(&self, ubrn: &Ubrn) -> Result<Option<Claim<'_>>, StoreError> {
        let promotion = {
            let mut s = self.set.lock().unwrap_or_else(|e| e.into_inner());
            if s.contains_key(ubrn) {
                return Ok(None);
            }
            let promotion = Promotion::default();
            s.insert(ubrn.clone(), promotion.clone());
            promotion
        };
        let fence = match &self.cluster {
            None => None,
            Some(c) => match c
                .take_with(&Self::lease_name(ubrn), Some(promotion.clone()))
                .await
            {
                Ok(Some(f)) => Some(f),
                Ok(None) => {
                    self.unset(ubrn);
                    return Ok(None);
                }
                Err(e) => {
                    self.unset(ubrn);
                    return Err(e);
                }
            },
        };
        Ok(Some(Claim {
            claims: self,
            ubrn: ubrn.clone(),
            promotion,
            fence,
        }))
    }

    /// Asks the holder of `ubrn`'s claim to hurry: its e-RS reads (when it runs them under
    /// [`Claim::promotion`]) now pass the queue of outbound reads. Returns whether the
    /// holder is in this process.
    fn hurry(&self, ubrn: &Ubrn) -> bool {
        let s = self.set.lock().unwrap_or_else(|e| e.into_inner());
        match s.get(ubrn) {
            Some(p) => {
                p.promote();
                true
            }
            None => false,
        }
    }

    /// Claims `ubrn`, waiting for the task that holds it to finish (an inbound decision
    /// behind an outbound fetch of the same referral, in this instance or another).
    pub async fn take_when_free(&self, ubrn: &Ubrn) -> Result<Claim<'_>, StoreError> {
        let mut backoff = Duration::from_millis(25);
        let mut asked_other = false;
        loop {
            // Registered before the check, so a release in between is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(c) = self.take(ubrn).await? {
                return Ok(c);
            }
            let here = self.hurry(ubrn);
            match &self.cluster {
                Some(cluster) if !here => {
                    if !asked_other {
                        asked_other = true;
                        cluster.store.lease_hurry(&Self::lease_name(ubrn)).await?;
                    }
                    tokio::select! {
                        () = released => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(400));
                }
                _ => released.await,
            }
        }
    }
}

/// A claimed UBRN; released on drop (the lease given back in the background).
#[derive(Debug)]
pub struct Claim<'a> {
    claims: &'a Claims,
    ubrn: Ubrn,
    promotion: Promotion,
    fence: Option<Fence>,
}

impl Claim<'_> {
    /// Raised when a PAS decision waits for this claim: run the holder's e-RS calls under
    /// it ([`crate::ers::with_promotion`]).
    pub fn promotion(&self) -> Promotion {
        self.promotion.clone()
    }

    /// The store lease behind this claim, when the store is shared: what the claim's
    /// fenced writes carry.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// Whether this claim is still this process's ([`Cluster::holds`]); always on one
    /// instance. Checked before a publish and before an e-RS write.
    pub fn holds(&self) -> bool {
        match (&self.fence, &self.claims.cluster) {
            (Some(f), Some(c)) => c.holds(f),
            _ => true,
        }
    }
}

tokio::task_local! {
    /// The claim the current task works under (outbound: the referral task), for the
    /// steps deep in it that check or carry it ([`working_fence`], [`still_held`]).
    static WORKING_UNDER: (Fence, Arc<Cluster>);
}

impl Claim<'_> {
    /// Runs `fut` as the work under this claim: [`working_fence`] and [`still_held`] see it.
    pub async fn scope<F: std::future::Future>(&self, fut: F) -> F::Output {
        match (&self.fence, &self.claims.cluster) {
            (Some(f), Some(c)) => WORKING_UNDER.scope((f.clone(), c.clone()), fut).await,
            _ => fut.await,
        }
    }
}

/// The fence of the claim the current task works under ([`Claim::scope`]), if it is a
/// lease.
pub fn working_fence() -> Option<Fence> {
    WORKING_UNDER.try_with(|(f, _)| f.clone()).ok()
}

/// Whether the claim the current task works under is still this process's (true when
/// there is none, or it is not a lease).
pub fn still_held() -> bool {
    WORKING_UNDER.try_with(|(f, c)| c.holds(f)).unwrap_or(true)
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.claims.unset(&self.ubrn);
        if let (Some(f), Some(c)) = (self.fence.take(), &self.claims.cluster) {
            c.forget(&f);
            let store = c.store.clone();
            // Outside a runtime (a test's teardown) the lease simply lapses.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = store.lease_release(&f).await {
                        tracing::debug!(error = %e, lease = %f.name, "giving a claim back failed; it lapses");
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ubrn_is_claimed_once_until_released() {
        let claims = Claims::local();
        let a = Ubrn::parse("000000070000").unwrap();
        let b = Ubrn::parse("000000070001").unwrap();
        let first = claims.take(&a).await.unwrap().expect("free");
        assert!(claims.take(&a).await.unwrap().is_none(), "already claimed");
        let other = claims.take(&b).await.unwrap();
        assert!(other.is_some(), "another UBRN is independent");
        drop(first);
        assert!(claims.take(&a).await.unwrap().is_some(), "released on drop");
    }

    #[tokio::test]
    async fn a_waiter_gets_the_claim_when_it_is_released() {
        let claims = Arc::new(Claims::local());
        let a = Ubrn::parse("000000070000").unwrap();
        let held = claims.take(&a).await.unwrap().unwrap();
        let waiter = {
            let (claims, a) = (claims.clone(), a.clone());
            tokio::spawn(async move {
                let _c = claims.take_when_free(&a).await.unwrap();
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "waits while the claim is held");
        drop(held);
        waiter.await.unwrap();
        assert!(
            claims.take(&a).await.unwrap().is_some(),
            "and released it in turn"
        );
    }
}
