//! Floods a bridge's inbound queue with PAS decisions (`bench/inbound_memory.sh`,
//! `bench/overload.sh`): `--count` RRI^I12 accepts, each with its own MSH-10 and an NTE of
//! about `--bytes` bytes, sent straight to `--queue` with publisher confirms. Each names the
//! UBRN `--ubrn-from` + (n mod `--ubrns`) (the simulator's generated referrals start at
//! 000000100000). By default MSA-2 names a REF^I12 of 000000070001 (the large-message
//! runs: on an empty simulator each decision ends needs-action after one A005);
//! `--msa false` leaves MSA out, so each decision is correlated by RF1's UBRN alone.
//! Synthetic data only.
//!
//! ```sh
//! cargo run --release --example flood -- --queue ers.from-pas --count 20 --bytes 15000000
//! ```

use anyhow::{bail, Context};
use ers_bridge::amqp::QueueClient;

fn main() -> anyhow::Result<()> {
    let (mut url, mut queue, mut count, mut bytes) = (
        "amqp://guest:guest@127.0.0.1:5672/%2f".to_string(),
        String::new(),
        20usize,
        15_000_000usize,
    );
    let (mut ubrn_from, mut ubrns, mut msa) = (70_001u64, 1u64, true);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => url = value,
            "--queue" => queue = value,
            "--count" => count = value.parse()?,
            "--bytes" => bytes = value.parse()?,
            "--ubrn-from" => ubrn_from = value.parse()?,
            "--ubrns" => ubrns = value.parse::<u64>()?.max(1),
            "--msa" => msa = value.parse()?,
            other => bail!(
                "unknown argument {other} (--url U --queue Q --count N --bytes B --ubrn-from N --ubrns N --msa true|false)"
            ),
        }
    }
    if queue.is_empty() {
        bail!("--queue is required");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let q = QueueClient::connect(&url).await?;
        let note = "x".repeat(bytes);
        let started = std::time::Instant::now();
        for n in 0..count {
            let ubrn = format!("{:012}", ubrn_from + n as u64 % ubrns);
            let msa = if msa { "MSA|AA|ERS000000070001V5I12\r" } else { "" };
            let body = format!(
                "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240116091500||RRI^I12^RRI_I12|FLOOD{n:06}|P|2.4|||AL|NE\r\
                 {msa}\
                 RF1|A^Accepted^HL70283||||O^Outpatient^HL70284|{ubrn}^UBRN|20240116091500\r\
                 PID|1||9990000018^^^NHS^NH||TEST^FLOOD\r\
                 NTE|1|L|{note}\r"
            );
            q.send(&queue, body.as_bytes()).await?;
        }
        println!(
            "flood: {count} messages of {} bytes in {:.1} s",
            bytes + 300,
            started.elapsed().as_secs_f64()
        );
        q.close().await;
        anyhow::Ok(())
    })
}
