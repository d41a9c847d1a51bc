//! A throw-away broker topology for the bench clients (`raw_publish`, `ceiling`): fresh
//! names, the bridge's own declarations (quorum queues, the dead-letter exchange), a
//! confirm-mode channel, and deletion of everything declared when done.

use ers_bridge::amqp::Topology;
use lapin::{
    options::{ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions},
    Channel, Connection,
};

/// A connection with one confirm-mode channel and a fresh topology named `<prefix>-<uuid>-…`.
pub struct BenchTopology {
    pub conn: Connection,
    pub ch: Channel,
    pub t: Topology,
}

impl BenchTopology {
    pub async fn declare(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let t = Topology {
            tenant: "default".into(),
            exchange: format!("{prefix}-{suffix}-to-pas"),
            pas_queue: format!("{prefix}-{suffix}-pas"),
            pas_ack_queue: format!("{prefix}-{suffix}-acks"),
            inbound_queue: format!("{prefix}-{suffix}-from-pas"),
            dead_letter_exchange: format!("{prefix}-{suffix}-dlx"),
            dead_letter_queue: format!("{prefix}-{suffix}-dlq"),
            inbound_delivery_limit: 5,
            single_active_consumer: false,
            dead_letter_at_least_once: true,
        };
        let conn = Connection::connect(url, Default::default()).await?;
        let ch = conn.create_channel().await?;
        t.declare(&ch).await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Self { conn, ch, t })
    }

    /// Deletes the queues and exchanges declared, then closes the connection.
    pub async fn delete(self) -> anyhow::Result<()> {
        let t = &self.t;
        for q in [
            &t.pas_queue,
            &t.pas_ack_queue,
            &t.inbound_queue,
            &t.dead_letter_queue,
        ] {
            self.ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        for e in [&t.exchange, &t.dead_letter_exchange] {
            self.ch
                .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
                .await?;
        }
        let _ = self.conn.close(200, "done".into()).await;
        Ok(())
    }
}
