//! One pass over the worklists: poll each configured list (A008, concurrently), find the
//! referral versions not seen yet and the UBRNs that left a list, and hand them to
//! [`Pipeline::process_referral`] as tasks, at most `concurrency` at once across the whole
//! pipeline and never two for the same UBRN. [`Pipeline::drain`] repeats passes until one
//! finds nothing to do.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use tokio::task::{Id, JoinError, JoinSet};

use super::{Outcome, PassReport, Pipeline, PollTarget};
use crate::ers::AuthMode;
use crate::events::{PollResult, WorklistBudget, WorklistPolled};
use crate::fhir::requests::{Assigned, FetchWorklist};
use crate::fhir::Coding;
use crate::ids::{Ubrn, Version};
use crate::pipeline::PipelineError;

/// How long a worklist e-RS refused for good is left alone before it is asked again.
pub const REFUSED_LIST_PAUSE: Duration = Duration::from_secs(3600);

/// Whether e-RS's answer refuses the list itself, for good: a 4xx other than 401/403 (the
/// credentials: their own alert, and every list would fail alike) and 429 (slow down).
/// Polling it again every interval changes nothing (issue 21: a list answering 422 was
/// polled 50 times by `run --until-drained`).
fn refuses_the_list(e: &crate::ers::ErsError) -> bool {
    !e.is_retryable()
        && matches!(e.status(), Some(400..=499))
        && !matches!(e.status(), Some(401 | 403 | 429))
}

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
            if r.is_idle() || self.shared.shutdown.is_triggered() {
                return Ok((total, pass));
            }
            if r.published == 0 && r.parked == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(retry_delay) => {}
                    _ = self.shared.shutdown.wait() => return Ok((total, pass)),
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
        let shared = &self.shared;
        // One poller per list across the instances sharing the store: the one holding
        // the list's lease (docs/ha.md); its cursor write is fenced by it.
        let lease = format!("poll:{}:{list}", t.service);
        let Some(fence) = shared.cluster.hold(&lease).await? else {
            report.led_elsewhere += 1;
            return Ok(report);
        };
        let polled = |result, items, to_check, error| WorklistPolled {
            service: t.service.clone(),
            list,
            result,
            items,
            to_check,
            error,
        };
        // A list e-RS refused for good is asked again only after REFUSED_LIST_PAUSE.
        let now_ms = now.timestamp_millis();
        let refused = shared.store.list_refused(&t.service, list).await?;
        if let Some(r) = &refused {
            if now_ms - r.at_ms < REFUSED_LIST_PAUSE.as_millis() as i64 {
                report.worklist_refused += 1;
                return Ok(report);
            }
        }
        let mut req = FetchWorklist::new(t.list.into());
        req.service = Some(t.service.clone());
        req.clinician = t.clinician.clone().map(Assigned::Assigned);
        if let Some(code) = &t.specialty {
            // Resolved before the budget is taken, so a failure costs no worklist call.
            let system = match shared.refdata.get(&shared.ers, "SPECIALTY").await {
                Ok(cs) => cs.url.clone(),
                Err(e) => {
                    tracing::warn!(service = %t.service, list, error = %e, "a004 specialty look-up failed, skipping poll");
                    None
                }
            };
            let Some(system) = system else {
                shared.events.emit(polled(
                    PollResult::Failed,
                    0,
                    0,
                    Some("a004 specialty look-up failed".into()),
                ));
                report.worklist_errors += 1;
                return Ok(report);
            };
            req.specialty = Some(Assigned::Assigned(Coding::new(system, code.clone())));
        }
        if shared.ers.mode() == AuthMode::AppRestricted {
            let day = now.format("%Y-%m-%d").to_string();
            let budget = self.settings.worklist_budget;
            let took = shared
                .store
                .take_worklist_call(&t.service, &day, budget)
                .await?;
            let used = shared.store.worklist_calls(&t.service, &day).await?;
            shared.events.emit(WorklistBudget {
                service: t.service.clone(),
                left: i64::from(budget) - used,
            });
            if !took {
                shared
                    .events
                    .emit(polled(PollResult::BudgetExhausted, 0, 0, None));
                report.budget_exhausted += 1;
                return Ok(report);
            }
        }
        let reading = self
            .worklist_reads
            .acquire()
            .await
            .expect("the pipeline never closes its semaphores");
        let items = shared.ers.worklist_items(&req).await;
        drop(reading);
        let items = match items {
            Ok(items) => {
                if refused.is_some() {
                    shared.store.clear_list_refused(&t.service, list).await?;
                }
                items
            }
            Err(source) => {
                let for_good = refuses_the_list(&source);
                let e = PipelineError::Worklist {
                    service: t.service.clone(),
                    list,
                    source,
                };
                if for_good {
                    // Said once (ERROR), recorded for every instance, alerted; the other
                    // lists go on. Asked again after the pause, in case e-RS changes.
                    shared
                        .store
                        .set_list_refused(&t.service, list, now_ms, &e.to_string())
                        .await?;
                    shared
                        .events
                        .emit(polled(PollResult::Refused, 0, 0, Some(e.to_string())));
                    report.worklist_refused += 1;
                } else {
                    shared
                        .events
                        .emit(polled(PollResult::Failed, 0, 0, Some(e.to_string())));
                    report.worklist_errors += 1;
                }
                return Ok(report);
            }
        };
        // The edge: worklist entries become typed (UBRN, version) pairs here; an entry whose
        // id is not a UBRN is logged and left alone.
        let items: Vec<(Ubrn, Option<Version>)> = items
            .into_iter()
            .filter(|i| i.resource_type == "ReferralRequest")
            .filter_map(|i| match Ubrn::parse(&i.ubrn) {
                Ok(u) => Some((u, i.version.map(Version::new))),
                Err(e) => {
                    tracing::warn!(service = %t.service, list, error = %e, "worklist entry is not a referral ubrn, ignored");
                    None
                }
            })
            .collect();
        report.worklist_items = items.len();
        let current: BTreeSet<Ubrn> = items.iter().map(|(u, _)| u.clone()).collect();
        let versioned: Vec<(&Ubrn, Version)> =
            items.iter().filter_map(|(u, v)| Some((u, (*v)?))).collect();
        let seen = shared.store.seen_versions(&versioned).await?;
        let mut work: Vec<(Ubrn, bool)> = items
            .iter()
            .filter(|(u, v)| v.is_none_or(|v| !seen.contains(&(u.clone(), v))))
            .map(|(u, _)| (u.clone(), false))
            .collect();
        let previous = shared.store.worklist_members(&t.service, list).await?;
        work.extend(
            previous
                .into_iter()
                .filter(|u| !current.contains(u))
                .map(|u| (u, true)),
        );
        shared
            .events
            .emit(polled(PollResult::Ok, items.len(), work.len(), None));

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
        let members: Vec<Ubrn> = members.into_iter().collect();
        shared
            .store
            .set_worklist_members(
                &t.service,
                list,
                &members,
                now.timestamp_millis(),
                shared.cluster.store_fence(&fence),
            )
            .await?;
        Ok(report)
    }

    /// Processes `(ubrn, left_list)` items as tasks on the runtime's worker threads, at most
    /// `concurrency` at once across the whole pipeline. A task that panics counts as a
    /// retryable failure of its UBRN.
    async fn process_all(
        self: &Arc<Self>,
        work: Vec<(Ubrn, bool)>,
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

    /// [`Pipeline::process_referral`] unless another task (of either direction) is already
    /// handling this UBRN (it is on two lists, two schedulers overlap, or an inbound write is
    /// running): then [`Outcome::InProgress`].
    async fn process_claimed(
        &self,
        ubrn: &Ubrn,
        left: bool,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let Some(claim) = self
            .shared
            .claims
            .take(ubrn)
            .await
            .map_err(PipelineError::store(ubrn))?
        else {
            return Ok(Outcome::InProgress);
        };
        // A PAS decision about this referral waiting for the claim promotes our reads.
        let work =
            crate::ers::with_promotion(claim.promotion(), self.process_referral(ubrn, left, now));
        claim.scope(work).await
    }
}

type Done = (Ubrn, bool, Result<Outcome, PipelineError>);

/// The result of a finished referral task, with the item it was for.
fn reap(
    items: &mut HashMap<Id, (Ubrn, bool)>,
    joined: Result<(Id, Result<Outcome, PipelineError>), JoinError>,
) -> Done {
    let (id, r) = match joined {
        Ok((id, r)) => (id, Ok(r)),
        Err(e) => (e.id(), Err(e.is_panic())),
    };
    let (ubrn, left) = items
        .remove(&id)
        .expect("every spawned referral task is in the item map");
    let r = r.unwrap_or_else(|panicked| {
        Err(PipelineError::TaskFailed {
            ubrn: ubrn.clone(),
            panicked,
        })
    });
    (ubrn, left, r)
}
