//! Envelope ↔ SQS message body, and the size limits that follow from it.
//!
//! The whole envelope travels in the body as [`Envelope::to_bytes`] (JSON,
//! the payload in base64): SQS allows only 10 message attributes and a
//! restricted character set, so headers could not round-trip exactly as
//! attributes.

use exactly::{Envelope, TransportError};

/// SQS's largest message, body and attributes together: 256 KiB.
pub const SQS_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Room kept for the envelope's fields besides the payload.
const ENVELOPE_HEADROOM: usize = 16 * 1024;

/// The largest payload (`Envelope::body`) whose envelope fits a message of
/// `message_limit` bytes: base64 turns 3 bytes into 4, and
/// [`ENVELOPE_HEADROOM`] is left for ids, type, headers and token.
pub(crate) fn body_limit(message_limit: usize) -> usize {
    message_limit.saturating_sub(ENVELOPE_HEADROOM) / 4 * 3
}

/// The message body for `envelope`, or `TooLarge` past either limit.
pub(crate) fn encode(
    envelope: &Envelope,
    body_limit: usize,
    message_limit: usize,
) -> Result<String, TransportError> {
    if envelope.body.len() > body_limit {
        return Err(TransportError::TooLarge {
            size: envelope.body.len(),
            limit: body_limit,
        });
    }
    let json = envelope.to_bytes().map_err(TransportError::generic)?;
    let text = String::from_utf8(json).map_err(TransportError::generic)?;
    // SQS refuses U+FFFE and U+FFFF; JSON can carry them escaped. They can
    // only occur inside strings, so the replacement keeps the JSON valid.
    let text = if text.contains(['\u{FFFE}', '\u{FFFF}']) {
        text.replace('\u{FFFE}', "\\ufffe")
            .replace('\u{FFFF}', "\\uffff")
    } else {
        text
    };
    if text.len() > message_limit {
        // Only headers far larger than the headroom get here.
        return Err(TransportError::TooLarge {
            size: text.len(),
            limit: message_limit,
        });
    }
    Ok(text)
}

/// The envelope in a received body.
pub(crate) fn decode(body: &str) -> Result<Envelope, serde_json::Error> {
    Envelope::from_bytes(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_characters_survive() {
        let mut envelope = Envelope {
            id: exactly::MessageId::derived("t", "1"),
            message_type: "T".into(),
            destination: "q".into(),
            headers: [("h".to_owned(), "a\u{FFFE}b\u{FFFF}\u{1}".to_owned())].into(),
            correlation_id: None,
            causation_id: None,
            reply_to: None,
            token: None,
            content_type: "x".into(),
            body: vec![0u8, 255].into(),
        };
        let text = encode(&envelope, 100, 1000).expect("fits");
        assert!(!text.contains(['\u{FFFE}', '\u{FFFF}', '\u{1}']));
        assert_eq!(decode(&text).expect("decodes"), envelope);
        envelope.body = vec![0u8; 101].into();
        assert!(matches!(
            encode(&envelope, 100, 1000),
            Err(TransportError::TooLarge {
                size: 101,
                limit: 100
            })
        ));
    }
}
