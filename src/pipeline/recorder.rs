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
        let result = store.record_versions_published(&records).await;
        if let Err(e) = &result {
            tracing::warn!(versions = records.len(), error = %e, "recording a batch of published versions failed");
        }
        let n = waiters.len();
        for w in waiters {
            let _ = w.send(result.as_ref().map(|_| ()).map_err(|e| e.for_batch(n)));
        }
    }
}
