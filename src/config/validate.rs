//! Validation: the raw file (after the strict serde parse of [`super::raw`]) becomes the
//! typed [`Config`], checking the rules that span several keys (the app-restricted
//! worklist budget, auth mode requirements, on-behalf-of rules) on the way. No IO:
//! `ers-bridge validate` stays offline. Errors are [`Invalid`]: the dotted key and why.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::raw::{AuthConfig, BusinessFunction, RawConfig};
use super::validated::{Config, InboundTuning, MappingFiles, PipelineTuning, Poll};
use crate::backoff::Backoff;

/// A configuration value that breaks a rule: its dotted key (e.g. `poll[0].interval_secs`)
/// and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub reason: String,
}

const SECS_PER_DAY: u64 = 86_400;

impl RawConfig {
    /// Checks every rule and builds the typed configuration.
    pub fn validate(self) -> Result<Config, Invalid> {
        let err = |k: &str, r: String| {
            Err(Invalid {
                key: k.to_string(),
                reason: r,
            })
        };
        let url = match reqwest::Url::parse(&self.ers.base_url) {
            Ok(u) => u,
            Err(e) => return err("ers.base_url", format!("not a url: {e}")),
        };
        if !matches!(url.scheme(), "http" | "https") {
            return err("ers.base_url", "must be an http or https url".into());
        }
        if url.scheme() == "http" && !simulator_host(&url) {
            return err(
                "ers.base_url",
                "e-rs is reached over https only, with its certificate verified; plain http is \
                 accepted only for a simulator on this machine or on a container network (a \
                 loopback address, `localhost`, or a host name without dots)"
                    .into(),
            );
        }
        if self.ers.rate_limit_per_sec == 0 {
            return err("ers.rate_limit_per_sec", "must be at least 1".into());
        }
        if self.amqp.tls_client_cert_file.is_some() != self.amqp.tls_client_key_file.is_some() {
            return err(
                "amqp.tls_client_cert_file",
                "a client certificate needs both tls_client_cert_file and tls_client_key_file"
                    .into(),
            );
        }
        if !(1..=4096).contains(&self.amqp.inbound_bytes_in_flight_mib) {
            return err(
                "amqp.inbound_bytes_in_flight_mib",
                "must be between 1 and 4096 (MiB)".into(),
            );
        }
        if self.amqp.inbound_delivery_limit == 0 {
            return err("amqp.inbound_delivery_limit", "must be at least 1".into());
        }
        if self.ers.rate_allowance_ms > 1_000 {
            return err(
                "ers.rate_allowance_ms",
                "must be at most 1000 (it halves the rate at 1000)".into(),
            );
        }
        if self.ers.request_timeout_ms == 0 || self.ers.connect_timeout_ms == 0 {
            return err("ers.request_timeout_ms", "timeouts must be above 0".into());
        }
        self.validate_auth()
            .map_err(|(key, reason)| Invalid { key, reason })?;
        if let Some(w) = &self.alerts.webhook_url {
            match reqwest::Url::parse(w) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return err("alerts.webhook_url", "must be an http or https url".into()),
            }
        }
        if self.alerts.evaluate_secs == 0 {
            return err("alerts.evaluate_secs", "must be at least 1".into());
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.monitor.tokens {
            if t.name.trim().is_empty() || !names.insert(t.name.as_str()) {
                return err(
                    "monitor.tokens",
                    format!("token names must be unique and not empty ({:?})", t.name),
                );
            }
            if t.token_env.trim().is_empty() {
                return err(
                    "monitor.tokens",
                    format!("token {:?} needs token_env", t.name),
                );
            }
        }
        let Some(concurrency) = NonZeroUsize::new(self.pipeline.concurrency) else {
            return err("pipeline.concurrency", "must be at least 1".into());
        };
        if self.pipeline.publish_retry_base_delay_ms == 0
            || self.pipeline.publish_retry_max_delay_ms < self.pipeline.publish_retry_base_delay_ms
        {
            return err(
                "pipeline.publish_retry_base_delay_ms",
                "must be above 0 and at most publish_retry_max_delay_ms".into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, p) in self.poll.iter().enumerate() {
            let key = |k: &str| format!("poll[{i}].{k}");
            if p.service.is_empty() || !p.service.bytes().all(|b| b.is_ascii_digit()) {
                return err(
                    &key("service"),
                    "must be an e-RS service id (digits)".into(),
                );
            }
            if p.lists.is_empty() {
                return err(&key("lists"), "must name at least one worklist".into());
            }
            if p.interval_secs == 0 {
                return err(&key("interval_secs"), "must be above 0".into());
            }
            if !seen.insert(p.service.clone()) {
                return err(
                    &key("service"),
                    format!("service {} is listed twice", p.service),
                );
            }
            if let AuthConfig::AppRestricted { .. } = self.ers.auth {
                let budget = u64::from(self.ers.worklist_calls_per_service_per_day);
                let calls = p.lists.len() as u64 * SECS_PER_DAY.div_ceil(p.interval_secs);
                if calls > budget {
                    return err(
                        &key("interval_secs"),
                        format!(
                            "app-restricted mode allows {budget} worklist calls per service per day; \
                             polling {} list(s) every {}s makes {calls} (use at least {}s)",
                            p.lists.len(),
                            p.interval_secs,
                            (SECS_PER_DAY * p.lists.len() as u64).div_ceil(budget.max(1))
                        ),
                    );
                }
            }
        }
        let p = &self.pipeline;
        let pipeline = PipelineTuning {
            concurrency,
            fetch_clinical_info: p.fetch_clinical_info,
            clinical_info_when_no_letter: p.clinical_info_when_no_letter,
            fetch_related_attachments: p.fetch_related_attachments,
            pending_attachment_max_wait: Duration::from_secs(p.pending_attachment_max_wait_secs),
            publish_retry: Backoff {
                initial: Duration::from_millis(p.publish_retry_base_delay_ms),
                max: Duration::from_millis(p.publish_retry_max_delay_ms),
            },
        };
        let i = &self.inbound;
        if i.max_attempts == 0 {
            return err("inbound.max_attempts", "must be at least 1".into());
        }
        if i.retry_base_delay_ms == 0 || i.retry_base_delay_ms > i.retry_max_delay_ms {
            return err(
                "inbound.retry_base_delay_ms",
                "must be above 0 and at most retry_max_delay_ms".into(),
            );
        }
        let mllp = match &i.mllp_listen {
            None => None,
            Some(addr) => {
                let Ok(listen) = addr.parse::<std::net::SocketAddr>() else {
                    return err(
                        "inbound.mllp_listen",
                        format!("{addr:?} is not an address and port, e.g. \"0.0.0.0:2575\""),
                    );
                };
                if i.mllp_max_connections == 0 || i.mllp_idle_timeout_secs == 0 {
                    return err(
                        "inbound.mllp_max_connections",
                        "mllp_max_connections and mllp_idle_timeout_secs must be above 0".into(),
                    );
                }
                let tls = match (&i.mllp_tls_cert_file, &i.mllp_tls_key_file) {
                    (Some(cert), Some(key)) => Some(crate::mllp::tls::ServerTls {
                        cert_file: cert.clone(),
                        key_file: key.clone(),
                        client_ca_file: i.mllp_tls_client_ca_file.clone(),
                    }),
                    (None, None) if i.mllp_tls_client_ca_file.is_none() => None,
                    _ => {
                        return err(
                            "inbound.mllp_tls_cert_file",
                            "TLS needs both mllp_tls_cert_file and mllp_tls_key_file (and a client CA only with them)".into(),
                        )
                    }
                };
                Some(crate::mllp::listener::ListenerSettings {
                    tls,
                    listen,
                    max_connections: i.mllp_max_connections,
                    idle_timeout: Duration::from_secs(i.mllp_idle_timeout_secs),
                    reply_within: Duration::from_millis(i.mllp_reply_within_ms.max(1)),
                    max_frame: crate::mllp::listener::MAX_FRAME,
                })
            }
        };
        let inbound = InboundTuning {
            mllp,
            enabled: i.enabled,
            max_attempts: i.max_attempts,
            retry: Backoff {
                initial: Duration::from_millis(i.retry_base_delay_ms),
                max: Duration::from_millis(i.retry_max_delay_ms),
            },
        };
        let m = self.mappings;
        for (key, value) in [
            ("mappings.sending_application", &m.sending_application),
            ("mappings.sending_facility", &m.sending_facility),
            ("mappings.receiving_application", &m.receiving_application),
            ("mappings.receiving_facility", &m.receiving_facility),
        ] {
            if let Err(why) = crate::mapping::Header::check(value) {
                return err(key, format!("{why} (it is MSH-3..6's HD.1)"));
            }
        }
        let header = crate::mapping::Header {
            sending_application: m.sending_application,
            sending_facility: m.sending_facility,
            receiving_application: m.receiving_application,
            receiving_facility: m.receiving_facility,
        };
        let mappings = MappingFiles {
            header,
            dir: m.dir,
            new_referral: m.new_referral,
            changed_referral: m.changed_referral,
            cancelled_referral: m.cancelled_referral,
            patient: (!m.patient.is_empty()).then_some(m.patient),
            inbound: m.inbound,
        };
        let poll = self
            .poll
            .into_iter()
            .map(|p| Poll {
                service: p.service,
                lists: p.lists,
                interval: Duration::from_secs(p.interval_secs),
                specialty: p.specialty,
                clinician: p.clinician,
            })
            .collect();
        let t = &self.transport;
        let mllp_to_pas = match t.to_pas.as_str() {
            "amqp" => None,
            "mllp" => {
                let a = &t.mllp.address;
                let port_ok = a
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !port_ok {
                    return err(
                        "transport.mllp.address",
                        format!("{a:?} is not host:port (the PAS's MLLP listener)"),
                    );
                }
                if t.mllp.ack_timeout_ms == 0 || t.mllp.connect_timeout_ms == 0 {
                    return err(
                        "transport.mllp.ack_timeout_ms",
                        "ack_timeout_ms and connect_timeout_ms must be above 0".into(),
                    );
                }
                let m = &t.mllp;
                let client_cert = match (&m.tls_client_cert_file, &m.tls_client_key_file) {
                    (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                    (None, None) => None,
                    _ => {
                        return err(
                            "transport.mllp.tls_client_cert_file",
                            "a client certificate needs both tls_client_cert_file and tls_client_key_file".into(),
                        )
                    }
                };
                let tls_keys =
                    m.tls_ca_file.is_some() || client_cert.is_some() || m.tls_server_name.is_some();
                if tls_keys && !m.tls {
                    return err(
                        "transport.mllp.tls",
                        "tls_* files or a server name are set but tls = false".into(),
                    );
                }
                let tls = m.tls.then(|| crate::mllp::tls::ClientTls {
                    ca_file: m.tls_ca_file.clone(),
                    client_cert,
                    server_name: m.tls_server_name.clone(),
                });
                let retry_refused = match m.on_refusal.as_str() {
                    "park" => false,
                    "retry" => true,
                    other => {
                        return err(
                            "transport.mllp.on_refusal",
                            format!("{other:?} is not park or retry"),
                        )
                    }
                };
                Some(crate::mllp::SenderSettings {
                    retry_refused,
                    tls,
                    address: a.clone(),
                    connect_timeout: Duration::from_millis(t.mllp.connect_timeout_ms),
                    ack_timeout: Duration::from_millis(t.mllp.ack_timeout_ms),
                    max_frame: crate::mllp::listener::MAX_FRAME,
                })
            }
            other => {
                return err(
                    "transport.to_pas",
                    format!("{other:?} is not a transport: amqp or mllp"),
                )
            }
        };
        let cluster = match self.cluster.validate() {
            Ok(c) => c,
            Err((key, why)) => return err(key, why),
        };
        Ok(Config {
            cluster,
            mllp_to_pas,
            ers: self.ers,
            amqp: self.amqp,
            store: self.store,
            monitor: self.monitor,
            mappings,
            poll,
            pipeline,
            inbound,
            alerts: self.alerts,
        })
    }

    fn validate_auth(&self) -> Result<(), (String, String)> {
        let err = |k: &str, r: &str| Err((format!("ers.auth.{k}"), r.to_string()));
        match &self.ers.auth {
            AuthConfig::AppRestricted { kid, token_url, .. } => {
                if kid.is_empty() {
                    return err("kid", "must not be empty");
                }
                if let Some(u) = token_url {
                    if reqwest::Url::parse(u).is_err() {
                        return err("token_url", "not a url");
                    }
                }
            }
            AuthConfig::UserRestricted {
                token_file,
                token_env,
                business_function,
                on_behalf_of_user_id,
                ods_code,
            } => {
                if token_file.is_none() == token_env.is_none() {
                    return err("token_file", "set exactly one of token_file and token_env");
                }
                check_ods(ods_code)?;
                check_obo(*business_function, on_behalf_of_user_id.as_deref())?;
            }
            AuthConfig::LegacySession {
                session_token_file,
                session_token_env,
                client_cert_file,
                client_key_file,
                ods_code,
                asid,
                ..
            } => {
                if session_token_file.is_none() == session_token_env.is_none() {
                    return err(
                        "session_token_file",
                        "set exactly one of session_token_file and session_token_env",
                    );
                }
                if asid.is_empty() || !asid.bytes().all(|b| b.is_ascii_digit()) {
                    return err("asid", "must be the numeric ASID issued for this system");
                }
                if client_cert_file.is_some() != client_key_file.is_some() {
                    return err(
                        "client_cert_file",
                        "client_cert_file and client_key_file go together",
                    );
                }
                check_ods(ods_code)?;
            }
            AuthConfig::None => {}
        }
        Ok(())
    }
}

fn check_ods(ods: &str) -> Result<(), (String, String)> {
    if ods.is_empty() || !ods.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err((
            "ers.auth.ods_code".into(),
            "must be an ODS organisation code such as R69".into(),
        ));
    }
    Ok(())
}

fn check_obo(bf: BusinessFunction, obo: Option<&str>) -> Result<(), (String, String)> {
    let key = "ers.auth.on_behalf_of_user_id".to_string();
    match (bf, obo) {
        (BusinessFunction::ServiceProviderClinicianAdmin, None) => Err((
            key,
            "required with SERVICE_PROVIDER_CLINICIAN_ADMIN (the SDS user id acted for)".into(),
        )),
        (BusinessFunction::ServiceProviderClinicianAdmin, Some(id))
            if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Err((key, "must be a 12-digit SDS user id".into()))
        }
        (BusinessFunction::ServiceProviderClinicianAdmin, Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => Err((
            key,
            "only allowed with SERVICE_PROVIDER_CLINICIAN_ADMIN".into(),
        )),
    }
}

/// Whether plain http may be used to reach `url`: a simulator on this machine (a loopback
/// address, `localhost`) or on a container network (a single-label name such as
/// `simulator` in docker-compose.yml). e-RS itself (`*.nhs.uk`) is never one of these, and
/// there is no switch to turn certificate verification off (docs/ers-client.md).
fn simulator_host(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost" || !host.contains('.'),
    }
}
