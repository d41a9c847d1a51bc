//! Group commit of confirmed referral versions. Every referral task hands its
//! [`VersionRecord`] to one writer task and waits for the answer; the writer takes what has
//! queued up (up to [`MAX_BATCH`]) and writes it in one store transaction. Each version is
//! still recorded only after its confirms, and a caller hears "recorded" only once its
//! transaction committed, so the delivery semantics of [`crate::store`] are unchanged; what
//! changes is one commit per batch instead of one per referral, which is what bounds a
//! SQLite store under load.

use tokio::sync::{mpsc, oneshot, OnceCell};

use crate::store::{Store, StoreError, VersionRecord};

/// Most versions written in one transaction.
pub const MAX_BATCH: usize = 256;

type Request = (VersionRecord, oneshot::Sender<Result<(), StoreError>>);

/// Hands records to the writer task, started on first use (so building a pipeline needs
/// no runtime). The task ends when the recorder is dropped.
#[derive(Debug)]
pub struct Recorder {
    store: Store,
    tx: OnceCell<mpsc::Sender<Request>>,
}

impl Recorder {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            tx: OnceCell::new(),
        }
    }

    /// Records one version; returns once the transaction holding it committed.
    pub async fn record(&self, record: VersionRecord) -> Result<(), StoreError> {
        let tx = self
            .tx
            .get_or_init(|| async {
                let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
                tokio::spawn(write_batches(self.store.clone(), rx));
                tx
            })
            .await;
        let (done, answer) = oneshot::channel();
        // The writer lives as long as the sender; a closed channel means the runtime is
        // going away, which is a retryable condition for the caller.
        if tx.send((record, done)).await.is_err() {
            return Err(StoreError::WriterGone);
        }
        answer.await.unwrap_or(Err(StoreError::WriterGone))
    }
}

async fn write_batches(store: Store, mut rx: mpsc::Receiver<Request>) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (records, waiters): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let result = store.record_versions_fenced(&records).await;
        if let Err(e) = &result {
            tracing::warn!(versions = records.len(), error = %e, "recording a batch of published versions failed");
        }
        let n = waiters.len();
        for (i, w) in waiters.into_iter().enumerate() {
            let answer = match &result {
                Err(e) => Err(e.for_batch(n)),
                // Its claim was lost meanwhile: left out; whoever holds it now publishes
                // again under the same MSH-10.
                Ok(refused) if refused.contains(&i) => {
                    let f = records[i].fence.as_ref();
                    Err(StoreError::Fenced {
                        op: "record_versions_published",
                        lease: f.map(|f| f.name.clone()).unwrap_or_default(),
                        term: f.map_or(0, |f| f.term),
                    })
                }
                Ok(_) => Ok(()),
            };
            let _ = w.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Ubrn, Version};
    use secrecy::SecretString;
    use std::sync::Arc;

    fn record(i: usize) -> VersionRecord {
        VersionRecord {
            ubrn: Ubrn::parse(&format!("{:012}", 700_000 + i)).unwrap(),
            version: Version::new(1),
            messages: vec![],
            now_ms: 1,
            facts: None,
            fence: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_are_all_recorded_and_answered() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let store = Store::connect(&SecretString::from(url)).await.unwrap();
        let rec = Arc::new(Recorder::new(store.clone()));
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let rec = rec.clone();
                tokio::spawn(async move { rec.record(record(i)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().expect("recorded");
        }
        let ubrns: Vec<Ubrn> = (0..300).map(|i| record(i).ubrn).collect();
        let asked: Vec<(&Ubrn, Version)> = ubrns.iter().map(|u| (u, Version::new(1))).collect();
        assert_eq!(store.seen_versions(&asked).await.unwrap().len(), 300);
    }

    #[tokio::test]
    async fn a_failed_batch_reaches_every_caller_as_retryable() {
        let store = Store::connect(&SecretString::from("sqlite::memory:"))
            .await
            .unwrap();
        let rec = Recorder::new(store.clone());
        rec.record(record(0)).await.expect("recorded while open");
        store.close().await;
        let err = rec.record(record(1)).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("batch of 1 version"), "{err}");
    }
}
