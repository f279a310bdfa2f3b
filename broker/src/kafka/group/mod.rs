//! The consumer-group coordinator (being written).
