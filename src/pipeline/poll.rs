//! One pass over the worklists: poll each configured list (A008, concurrently), find the
//! referral versions not seen yet and the UBRNs that left a list, and hand them to
//! [`Pipeline::process_referral`] as tasks, at most `concurrency` at once across the whole
//! pipeline and never two for the same UBRN. [`Pipeline::drain`] repeats passes until one
//! finds nothing to do.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use tokio::task::{Id, JoinError, JoinSet};

use super::outbound::{Outcome, PassReport, Pipeline, PollTarget};
use super::PipelineError;
use crate::ers::AuthMode;
use crate::fhir::requests::{Assigned, FetchWorklist};
use crate::fhir::Coding;

impl Pipeline {
    /// One pass over every configured worklist, now. The lists are polled concurrently; their
    /// referrals share the pipeline's `concurrency` limit.
    pub async fn poll_once(
        self: &Arc<Self>,
        now: DateTime<Utc>,
    ) -> Result<PassReport, PipelineError> {
        let polls = self.targets.iter().map(|t| self.poll_target(t, now));
        let mut report = PassReport::default();
        for r in join_all(polls).await {
            report.add(&r?);
        }
        Ok(report)
    }

    /// Repeats passes until one finds nothing to do, at most `max_passes`; waits `retry_delay`
    /// (tokio time) before a pass that follows one with only failures or deferrals.
    pub async fn drain(
        self: &Arc<Self>,
        max_passes: usize,
        retry_delay: Duration,
    ) -> Result<(PassReport, usize), PipelineError> {
        let mut total = PassReport::default();
        for pass in 1..=max_passes {
            let r = self.poll_once(Utc::now()).await?;
            total.add(&r);
            if r.is_idle() || self.shutdown.is_triggered() {
                return Ok((total, pass));
            }
            if r.published == 0 && r.parked == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(retry_delay) => {}
                    _ = self.shutdown.wait() => return Ok((total, pass)),
                }
            }
        }
        Ok((total, max_passes))
    }

    /// Polls one worklist and processes what is new on it (and what left it).
    pub async fn poll_target(
        self: &Arc<Self>,
        t: &PollTarget,
        now: DateTime<Utc>,
    ) -> Result<PassReport, PipelineError> {
        let mut report = PassReport::default();
        let list = t.list.code();
        let mut req = FetchWorklist::new(t.list.into());
        req.service = Some(t.service.clone());
        req.clinician = t.clinician.clone().map(Assigned::Assigned);
        if let Some(code) = &t.specialty {
            // Resolved before the budget is taken, so a failure costs no worklist call.
            let system = match self.refdata.get(&self.ers, "SPECIALTY").await {
                Ok(cs) => cs.url.clone(),
                Err(e) => {
                    tracing::warn!(service = %t.service, list, error = %e, "a004 specialty look-up failed, skipping poll");
                    None
                }
            };
            let Some(system) = system else {
                report.worklist_errors += 1;
                return Ok(report);
            };
            req.specialty = Some(Assigned::Assigned(Coding::new(system, code.clone())));
        }
        if self.ers.mode() == AuthMode::AppRestricted {
            let day = now.format("%Y-%m-%d").to_string();
            let budget = self.settings.worklist_budget;
            if !self
                .store
                .take_worklist_call(&t.service, &day, budget)
                .await?
            {
                tracing::warn!(service = %t.service, list, "worklist budget for today used up, skipping poll");
                report.budget_exhausted += 1;
                return Ok(report);
            }
        }
        let items = match self.ers.worklist(&req).await {
            Ok(l) => l.worklist_items(),
            Err(source) => {
                let e = PipelineError::Worklist {
                    service: t.service.clone(),
                    list,
                    source,
                };
                tracing::warn!(error = %e, retryable = e.is_retryable(), "worklist poll failed");
                report.worklist_errors += 1;
                return Ok(report);
            }
        };
        let items: Vec<_> = items
            .into_iter()
            .filter(|i| i.resource_type == "ReferralRequest")
            .collect();
        report.worklist_items = items.len();
        let current: BTreeSet<String> = items.iter().map(|i| i.ubrn.clone()).collect();
        let versioned: Vec<(&str, i64)> = items
            .iter()
            .filter_map(|i| Some((i.ubrn.as_str(), i64::from(i.version?))))
            .collect();
        let seen = self.store.seen_versions(&versioned).await?;
        let mut work: Vec<(String, bool)> = items
            .iter()
            .filter(|i| {
                i.version
                    .is_none_or(|v| !seen.contains(&(i.ubrn.clone(), i64::from(v))))
            })
            .map(|i| (i.ubrn.clone(), false))
            .collect();
        let previous = self.store.worklist_members(&t.service, list).await?;
        work.extend(
            previous
                .into_iter()
                .filter(|u| !current.contains(u))
                .map(|u| (u, true)),
        );
        tracing::info!(service = %t.service, list, items = items.len(), to_check = work.len(), "worklist polled");

        let results = self.process_all(work, now).await;
        let mut members = current;
        for (ubrn, left, r) in results {
            let keep = match r {
                Ok(Outcome::Published(ids)) => {
                    report.published += 1;
                    report.messages += ids.len();
                    false
                }
                Ok(Outcome::Parked(_)) => {
                    report.parked += 1;
                    false
                }
                Ok(Outcome::Deferred) => {
                    report.deferred += 1;
                    true
                }
                Ok(Outcome::Skipped) => false,
                // Another task handles it; keep it a member so a later pass looks again.
                Ok(Outcome::InProgress) => true,
                Err(PipelineError::ShuttingDown) => true,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(ubrn = %ubrn, error = %e, "referral failed, will retry");
                    report.failed += 1;
                    true
                }
                Err(e) => return Err(e),
            };
            // A referral that left the list but could not be checked yet stays a member,
            // so the next pass checks it again.
            if left && keep {
                members.insert(ubrn);
            }
        }
        let members: Vec<String> = members.into_iter().collect();
        self.store
            .set_worklist_members(&t.service, list, &members)
            .await?;
        Ok(report)
    }

    /// Processes `(ubrn, left_list)` items as tasks on the runtime's worker threads, at most
    /// `concurrency` at once across the whole pipeline. A task that panics counts as a
    /// retryable failure of its UBRN.
    async fn process_all(
        self: &Arc<Self>,
        work: Vec<(String, bool)>,
        now: DateTime<Utc>,
    ) -> Vec<Done> {
        let mut results = Vec::with_capacity(work.len());
        let mut running = JoinSet::new();
        let mut items = HashMap::new();
        for (ubrn, left) in work {
            let permit = Arc::clone(&self.permits)
                .acquire_owned()
                .await
                .expect("the pipeline never closes its semaphore");
            let p = Arc::clone(self);
            let u = ubrn.clone();
            let handle = running.spawn(async move {
                let _permit = permit;
                p.process_claimed(&u, left, now).await
            });
            items.insert(handle.id(), (ubrn, left));
            while let Some(joined) = running.try_join_next_with_id() {
                results.push(reap(&mut items, joined));
            }
        }
        while let Some(joined) = running.join_next_with_id().await {
            results.push(reap(&mut items, joined));
        }
        results
    }

    /// [`Pipeline::process_referral`] unless another task is already handling this UBRN
    /// (it is on two lists, or two schedulers overlap): then [`Outcome::InProgress`].
    async fn process_claimed(
        &self,
        ubrn: &str,
        left: bool,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let Some(_claim) = Claim::take(&self.in_flight, ubrn) else {
            return Ok(Outcome::InProgress);
        };
        self.process_referral(ubrn, left, now).await
    }
}

type Done = (String, bool, Result<Outcome, PipelineError>);

/// The result of a finished referral task, with the item it was for.
fn reap(
    items: &mut HashMap<Id, (String, bool)>,
    joined: Result<(Id, Result<Outcome, PipelineError>), JoinError>,
) -> Done {
    let (id, r) = match joined {
        Ok(done) => done,
        Err(e) => (
            e.id(),
            Err(PipelineError::TaskFailed(format!(
                "referral task failed: {e}"
            ))),
        ),
    };
    let (ubrn, left) = items.remove(&id).unwrap_or_default();
    (ubrn, left, r)
}

/// A UBRN being handled; released on drop.
pub(super) struct Claim<'a> {
    set: &'a Mutex<HashSet<String>>,
    ubrn: String,
}

impl<'a> Claim<'a> {
    pub(super) fn take(set: &'a Mutex<HashSet<String>>, ubrn: &str) -> Option<Self> {
        let mut s = set.lock().unwrap_or_else(|e| e.into_inner());
        s.insert(ubrn.to_string()).then(|| Claim {
            set,
            ubrn: ubrn.to_string(),
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut s = self.set.lock().unwrap_or_else(|e| e.into_inner());
        s.remove(&self.ubrn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ubrn_is_claimed_once_until_released() {
        let set = Mutex::new(HashSet::new());
        let first = Claim::take(&set, "000000070000").expect("free");
        assert!(
            Claim::take(&set, "000000070000").is_none(),
            "already claimed"
        );
        let other = Claim::take(&set, "000000070001");
        assert!(other.is_some(), "another UBRN is independent");
        drop(first);
        assert!(
            Claim::take(&set, "000000070000").is_some(),
            "released on drop"
        );
    }
}
