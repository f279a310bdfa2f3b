//! Fuzz target for `broker::kafka::frame::decode_request`, the only code that turns a
//! client's Kafka bytes into a request.
//!
//! Beyond "never panics": a request that decodes must re-encode (client side, same
//! version) to bytes that decode to the same request, and the record sets of a Produce
//! must go through the batch splitter the server runs before storing them.

#![no_main]

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::RequestKind;
use kafka_protocol::protocol::Encodable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = broker::kafka::frame::decode_request(Bytes::copy_from_slice(data)) else {
        return;
    };
    if let RequestKind::Produce(p) = &req.body {
        for t in &p.topic_data {
            for part in &t.partition_data {
                if let Some(r) = &part.records {
                    let _ = broker::kafka::batch::split(r);
                }
            }
        }
    }
    let mut out = BytesMut::new();
    req.header
        .encode(&mut out, req.api_key.request_header_version(req.version()))
        .expect("a decoded header re-encodes");
    req.body
        .encode(&mut out, req.version())
        .expect("a decoded request re-encodes");
    let again = broker::kafka::frame::decode_request(out.freeze()).expect("a re-encoded request decodes");
    assert_eq!(again.header, req.header);
    assert_eq!(again.body, req.body);
});
