//! Test helpers: a capturing HTTP server on 127.0.0.1:0, config builders, example paths.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use ers_bridge::{
    config::{self, MapEnv},
    ers::ErsClient,
};

/// Path of a file under `../shared/ers-api/examples/`.
pub fn example(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/ers-api/examples")
        .join(rel)
}

/// Reads an example as JSON.
pub fn example_json(rel: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(example(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: tokio::time::Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

type Responder = Arc<dyn Fn(&Seen, usize) -> Response + Send + Sync>;

#[derive(Clone)]
struct RecorderState {
    seen: Arc<Mutex<Vec<Seen>>>,
    respond: Responder,
}

/// Not e-RS: a local HTTP server that records every request the client sends and answers
/// with `respond(request, n)` (`n` counts earlier requests), for asserting exact wire bytes
/// and odd replies the simulator has no reason to give. Behaviour against e-RS itself is
/// tested with the simulator.
pub struct RecordingServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingServer {
    pub async fn spawn(respond: impl Fn(&Seen, usize) -> Response + Send + Sync + 'static) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = RecorderState {
            seen: seen.clone(),
            respond: Arc::new(respond),
        };
        let app = Router::new().fallback(handle).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, seen, task }
    }

    pub fn base(&self) -> String {
        format!("http://{}/referrals/FHIR", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(
    State(s): State<RecorderState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body,
        at: tokio::time::Instant::now(),
    };
    let n = {
        let mut log = s.seen.lock().unwrap();
        log.push(seen.clone());
        log.len() - 1
    };
    (s.respond)(&seen, n)
}

/// A FHIR JSON reply with an ETag.
pub fn fhir(status: u16, body: serde_json::Value, etag: Option<u32>) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap(),
        [
            ("content-type", "application/fhir+json".to_string()),
            ("x-request-id", "server-request-1".to_string()),
        ],
        body.to_string(),
    )
        .into_response();
    if let Some(v) = etag {
        r.headers_mut()
            .insert("etag", format!("W/\"{v}\"").parse().unwrap());
    }
    r
}

/// The official example response for `rel`.
pub fn example_reply(rel: &str, etag: Option<u32>) -> Response {
    fhir(200, example_json(rel), etag)
}

/// `[ers]` TOML for a base url and an `[ers.auth]` body, with extra `[ers]` keys.
pub fn config_toml(base: &str, extra_ers: &str, auth: &str) -> String {
    format!("[ers]\nbase_url = \"{base}\"\n{extra_ers}\n[ers.auth]\n{auth}\n")
}

/// Builds a client from TOML and an environment.
pub fn client(toml: &str, env: MapEnv) -> ErsClient {
    let cfg =
        config::load_str("test.toml", toml, &MapEnv::default()).unwrap_or_else(|e| panic!("{e}"));
    ErsClient::new(&cfg.ers, Arc::new(env)).unwrap_or_else(|e| panic!("{e}"))
}

/// Path of the test RSA key pair.
pub fn jwt_key(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn ubrn(s: &str) -> ers_bridge::ids::Ubrn {
    ers_bridge::ids::Ubrn::parse(s).unwrap()
}

pub fn ver(n: u32) -> ers_bridge::ids::Version {
    ers_bridge::ids::Version::new(n)
}
