//! MQTT topic filters as meta needs them (binding topics to filters, retained lookups):
//! the codec crate's rules, with errors that name the offending field.

use crate::error::{MetaError, MetaResult};

pub use mqtt_codec::topic::matches;

/// Checks a topic filter by MQTT's rules (`#` only as the whole last level, `+` only as a
/// whole level, no NUL, at most 65535 bytes).
pub fn validate_filter(field: &str, filter: &str) -> MetaResult<()> {
    if mqtt_codec::topic::is_valid_topic_filter(filter) {
        Ok(())
    } else {
        Err(MetaError::invalid(
            field,
            format!(
                "'{filter}' is not a valid MQTT topic filter ('#' only as the whole last level, '+' only as a whole level)"
            ),
        ))
    }
}

/// Checks a topic name (no wildcards).
pub fn validate_name(field: &str, topic: &str) -> MetaResult<()> {
    if mqtt_codec::topic::is_valid_topic_name(topic) {
        Ok(())
    } else {
        Err(MetaError::invalid(
            field,
            format!("'{topic}' is not a valid MQTT topic name"),
        ))
    }
}
