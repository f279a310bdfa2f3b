//! SASL server exchanges for Kafka (being written).
