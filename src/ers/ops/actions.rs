//! The e-RS operations that act on a referral (A013 accept, A014 reject, A022 cancel
//! appointment action later, A028 record review outcome, all with `If-Match`) and the
//! Advice & Guidance ones (A024 read, A025 conversation, A026 respond, A027 convert).

use reqwest::Method;

use super::{fhir_body, history, invalid, parse, versioned, CONVERSATION_INCLUDES};
use crate::ers::{
    capability::{AuthMode, Operation},
    client::{Call, ErsClient},
    error::ErsError,
    Versioned,
};
use crate::fhir::{
    requests::{
        CancelAppointmentActionLater, ConvertAdviceToReferral, RecordReviewOutcome, RejectReferral,
        SendAdviceResponse,
    },
    Bundle, CommunicationRequest, Parameters, ReferralRequest,
};
use crate::ids::{Ubrn, Version};

impl ErsClient {
    /// A013: accept a referral booked into a bookable service. No body; `If-Match`.
    pub async fn accept(
        &self,
        ubrn: &Ubrn,
        version: Version,
    ) -> Result<Versioned<ReferralRequest>, ErsError> {
        self.referral_action(Operation::A013, ubrn, version, "$ers.acceptReferral", None)
            .await
    }

    /// A014: reject a referral (user-restricted only).
    pub async fn reject(
        &self,
        ubrn: &Ubrn,
        version: Version,
        input: &RejectReferral,
    ) -> Result<Versioned<ReferralRequest>, ErsError> {
        let op = Operation::A014;
        let body = input.to_parameters().map_err(|r| invalid(op, r))?;
        self.referral_action(op, ubrn, version, "$ers.rejectReferral", Some(body))
            .await
    }

    /// A022: cancel the appointment and action later (user-restricted only).
    pub async fn cancel_action_later(
        &self,
        ubrn: &Ubrn,
        version: Version,
        input: &CancelAppointmentActionLater,
    ) -> Result<Versioned<ReferralRequest>, ErsError> {
        let op = Operation::A022;
        let body = input.to_parameters().map_err(|r| invalid(op, r))?;
        // The legacy documentation spells this operation with a capital C.
        let name = match self.mode() {
            AuthMode::LegacySession => "$ers.CancelAppointmentActionLater",
            _ => "$ers.cancelAppointmentActionLater",
        };
        self.referral_action(op, ubrn, version, name, Some(body))
            .await
    }

    /// A028: record a triage (review) outcome.
    pub async fn record_review_outcome(
        &self,
        ubrn: &Ubrn,
        version: Version,
        input: &RecordReviewOutcome,
    ) -> Result<Versioned<ReferralRequest>, ErsError> {
        let op = Operation::A028;
        let body = input.to_parameters().map_err(|r| invalid(op, r))?;
        self.referral_action(op, ubrn, version, "$ers.recordReviewOutcome", Some(body))
            .await
    }

    async fn referral_action(
        &self,
        op: Operation,
        ubrn: &Ubrn,
        version: Version,
        operation_name: &str,
        body: Option<Parameters>,
    ) -> Result<Versioned<ReferralRequest>, ErsError> {
        let mut call = Call::new(
            op,
            Method::POST,
            self.stu3(&format!("ReferralRequest/{ubrn}/{operation_name}")),
            self.inner.max_json_bytes,
        );
        call.if_match = Some(version);
        if let Some(p) = body {
            call.body = Some(fhir_body(op, Ok(p))?);
        }
        versioned(
            op,
            self.execute(call).await?,
            "ReferralRequest",
            |r: &ReferralRequest| r.version(),
        )
    }

    /// A024: an A&G request.
    pub async fn advice_request(
        &self,
        ubrn: &Ubrn,
        version: Option<Version>,
    ) -> Result<Versioned<CommunicationRequest>, ErsError> {
        let op = Operation::A024;
        let call = self.get(
            op,
            self.stu3(&history("CommunicationRequest", ubrn, version)),
        );
        versioned(
            op,
            self.execute(call).await?,
            "CommunicationRequest",
            |r: &CommunicationRequest| r.version(),
        )
    }

    /// A025: the A&G conversation of the request's latest `version`.
    pub async fn advice_conversation(
        &self,
        ubrn: &Ubrn,
        version: Version,
    ) -> Result<Bundle, ErsError> {
        let op = Operation::A025;
        let mut call = self.get(op, self.stu3("Communication"));
        call.query.push((
            "based-on".into(),
            format!("CommunicationRequest/{ubrn}/_history/{version}"),
        ));
        for inc in CONVERSATION_INCLUDES {
            call.query.push(("_include".into(), inc.into()));
        }
        parse(op, &self.execute(call).await?, "Bundle")
    }

    /// A026: send the A&G response (user-restricted only). Returns the `Parameters` with
    /// `updatedCommunicationRequest` and `createdCommunication`.
    pub async fn send_advice_response(
        &self,
        ubrn: &Ubrn,
        version: Version,
        input: &SendAdviceResponse,
    ) -> Result<Parameters, ErsError> {
        let op = Operation::A026;
        let body = input.to_parameters().map_err(|r| invalid(op, r))?;
        let mut call = Call::new(
            op,
            Method::POST,
            self.stu3(&format!(
                "CommunicationRequest/{ubrn}/$ers.sendCommunicationToRequester"
            )),
            self.inner.max_json_bytes,
        );
        call.if_match = Some(version);
        call.body = Some(fhir_body(op, Ok(body))?);
        parse(op, &self.execute(call).await?, "Parameters")
    }

    /// A027: convert an A&G request into a referral (user-restricted only). Not retried on
    /// an unknown outcome: there is no If-Match.
    pub async fn convert_advice(
        &self,
        input: &ConvertAdviceToReferral,
    ) -> Result<Versioned<ReferralRequest>, ErsError> {
        let op = Operation::A027;
        let body = input.to_parameters().map_err(|r| invalid(op, r))?;
        let mut call = Call::new(
            op,
            Method::POST,
            self.stu3("ReferralRequest/$ers.createFromCommunicationRequestActionLater"),
            self.inner.max_json_bytes,
        );
        call.body = Some(fhir_body(op, Ok(body))?);
        versioned(
            op,
            self.execute(call).await?,
            "ReferralRequest",
            |r: &ReferralRequest| r.version(),
        )
    }
}
