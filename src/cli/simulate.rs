//! `ers-bridge simulate`: runs the e-RS simulator ([`crate::simulator`]) until Ctrl-C and
//! prints `listening on http://ADDR` once bound.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use crate::simulator::{self, SimAuth, SimConfig};

/// Arguments of `simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Folder with referrals/*.json and advice/*.json to seed from.
    #[arg(long)]
    pub seed_dir: Option<PathBuf>,
    /// Number of extra synthetic referrals to generate.
    #[arg(long, default_value_t = 0)]
    pub generate: usize,
    /// RS512 public key (PEM) verifying signed-JWT client assertions.
    #[arg(long)]
    pub jwt_public_key: Option<PathBuf>,
    /// Expected JWT iss/sub (the application's API key).
    #[arg(long, default_value = "sim-api-key")]
    pub api_key: String,
    /// Expected JWT header kid.
    #[arg(long, default_value = "sim-kid")]
    pub kid: String,
    /// Bearer token accepted as user-restricted (repeatable; default sim-user-token).
    #[arg(long = "user-token")]
    pub user_tokens: Vec<String>,
    /// Expected legacy XAPI_ASID.
    #[arg(long, default_value = "200000000001")]
    pub asid: String,
    /// Accept requests without credentials as a user-restricted provider clinician.
    #[arg(long)]
    pub no_auth: bool,
    /// Largest worklist response in bytes; bigger ones fail with 502 (the real limit is 10 MB).
    #[arg(long, default_value_t = simulator::DEFAULT_MAX_WORKLIST_BYTES)]
    pub max_worklist_bytes: usize,
    /// Requests per second per client before 429 (the production limit is 10); raise it for
    /// load tests of the bridge.
    #[arg(long, default_value_t = 10)]
    pub rate_limit_per_sec: u32,
}

/// Runs `simulate`.
pub fn run(args: SimulateArgs) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", super::explain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: SimulateArgs) -> anyhow::Result<()> {
    let public_key_pem = match &args.jwt_public_key {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read jwt public key {}", p.display()))?,
        ),
        None => None,
    };
    let mut auth = SimAuth {
        api_key: args.api_key,
        public_key_pem,
        kid: args.kid,
        asid: args.asid,
        require_auth: !args.no_auth,
        ..SimAuth::default()
    };
    if !args.user_tokens.is_empty() {
        auth.user_tokens = args.user_tokens;
    }
    let cfg = SimConfig {
        listen: args.listen,
        seed_dir: args.seed_dir,
        generate: args.generate,
        max_worklist_bytes: args.max_worklist_bytes,
        rate_limit_per_sec: args.rate_limit_per_sec,
        auth,
        ..SimConfig::default()
    };
    super::runtime()?.block_on(async move {
        let sim = simulator::spawn(cfg)
            .await
            .context("cannot start the simulator")?;
        println!("listening on {}", sim.base_url());
        tokio::select! {
            _ = sim.wait() => {}
            r = tokio::signal::ctrl_c() => r.context("cannot wait for ctrl-c")?,
        }
        Ok(())
    })
}
