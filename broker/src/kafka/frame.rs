//! Kafka wire framing and codec: a request frame (after its 4-byte length) becomes a
//! typed [`Request`], and a typed response becomes a length-prefixed frame. The only code
//! that turns Kafka bytes into messages; no I/O here, so it can be fuzzed directly.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;

use super::versions;

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: RequestKind,
}

impl Request {
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {0} bytes is shorter than a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    /// The API is not served, or not at this version. `correlation_id` lets ApiVersions
    /// answer with UNSUPPORTED_VERSION, as clients probing newer versions expect.
    #[error("API {api_key:?} version {version} is not supported")]
    Unsupported {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("encoding {api_key:?} v{version} response: {reason}")]
    Encode {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Decodes one request frame (without its length prefix).
pub fn decode_request(mut frame: Bytes) -> Result<Request, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let correlation_id = (&frame[4..8]).get_i32();
    let api_key = ApiKey::try_from(key).map_err(|_| FrameError::UnknownApi(key))?;
    if !versions::is_supported(api_key, version) {
        return Err(FrameError::Unsupported {
            api_key,
            version,
            correlation_id,
        });
    }
    let malformed = |e: anyhow::Error| FrameError::Malformed {
        api_key,
        version,
        reason: format!("{e:#}"),
    };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(malformed)?;
    let body = RequestKind::decode(api_key, &mut frame, version).map_err(malformed)?;
    // Trailing bytes mean the client and we disagree on the layout: refuse rather than guess.
    if frame.has_remaining() {
        return Err(FrameError::Malformed {
            api_key,
            version,
            reason: format!("{} trailing bytes", frame.remaining()),
        });
    }
    Ok(Request {
        api_key,
        header,
        body,
    })
}

/// Encodes a response as a length-prefixed frame for the request it answers.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, FrameError> {
    let fail = |e: anyhow::Error| FrameError::Encode {
        api_key,
        version,
        reason: format!("{e:#}"),
    };
    // A Fetch response carries MiBs of records: size the buffer once instead of letting
    // it double its way up (each doubling copies everything encoded so far).
    let body_size = match body {
        ResponseKind::Fetch(f) => f.compute_size(version).unwrap_or(0),
        _ => 0,
    };
    let mut buf = BytesMut::with_capacity(body_size + 256);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(fail)?;
    body.encode(&mut buf, version).map_err(fail)?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;

    fn frame(key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")))
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn round_trips_a_request() {
        let f = frame(ApiKey::Metadata, 12, &MetadataRequest::default());
        let r = decode_request(f).unwrap();
        assert_eq!(r.api_key, ApiKey::Metadata);
        assert_eq!(r.header.correlation_id, 7);
        assert!(matches!(r.body, RequestKind::Metadata(_)));
    }

    #[test]
    fn refuses_short_unknown_unsupported_and_trailing() {
        assert_eq!(
            decode_request(Bytes::from_static(&[0, 1])).unwrap_err(),
            FrameError::TooShort(2)
        );
        assert_eq!(
            decode_request(Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 1])).unwrap_err(),
            FrameError::UnknownApi(0x7f00)
        );
        let f = frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        let mut raw = f.to_vec();
        raw[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode_request(raw.into()),
            Err(FrameError::Unsupported {
                api_key: ApiKey::ApiVersions,
                version: 99,
                correlation_id: 7
            })
        ));
        let mut long = frame(ApiKey::Metadata, 12, &MetadataRequest::default()).to_vec();
        long.push(0);
        assert!(matches!(
            decode_request(long.into()),
            Err(FrameError::Malformed { .. })
        ));
        let short = frame(ApiKey::Metadata, 12, &MetadataRequest::default());
        assert!(matches!(
            decode_request(short.slice(..short.len() - 2)),
            Err(FrameError::Malformed { .. })
        ));
    }

    #[test]
    fn response_frame_has_its_length() {
        let b = encode_response(
            ApiKey::ApiVersions,
            3,
            9,
            &ResponseKind::ApiVersions(versions::api_versions(0)),
        )
        .unwrap();
        assert_eq!((&b[0..4]).get_i32() as usize, b.len() - 4);
        assert_eq!((&b[4..8]).get_i32(), 9);
    }
}
