//! A hostile PAS through the real inbound path (reader → correlate → decide → reply): every
//! PAS sample and every third-party file in `../shared/hl7-samples/` as it is, then 10,000
//! seeded mutations of them (truncations, wrong separators and MSH-2 variants, huge fields,
//! bad escapes, invalid UTF-8, mixed CR/LF, repeated and dropped segments, random bytes),
//! each through `Inbound::handle` against the seeded simulator and RabbitMQ. Each must end
//! in an outcome (answered, needs-action or dead-lettered with a reason), never a panic or
//! an error, and a valid decision sent after the flood is still handled as one.
//!
//! The seed is printed; `ERS_FUZZ_SEED=<n>` replays a run, `ERS_FUZZ_N=<n>` changes its
//! length (issue 21: at least 10,000 in CI).

use chrono::Utc;
use ers_bridge::pipeline::inbound::Handled;
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::inbound::{rri, seeded};

/// The messages the mutations start from.
fn bases() -> Vec<(String, Vec<u8>)> {
    let mut out = crate::common::sample_files("samples/pas");
    out.extend(crate::common::sample_files("../shared/hl7-samples"));
    assert!(
        out.len() >= 40,
        "expected both corpora, found {}",
        out.len()
    );
    out
}

/// One mutation of `m`, chosen by `rng`; returns its name.
fn mutate(rng: &mut StdRng, m: &mut Vec<u8>) -> &'static str {
    let at = |rng: &mut StdRng, m: &Vec<u8>| rng.random_range(0..=m.len());
    match rng.random_range(0..11) {
        0 => {
            let cut = at(rng, m);
            m.truncate(cut);
            "truncated"
        }
        1 => {
            // MSH-1/MSH-2 variants: other separators, too few or too many, repeated.
            let variants: [&[u8]; 6] = [b"|^~\\&", b"#^~\\&", b"|^~", b"||||", b"|^~\\&#^~", b""];
            let v = variants[rng.random_range(0..variants.len())];
            if m.len() >= 8 && m.starts_with(b"MSH") {
                m.splice(3..8, v.iter().copied());
            }
            "msh separators"
        }
        2 => {
            let i = at(rng, m);
            let n = rng.random_range(1_000..200_000);
            m.splice(i..i, std::iter::repeat_n(b'A', n));
            "huge field"
        }
        3 => {
            let escapes: [&[u8]; 5] = [b"\\", b"\\X1G\\", b"\\H\\\\N\\", b"\\Zxx", b"\\.br\\\\"];
            let e = escapes[rng.random_range(0..escapes.len())];
            let i = at(rng, m);
            m.splice(i..i, e.iter().copied());
            "bad escape"
        }
        4 => {
            let i = at(rng, m);
            m.splice(i..i, [0xFF, 0xFE, 0xC3, 0x28]);
            "invalid utf-8"
        }
        5 => {
            for b in m.iter_mut() {
                if *b == b'\r' && rng.random_bool(0.5) {
                    *b = b'\n';
                }
            }
            "mixed cr/lf"
        }
        6 => {
            let segs: Vec<Vec<u8>> = m.split(|b| *b == b'\r').map(<[u8]>::to_vec).collect();
            let i = rng.random_range(0..segs.len());
            let times = rng.random_range(1..60);
            let mut out = Vec::new();
            for (n, s) in segs.iter().enumerate() {
                let k = if n == i { times } else { 1 };
                for _ in 0..k {
                    out.extend_from_slice(s);
                    out.push(b'\r');
                }
            }
            *m = out;
            "repeated segment"
        }
        7 => {
            let segs: Vec<&[u8]> = m.split(|b| *b == b'\r').collect();
            let drop = rng.random_range(0..segs.len());
            let out: Vec<u8> = segs
                .iter()
                .enumerate()
                .filter(|(n, _)| *n != drop)
                .flat_map(|(_, s)| s.iter().copied().chain([b'\r']))
                .collect();
            *m = out;
            "dropped segment"
        }
        8 => {
            for _ in 0..rng.random_range(1..20) {
                if m.is_empty() {
                    break;
                }
                let i = rng.random_range(0..m.len());
                m[i] = rng.random();
            }
            "random bytes"
        }
        9 => {
            // A field delimiter storm inside a segment.
            let i = at(rng, m);
            let n = rng.random_range(1..5_000);
            m.splice(i..i, std::iter::repeat_n(b'|', n));
            "many fields"
        }
        _ => {
            let i = at(rng, m);
            m.splice(i..i, std::iter::repeat_n(b'^', rng.random_range(1..3_000)));
            "many components"
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_pas_never_crashes_or_stalls_the_inbound_path() {
    let seed: u64 = std::env::var("ERS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let n: usize = std::env::var("ERS_FUZZ_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    eprintln!("fuzz seed {seed} (ERS_FUZZ_SEED={seed} replays it), {n} messages");
    let (h, app) = seeded(false).await;
    let bases = bases();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    let mut tally = |handled: &Handled| *outcomes.entry(handled.outcome()).or_default() += 1;
    // Every base as it is.
    for (name, body) in &bases {
        match app.inbound().handle(body, Utc::now()).await {
            Ok(handled) => tally(&handled),
            Err(e) => panic!("{name}: {e}"),
        }
    }
    // Then the mutations.
    for i in 0..n {
        let (name, base) = &bases[rng.random_range(0..bases.len())];
        let mut m = base.clone();
        let mut applied = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            applied.push(mutate(&mut rng, &mut m));
        }
        match app.inbound().handle(&m, Utc::now()).await {
            Ok(handled) => {
                if let Handled::DeadLettered { reason, .. } = &handled {
                    assert!(!reason.is_empty(), "#{i} {name} {applied:?}: no reason");
                }
                tally(&handled);
            }
            Err(e) => panic!("seed {seed}, message #{i} ({name}, {applied:?}): {e}"),
        }
    }
    eprintln!("outcomes: {outcomes:?}");
    assert!(
        outcomes.get("dead_lettered").copied().unwrap_or(0) > n / 10,
        "the mutations should break many messages: {outcomes:?}"
    );
    // A valid decision after the flood is still handled as one (a referral no base names).
    let after = rri("PASFUZZEND", "A^Accepted^HL70283", "000000070012", "", "ok");
    let handled = app.inbound().handle(&after, Utc::now()).await.unwrap();
    assert!(
        matches!(
            handled,
            Handled::Done { .. } | Handled::NeedsAction { .. } | Handled::NoAction { .. }
        ),
        "{handled:?}"
    );
    app.close().await;
    h.cleanup().await;
}
