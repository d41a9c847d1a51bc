//! The ceiling any bridge could reach on this machine: a client that does only the
//! unavoidable part of the outbound job, against the same simulator and broker as
//! `bench/e2e.sh` step 1. It reads the worklists (A008, with the bridge's client), then for
//! every referral: A005 (parsed to JSON, as the attachment list is inside), A042 for each
//! available attachment following the 307 to the object store, A007 (the clinical
//! information PDF) when the referral has no letter and none is still being scanned (as the
//! bridge does with `clinical_info_when_no_letter`, its default; `--no-clinical-info` turns
//! it off), and one confirmed, persistent, mandatory publish of a message of
//! `--message-bytes` (the bridge's average message, which `bench/e2e.sh` and
//! `bench/compare.sh` pass in; the A005 body when not given) to a fresh quorum queue (lapin
//! alone, `--in-flight` referrals at once). No mapping, no store, no retries, no logging.
//!
//! Whatever rate this reaches bounds the end-to-end rate of the real bridge on the same
//! cores from above. Prints one line of results.
//!
//! ```sh
//! cargo run --release --example ceiling -- --sim http://127.0.0.1:8099 --in-flight 64
//! ```

#[path = "support/topology.rs"]
mod topology;
use topology::BenchTopology;

use std::time::Instant;

use anyhow::{bail, Context};
use ers_bridge::config::{self, MapEnv, WorklistKind};
use ers_bridge::ers::{clinical_info_path, ErsClient};
use ers_bridge::fhir::requests::FetchWorklist;
use ers_bridge::pipeline::outbound::fetch::facts;
use futures_util::StreamExt;
use lapin::{options::BasicPublishOptions, BasicProperties, Confirmation};

/// The services `ers-bridge simulate --generate N` spreads referrals over.
const SERVICES: [&str; 7] = [
    "21012", "21013", "21014", "21015", "11016", "11010", "11014",
];

struct Args {
    sim: String,
    amqp: String,
    in_flight: usize,
    /// A007 when the referral carries no letter (the bridge's default).
    clinical_info: bool,
    /// The size of each published message; `None`: the A005 body as it is.
    message_bytes: Option<usize>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        sim: String::new(),
        amqp: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
        in_flight: 64,
        clinical_info: true,
        message_bytes: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--sim" => a.sim = value()?,
            "--amqp" => a.amqp = value()?,
            "--in-flight" => a.in_flight = value()?.parse()?,
            "--message-bytes" => a.message_bytes = Some(value()?.parse()?),
            "--no-clinical-info" => a.clinical_info = false,
            other => bail!(
                "unknown argument {other} (--sim URL --amqp URL --in-flight N \
                 --message-bytes N --no-clinical-info)"
            ),
        }
    }
    if a.sim.is_empty() || a.in_flight == 0 {
        bail!("--sim URL is required and --in-flight must be at least 1");
    }
    Ok(a)
}

/// One referral: A005, its available attachments (A042 + object store), A007 when it has
/// no letter, one confirmed publish.
async fn one(
    http: &reqwest::Client,
    fhir: &str,
    ch: &lapin::Channel,
    exchange: &str,
    ubrn: &str,
    a: &Args,
) -> anyhow::Result<usize> {
    let body = http
        .get(format!("{fhir}/STU3/ReferralRequest/{ubrn}"))
        .header("accept", "application/fhir+json")
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let referral: serde_json::Value = serde_json::from_slice(&body)?;
    let mut requests = 1;
    let parsed = ers_bridge::ids::Ubrn::parse(ubrn)?;
    let (mut letters, mut pending) = (0, 0);
    for att in facts(&parsed, &referral)?.attachments {
        match att.status.as_deref() {
            None | Some("AVAILABLE") => {}
            Some("PENDING") => {
                pending += 1;
                continue;
            }
            Some(_) => continue,
        }
        // reqwest follows the 307 to the object store by itself: two requests.
        http.get(format!("{fhir}/R4/Binary/{}", att.binary_id))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        requests += 2;
        letters += 1;
    }
    if a.clinical_info && letters == 0 && pending == 0 {
        http.post(format!("{fhir}/STU3/{}", clinical_info_path(&parsed)))
            .header("accept", "application/pdf")
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        requests += 1;
    }
    let mut body = body.to_vec();
    if let Some(n) = a.message_bytes {
        body.resize(n, b' ');
    }
    let confirm = ch
        .basic_publish(
            exchange.into(),
            "default.REF.I12".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &body,
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(ubrn.into()),
        )
        .await?
        .await?;
    match confirm {
        Confirmation::Ack(None) => Ok(requests),
        other => bail!("not confirmed: {other:?}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let fhir = format!("{}/referrals/FHIR", a.sim.trim_end_matches('/'));
    let cfg = config::load_str(
        "<ceiling>",
        &format!(
            "[ers]\nbase_url = \"{fhir}\"\nrate_limit_per_sec = 1000000\n[ers.auth]\nmode = \"none\"\n\
             [amqp]\nurl = \"{}\"\n[store]\nurl = \"sqlite::memory:\"\n[mappings]\ndir = \"{}/mappings\"\n",
            a.amqp,
            env!("CARGO_MANIFEST_DIR")
        ),
        &MapEnv::default(),
    )?;
    let ers = ErsClient::new(&cfg.ers, std::sync::Arc::new(MapEnv::default()))?;

    let bench = BenchTopology::declare(&a.amqp, "ceiling").await?;
    let (ch, t) = (&bench.ch, &bench.t);
    let http = reqwest::Client::new();

    let started = Instant::now();
    let mut ubrns = Vec::new();
    for service in SERVICES {
        for list in [
            WorklistKind::ReferralsForReview,
            WorklistKind::AppointmentSlotIssues,
        ] {
            let mut req = FetchWorklist::new(list.into());
            req.service = Some(service.to_string());
            let items = ers.worklist_items(&req).await?;
            ubrns.extend(items.into_iter().map(|i| i.ubrn));
        }
    }
    let results: Vec<anyhow::Result<usize>> = futures_util::stream::iter(&ubrns)
        .map(|u| one(&http, &fhir, ch, &t.exchange, u, &a))
        .buffer_unordered(a.in_flight)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let requests: usize = results
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?
        .iter()
        .sum();

    bench.delete().await?;
    println!(
        "referrals={} http_requests={} in_flight={} elapsed_s={:.3} ceiling_referrals_per_s={:.0}",
        ubrns.len(),
        requests,
        a.in_flight,
        elapsed.as_secs_f64(),
        ubrns.len() as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
