//! MQTT topic filters: syntax checks and matching, as meta needs them to bind topics to
//! filters and to answer retained-message lookups.

use crate::error::{MetaError, MetaResult};

/// Checks a topic filter: non-empty, at most 65535 bytes, no NUL, `#` only as the whole
/// last level, `+` only as a whole level.
pub fn validate_filter(field: &str, filter: &str) -> MetaResult<()> {
    if filter.is_empty() {
        return Err(MetaError::invalid(
            field,
            "an MQTT filter must not be empty",
        ));
    }
    if filter.len() > 65535 {
        return Err(MetaError::invalid(
            field,
            "an MQTT filter is at most 65535 bytes",
        ));
    }
    if filter.contains('\0') {
        return Err(MetaError::invalid(
            field,
            "an MQTT filter must not contain NUL",
        ));
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != levels.len() - 1) {
            return Err(MetaError::invalid(
                field,
                format!("'{filter}': '#' must be the whole last level"),
            ));
        }
        if level.contains('+') && *level != "+" {
            return Err(MetaError::invalid(
                field,
                format!("'{filter}': '+' must be a whole level"),
            ));
        }
    }
    Ok(())
}

/// Whether topic name `topic` matches `filter`. Topics starting with `$` are not matched
/// by a wildcard in the first level.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_levels() {
        assert!(matches("sensors/#", "sensors/a/temp"));
        assert!(matches("sensors/#", "sensors"));
        assert!(matches("sensors/+/temp", "sensors/a/temp"));
        assert!(!matches("sensors/+/temp", "sensors/a/b/temp"));
        assert!(matches("#", "a/b"));
        assert!(!matches("#", "$SYS/brokers"));
        assert!(!matches("+/brokers", "$SYS/brokers"));
        assert!(matches("$SYS/#", "$SYS/brokers"));
        assert!(!matches("a/b", "a/b/c"));
    }

    #[test]
    fn invalid_filters_are_refused() {
        assert!(validate_filter("f", "a/#/b").is_err());
        assert!(validate_filter("f", "a/b#").is_err());
        assert!(validate_filter("f", "a/+b").is_err());
        assert!(validate_filter("f", "").is_err());
        assert!(validate_filter("f", "a/+/#").is_ok());
    }
}
