//! The AMQP properties of a delivery as plain data, so a message the bridge cannot read is
//! dead-lettered with the properties the PAS sent it with (message id, correlation id,
//! type, content type, app id, timestamp and headers), plus the bridge's reason headers.
//! Only `amqp/` sees lapin's property types.

use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;

/// What the sender set on a delivery. Header values that are not text or integers are
/// kept as their debug text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryProperties {
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub kind: Option<String>,
    pub app_id: Option<String>,
    pub user_id: Option<String>,
    pub timestamp: Option<u64>,
    pub headers: Vec<(String, String)>,
}

impl DeliveryProperties {
    pub(crate) fn from_basic(p: &BasicProperties) -> Self {
        let s = |v: &Option<lapin::types::ShortString>| v.as_ref().map(|s| s.to_string());
        let headers = p
            .headers()
            .as_ref()
            .map(|t| {
                t.inner()
                    .iter()
                    .map(|(k, v)| (k.to_string(), value_text(v)))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            message_id: s(p.message_id()),
            correlation_id: s(p.correlation_id()),
            content_type: s(p.content_type()),
            content_encoding: s(p.content_encoding()),
            kind: s(p.kind()),
            app_id: s(p.app_id()),
            user_id: s(p.user_id()),
            timestamp: *p.timestamp(),
            headers,
        }
    }

    /// The properties to publish a dead letter with: the original ones, persistent, with
    /// `extra` headers added (replacing any of the same name).
    pub(crate) fn to_basic(&self, extra: &[(String, String)]) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (k, v) in self.headers.iter().chain(extra) {
            headers.insert(k.as_str().into(), AMQPValue::LongString(v.clone().into()));
        }
        let mut p = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        // Read from an AMQP delivery, so within AMQP's limits; a value that is not is left
        // out rather than panicking.
        let set = |v: &Option<String>| v.as_deref().and_then(|v| ShortString::try_new(v).ok());
        if let Some(v) = set(&self.message_id) {
            p = p.with_message_id(v);
        }
        if let Some(v) = set(&self.correlation_id) {
            p = p.with_correlation_id(v);
        }
        if let Some(v) = set(&self.content_type) {
            p = p.with_content_type(v);
        }
        if let Some(v) = set(&self.content_encoding) {
            p = p.with_content_encoding(v);
        }
        if let Some(v) = set(&self.kind) {
            p = p.with_type(v);
        }
        if let Some(v) = set(&self.app_id) {
            p = p.with_app_id(v);
        }
        if let Some(v) = set(&self.user_id) {
            p = p.with_user_id(v);
        }
        if let Some(t) = self.timestamp {
            p = p.with_timestamp(t);
        }
        p
    }
}

fn value_text(v: &AMQPValue) -> String {
    match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        AMQPValue::LongLongInt(i) => i.to_string(),
        AMQPValue::LongInt(i) => i.to_string(),
        AMQPValue::ShortInt(i) => i.to_string(),
        AMQPValue::LongUInt(i) => i.to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_survive_the_round_trip_and_reasons_are_added() {
        let mut h = FieldTable::default();
        h.insert("x-pas-site".into(), AMQPValue::LongString("north".into()));
        h.insert("x-attempt".into(), AMQPValue::LongInt(3));
        let original = BasicProperties::default()
            .with_message_id("PAS0001".into())
            .with_correlation_id("corr-1".into())
            .with_type("RRI^I12".into())
            .with_app_id("pas".into())
            .with_timestamp(1_700_000_000)
            .with_headers(h);
        let kept = DeliveryProperties::from_basic(&original);
        let out = kept.to_basic(&[("x-ers-error".into(), "unreadable".into())]);
        assert_eq!(out.message_id().as_ref().unwrap().as_str(), "PAS0001");
        assert_eq!(out.correlation_id().as_ref().unwrap().as_str(), "corr-1");
        assert_eq!(out.kind().as_ref().unwrap().as_str(), "RRI^I12");
        assert_eq!(out.app_id().as_ref().unwrap().as_str(), "pas");
        assert_eq!(*out.timestamp(), Some(1_700_000_000));
        assert_eq!(*out.delivery_mode(), Some(2));
        let back = DeliveryProperties::from_basic(&out);
        let header = |k: &str| {
            back.headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("x-pas-site").as_deref(), Some("north"));
        assert_eq!(header("x-attempt").as_deref(), Some("3"));
        assert_eq!(header("x-ers-error").as_deref(), Some("unreadable"));
    }
}
