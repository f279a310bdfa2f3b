//! The generic key-value space and producer-id allocation.

use bytes::Bytes;

use crate::error::{MetaError, MetaResult};
use crate::keys;
use crate::store::validate::free_key;
use crate::store::{Output, State};

const MAX_PRODUCER_ID_BLOCK: u32 = 1_000_000;
const MAX_VALUE_BYTES: usize = 4 << 20;

pub(super) fn allocate_producer_ids(s: &mut State, count: u32) -> MetaResult<Output> {
    let count = count.clamp(1, MAX_PRODUCER_ID_BLOCK);
    let first_id = s.counters.next_producer_id;
    s.counters.next_producer_id += i64::from(count);
    Ok(Output::ProducerIds { first_id, count })
}

pub(super) fn put(
    s: &mut State,
    key: &str,
    value: &[u8],
    expected: Option<u64>,
) -> MetaResult<Output> {
    free_key("key", key)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(MetaError::invalid(
            "value",
            format!("is larger than {MAX_VALUE_BYTES} bytes"),
        ));
    }
    let full = keys::kv(key);
    if let Some(expected) = expected {
        let current = s.get_raw(&full).map_or(0, |v| v.mod_revision);
        if current != expected {
            return Err(MetaError::precondition(format!(
                "kv key '{key}' is at revision {current}, expected {expected}"
            )));
        }
    }
    s.put_raw(full, Bytes::copy_from_slice(value));
    Ok(Output::Revision(s.revision()))
}

pub(super) fn delete(s: &mut State, key: &str) -> MetaResult<Output> {
    if !s.delete(&keys::kv(key)) {
        return Err(MetaError::not_found("kv key", key));
    }
    Ok(Output::Revision(s.revision()))
}
