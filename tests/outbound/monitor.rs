//! The monitor over real HTTP after a real loop (simulator, RabbitMQ, the PAS simulator):
//! the API's token rule with the health endpoints open, a referral's timeline with every
//! stage in order, `/metrics` parsed by a Prometheus parser and equal to what happened, the
//! re-drive of a dead letter applied once and recorded with who did it, and the dashboard
//! rendered by headless Chromium.

use std::sync::Arc;

use chrono::Utc;
use ers_bridge::app::{App, Shutdown};
use ers_bridge::config::{self, MapEnv};
use ers_bridge::pas_sim::{self, Mix, PasSimConfig};
use ers_bridge::store::DeadLetter;

use crate::helpers::{Harness, Opts, AMQP_URL};
use crate::inbound::{applied_writes, rri};

pub(crate) const TOKEN: &str = "monitor-test-token-0123456789";

/// A bridge on the harness with one API token, `ops`, and its monitor served.
pub(crate) async fn app_with_monitor(h: &Harness) -> (App, String, Shutdown) {
    app_with_monitor_text(&h.config_text).await
}

/// The same with configuration text of the test's own.
pub(crate) async fn app_with_monitor_text(config_text: &str) -> (App, String, Shutdown) {
    let text = format!(
        "{config_text}[[monitor.tokens]]\nname = \"ops\"\ntoken_env = \"TEST_API_TOKEN\"\n"
    );
    let cfg = config::load_str("<test>", &text, &MapEnv::default()).unwrap();
    let shutdown = Shutdown::new();
    let app = App::build_with_env(
        &cfg,
        Arc::new(MapEnv::from_pairs([("TEST_API_TOKEN", TOKEN)])),
        shutdown.clone(),
    )
    .await
    .unwrap();
    app.serve_monitor().await.unwrap().expect("monitor enabled");
    let base = format!("http://{}", app.monitor_addr().unwrap());
    (app, base, shutdown)
}

/// The whole loop once, in-process: outbound drain, the PAS answers, the bridge handles
/// every answer.
pub(crate) async fn run_loop(h: &Harness, app: &App) {
    app.drain(10).await.unwrap();
    let pas = PasSimConfig {
        amqp_url: AMQP_URL.to_string(),
        pas_queue: h.pas_queue(),
        inbound_queue: format!("{}-in", h.prefix),
        mix: Mix::default(),
        faults: Vec::new(),
    };
    pas_sim::answer_all(&pas).await.unwrap();
    let q = ers_bridge::amqp::QueueClient::connect(AMQP_URL)
        .await
        .unwrap();
    while let Some(body) = q.take(&pas.inbound_queue).await.unwrap() {
        app.inbound().handle(&body, Utc::now()).await.unwrap();
    }
    q.close().await;
}

pub(crate) fn get(url: &str, token: Option<&str>) -> reqwest::RequestBuilder {
    let r = reqwest::Client::new().get(url);
    match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_its_token_and_the_health_endpoints_stay_open() {
    let h = Harness::start(Opts::default()).await;
    let (app, base, shutdown) = app_with_monitor(&h).await;
    for (token, want) in [
        (None, 401),
        (Some("wrong"), 401),
        (Some(""), 401),
        (Some(TOKEN), 200),
    ] {
        let r = get(&format!("{base}/api/summary"), token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{token:?}");
        if want == 401 {
            assert_eq!(r.text().await.unwrap(), "", "a 401 says nothing more");
        }
    }
    let live = get(&format!("{base}/health/live"), None)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status().as_u16(), 200);
    let ready = get(&format!("{base}/health/ready"), None)
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], true, "{body}");
    let metrics = get(&format!("{base}/metrics"), None).send().await.unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    // Content negotiation: the Prometheus text format unless OpenMetrics is asked for (as
    // Prometheus asks), so promtool and older agents read it too.
    let content_type =
        |r: &reqwest::Response| r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type(&metrics).starts_with("text/plain; version=0.0.4"));
    let text = metrics.text().await.unwrap();
    assert!(!text.contains("# EOF"), "{text}");
    let om = get(&format!("{base}/metrics"), None)
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        )
        .send()
        .await
        .unwrap();
    assert!(content_type(&om).starts_with("application/openmetrics-text; version=1.0.0"));
    assert!(om.text().await.unwrap().ends_with("# EOF\n"));
    shutdown.trigger();
    app.close().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_loop_the_timeline_is_in_order_and_the_metrics_match() {
    let h = Harness::start(Opts {
        generate: 20,
        ..Opts::default()
    })
    .await;
    let (app, base, shutdown) = app_with_monitor(&h).await;
    run_loop(&h, &app).await;
    let store = &app.shared().store;

    // A referral the PAS decided on: every stage, in pipeline order.
    let decided = store
        .search(&ers_bridge::store::SearchFilter {
            direction: Some("in".into()),
            status: Some("done".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let ubrn = decided.items[0].ubrn.clone().unwrap();
    let t: serde_json::Value = get(
        &format!("{base}/api/referrals/{ubrn}/timeline"),
        Some(TOKEN),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let stages: Vec<&str> = t["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    let first = |s: &str| {
        stages
            .iter()
            .position(|x| *x == s)
            .unwrap_or_else(|| panic!("no {s} in {stages:?}"))
    };
    let order = ["published", "pas_ack", "pas_decision", "ers_call", "reply"].map(first);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{stages:?}");
    let times: Vec<i64> = t["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["at_ms"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(
        t["stages"][order[0]]["payload"]
            .as_str()
            .unwrap()
            .starts_with("MSH|"),
        "the HL7 while retained"
    );

    // The search pages by keyset: two pages of 5 hold 10 different messages.
    let p1: serde_json::Value = get(
        &format!("{base}/api/messages?direction=out&limit=5"),
        Some(TOKEN),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let next = p1["next"].as_str().unwrap();
    let p2: serde_json::Value = get(
        &format!("{base}/api/messages?direction=out&limit=5&after={next}"),
        Some(TOKEN),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let ids: std::collections::HashSet<_> = p1["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["items"].as_array().unwrap())
        .map(|m| m["control_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 10);

    // One decision the bridge cannot send (no UBRN): a needs-action record. The alert
    // evaluation reads the store's counts into the gauges (a scrape never queries the store).
    let no_ubrn = rri("PASNOUBRN1", "A^Accepted^HL70283", "", "", "x");
    app.inbound().handle(&no_ubrn, Utc::now()).await.unwrap();
    let conditions = ers_bridge::monitor::alerts::probe(
        &app.watched(),
        &ers_bridge::config::AlertsConfig::default(),
        Utc::now().timestamp_millis(),
        &[],
    )
    .await;
    assert!(
        conditions
            .iter()
            .any(|c| c.name == "needs_action_old" && c.firing.is_none()),
        "a fresh record is not old yet: {conditions:?}"
    );

    // /metrics parses and its counters equal what the store says happened.
    let text = get(&format!("{base}/metrics"), None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    let published: i64 = store
        .published_counts()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        value(
            "ers_bridge_messages_published_total",
            Some(("message_type", "REF^I12"))
        ) as i64,
        published
    );
    let mut done = 0;
    let mut handled = 0;
    for (status, _, _, n) in store.inbound_counts().await.unwrap() {
        handled += n;
        if status.as_str() == "done" {
            done += n;
        }
    }
    assert_eq!(
        value("ers_bridge_inbound_messages_total", None) as i64,
        handled
    );
    assert_eq!(
        value(
            "ers_bridge_inbound_messages_total",
            Some(("outcome", "done"))
        ) as i64,
        done
    );
    assert_eq!(value("ers_bridge_needs_action_open", None), 1.0);
    // The summary's e-RS calls are the same counts the exposition has.
    let summary: serde_json::Value = get(&format!("{base}/api/summary"), Some(TOKEN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ok = summary["ers_calls"]["by_status_class"]["2xx"]
        .as_u64()
        .unwrap();
    assert!(ok > 0, "{summary}");
    assert_eq!(
        ok as f64,
        value("ers_bridge_ers_calls_total", Some(("status_class", "2xx")))
    );
    // No patient or referral identifier in a label: no such label name, and no label
    // value with a run of ten or more digits (an NHS number is ten, a UBRN twelve).
    for s in &scrape.samples {
        for k in ["ubrn", "control_id", "nhs_number"] {
            assert!(!s.labels.contains_key(k), "{} has a {k} label", s.metric);
        }
        // (A queue's name is configuration: these tests' names carry a random hex id.)
        for (k, v) in s.labels.iter().filter(|(k, _)| k.as_str() != "queue") {
            let longest = v
                .split(|c: char| !c.is_ascii_digit())
                .map(str::len)
                .max()
                .unwrap_or(0);
            assert!(
                longest < 10,
                "{}{{{k}={v:?}}} carries an identifier",
                s.metric
            );
        }
    }
    shutdown.trigger();
    app.close().await;
    h.cleanup().await;
}

/// A dead letter whose body is a good decision (dead-lettered by an older bridge, say):
/// re-driven once it goes back to the inbound queue, the running bridge applies it once,
/// and the re-drive is recorded with the token's name; a second re-drive is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redriven_dead_letter_is_applied_once_and_recorded() {
    let h = Harness::start(Opts {
        seed: true,
        ..Opts::default()
    })
    .await;
    let (app, base, _) = app_with_monitor(&h).await;
    let store = app.shared().store.clone();
    use base64::Engine as _;
    store
        .record_dead_letter(&DeadLetter {
            id: "dl-1".into(),
            at_ms: Utc::now().timestamp_millis(),
            reason: "unreadable".into(),
            detail: "a charset this bridge did not read then".into(),
            message_id: Some("PASDL00001".into()),
            body_b64: Some(base64::engine::general_purpose::STANDARD.encode(rri(
                "PASDL00001",
                "A^Accepted^HL70283",
                "000000070001",
                "",
                "ok",
            ))),
            redriven_at_ms: None,
        })
        .await
        .unwrap();
    // `run` consumes the inbound queue (its own monitor is off: this one serves the API).
    let shutdown = Shutdown::new();
    let runner = h
        .app_with(
            "[monitor]\n",
            "[monitor]\nenabled = false\n",
            shutdown.clone(),
        )
        .await;
    let mut observed = runner.shared().events.subscribe();
    let running = tokio::spawn(runner.run_until_stopped());

    let redrive = |base: String| async move {
        reqwest::Client::new()
            .post(format!("{base}/api/dead-letters/dl-1/redrive"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(redrive(base.clone()).await, 200);
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            if let Ok(ers_bridge::events::Event::InboundHandled(e)) = observed.recv().await {
                assert_eq!(e.outcome, "done", "{e:?}");
                break;
            }
        }
    })
    .await
    .expect("the re-driven decision was handled");
    assert_eq!(redrive(base.clone()).await, 409, "not twice");
    assert_eq!(applied_writes(&h, "A013").await, 1);
    let actions = store.operator_actions("dl-1").await.unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(
        (actions[0].1.as_str(), actions[0].2.as_str()),
        ("ops", "redrive")
    );
    shutdown.trigger();
    running.await.unwrap().unwrap();
    app.close().await;
    h.cleanup().await;
}

/// Headless Chromium (`scripts/dev.sh setup` installs it), found by name.
pub(crate) fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok()
        })
        .expect("chromium is needed for the dashboard test: `scripts/dev.sh setup` installs it")
}

/// Loads `url` in headless Chromium with `profile` and `extra` arguments (`--dump-dom`,
/// `--screenshot=...`), giving its scripts 10 s of virtual time.
pub(crate) fn chromium_run(
    url: &str,
    profile: &std::path::Path,
    extra: Vec<String>,
) -> tokio::task::JoinHandle<std::process::Output> {
    let url = url.to_string();
    let profile = profile.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--virtual-time-budget=10000")
            .args(extra)
            .arg(url)
            .output()
            .unwrap()
    })
}

/// The dashboard in headless Chromium after a loop: the counts are shown, and the UBRN
/// search (from the URL fragment, as a bookmark would) shows the referral's timeline. A
/// screenshot is kept in `target/test-artefacts/dashboard.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_counts_and_a_timeline_in_chromium() {
    let h = Harness::start(Opts {
        generate: 10,
        ..Opts::default()
    })
    .await;
    let (app, base, shutdown) = app_with_monitor(&h).await;
    let mut trends = ers_bridge::monitor::trends::TrendRecorder::new(
        app.shared().store.clone(),
        app.shared().events.clone(),
    );
    run_loop(&h, &app).await;
    trends.flush(Utc::now().timestamp_millis()).await.unwrap();
    let ubrn = app
        .shared()
        .store
        .search(&ers_bridge::store::SearchFilter {
            direction: Some("in".into()),
            status: Some("done".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .items[0]
        .ubrn
        .clone()
        .unwrap();
    let url = format!("{base}/#token={TOKEN}&ubrn={ubrn}");
    let artefacts = concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-artefacts");
    std::fs::create_dir_all(artefacts).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let run = |extra: Vec<String>| chromium_run(&url, profile.path(), extra);
    let dom = run(vec!["--dump-dom".into()]).await.unwrap();
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        html.contains("data-ready=\"yes\""),
        "the page loaded its data: {html}"
    );
    let published: i64 = app
        .shared()
        .store
        .published_counts()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert!(
        html.contains(&format!("id=\"out-day\">{published}<")),
        "the day's outbound count: {html}"
    );
    assert!(html.contains("id=\"needs-action\">0<"), "{html}");
    // The Instances panel names the process that served the page.
    assert!(
        html.contains(&format!("served by {}", app.shared().cluster.holder())),
        "the instances panel: {html}"
    );
    assert!(
        html.contains(&format!("value=\"{ubrn}\"")) || html.contains(&ubrn),
        "{html}"
    );
    for stage in ["published", "pas_decision", "ers_call", "reply"] {
        assert!(
            html.contains(&format!("<td>{stage}</td>")),
            "timeline stage {stage}: {html}"
        );
    }
    // The health strip and the queues, from the broker the bridge is connected to.
    for part in ["PAS link", "e-RS", "Store"] {
        assert!(
            html.contains(&format!("<td>{part}</td><td class=\"ok\">ok</td>")),
            "{part} shown healthy: {html}"
        );
    }
    assert!(
        html.contains("<td class=\"ok\">ok</td><td>oldest last successful poll "),
        "the worklists: {html}"
    );
    assert!(
        html.contains(&format!("<td>pas</td><td>{}</td><td>0</td>", h.pas_queue())),
        "the pas queue, read empty: {html}"
    );
    // Trends: three uPlot charts of the hour's 60 minutes from the stored counts, and when
    // the last message went to the PAS.
    assert_eq!(html.matches("data-points=\"60\"").count(), 3, "{html}");
    assert!(
        html.matches("class=\"uplot").count() >= 3,
        "uPlot drew: {html}"
    );
    assert!(
        html.contains("Last message to the PAS: ")
            && !html.contains("Last message to the PAS: none"),
        "{html}"
    );
    let shot = format!("{artefacts}/dashboard.png");
    let out = run(vec![
        format!("--screenshot={shot}"),
        "--window-size=1280,1600".into(),
    ])
    .await
    .unwrap();
    assert!(
        std::path::Path::new(&shot).exists(),
        "screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The bridge can no longer read its store: the page says so, in an alert, instead of
    // showing figures as if they were current.
    app.shared().store.close().await;
    let dom = run(vec!["--dump-dom".into()]).await.unwrap();
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    let banner = html
        .split("<div id=\"stale\" role=\"alert\"")
        .nth(1)
        .unwrap_or_else(|| panic!("the stale banner: {html}"));
    let (attrs, rest) = banner.split_once('>').unwrap();
    assert!(!attrs.contains("hidden"), "the banner is shown: {banner}");
    assert!(
        rest.starts_with("No figures yet: the bridge answered /api/summary: 5"),
        "{rest}"
    );
    assert!(
        html.contains("class=\"stale\""),
        "the figures are greyed: {html}"
    );
    assert!(!html.contains("data-ready=\"yes\""), "{html}");
    shutdown.trigger();
    app.close().await;
    h.cleanup().await;
}

/// A replay through the API: the dry run names the message, the replay publishes it again
/// under a new id carrying the original's in `x-ers-replay-of`, both stay in the store and
/// the timeline, a second replay gets the next id, and each is recorded with who asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_publishes_a_new_id_linked_to_the_original() {
    let h = Harness::start(Opts {
        generate: 5,
        ..Opts::default()
    })
    .await;
    let (app, base, shutdown) = app_with_monitor(&h).await;
    app.drain(10).await.unwrap();
    let first = h.take_messages().await;
    let original = &first[0];
    let ubrn = original.ubrn();
    let post = |path: String| async move {
        let r = reqwest::Client::new()
            .post(path)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json::<serde_json::Value>().await.unwrap()
    };
    let dry = post(format!("{base}/api/referrals/{ubrn}/replay?dry_run=true")).await;
    assert_eq!(
        dry["results"][0]["replaying"][0],
        original.message_id.as_str(),
        "{dry}"
    );
    assert!(
        h.take_messages().await.is_empty(),
        "a dry run publishes nothing"
    );

    let done = post(format!("{base}/api/referrals/{ubrn}/replay")).await;
    let new_id = done["results"][0]["published"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        new_id,
        format!("{ubrn}R01{}", &original.message_id[15..]),
        "{done}"
    );
    let again = h.take_messages().await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, new_id);
    assert_eq!(
        again[0].header("x-ers-replay-of").as_deref(),
        Some(original.message_id.as_str())
    );
    assert!(again[0].body.contains(&new_id), "MSH-10 is the new id");

    let second = post(format!("{base}/api/referrals/{ubrn}/replay")).await;
    assert!(second["results"][0]["published"][0]
        .as_str()
        .unwrap()
        .contains("R02"));
    let store = &app.shared().store;
    let u = ers_bridge::ids::Ubrn::parse(&ubrn).unwrap();
    let published: Vec<_> = store
        .timeline(&u)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.stage == "published")
        .collect();
    assert_eq!(published.len(), 3, "the original and two replays");
    let actions = store.operator_actions(&ubrn).await.unwrap();
    assert_eq!(actions.len(), 2);
    assert!(actions.iter().all(|a| a.1 == "ops" && a.2 == "replay"));
    assert!(
        actions[0].3.contains(&original.message_id),
        "{:?}",
        actions[0]
    );

    // The filtered replay's dry run finds every referral with a REF^I12.
    let r = reqwest::Client::new()
        .post(format!("{base}/api/replay?dry_run=true"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"message_type": "REF^I12"}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["results"].as_array().unwrap().len(),
        first.len(),
        "{body}"
    );
    shutdown.trigger();
    app.close().await;
    h.cleanup().await;
}

/// The mapping page's API: a sample referral pasted as FHIR renders through the v2.4
/// mapping exactly as its golden file says, each field with the expression it came from;
/// a stored referral read by UBRN renders too; nothing is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mapping_page_renders_with_sources_and_a_golden_diff() {
    let h = Harness::start(Opts {
        seed: true,
        ..Opts::default()
    })
    .await;
    let (app, base, shutdown) = app_with_monitor(&h).await;
    let list: Vec<String> = get(&format!("{base}/api/mappings"), Some(TOKEN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.contains(&"ref_i12.v24.toml".to_string()), "{list:?}");
    assert!(!list.contains(&"inbound.toml".to_string()));
    let fhir: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/samples/fhir/referrals/booked-dbs.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let render = |body: serde_json::Value| {
        let base = base.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/api/render"))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let out: serde_json::Value =
        render(serde_json::json!({"mapping": "ref_i12.v24.toml", "fhir": fhir}))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(out["golden"]["matches"], true, "{}", out["golden"]["diff"]);
    let rf1_6 = out["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["segment"] == "RF1")
        .flat_map(|s| s["fields"].as_array().unwrap().clone())
        .find(|f| f["at"].as_str().unwrap().starts_with("RF1-6"))
        .expect("RF1-6 in the mapping");
    assert_eq!(rf1_6["value"], "000000070001");
    assert!(rf1_6["source"].as_str().unwrap().contains("id"), "{rf1_6}");

    let by_ubrn =
        render(serde_json::json!({"mapping": "ref_i12.v251.toml", "ubrn": "000000070001"})).await;
    assert_eq!(by_ubrn.status().as_u16(), 200);
    let bad = render(serde_json::json!({"mapping": "../Cargo.toml", "ubrn": "000000070001"})).await;
    assert_eq!(
        bad.status().as_u16(),
        400,
        "only files of the mappings folder"
    );
    assert!(h.take_messages().await.is_empty(), "nothing published");
    shutdown.trigger();
    app.close().await;
    h.cleanup().await;
}
