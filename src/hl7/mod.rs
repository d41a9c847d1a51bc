//! HL7v2: the message model and writer, guarded reading, readers for what the PAS sends
//! (ACK, RRI^I12), identifier newtypes and structural validation.
//!
//! - [`escape`]: our own escape encoder/decoder (never the `hl7-parser` decoder).
//! - [`message`]: [`Message`] (decoded text, 1-based positions) and its writer.
//! - [`read`]: bytes → [`Message`] through `hl7-parser` behind a guard.
//! - [`ack`], [`rri`]: typed views of an ACK and an RRI^I12 ([`Inbound`]).
//! - [`reply`]: the bridge's own ACK to a PAS message.
//! - [`envelope`]: [`Hl7Out`], what the pipelines hand a transport.
//!
//! The identifier newtypes ([`NhsNumber`], [`Ubrn`], [`ControlId`]) live in [`crate::ids`]
//! and are re-exported here.
//! - [`structure`]: segment order/cardinality and required fields per message structure.
//!
//! Invariant: no input makes any function here panic; bad input is a [`ReadError`] naming
//! the segment, field and reason.

pub mod ack;
pub mod envelope;
pub mod escape;
pub mod message;
pub mod read;
pub mod reply;
pub mod rri;
pub mod structure;

pub use crate::ids::{ControlId, IdError, NhsNumber, Ubrn};
pub use ack::{read_inbound, AckCode, ErrDetail, Inbound, InboundError};
pub use envelope::Hl7Out;
pub use escape::Delimiters;
pub use message::{Charset, Message, Segment, WriteError};
pub use read::{read, read_with_limit, ReadError};
pub use rri::RriReferral;

/// Trims trailing empty subcomponents, components, repetitions and fields, so a written and
/// re-read segment compares equal to the original.
pub fn normalise_segment(seg: &mut Segment) {
    for field in &mut seg.fields {
        for rep in field.iter_mut() {
            for comp in rep.iter_mut() {
                while comp.last().is_some_and(String::is_empty) {
                    comp.pop();
                }
            }
            while rep.last().is_some_and(Vec::is_empty) {
                rep.pop();
            }
        }
        while field.last().is_some_and(Vec::is_empty) {
            field.pop();
        }
    }
    while seg.fields.last().is_some_and(Vec::is_empty) {
        seg.fields.pop();
    }
}

/// [`normalise_segment`] over every segment.
pub fn normalise(msg: &mut Message) {
    msg.segments.iter_mut().for_each(normalise_segment);
}
