//! Validation of names and fields that does not depend on state, shared by the gRPC layer
//! (to fail fast with INVALID_ARGUMENT) and by apply (so that a forwarded or replayed
//! command can never store something invalid).

use crate::error::{MetaError, MetaResult};

/// Topic, policy and Kafka names: Kafka's rules (1..=249 chars of `[A-Za-z0-9._-]`, not
/// `.` or `..`), so that any topic can be exposed to Kafka clients unchanged.
pub fn resource_name(field: &str, name: &str) -> MetaResult<()> {
    if name.is_empty() {
        return Err(MetaError::invalid(field, "must not be empty"));
    }
    if name.len() > 249 {
        return Err(MetaError::invalid(
            field,
            format!("'{name}' is longer than 249 characters"),
        ));
    }
    if name == "." || name == ".." {
        return Err(MetaError::invalid(
            field,
            format!("'{name}' is not allowed"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(MetaError::invalid(
            field,
            format!("'{name}' contains '{c}'; use only letters, digits, '.', '_' and '-'"),
        ));
    }
    Ok(())
}

/// User names: printable, no separators, bounded.
pub fn user_name(name: &str) -> MetaResult<()> {
    if name.is_empty() || name.len() > 128 {
        return Err(MetaError::invalid("name", "must be 1 to 128 bytes"));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == ':' || c == ',')
    {
        return Err(MetaError::invalid(
            "name",
            format!("'{name}' contains a control character, '/', ':' or ','"),
        ));
    }
    Ok(())
}

/// Generic KV keys and session ids: non-empty, bounded, no NUL.
pub fn free_key(field: &str, key: &str) -> MetaResult<()> {
    if key.is_empty() {
        return Err(MetaError::invalid(field, "must not be empty"));
    }
    if key.len() > 4096 {
        return Err(MetaError::invalid(field, "is longer than 4096 bytes"));
    }
    if key.contains('\0') {
        return Err(MetaError::invalid(field, "contains NUL"));
    }
    Ok(())
}
