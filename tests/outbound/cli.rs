//! The commands: `ers-bridge demo` end to end, `run` until SIGTERM and `--until-drained`,
//! `replay`, `parked` on a store with a parked item, and `status` with more items than it
//! shows.

use std::process::Command;

use crate::common::{assert_success, bridge};

use ers_bridge::app::Shutdown;

use crate::helpers::{Harness, Opts, AMQP_URL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_until_drained_and_prints_a_summary() {
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let out = tokio::task::spawn_blocking({
        let prefix = prefix.clone();
        move || {
            // At info: a clean demo logs no warning, and the lines are needed below.
            bridge()
                .env("RUST_LOG", "info")
                .args(["demo", "--generate", "20", "--queue-prefix", &prefix])
                .args(["--amqp-url", AMQP_URL])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let pas = format!("{prefix}.pas.acks");
    let depth = ch
        .queue_declare(
            pas.as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .map(|q| q.message_count());
    crate::common::delete_demo_topology(&ch, &prefix).await;
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stderr is a pipe here, as in a log file or journald: plain text, no colour codes.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.is_empty(), "the demo logs");
    // Quiet by default: no line per message or per e-RS call at info (26 referrals, each
    // published and answered, and their decisions applied, in a handful of lines).
    let lines = stderr.lines().count();
    assert!(lines < 30, "{lines} log lines at info: {stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "ANSI codes in piped logs: {stderr}"
    );
    // 20 generated plus the 6 seeded referrals that are on a provider worklist.
    assert!(stdout.contains("referrals published:  26"), "{stdout}");
    assert!(stdout.contains("REF^I12"), "{stdout}");
    assert!(stdout.contains("e-rs calls:"), "{stdout}");
    // The loop closes: the PAS simulator answers every referral, the bridge applies each
    // decision in e-RS and answers the PAS, and nothing is left for a person.
    assert!(
        stdout.contains("PAS answered:         26 referrals"),
        "{stdout}"
    );
    assert!(stdout.contains("needs action in e-RS: 0"), "{stdout}");
    assert!(stdout.contains("replied to the PAS:   AA=26"), "{stdout}");
    assert!(stdout.contains("dead-lettered:        0"), "{stdout}");
    assert_eq!(
        depth.expect("the reply queue exists"),
        26,
        "one ACK per RRI"
    );
}

/// The same loop with no broker: the bridge sends to the PAS simulator's MLLP listener
/// and takes its decisions on one of its own (the AMQP URL points nowhere, to show none is
/// used).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_over_mllp_closes_the_loop_without_a_broker() {
    let out = tokio::task::spawn_blocking(|| {
        bridge()
            .env("RUST_LOG", "warn")
            .args(["demo", "--generate", "20", "--transport", "mllp"])
            .args(["--amqp-url", "amqp://guest:guest@127.0.0.1:1/%2f"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("referrals published:  26"), "{stdout}");
    assert!(stdout.contains("sent to:              mllp://"), "{stdout}");
    assert!(
        stdout.contains("PAS answered:         26 referrals (26 commit ACKs"),
        "{stdout}"
    );
    assert!(stdout.contains("needs action in e-RS: 0"), "{stdout}");
    assert!(stdout.contains("replied to the PAS:   AA=26"), "{stdout}");
    assert!(stdout.contains("dead-lettered:        0"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_lists_the_parked_referrals() {
    let h = Harness::start(Opts::default()).await;
    let app = h.app(Shutdown::new()).await;
    app.outbound()
        .store()
        .park(
            &ers_bridge::ids::Ubrn::parse("000000012345").unwrap(),
            ers_bridge::ids::Version::new(3),
            "PID-3 (NHS number): bad check digit",
            0,
        )
        .await
        .unwrap();
    app.close().await;
    let config = h.config_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        bridge()
            .args(["parked", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = assert_success(&out);
    assert!(
        stdout.contains(
            "000000012345\tv3\t1970-01-01T00:00:00Z\tPID-3 (NHS number): bad check digit"
        ),
        "{stdout}"
    );
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_publishes_until_sigterm_then_exits_cleanly_and_replay_republishes() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;

    let n = 8;
    let h = Harness::start(Opts {
        generate: n,
        ..Opts::default()
    })
    .await;
    let config = h.config_path.clone();
    let (status, log) = tokio::task::spawn_blocking(move || {
        let mut child = bridge()
            .args(["--log-format", "json", "run", "--config"])
            .arg(&config)
            // Each message's line is at debug (the info log is a line a minute).
            .env("RUST_LOG", "info,ers_bridge::events=debug")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut log = Vec::new();
        let mut published = 0;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains("\"message published\"") {
                published += 1;
            }
            log.push(line);
            if published == n {
                break;
            }
        }
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        log.extend(lines.map_while(Result::ok));
        (child.wait().unwrap(), log)
    })
    .await
    .unwrap();
    let log = log.join("\n");
    assert!(status.success(), "run exited with {status}:\n{log}");
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(log.contains("scheduler stopped"), "{log}");
    let msgs = h.take_messages().await;
    assert_eq!(msgs.len(), n);

    // `replay` re-sends one referral with the same MSH-10.
    let ubrn = msgs[0].ubrn();
    let config = h.config_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        bridge()
            .args(["replay", "--config"])
            .arg(&config)
            .arg(&ubrn)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = assert_success(&out);
    assert!(
        stdout.contains(&format!("published {}", msgs[0].ubrn())),
        "{stdout}"
    );
    let again = h.take_messages().await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, msgs[0].message_id);
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_drained_publishes_everything_prints_the_summary_and_exits() {
    let n = 12;
    let h = Harness::start(Opts {
        generate: n,
        ..Opts::default()
    })
    .await;
    let config = h.config_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        bridge()
            .args(["run", "--until-drained", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = assert_success(&out);
    assert!(
        stdout.contains(&format!("referrals published:  {n}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("messages REF^I12      {n}")),
        "{stdout}"
    );
    assert!(stdout.contains("failed (retryable):   0"), "{stdout}");
    assert_eq!(h.take_messages().await.len(), n);
    h.cleanup().await;
}

/// Without a reachable RabbitMQ the demo says so in one line and exits 69, instead of a
/// warning per message per retry.
#[test]
fn demo_without_a_broker_exits_69_with_one_line() {
    let out = bridge()
        .env("RUST_LOG", "warn")
        .args(["demo", "--amqp-url", "amqp://guest:secret@127.0.0.1:1/%2f"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("rabbitmq-server -detached"), "{stderr}");
    assert!(!stderr.contains("secret"), "no password: {stderr}");
}

/// `status` shows each list newest first, cut at ten with how many more there are and
/// the command that lists them all (the newest items are the ones still actionable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_newest_first_and_how_many_more() {
    let (h, app) = crate::inbound::seeded(true).await;
    let start = chrono::Utc::now();
    for i in 0..12 {
        // App-restricted access cannot reject: each is a needs-action record.
        let msg = crate::inbound::rri(
            &format!("PASSTAT{i:03}"),
            "R^Rejected^HL70283",
            "000000070002",
            "WRONGSVC^Wrong service",
            "No",
        );
        let at = start + chrono::Duration::seconds(i);
        app.inbound().handle(&msg, at).await.unwrap();
    }
    app.close().await;
    let config = h.config_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        bridge()
            .env("RUST_LOG", "warn")
            .args(["status", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("needs action 12"), "{stdout}");
    let listed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("PASSTAT"))
        .collect();
    assert_eq!(listed.len(), 10, "{stdout}");
    assert!(listed[0].starts_with("011"), "newest first: {stdout}");
    assert!(
        stdout
            .contains("... 2 more (newest shown first; `ers-bridge needs-action` lists them all)"),
        "{stdout}"
    );
    h.cleanup().await;
}
