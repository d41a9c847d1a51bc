//! The `ers-bridge simulate` subcommand: binds, prints its address and serves.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Kills the child process when the test ends, even on failure.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn simulate_prints_its_address_and_serves_the_seed() {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_ers-bridge"))
            .args([
                "simulate",
                "--listen",
                "127.0.0.1:0",
                "--generate",
                "3",
                "--no-auth",
                "--rate-limit-per-sec",
                "1000",
            ])
            .arg("--seed-dir")
            .arg(crate::helpers::samples_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ers-bridge runs"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let page = reqwest::get(format!("{base}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("000000070001"), "{page}");
    assert!(page.contains("000000100002"), "generated referrals listed");
    let r = reqwest::get(format!(
        "{base}/referrals/FHIR/STU3/ReferralRequest/000000070013"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    // The raised limit applies: a burst well above the default 10/s is served.
    let client = reqwest::Client::new();
    for _ in 0..30 {
        let r = client
            .get(format!(
                "{base}/referrals/FHIR/STU3/ReferralRequest/000000070013"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK);
    }
}
