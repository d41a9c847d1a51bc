//! Shared helpers: spawning a seeded simulator, signed-JWT client assertions and
//! user-restricted request builders.

use std::path::PathBuf;

use ers_bridge::simulator::{self, RunningSimulator, SimAuth, SimConfig};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

pub const PRIVATE_PEM: &str = include_str!("../fixtures/jwt/private.pem");
pub const PUBLIC_PEM: &str = include_str!("../fixtures/jwt/public.pem");
pub const USER_TOKEN: &str = "sim-user-token";
pub const SPC: &str = "SERVICE_PROVIDER_CLINICIAN";

/// A running simulator with an HTTP client.
pub struct TestSim {
    pub sim: RunningSimulator,
    pub http: reqwest::Client,
}

pub fn samples_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/fhir"))
}

/// The minimal A&G request sample (`samples/fhir/advice/minimal.json`).
pub fn sample_advice() -> Value {
    let text = std::fs::read_to_string(samples_dir().join("advice/minimal.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn examples_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/ers-api/examples/stu3"
    ))
}

/// The test configuration: seeded from samples, test JWT key, generous rate limit.
pub fn config() -> SimConfig {
    SimConfig {
        seed_dir: Some(samples_dir()),
        auth: SimAuth {
            public_key_pem: Some(PUBLIC_PEM.to_owned()),
            ..SimAuth::default()
        },
        rate_limit_per_sec: 1000,
        ..SimConfig::default()
    }
}

pub async fn spawn() -> TestSim {
    spawn_with(config()).await
}

pub async fn spawn_with(cfg: SimConfig) -> TestSim {
    let sim = simulator::spawn(cfg).await.expect("simulator starts");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestSim { sim, http }
}

/// Signs a client assertion with the test key.
pub fn assertion(claims: &Value, kid: &str) -> String {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let mut header = Header::new(Algorithm::RS512);
    header.kid = Some(kid.to_owned());
    let key = EncodingKey::from_rsa_pem(PRIVATE_PEM.as_bytes()).unwrap();
    encode(&header, claims, &key).unwrap()
}

/// Valid claims for `token_url`.
pub fn claims(token_url: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": "sim-api-key", "sub": "sim-api-key", "aud": token_url,
           "jti": uuid::Uuid::new_v4().to_string(), "exp": now + 240})
}

impl TestSim {
    pub fn stu3(&self, path: &str) -> String {
        format!("{}/STU3/{path}", self.sim.fhir_base())
    }

    /// Posts a token request with `jwt` as the assertion.
    pub async fn token_request(&self, jwt: &str) -> Response {
        self.http
            .post(self.sim.token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", jwt),
            ])
            .send()
            .await
            .unwrap()
    }

    /// An app-restricted access token.
    pub async fn app_token(&self) -> String {
        let jwt = assertion(&claims(&self.sim.token_url()), "sim-kid");
        let resp = self.token_request(&jwt).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A user-restricted request as a provider clinician.
    pub fn user(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.user_as(method, path, SPC)
    }

    pub fn user_as(
        &self,
        method: reqwest::Method,
        path: &str,
        role: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.stu3(path))
            .bearer_auth(USER_TOKEN)
            .header("NHSD-eRS-Business-Function", role)
            .header("NHSD-End-User-Organisation-ODS", "R69")
    }

    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let r = self.user(reqwest::Method::GET, path).send().await.unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// POST with a FHIR JSON body and optional If-Match, as a provider clinician.
    pub async fn post(&self, path: &str, if_match: Option<&str>, body: Option<&Value>) -> Response {
        let mut req = self
            .user(reqwest::Method::POST, path)
            .header("Content-Type", "application/fhir+json");
        if let Some(m) = if_match {
            req = req.header("If-Match", m);
        }
        if let Some(b) = body {
            req = req.body(serde_json::to_vec(b).unwrap());
        }
        req.send().await.unwrap()
    }

    pub async fn post_json(
        &self,
        path: &str,
        if_match: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let r = self.post(path, if_match, body).await;
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// POSTs `body` and asserts a 422 whose OperationOutcome carries e-RS code `code`.
    pub async fn post_rejected(
        &self,
        path: &str,
        if_match: Option<&str>,
        body: &Value,
        code: &str,
    ) {
        let (s, out) = self.post_json(path, if_match, Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {out}");
        assert_eq!(ers_code(&out), code, "{path}");
    }

    /// The current version of referral `ubrn`.
    pub async fn version(&self, ubrn: &str) -> u64 {
        self.version_at(&format!("ReferralRequest/{ubrn}")).await
    }

    /// The current version of A&G request `ubrn`.
    pub async fn advice_version(&self, ubrn: &str) -> u64 {
        self.version_at(&format!("CommunicationRequest/{ubrn}"))
            .await
    }

    /// `meta.versionId` of the resource read at `path` (which must answer 200).
    async fn version_at(&self, path: &str) -> u64 {
        let (s, v) = self.get_json(path).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["meta"]["versionId"].as_str().unwrap().parse().unwrap()
    }

    /// `GET /_admin/calls`: the write calls received.
    pub async fn admin_calls(&self) -> Vec<Value> {
        self.admin_get("calls").await
    }

    /// `GET /_admin/stats`: the request statistics.
    pub async fn stats(&self) -> Value {
        self.admin_get("stats").await
    }

    /// The JSON answer of `GET /_admin/{path}`.
    async fn admin_get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.http
            .get(format!("{}/_admin/{path}", self.sim.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `POST /_admin/{path}` with an optional JSON body: the status and JSON answer.
    pub async fn admin_post(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}/_admin/{path}", self.sim.base_url()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn set_faults(&self, faults: Value) {
        let r = self
            .http
            .post(format!("{}/_admin/faults", self.sim.base_url()))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}

/// The e-RS error code of an OperationOutcome.
pub fn ers_code(outcome: &Value) -> &str {
    outcome["issue"][0]["details"]["coding"][0]["code"]
        .as_str()
        .unwrap_or("")
}

/// The referral state code.
pub fn state_of(referral: &Value) -> (String, Option<String>) {
    let ext = referral["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"].as_str().unwrap().ends_with("ReferralState-1"))
        .unwrap();
    let subs = ext["extension"].as_array().unwrap();
    let get = |n: &str| {
        subs.iter()
            .find(|s| s["url"] == n)
            .and_then(|s| s["valueCoding"]["code"].as_str())
            .map(str::to_owned)
    };
    (get("state").unwrap(), get("reason"))
}

pub fn if_match(v: u64) -> String {
    format!("W/\"{v}\"")
}

/// A Parameters body with the given profile name and parameters.
pub fn parameters(profile: &str, params: Value) -> Value {
    json!({"resourceType": "Parameters",
           "meta": {"profile": [format!("https://fhir.nhs.uk/STU3/StructureDefinition/{profile}")]},
           "parameter": params})
}

pub fn coding(system: &str, code: &str) -> Value {
    json!({"system": system, "code": code})
}

pub const CS: &str = "https://fhir.nhs.uk/STU3/CodeSystem/";

/// The UBRNs on a worklist response.
pub fn worklist_ubrns(list: &Value) -> Vec<String> {
    list["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    e["item"]["reference"]
                        .as_str()
                        .unwrap()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn worklist_body(list_type: &str, extra: Value) -> Value {
    let system = if list_type == "ADVICE_AND_GUIDANCE_REQUESTS" {
        "eRS-CommunicationListSelector-1"
    } else {
        "eRS-ReferralListSelector-1"
    };
    let mut params = vec![
        json!({"name": "listType", "valueCodeableConcept": {"coding": [
        {"system": format!("{CS}{system}"), "code": list_type}]}}),
    ];
    if let Some(a) = extra.as_array() {
        params.extend(a.iter().cloned());
    }
    parameters("eRS-FetchWorklist-Parameters-1", json!(params))
}
