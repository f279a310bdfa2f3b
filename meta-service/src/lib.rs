//! RobustMQ meta-service.
