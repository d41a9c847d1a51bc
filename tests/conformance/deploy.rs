//! The monitoring files in `deploy/` checked by Prometheus's own tool, `promtool` (from
//! Debian's `prometheus` package, which `scripts/dev.sh setup` installs): the Prometheus
//! configuration, the alert rules and their unit tests (`deploy/alerts.test.yml`), and every
//! query of the Grafana board parsed by Prometheus's parser (each turned into a recording
//! rule). Without promtool the tests fail and say how to install it.

use std::path::PathBuf;
use std::process::Command;

use super::root;

fn promtool() -> PathBuf {
    let path = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("promtool"));
    match Command::new(&path).arg("--version").output() {
        Ok(o) if o.status.success() => path,
        _ => panic!(
            "promtool is not installed: run `scripts/dev.sh setup` (Debian's prometheus \
             package), or set PROMTOOL"
        ),
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(root("deploy"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn the_prometheus_configuration_and_alert_rules_pass_promtool() {
    let text = run(&["check", "config", "prometheus.yml"]);
    assert!(text.contains("1 rule files found"), "{text}");
    let text = run(&["check", "rules", "alerts.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
    let text = run(&["test", "rules", "alerts.test.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

/// Each built-in alert has its Prometheus rule, and no rule names a condition the bridge
/// does not have.
#[test]
fn every_built_in_alert_has_a_prometheus_rule() {
    let rules = std::fs::read_to_string(root("deploy/alerts.yml")).unwrap();
    for c in ers_bridge::monitor::alerts::CONDITIONS {
        assert!(
            rules.contains(&format!("condition=\"{c}\"")),
            "deploy/alerts.yml has no rule for {c}"
        );
    }
    for named in rules.split("condition=\"").skip(1) {
        let name = named.split('"').next().unwrap();
        assert!(
            ers_bridge::monitor::alerts::CONDITIONS.contains(&name),
            "deploy/alerts.yml names {name}, which is not a built-in alert"
        );
    }
}

/// Every query of the Grafana board, with its `$instance` variable set to "all", parses as
/// PromQL: written as recording rules and checked by `promtool check rules`.
#[test]
fn every_grafana_query_parses_as_promql() {
    let board: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root("deploy/grafana/dashboards/ers-bridge.json")).unwrap(),
    )
    .unwrap();
    let mut rules = Vec::new();
    for panel in board["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap().replace("$instance", ".*");
            rules.push(serde_json::json!({
                "record": format!("dashboard_query_{}", rules.len()),
                "expr": expr,
            }));
        }
    }
    assert!(rules.len() >= 20, "{} queries", rules.len());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    // JSON is YAML.
    let doc = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, doc.to_string()).unwrap();
    let text = run(&["check", "rules", file.to_str().unwrap()]);
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "{text}"
    );
}
