//! Tests of configuration loading: the sample file, fixtures under `tests/fixtures/config/`
//! (`*.wrong.toml` are deliberately broken, quickwit style) and environment overrides.

use std::path::PathBuf;

use secrecy::ExposeSecret;

use super::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

fn load_fixture(name: &str) -> Result<Config, ConfigError> {
    load(&fixture(name), &MapEnv::default())
}

fn error_text(name: &str) -> String {
    load_fixture(name)
        .expect_err("fixture should be rejected")
        .to_string()
}

#[test]
fn sample_config_is_valid() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/config/ers-bridge.toml");
    let cfg = load(&path, &MapEnv::default()).expect("sample config loads");
    assert_eq!(cfg.ers.rate_limit_per_sec, 10);
    assert_eq!(cfg.ers.rate_allowance_ms, 100);
    assert_eq!(cfg.ers.auth.mode_name(), "none");
    assert_eq!(cfg.amqp.exchange, "ers.to-pas");
    assert_eq!(cfg.poll.len(), 1);
    assert_eq!(
        cfg.poll[0].lists,
        vec![
            WorklistKind::ReferralsForReview,
            WorklistKind::AppointmentSlotIssues
        ]
    );
}

#[test]
fn minimal_config_takes_defaults() {
    let cfg = load_fixture("minimal.toml").unwrap();
    assert_eq!(cfg.ers.request_timeout_ms, 30_000);
    assert_eq!(cfg.ers.max_worklist_bytes, 10 * 1024 * 1024);
    assert_eq!(cfg.amqp.inbound_queue, "ers.from-pas");
    assert_eq!(cfg.store.retention_days, 90);
    assert_eq!(cfg.monitor.listen.port(), 9464);
    assert!(cfg.poll.is_empty());
    assert!(cfg.inbound.enabled);
    assert_eq!(cfg.inbound.max_attempts, 10);
    assert_eq!(cfg.amqp.pas_ack_queue, "pas.acks");
    assert!(
        cfg.mappings.new_referral.ends_with(".v251.toml"),
        "2.5.1 by default"
    );
}

#[test]
fn inbound_retries_must_be_bounded_and_ordered() {
    let env = MapEnv::from_pairs([("ERS_BRIDGE__INBOUND__MAX_ATTEMPTS", "0")]);
    let e = load(&fixture("minimal.toml"), &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("inbound.max_attempts"), "{e}");
    let env = MapEnv::from_pairs([("ERS_BRIDGE__INBOUND__RETRY_BASE_DELAY_MS", "999999999")]);
    let e = load(&fixture("minimal.toml"), &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("inbound.retry_base_delay_ms"), "{e}");
}

#[test]
fn app_restricted_schedule_within_budget_is_accepted() {
    let cfg = load_fixture("app-restricted.toml").unwrap();
    match &cfg.ers.auth {
        AuthConfig::AppRestricted { api_key, kid, .. } => {
            assert_eq!(api_key.expose_secret(), "test-api-key");
            assert_eq!(kid, "test-1");
        }
        other => panic!("unexpected auth {other:?}"),
    }
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let e = error_text("unknown-key.wrong.toml");
    assert!(e.contains("unknown-key.wrong.toml:3:"), "{e}");
    assert!(e.contains("key `ers.rate_limit`"), "{e}");
    assert!(e.contains("unknown field `rate_limit`"), "{e}");
}

#[test]
fn unknown_auth_mode_lists_the_valid_ones() {
    let e = error_text("bad-mode.wrong.toml");
    assert!(e.contains("key `ers.auth"), "{e}");
    assert!(e.contains("smartcard"), "{e}");
    assert!(e.contains("app-restricted"), "{e}");
}

#[test]
fn schedule_over_the_daily_budget_is_refused() {
    let e = error_text("budget.wrong.toml");
    assert!(e.contains("key `poll[0].interval_secs`"), "{e}");
    assert!(
        e.contains("allows 2 worklist calls per service per day"),
        "{e}"
    );
    assert!(e.contains("makes 576"), "{e}");
    assert!(e.contains("budget.wrong.toml:13:"), "{e}");
}

#[test]
fn on_behalf_of_only_with_clinician_admin() {
    let e = error_text("obo.wrong.toml");
    assert!(e.contains("key `ers.auth.on_behalf_of_user_id`"), "{e}");
    assert!(
        e.contains("only allowed with SERVICE_PROVIDER_CLINICIAN_ADMIN"),
        "{e}"
    );
}

#[test]
fn syntax_error_names_the_line() {
    let e = error_text("syntax.wrong.toml");
    assert!(
        e.starts_with(&format!("{}:2:", fixture("syntax.wrong.toml").display())),
        "{e}"
    );
    assert!(e.contains("invalid toml"), "{e}");
}

#[test]
fn wrong_type_names_key_and_expected_type() {
    let e = error_text("wrong-type.wrong.toml");
    assert!(e.contains("wrong-type.wrong.toml:3:"), "{e}");
    assert!(e.contains("key `ers.rate_limit_per_sec`"), "{e}");
    assert!(e.contains("invalid type"), "{e}");
}

#[test]
fn missing_file_is_an_io_error() {
    let e = error_text("does-not-exist.toml");
    assert!(e.contains("does-not-exist.toml: cannot read config"), "{e}");
}

#[test]
fn environment_overrides_replace_file_values() {
    let env = MapEnv::from_pairs([
        (
            "ERS_BRIDGE__ERS__BASE_URL",
            "http://127.0.0.1:9999/referrals/FHIR",
        ),
        ("ERS_BRIDGE__ERS__RATE_LIMIT_PER_SEC", "5"),
        ("ERS_BRIDGE__AMQP__URL", "amqp://user:pw@mq:5672/%2f"),
        ("UNRELATED", "x"),
    ]);
    let cfg = load(&fixture("minimal.toml"), &env).unwrap();
    assert_eq!(cfg.ers.base_url, "http://127.0.0.1:9999/referrals/FHIR");
    assert_eq!(cfg.ers.rate_limit_per_sec, 5);
    assert_eq!(cfg.amqp.url.expose_secret(), "amqp://user:pw@mq:5672/%2f");
}

#[test]
fn bad_environment_override_names_the_variable() {
    let env = MapEnv::from_pairs([("ERS_BRIDGE__ERS__RATE_LIMIT_PER_SEC", "lots")]);
    let e = load(&fixture("minimal.toml"), &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("key `ers.rate_limit_per_sec`"), "{e}");
    assert!(
        e.contains("set by environment variable ERS_BRIDGE__ERS__RATE_LIMIT_PER_SEC"),
        "{e}"
    );
}

#[test]
fn unknown_key_from_environment_is_an_error() {
    let env = MapEnv::from_pairs([("ERS_BRIDGE__ERS__NO_SUCH_KEY", "1")]);
    let e = load(&fixture("minimal.toml"), &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `no_such_key`"), "{e}");
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let env = MapEnv::from_pairs([("ERS_BRIDGE__AMQP__URL", "amqp://user:hunter2@mq/%2f")]);
    let cfg = load(&fixture("app-restricted.toml"), &env).unwrap();
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(!dbg.contains("test-api-key"), "{dbg}");
}

const MINIMAL: &str = "[ers]\nbase_url = \"http://127.0.0.1:8080/referrals/FHIR\"\n\
                       [ers.auth]\nmode = \"none\"\n";

fn load_amqp(section: &str, env: &MapEnv) -> Result<Config, ConfigError> {
    load_str("amqp.toml", &format!("{MINIMAL}[amqp]\n{section}"), env)
}

fn exposed(urls: &[secrecy::SecretString]) -> Vec<&str> {
    urls.iter().map(|u| u.expose_secret()).collect()
}

#[test]
fn amqp_nodes_and_single_active_consumer_default_to_off() {
    let cfg = load_fixture("minimal.toml").unwrap();
    assert!(cfg.amqp.urls.is_empty());
    assert!(!cfg.amqp.single_active_consumer);
    assert_eq!(
        exposed(&cfg.amqp.node_urls()),
        ["amqp://127.0.0.1:5672/%2f"]
    );
    let cfg = load_amqp("url = \"amqp://u:p@mq:5672/%2f\"\n", &MapEnv::default()).unwrap();
    assert_eq!(exposed(&cfg.amqp.node_urls()), ["amqp://u:p@mq:5672/%2f"]);
}

#[test]
fn amqp_urls_list_the_cluster_nodes_in_order() {
    let cfg = load_amqp(
        "urls = [\"amqp://u:p@mq-1:5672/%2f\", \"amqp://u:p@mq-2:5672/%2f\"]\n\
         single_active_consumer = true\n",
        &MapEnv::default(),
    )
    .unwrap();
    assert_eq!(
        exposed(&cfg.amqp.node_urls()),
        ["amqp://u:p@mq-1:5672/%2f", "amqp://u:p@mq-2:5672/%2f"]
    );
    assert!(cfg.amqp.single_active_consumer);
    // A `url` equal to the default (as in the sample file) counts as unset.
    let cfg = load_amqp(
        "url = \"amqp://127.0.0.1:5672/%2f\"\nurls = [\"amqp://mq-1/%2f\"]\n",
        &MapEnv::default(),
    )
    .unwrap();
    assert_eq!(exposed(&cfg.amqp.node_urls()), ["amqp://mq-1/%2f"]);
}

#[test]
fn amqp_urls_can_come_from_the_environment_and_stay_secret() {
    let env = MapEnv::from_pairs([(
        "ERS_BRIDGE__AMQP__URLS",
        "[\"amqp://u:hunter2@mq-1/%2f\", \"amqp://u:hunter2@mq-2/%2f\"]",
    )]);
    let cfg = load(&fixture("minimal.toml"), &env).unwrap();
    assert_eq!(cfg.amqp.node_urls().len(), 2);
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
}

#[test]
fn amqp_url_and_urls_together_are_an_error() {
    let e = load_amqp(
        "url = \"amqp://u:p@mq:5672/%2f\"\nurls = [\"amqp://mq-1/%2f\", \"amqp://mq-2/%2f\"]\n",
        &MapEnv::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("amqp.toml:5: key `amqp`"), "{e}");
    assert!(e.contains("`url` and `urls` are both set"), "{e}");
    assert!(!e.contains("u:p@"), "no url in the message: {e}");
    // The same through the environment.
    let env = MapEnv::from_pairs([("ERS_BRIDGE__AMQP__URL", "amqp://u:p@mq:5672/%2f")]);
    let e = load_amqp("urls = [\"amqp://mq-1/%2f\"]\n", &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`url` and `urls` are both set"), "{e}");
    let e = load_amqp("urls = [\"amqp://mq-1/%2f\", \" \"]\n", &MapEnv::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("`urls` entry 1 is empty"), "{e}");
}

#[test]
fn amqp_single_active_consumer_must_be_a_boolean() {
    let e = load_amqp("single_active_consumer = \"yes\"\n", &MapEnv::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("key `amqp.single_active_consumer`"), "{e}");
}

#[test]
fn a_rate_allowance_over_a_second_is_refused_by_name() {
    let env = MapEnv::from_pairs([("ERS_BRIDGE__ERS__RATE_ALLOWANCE_MS", "1500")]);
    let e = load(&fixture("minimal.toml"), &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ers.rate_allowance_ms"), "{e}");
    assert!(e.contains("at most 1000"), "{e}");
}

#[test]
fn plain_http_is_only_for_a_simulator() {
    for (url, ok) in [
        ("https://api.service.nhs.uk/referrals/FHIR", true),
        ("http://api.service.nhs.uk/referrals/FHIR", false),
        ("http://10.0.0.5:8080/referrals/FHIR", false),
        ("http://127.0.0.1:8080/referrals/FHIR", true),
        ("http://[::1]:8080/referrals/FHIR", true),
        ("http://localhost:8080/referrals/FHIR", true),
        ("http://simulator:8080/referrals/FHIR", true),
    ] {
        let env = MapEnv::from_pairs([("ERS_BRIDGE__ERS__BASE_URL", url)]);
        match load(&fixture("minimal.toml"), &env) {
            Ok(_) => assert!(ok, "{url} accepted"),
            Err(e) => {
                assert!(!ok, "{url} refused: {e}");
                let e = e.to_string();
                assert!(
                    e.contains("ers.base_url") && e.contains("https only"),
                    "{e}"
                );
            }
        }
    }
}

/// MSH-3..6 come from `[mappings]` (the samples' values by default); a value that cannot
/// be an HD.1 is refused naming its key.
#[test]
fn the_message_header_is_configured_and_checked() {
    let base =
        "[ers]\nbase_url = \"http://127.0.0.1:8080/referrals/FHIR\"\n[ers.auth]\nmode = \"none\"\n";
    let cfg = load_str("<t>", base, &MapEnv::default()).unwrap();
    assert_eq!(cfg.mappings.header, crate::mapping::Header::default());
    let text = format!(
        "{base}[mappings]\nsending_facility = \"RAJ\"\nreceiving_application = \"LORENZO\"\n"
    );
    let cfg = load_str("<t>", &text, &MapEnv::default()).unwrap();
    assert_eq!(cfg.mappings.header.sending_facility, "RAJ");
    assert_eq!(cfg.mappings.header.receiving_application, "LORENZO");
    assert_eq!(cfg.mappings.header.sending_application, "ERS_BRIDGE");
    for (bad, why) in [
        ("R|J", "holds the HL7 delimiter"),
        ("", "is empty"),
        ("ABCDEFGHIJKLMNOPQRSTU", "longer than HD.1's 20 characters"),
    ] {
        let text = format!("{base}[mappings]\nsending_facility = \"{bad}\"\n");
        let err = load_str("<t>", &text, &MapEnv::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mappings.sending_facility") && err.contains(why),
            "{bad:?}: {err}"
        );
    }
}
