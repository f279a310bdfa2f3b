//! gRPC contracts between RobustMQ tiers: the generated tonic/prost code for every
//! `.proto` file in `proto/`, plus the encoded descriptor set that servers register with
//! tonic-reflection so that grpcurl can call them.

/// The public meta-service API (`robustmq.meta.v1`).
pub mod meta {
    tonic::include_proto!("robustmq.meta.v1");
}

/// The internal Raft transport between meta-service nodes (`robustmq.raft.v1`).
pub mod raft {
    tonic::include_proto!("robustmq.raft.v1");
}

/// The journal tier's API (`robustmq.journal.v1`).
pub mod journal {
    tonic::include_proto!("robustmq.journal.v1");
}

/// Encoded `FileDescriptorSet` of every service, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("robustmq_descriptor");

/// The protobuf runtime the generated code uses, re-exported for decoding watched values.
pub use prost;
