//! The nodes of one RabbitMQ cluster (`[amqp] urls`, or the single `url`) and the choice of
//! one on every (re)connect of the publisher and the consumer.
//!
//! A connect tries the nodes in turn, starting from the one after the last node that
//! failed: a node that refuses or times out moves on to the next at once, and only a whole
//! round of failures is a failed connect (the caller's backoff counts rounds, not nodes). A
//! permanent error (a declaration the broker refuses) ends the round at once: every node of
//! one cluster would give the same answer. Logs name a node by `host:port` only, never its
//! user or password.

use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::uri::AMQPUri;
use secrecy::{ExposeSecret, SecretString};

use super::AmqpError;

/// The configured nodes and the one a connect starts from.
pub(crate) struct Nodes {
    urls: Vec<SecretString>,
    /// The node to try first next time: the one after the last node tried. A connect
    /// happens again only once the connection it opened is lost (so that node failed), or
    /// after a round in which every node failed (so the round starts where it started).
    next: AtomicUsize,
}

/// What [`Nodes::connect`] opened, and where.
pub(crate) struct OnNode<T> {
    pub(crate) value: T,
    /// `host:port` of the node connected to.
    pub(crate) node: String,
    /// `host:port` of the nodes that failed before it in this round, in the order tried.
    pub(crate) failed: Vec<String>,
}

impl Nodes {
    pub(crate) fn new(urls: Vec<SecretString>) -> Self {
        Self {
            urls,
            next: AtomicUsize::new(0),
        }
    }

    /// One round: `attempt(url)` (an owned copy of the secret, which the attempt's future
    /// may hold) on each node in turn from the one after the last that
    /// failed, each bounded by `timeout` ([`AmqpError::ConnectTimeout`] when it passes),
    /// until one succeeds. A permanent error is returned at once; when every node failed,
    /// the last node's error.
    pub(crate) async fn connect<T, F, Fut>(
        &self,
        timeout: Duration,
        mut attempt: F,
    ) -> Result<OnNode<T>, AmqpError>
    where
        F: FnMut(SecretString) -> Fut,
        Fut: Future<Output = Result<T, AmqpError>>,
    {
        let n = self.urls.len();
        if n == 0 {
            return Err(AmqpError::NoBrokerNodes);
        }
        let start = self.next.load(Ordering::Acquire) % n;
        let mut failed = Vec::new();
        let mut last = None;
        for i in 0..n {
            let index = (start + i) % n;
            let url = &self.urls[index];
            let node = node_name(url.expose_secret());
            self.next.store((index + 1) % n, Ordering::Release);
            let result = match tokio::time::timeout(timeout, attempt(url.clone())).await {
                Ok(r) => r,
                Err(_) => Err(AmqpError::ConnectTimeout {
                    timeout_ms: timeout.as_millis() as u64,
                }),
            };
            match result {
                Ok(value) => {
                    return Ok(OnNode {
                        value,
                        node,
                        failed,
                    })
                }
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => {
                    tracing::debug!(node = %node, error = %e, "broker node failed");
                    failed.push(node);
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one node was tried"))
    }
}

/// `host:port` of an AMQP URL, the port filled in from the scheme when absent; never the
/// user, password or virtual host.
pub(crate) fn node_name(url: &str) -> String {
    match AMQPUri::from_str(url) {
        Ok(u) => format!("{}:{}", u.authority.host, u.authority.port),
        Err(_) => "(unreadable url)".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn nodes(ports: &[u16]) -> Nodes {
        Nodes::new(
            ports
                .iter()
                .map(|p| SecretString::from(format!("amqp://guest:s3cret@10.0.0.1:{p}/%2f")))
                .collect(),
        )
    }

    /// A round where the nodes whose port is in `down` time out, recording the order tried.
    async fn round(
        n: &Nodes,
        down: &[u16],
        tried: &Mutex<Vec<String>>,
    ) -> Result<OnNode<u16>, AmqpError> {
        n.connect(Duration::from_secs(1), |url| {
            let name = node_name(url.expose_secret());
            tried.lock().unwrap().push(name.clone());
            let port: u16 = name.rsplit(':').next().unwrap().parse().unwrap();
            let is_down = down.contains(&port);
            async move {
                if is_down {
                    Err(AmqpError::ConnectTimeout { timeout_ms: 1 })
                } else {
                    Ok(port)
                }
            }
        })
        .await
    }

    #[test]
    fn node_names_show_host_and_port_only() {
        assert_eq!(
            node_name("amqp://guest:s3cret@mq-1.example:5673/%2f"),
            "mq-1.example:5673"
        );
        assert_eq!(node_name("amqp://mq-2/vhost"), "mq-2:5672");
        assert_eq!(node_name("amqps://u:p@mq-3/%2f"), "mq-3:5671");
        assert_eq!(node_name("not a url with s3cret"), "(unreadable url)");
    }

    #[tokio::test]
    async fn a_round_moves_past_failed_nodes_and_the_next_starts_after_the_last_used() {
        let n = nodes(&[1, 2, 3]);
        let tried = Mutex::new(Vec::new());
        let on = round(&n, &[1], &tried).await.unwrap();
        assert_eq!(on.value, 2);
        assert_eq!(on.node, "10.0.0.1:2");
        assert_eq!(on.failed, vec!["10.0.0.1:1".to_string()]);
        // The connection to node 2 was lost: the next connect starts at node 3.
        tried.lock().unwrap().clear();
        let on = round(&n, &[], &tried).await.unwrap();
        assert_eq!(on.value, 3);
        assert!(on.failed.is_empty());
        // Then wraps around to node 1.
        let on = round(&n, &[], &tried).await.unwrap();
        assert_eq!(on.value, 1);
        assert_eq!(*tried.lock().unwrap(), ["10.0.0.1:3", "10.0.0.1:1"]);
    }

    #[tokio::test]
    async fn a_round_of_failures_is_one_error_and_the_next_round_starts_at_the_same_node() {
        let n = nodes(&[1, 2, 3]);
        let tried = Mutex::new(Vec::new());
        let _ = round(&n, &[1], &tried).await.unwrap(); // on node 2; next starts at 3
        tried.lock().unwrap().clear();
        let err = round(&n, &[1, 2, 3], &tried).await.err().unwrap();
        assert!(matches!(err, AmqpError::ConnectTimeout { .. }), "{err}");
        assert_eq!(
            *tried.lock().unwrap(),
            ["10.0.0.1:3", "10.0.0.1:1", "10.0.0.1:2"]
        );
        tried.lock().unwrap().clear();
        let on = round(&n, &[3], &tried).await.unwrap();
        assert_eq!(on.value, 1);
        assert_eq!(*tried.lock().unwrap(), ["10.0.0.1:3", "10.0.0.1:1"]);
    }

    #[tokio::test]
    async fn a_permanent_error_ends_the_round_and_no_nodes_is_an_error() {
        let n = nodes(&[1, 2]);
        let mut calls = 0;
        let err = n
            .connect(Duration::from_secs(1), |_| {
                calls += 1;
                async { Err::<(), _>(AmqpError::ConfirmsNotEnabled) }
            })
            .await
            .err()
            .unwrap();
        assert!(matches!(err, AmqpError::ConfirmsNotEnabled));
        assert_eq!(calls, 1);
        let none = Nodes::new(Vec::new());
        let err = none
            .connect(Duration::from_secs(1), |_| async { Ok(()) })
            .await
            .err()
            .unwrap();
        assert!(matches!(err, AmqpError::NoBrokerNodes));
        assert!(!err.is_retryable());
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_that_never_answers_times_out_and_the_next_is_tried() {
        let n = nodes(&[1, 2]);
        let on = n
            .connect(Duration::from_millis(300), |url| {
                let hangs = url.expose_secret().contains(":1/");
                async move {
                    if hangs {
                        std::future::pending::<()>().await;
                    }
                    Ok(())
                }
            })
            .await
            .unwrap();
        assert_eq!(on.node, "10.0.0.1:2");
        assert_eq!(on.failed, vec!["10.0.0.1:1".to_string()]);
    }
}
