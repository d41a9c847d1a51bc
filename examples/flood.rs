//! Floods a bridge's inbound queue with PAS decisions (`bench/inbound_memory.sh`): `--count`
//! RRI^I12 messages, each with its own MSH-10 and an NTE of about `--bytes` bytes, sent
//! straight to `--queue` with publisher confirms. Synthetic data only.
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
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => url = value,
            "--queue" => queue = value,
            "--count" => count = value.parse()?,
            "--bytes" => bytes = value.parse()?,
            other => bail!("unknown argument {other} (--url U --queue Q --count N --bytes B)"),
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
            let body = format!(
                "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240116091500||RRI^I12^RRI_I12|FLOOD{n:06}|P|2.4|||AL|NE\r\
                 MSA|AA|ERS000000070001V5I12\r\
                 RF1|A^Accepted^HL70283||||O^Outpatient^HL70284|000000070001^UBRN|20240116091500\r\
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
