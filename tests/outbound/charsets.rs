//! The PAS's text through a retry from the store, in every charset the reader supports
//! (MSH-18 ASCII, `8859/1`, `UNICODE UTF-8`): the stored bytes are the PAS's bytes, decoded
//! with MSH-18 on every try, so the comment reaches e-RS identical on the retry (SQLite and
//! PostgreSQL).

use chrono::Utc;
use ers_bridge::pipeline::inbound::Handled;

use ers_bridge::app::Shutdown;

use crate::helpers::{Harness, Opts, StoreKind};
use crate::inbound::write_calls;

/// A reject of 000000070002 with `note` in NTE-3, encoded as `charset` names.
fn rri(control_id: &str, charset: &str, note: &str) -> Vec<u8> {
    let text = format!(
        "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240116091500||RRI^I12^RRI_I12|{control_id}|P|2.4|||AL|NE||{charset}\r\
         RF1|R^Rejected^HL70283||||O^Outpatient^HL70284|000000070002^UBRN|20240116091500|||WRONGSVC^Wrong service\r\
         PID|1||9912003888^^^NHS^NH||^^^^^^U\r\
         NTE|1|L|{note}\r"
    );
    match charset {
        "8859/1" => text.chars().map(|c| c as u8).collect(),
        _ => text.into_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_in_every_charset_reaches_e_rs_identical_through_a_retry() {
    let cases = [
        ("ASCII", "Ref. vue: cafe creme"),
        ("8859/1", "Réf. vue: café crème"),
        ("UNICODE UTF-8", "Réf. vue: café crème €"),
    ];
    let stores = [StoreKind::Sqlite, StoreKind::Postgres];
    for (i, (store, (charset, note))) in stores
        .into_iter()
        .flat_map(|s| cases.into_iter().map(move |c| (s, c)))
        .enumerate()
    {
        let h = Harness::start(Opts {
            seed: true,
            store,
            ..Opts::default()
        })
        .await;
        let app = h.app(Shutdown::new()).await;
        h.admin("faults", serde_json::json!({"locked_rate": 1.0}))
            .await;
        let now = Utc::now();
        let msg = rri(&format!("PASCHARSET{i}"), charset, note);
        let handled = app.inbound().handle(&msg, now).await.unwrap();
        assert!(
            matches!(handled, Handled::RetryScheduled { .. }),
            "{charset}: {handled:?}"
        );
        h.admin("faults", serde_json::json!({})).await;
        let done = app
            .inbound()
            .retry_due(now + chrono::Duration::minutes(10))
            .await
            .unwrap();
        assert_eq!(
            done,
            [Handled::Done {
                action: "reject".into()
            }],
            "{charset}"
        );
        let calls: Vec<_> = write_calls(&h)
            .await
            .into_iter()
            .filter(|c| c["operation"] == "A014")
            .collect();
        assert!(calls.len() >= 2, "{charset}: a first try and a retry");
        for c in &calls {
            let body = c["body"].to_string();
            assert!(body.contains(note), "{charset}: {note:?} not in {body}");
        }
        app.close().await;
        h.cleanup().await;
    }
}
