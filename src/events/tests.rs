//! The events update their metrics, broadcast what observers follow, and encode as
//! Prometheus text with low-cardinality labels only.

use std::time::Duration;

use super::*;
use crate::ids::{ControlId, Ubrn, Version};

fn published() -> Published {
    let ubrn = Ubrn::parse("000000070000").unwrap();
    Published {
        control_id: ControlId::outbound(&ubrn, Version::new(5), "I12").unwrap(),
        ubrn,
        version: Version::new(5),
        message_type: "REF^I12".into(),
    }
}

#[test]
fn an_event_counts_and_reaches_subscribers() {
    let events = Events::new();
    let mut rx = events.subscribe();
    events.emit(published());
    events.emit(published());
    assert_eq!(rx.try_recv().unwrap(), Event::Published(published()));
    let m = events.metrics();
    let n = m
        .messages_published
        .get_or_create(&metrics::MessageTypeLabels {
            message_type: "REF^I12".into(),
        })
        .get();
    assert_eq!(n, 2);
}

#[test]
fn counted_only_events_are_not_broadcast() {
    let events = Events::new();
    let mut rx = events.subscribe();
    events.emit(ErsCallFinished {
        operation: "A005",
        status: Some(429),
        latency: Duration::from_millis(40),
    });
    assert!(rx.try_recv().is_err());
    assert_eq!(events.metrics().ers_rate_limited.get(), 1);
}

#[test]
fn clones_share_one_hub() {
    let a = Events::new();
    let b = a.clone();
    b.emit(PublishAttemptFailed);
    assert_eq!(a.metrics().publish_attempts_failed.get(), 1);
}

#[test]
fn exposition_has_prometheus_names_and_no_identifiers() {
    let events = Events::new();
    events.emit(published());
    events.emit(ErsCallFinished {
        operation: "A008",
        status: None,
        latency: Duration::from_millis(3),
    });
    events.emit(WorklistPolled {
        service: "1000".into(),
        list: "REFERRALS_FOR_REVIEW",
        result: PollResult::Ok,
        items: 3,
        to_check: 1,
        error: None,
    });
    let text = events.encode();
    for line in [
        "ers_bridge_messages_published_total{message_type=\"REF^I12\"} 1",
        "ers_bridge_ers_calls_total{operation=\"A008\",status_class=\"error\"} 1",
        "ers_bridge_worklist_polls_total{service=\"1000\",list=\"REFERRALS_FOR_REVIEW\",result=\"ok\"} 1",
        "# TYPE ers_bridge_ers_call_duration_seconds histogram",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("000000070000"), "a UBRN is never a label");
    assert!(
        !text.contains("E000000070000"),
        "a control id is never a label"
    );
}

#[test]
fn status_classes() {
    let classes: Vec<_> = [Some(200), Some(307), Some(422), Some(503), None]
        .into_iter()
        .map(|s| StatusClass::of(s).as_str())
        .collect();
    assert_eq!(classes, ["2xx", "3xx", "4xx", "5xx", "error"]);
}
