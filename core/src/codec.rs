//! Body codecs. JSON is the default; any self-describing format that maps to
//! and from a `serde_json::Value` can be plugged in.

use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::CodecError;

/// Encodes and decodes message bodies and entity state.
pub trait Codec: Send + Sync + fmt::Debug + 'static {
    /// The content type written into each envelope, e.g. `application/json`.
    fn content_type(&self) -> &str;

    /// Encodes a value.
    fn encode_value(&self, value: &serde_json::Value) -> Result<Bytes, CodecError>;

    /// Decodes a value.
    fn decode_value(&self, bytes: &[u8]) -> Result<serde_json::Value, CodecError>;
}

/// Encodes and decodes typed values through a [`Codec`].
pub trait CodecExt: Codec {
    /// Encodes any serializable value.
    fn encode<T: Serialize>(&self, value: &T) -> Result<Bytes, CodecError> {
        let value = serde_json::to_value(value).map_err(|e| self.error(e))?;
        self.encode_value(&value)
    }

    /// Decodes into any deserializable type, naming the offending field.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let value = self.decode_value(bytes)?;
        serde_json::from_value(value).map_err(|e| self.error(e))
    }

    /// A codec error carrying this codec's content type.
    fn error(&self, reason: impl fmt::Display) -> CodecError {
        CodecError {
            content_type: self.content_type().to_owned(),
            reason: reason.to_string(),
        }
    }
}

impl<C: Codec + ?Sized> CodecExt for C {}

/// The default codec: JSON.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl Codec for Json {
    fn content_type(&self) -> &str {
        "application/json"
    }

    fn encode_value(&self, value: &serde_json::Value) -> Result<Bytes, CodecError> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| self.error(e))
    }

    fn decode_value(&self, bytes: &[u8]) -> Result<serde_json::Value, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Order {
        id: u32,
        items: Vec<String>,
    }

    #[test]
    fn json_round_trip() {
        let order = Order {
            id: 7,
            items: vec!["gift".into()],
        };
        let bytes = Json.encode(&order).expect("encode");
        assert_eq!(Json.decode::<Order>(&bytes).expect("decode"), order);
    }

    #[test]
    fn decode_error_names_the_field() {
        let err = Json
            .decode::<Order>(br#"{"id":"seven","items":[]}"#)
            .expect_err("wrong type must fail");
        assert_eq!(err.content_type, "application/json");
        assert!(err.reason.contains("invalid type"), "{err}");
    }
}
