//! Queue depths for the people watching: how many messages wait on each of the bridge's
//! queues and how many consumers read them, asked of the broker by a passive declare on a
//! channel of its own (the broker closes the channel that asks about a missing queue) over
//! the publisher's connection. The figures come from the broker the bridge publishes to and
//! need neither the management API nor its credentials.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde::Serialize;

use super::{AmqpError, Publisher};

/// One queue as the broker sees it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// What the queue is for: `pas` (the bridge's messages to the PAS), `pas-acks` (its
    /// replies to the PAS), `inbound` (the PAS's messages to the bridge), `dead-letter`.
    pub role: &'static str,
    pub queue: String,
    /// Messages ready on the queue (not those delivered and unacknowledged); `None` when it
    /// could not be read, and `error` says why.
    pub messages: Option<u32>,
    pub consumers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Publisher {
    /// The depth of each `(role, queue)`, in order. A queue the broker does not have, or a
    /// broker that cannot be reached, is reported on its line; nothing is declared.
    pub async fn queue_depths(&self, queues: &[(&'static str, String)]) -> Vec<QueueDepth> {
        let mut out = Vec::with_capacity(queues.len());
        let mut channel: Option<lapin::Channel> = None;
        for (role, queue) in queues {
            let mut row = QueueDepth {
                role,
                queue: queue.clone(),
                messages: None,
                consumers: None,
                error: None,
            };
            if channel.as_ref().is_none_or(|c| !c.status().connected()) {
                channel = match self.side_channel().await {
                    Ok(c) => Some(c),
                    Err(e) => {
                        row.error = Some(e.to_string());
                        out.push(row);
                        continue;
                    }
                };
            }
            let ch = channel.as_ref().expect("opened above");
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            match ch
                .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                .await
            {
                Ok(q) => {
                    row.messages = Some(q.message_count());
                    row.consumers = Some(q.consumer_count());
                }
                Err(e) => {
                    row.error = Some(match e.kind() {
                        lapin::ErrorKind::ProtocolError(p) if p.get_id() == 404 => {
                            "the broker has no such queue".to_string()
                        }
                        _ => AmqpError::Connection(e).to_string(),
                    });
                }
            }
            out.push(row);
        }
        if let Some(ch) = channel {
            if ch.status().connected() {
                let _ = ch.close(200, "depths read".into()).await;
            }
        }
        out
    }
}
