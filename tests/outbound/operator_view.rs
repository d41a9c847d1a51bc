//! What the on-call operator sees and does (issue 25), over real HTTP after real work: the
//! summary's health strip and queue depths read from the real broker, the unread-PAS-queue
//! alert and its gauge, needs-action resolved and retried from the API with who did it
//! recorded, the code-table misses of a real mapping run kept and listed, and the trends
//! drawn from the store's per-minute counts.

use chrono::Utc;
use ers_bridge::config::AlertsConfig;
use ers_bridge::pipeline::inbound::Handled;
use serde_json::Value;

use crate::helpers::{Harness, Opts};
use crate::inbound::{rri, seeded};
use crate::monitor::{app_with_monitor, app_with_monitor_text, get, TOKEN};

/// `GET url` with the API token: the status and the JSON body.
async fn get_json(url: &str) -> (u16, Value) {
    let r = get(url, Some(TOKEN)).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn summary(base: &str) -> Value {
    let (code, v) = get_json(&format!("{base}/api/summary")).await;
    assert_eq!(code, 200, "{v}");
    v
}

fn pas_row<'a>(s: &'a Value, queue: &str) -> &'a Value {
    s["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["role"] == "pas")
        .filter(|q| q["queue"] == queue)
        .unwrap_or_else(|| panic!("the pas queue {queue} in {s}"))
}

/// After a drain with nothing consuming the PAS queue: the page's data says the broker is
/// connected, e-RS answered, each list was polled, and the PAS queue holds every message
/// published with no consumer; the alert probe (threshold 0 minutes) raises
/// `pas_queue_unread` naming the queue, sets the gauges, and clears once the PAS reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_queue_depths_come_from_the_real_broker_and_an_unread_pas_queue_is_alerted() {
    let h = Harness::start(Opts {
        generate: 6,
        ..Opts::default()
    })
    .await;
    let (app, base, shutdown) = app_with_monitor(&h).await;
    app.drain(10).await.unwrap();
    let published: i64 = app
        .shared()
        .store
        .published_counts()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert!(published >= 6, "{published}");

    let s = summary(&base).await;
    let health = &s["health"];
    assert_eq!(health["broker"]["ok"], true, "{health}");
    assert_eq!(health["ers"]["auth_ok"], true, "{health}");
    let last_ers = health["ers"]["last_success_ms"]
        .as_i64()
        .expect("an e-RS answer");
    assert!(
        Utc::now().timestamp_millis() - last_ers < 600_000,
        "{health}"
    );
    let polls = health["polls"].as_array().unwrap();
    assert!(!polls.is_empty(), "{health}");
    for p in polls {
        assert!(p["last_ms"].as_i64().is_some(), "every list polled: {p}");
        assert!(p["refused"].is_null(), "{p}");
    }
    let pas = pas_row(&s, &h.pas_queue());
    assert_eq!(pas["messages"].as_i64(), Some(published), "{pas}");
    assert_eq!(pas["consumers"].as_i64(), Some(0), "{pas}");
    // The four roles are all there, each with figures or a reason.
    let roles: Vec<&str> = s["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["pas", "pas-acks", "inbound", "dead-letter"]);
    for q in s["queues"].as_array().unwrap() {
        assert!(q["messages"].is_number() || q["error"].is_string(), "{q}");
    }

    let cfg = AlertsConfig {
        pas_queue_unread_minutes: 0,
        ..AlertsConfig::default()
    };
    let started = Utc::now().timestamp_millis();
    let watched = app.watched();
    let conditions = ers_bridge::monitor::alerts::probe(&watched, &cfg, started, &[]).await;
    let unread = conditions
        .iter()
        .find(|c| c.name == "pas_queue_unread")
        .expect("the condition is probed");
    let detail = unread.firing.as_deref().expect("it fires");
    assert!(detail.contains(&h.pas_queue()), "{detail}");
    assert!(
        detail.contains(&format!("{published} messages")),
        "{detail}"
    );
    let metrics = get(&format!("{base}/metrics"), None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = format!(
        "ers_bridge_queue_messages{{role=\"pas\",queue=\"{}\"}} {published}",
        h.pas_queue()
    );
    assert!(metrics.contains(&gauge), "{gauge} in {metrics}");

    // The PAS reads its queue: the condition clears.
    assert_eq!(h.take_messages().await.len() as i64, published);
    let conditions = ers_bridge::monitor::alerts::probe(&watched, &cfg, started, &[]).await;
    let unread = conditions
        .iter()
        .find(|c| c.name == "pas_queue_unread")
        .unwrap();
    assert_eq!(unread.firing, None);
    let s = summary(&base).await;
    assert_eq!(pas_row(&s, &h.pas_queue())["messages"].as_i64(), Some(0));

    shutdown.trigger();
    app.close().await;
    h.cleanup().await;
}

async fn post(url: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new().post(url).bearer_auth(TOKEN);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// Needs-action records resolved (with a note) and retried from the API: each recorded
/// with the token's name; a resolve without a note, or of an id that is not open, is
/// refused and changes nothing; a retried record goes back to the retry loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_action_is_resolved_and_retried_from_the_api_with_who_recorded() {
    let (h, plain) = seeded(true).await;
    plain.close().await;
    let (app, base, shutdown) = app_with_monitor(&h).await;
    for (id, ubrn) in [
        ("PASREJ0020", "000000070002"),
        ("PASREJ0021", "000000070001"),
    ] {
        let msg = rri(
            id,
            "R^Rejected^HL70283",
            ubrn,
            "WRONGSVC^Wrong service",
            "No",
        );
        let handled = app.inbound().handle(&msg, Utc::now()).await.unwrap();
        assert!(
            matches!(handled, Handled::NeedsAction { .. }),
            "{handled:?}"
        );
    }
    let listed: Value = get_json(&format!("{base}/api/needs-action")).await.1;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    // `needs-action list --json`: the API's form, newest first.
    let config = h.config_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        crate::common::bridge()
            .env("RUST_LOG", "warn")
            .args(["needs-action", "--json", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let cli_list: Value = serde_json::from_str(&crate::common::assert_success(&out)).unwrap();
    let ids: Vec<&str> = cli_list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["control_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{cli_list}");
    assert!(ids.contains(&"PASREJ0020") && ids.contains(&"PASREJ0021"));

    // The page lists them with the PAS's MSH-10 and the buttons to act.
    let profile = tempfile::tempdir().unwrap();
    let dom = crate::monitor::chromium_run(
        &format!("{base}/#token={TOKEN}"),
        profile.path(),
        vec!["--dump-dom".into()],
    )
    .await
    .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    for id in ["PASREJ0020", "PASREJ0021"] {
        assert!(html.contains(&format!("<td>{id}</td>")), "{id}: {html}");
        assert!(
            html.contains(&format!(
                "<td data-id=\"{id}\"><button type=\"button\">Resolve</button>\
                 <button type=\"button\">Retry</button></td>"
            )),
            "{id}'s buttons: {html}"
        );
    }

    let url = |id: &str, what: &str| format!("{base}/api/needs-action/{id}/{what}");
    let (code, _) = post(
        &url("PASREJ0021", "resolve"),
        Some(serde_json::json!({"note": "  "})),
    )
    .await;
    assert_eq!(code, 400, "a resolve needs a note");
    let (code, body) = post(
        &url("PASREJ0021", "resolve"),
        Some(serde_json::json!({"note": "rejected by hand in e-RS"})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["by"], "ops");
    let (code, _) = post(
        &url("PASREJ0021", "resolve"),
        Some(serde_json::json!({"note": "again"})),
    )
    .await;
    assert_eq!(code, 404, "not open any more");
    let (code, body) = post(&url("PASREJ0020", "retry"), None).await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = post(&url("NOSUCHID01", "retry"), None).await;
    assert_eq!(code, 404);

    let store = &app.shared().store;
    assert!(store.inbound_needing_action().await.unwrap().is_empty());
    let resolved = store.operator_actions("PASREJ0021").await.unwrap();
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(
        (
            resolved[0].1.as_str(),
            resolved[0].2.as_str(),
            resolved[0].3.as_str()
        ),
        ("ops", "resolve", "rejected by hand in e-RS")
    );
    let retried = store.operator_actions("PASREJ0020").await.unwrap();
    assert_eq!(
        retried
            .iter()
            .map(|r| (r.1.as_str(), r.2.as_str()))
            .collect::<Vec<_>>(),
        [("ops", "retry")]
    );
    // Back with the retry loop, due now: the bridge's next round takes it (and, with the
    // same app-restricted access, it needs action again rather than being dropped).
    let record = store
        .inbound(&ers_bridge::ids::ControlId::parse("PASREJ0020").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status.as_str(), "retry", "{record:?}");

    shutdown.trigger();
    app.close().await;
    h.cleanup().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A specialty table with no entries: every referral's specialty misses. The misses are
/// kept in the store by (table, code) with their counts, shown in the summary, listed by
/// `GET /api/code-misses` and by `status`; and the trends show the published messages in
/// the current minute's bucket, with when the last one was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_table_misses_are_kept_and_listed_and_trends_come_from_stored_counts() {
    let h = Harness::start(Opts {
        generate: 5,
        ..Opts::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    copy_dir(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/mappings")),
        &mappings,
    );
    std::fs::write(
        mappings.join("tables/specialty.csv"),
        "code,local,description\n",
    )
    .unwrap();
    let text = h.config_text.replace(
        concat!(env!("CARGO_MANIFEST_DIR"), "/mappings"),
        mappings.to_str().unwrap(),
    );
    assert_ne!(text, h.config_text);
    let (app, base, shutdown) = app_with_monitor_text(&text).await;
    let mut recorder = ers_bridge::monitor::trends::TrendRecorder::new(
        app.shared().store.clone(),
        app.shared().events.clone(),
    );
    app.drain(10).await.unwrap();
    let published = h.take_messages().await.len() as i64;
    assert!(published >= 5);
    // The recorder moves the counts and the misses into the store (every 15 s in `run`).
    let now = Utc::now().timestamp_millis();
    recorder.flush(now).await.unwrap();

    let s = summary(&base).await;
    let misses = s["code_misses"].as_array().unwrap();
    assert!(!misses.is_empty(), "{s}");
    let total: i64 = misses
        .iter()
        .filter(|m| m["table"] == "specialty")
        .map(|m| m["count"].as_i64().unwrap())
        .sum();
    assert!(
        total >= published,
        "every referral's specialty missed: {misses:?}"
    );
    assert_eq!(s["code_misses_total"].as_i64(), Some(misses.len() as i64));
    let all: Value = get_json(&format!("{base}/api/code-misses")).await.1;
    assert_eq!(all["items"], s["code_misses"]);

    let config = dir.path().join("ers-bridge.toml");
    std::fs::write(&config, &text).unwrap();
    let code = misses[0]["code"].as_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        crate::common::bridge()
            .env("RUST_LOG", "warn")
            .args(["status", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = crate::common::assert_success(&out);
    assert!(stdout.contains("code-table misses"), "{stdout}");
    assert!(stdout.contains(&format!("specialty  {code:?}")), "{stdout}");

    // The same, and the search and a timeline, as JSON for scripts; `--since` as a person
    // types it.
    let cli = |args: Vec<String>| {
        let config = dir.path().join("ers-bridge.toml");
        tokio::task::spawn_blocking(move || {
            crate::common::bridge()
                .env("RUST_LOG", "warn")
                .args(&args)
                .arg("--config")
                .arg(&config)
                .output()
                .unwrap()
        })
    };
    let out = cli(vec!["status".into(), "--json".into()]).await.unwrap();
    let status: Value = serde_json::from_str(&crate::common::assert_success(&out)).unwrap();
    assert_eq!(status["code_misses"], s["code_misses"]);
    assert_eq!(status["flow"]["out_last_hour"].as_i64(), Some(published));
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let out = cli(args(&[
        "search",
        "--json",
        "--direction",
        "out",
        "--since",
        "1h",
    ]))
    .await
    .unwrap();
    let page: Value = serde_json::from_str(&crate::common::assert_success(&out)).unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len() as i64, published, "{page}");
    let ubrn = items[0]["ubrn"].as_str().unwrap().to_string();
    let out = cli(args(&[
        "search", "--json", "--since", "2m", "--until", "1m",
    ]))
    .await
    .unwrap();
    let page: Value = serde_json::from_str(&crate::common::assert_success(&out)).unwrap();
    assert!(page["items"].as_array().unwrap().is_empty(), "{page}");
    let out = cli(args(&["timeline", "--json", &ubrn])).await.unwrap();
    let t: Value = serde_json::from_str(&crate::common::assert_success(&out)).unwrap();
    assert_eq!(t["ubrn"], ubrn.as_str());
    assert!(
        t["stages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["stage"] == "published"),
        "{t}"
    );
    let out = cli(args(&["search", "--since", "yesterday"]))
        .await
        .unwrap();
    crate::common::assert_exit(&out, 2, "neither an RFC 3339 time");

    // Trends: the minute of the flush holds what was published (the last bucket, or the
    // one before if the clock has since turned a minute), the rest of the hour nothing.
    let t: Value = get_json(&format!("{base}/api/trends?range=hour")).await.1;
    assert_eq!(t["t"].as_array().unwrap().len(), 60);
    let to_pas = t["series"]["to_pas"].as_array().unwrap();
    assert_eq!(to_pas.len(), 60);
    let values: Vec<i64> = to_pas.iter().map(|v| v.as_i64().unwrap()).collect();
    let at = values
        .iter()
        .position(|n| *n > 0)
        .expect("a bucket with the messages");
    assert!(at >= 58 && values[at] == published, "{t}");
    assert_eq!(values.iter().sum::<i64>(), published, "{t}");
    assert_eq!(t["last_ms"]["to_pas"].as_i64(), Some(now - now % 60_000));
    for range in ["day", "week"] {
        let t: Value = get_json(&format!("{base}/api/trends?range={range}"))
            .await
            .1;
        let to_pas = t["series"]["to_pas"].as_array().unwrap();
        assert_eq!(
            to_pas.iter().map(|v| v.as_i64().unwrap()).sum::<i64>(),
            published,
            "{range}"
        );
    }
    let (code, _) = get_json(&format!("{base}/api/trends?range=year")).await;
    assert_eq!(code, 400);

    shutdown.trigger();
    app.close().await;
    h.cleanup().await;
}

/// MSH-3..6 set once in `[mappings]` reach the PAS in every message, instead of the
/// literals the mapping files used to carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_message_header_reaches_the_pas() {
    let h = Harness::start(Opts {
        generate: 3,
        ..Opts::default()
    })
    .await;
    let app = h
        .app_with(
            "[mappings]\n",
            "[mappings]\nsending_facility = \"RAJ\"\nreceiving_application = \"LORENZO\"\n",
            ers_bridge::app::Shutdown::new(),
        )
        .await;
    app.drain(10).await.unwrap();
    let msgs = h.take_messages().await;
    assert!(msgs.len() >= 3);
    for m in &msgs {
        let text = &m.body;
        assert!(
            text.starts_with("MSH|^~\\&|ERS_BRIDGE|RAJ|LORENZO|RXX|"),
            "{text}"
        );
    }
    app.close().await;
    h.cleanup().await;
}

/// The message browser after a loop: a message to the PAS and one from it, each as fields
/// by position with its raw text, the PAS's message with the bridge's reply; a dead letter
/// with its `x-ers-error` and the reader's refusal; and the page opening a message from a
/// bookmark, in headless Chromium.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_browser_shows_fields_by_position_the_reply_and_dead_letters() {
    use base64::Engine as _;
    let h = Harness::start(Opts {
        generate: 3,
        ..Opts::default()
    })
    .await;
    let (app, base, shutdown) = app_with_monitor(&h).await;
    crate::monitor::run_loop(&h, &app).await;
    let page: Value = get_json(&format!("{base}/api/messages?direction=out"))
        .await
        .1;
    let out_cid = page["items"][0]["control_id"].as_str().unwrap().to_string();
    let view = |path: String| async move { get_json(&path).await };
    let field = |v: &Value, at: &str| -> Option<String> {
        v["body"]["segments"]
            .as_array()?
            .iter()
            .flat_map(|s| s["fields"].as_array().unwrap().iter())
            .find(|f| f["at"] == at)
            .map(|f| f["value"].as_str().unwrap().to_string())
    };
    let (code, out) = view(format!("{base}/api/messages/out/{out_cid}")).await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(
        field(&out, "MSH-10").as_deref(),
        Some(out_cid.as_str()),
        "{out}"
    );
    assert_eq!(field(&out, "MSH-9.1").as_deref(), Some("REF"), "{out}");
    assert!(
        out["body"]["hl7"].as_str().unwrap().starts_with("MSH|"),
        "{out}"
    );

    let (_, page) = get_json(&format!("{base}/api/messages?direction=in&status=done")).await;
    let in_cid = page["items"][0]["control_id"].as_str().unwrap().to_string();
    let (code, inbound) = view(format!("{base}/api/messages/in/{in_cid}")).await;
    assert_eq!(code, 200, "{inbound}");
    assert_eq!(field(&inbound, "MSH-10").as_deref(), Some(in_cid.as_str()));
    let reply = inbound["reply"]["hl7"].as_str().expect("the reply is kept");
    assert!(reply.contains(&format!("MSA|AA|{in_cid}")), "{reply}");
    let (code, _) = view(format!("{base}/api/messages/in/NOSUCHMSG1")).await;
    assert_eq!(code, 404);
    let (code, _) = view(format!("{base}/api/messages/sideways/{in_cid}")).await;
    assert_eq!(code, 400);

    app.shared()
        .store
        .record_dead_letter(&ers_bridge::store::DeadLetter {
            id: "dl-browse-1".into(),
            at_ms: Utc::now().timestamp_millis(),
            reason: "unreadable".into(),
            detail: "does not start with MSH".into(),
            message_id: None,
            body_b64: Some(base64::engine::general_purpose::STANDARD.encode("HELLO|world\r")),
            redriven_at_ms: None,
        })
        .await
        .unwrap();
    let (code, d) = view(format!("{base}/api/dead-letters/dl-browse-1")).await;
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["x_ers_error"], "unreadable");
    assert_eq!(d["body"]["hl7"], "HELLO|world\r");
    assert!(d["body"]["unreadable"].is_string(), "{d}");

    // The page opens a message from a bookmark: its fields by position.
    let profile = tempfile::tempdir().unwrap();
    let dom = crate::monitor::chromium_run(
        &format!("{base}/#token={TOKEN}&message=out/{out_cid}"),
        profile.path(),
        vec!["--dump-dom".into()],
    )
    .await
    .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        html.contains(&format!("<td>MSH-10</td><td>{out_cid}</td>")),
        "{html}"
    );
    assert!(
        html.contains("id=\"msg-view\"") && !html.contains("id=\"msg-view\" hidden"),
        "{html}"
    );

    shutdown.trigger();
    app.close().await;
    h.cleanup().await;
}
