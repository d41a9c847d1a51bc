//! Configuration options: the `[[poll]]` specialty filter, resolved through the A004 cache
//! (one SPECIALTY read however many passes), and the optional fetches of `[pipeline]`.

use ers_bridge::app::Shutdown;

use crate::helpers::{Harness, Opts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn specialty_filter_narrows_the_worklist_and_reads_a004_once() {
    let n = 30;
    let h = Harness::start(Opts {
        generate: n,
        ..Opts::default()
    })
    .await;
    // Service 21012 is cardiology: filtering it on allergy leaves its referrals out.
    let plain = "service = \"21012\"\n";
    let filtered = "service = \"21012\"\nspecialty = \"ALLERGY\"\n";
    let app = h.app_with(plain, filtered, Shutdown::new()).await;
    let first = app.drain(5).await.expect("drain");
    assert!(first.passes >= 2);
    let left_out = n - first.report.published;
    assert!(left_out > 0, "{:?}", first.report);
    let stats = h.stats().await;
    assert_eq!(stats["by_operation"]["A004"], 1, "{stats}");
    app.close().await;

    // Without the filter the cardiology referrals arrive too, and only they.
    let app = h.app(Shutdown::new()).await;
    let second = app.drain(5).await.expect("drain");
    assert_eq!(second.report.published, left_out);
    assert_eq!(h.take_messages().await.len(), n);
    app.close().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinical_information_is_fetched_when_configured() {
    let h = Harness::start(Opts {
        seed: true,
        ..Opts::default()
    })
    .await;
    let app = h
        .app_with(
            "[pipeline]\n",
            "[pipeline]\nfetch_clinical_info = true\nfetch_related_attachments = true\n",
            Shutdown::new(),
        )
        .await;
    // Related referrals' documents are fetched too (000000070005 refers to 000000070004);
    // they must not hold anything back.
    let summary = app.drain(5).await.expect("drain");
    let published = summary.report.published;
    assert!(published > 0 && summary.parked.is_empty(), "{summary:?}");
    let stats = h.stats().await;
    // One clinical information PDF per referral version published.
    assert_eq!(stats["by_operation"]["A007"], published, "{stats}");
    let messages = h.take_messages().await;
    assert_eq!(messages.len(), published);
    // Every message carries the clinical information PDF inline, as its own OBR/OBX group.
    for m in &messages {
        let obr: Vec<_> = m.message.segments_named("OBR").collect();
        assert!(
            obr.iter().any(|s| s.comp(4, 1) == "CLINICAL_INFORMATION"),
            "{} has no clinical information OBR",
            m.ubrn()
        );
        assert!(m
            .message
            .segments_named("OBX")
            .any(|s| s.comp(4, 1) == "clinical-info" && s.get(2, 1, 1, 1) == "ED"));
    }
    // The referral with a related referral also carries the related referral's documents.
    let related = messages
        .iter()
        .find(|m| m.ubrn() == "000000070005")
        .expect("000000070005 published");
    let titles: Vec<String> = related
        .message
        .segments_named("OBR")
        .map(|s| s.comp(4, 2).to_string())
        .collect();
    assert!(
        titles
            .iter()
            .any(|t| t == "Advice and guidance conversation - 000000070004.pdf"),
        "{titles:?}"
    );
    assert!(related
        .message
        .segments_named("OBX")
        .any(|s| s.get(4, 1, 1, 1).starts_with("000000070004-")));
    app.close().await;
    h.cleanup().await;
}
