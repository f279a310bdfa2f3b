//! The RobustMQ Kubernetes operator.
//!
//! It turns three custom resources of group `robustmq.io/v1alpha1` into running tiers and
//! meta-service state:
//!
//! ```text
//! RobustMQCluster --> ConfigMaps, Services, StatefulSets (meta, journal), Deployment + HPA
//!                     (broker), PodDisruptionBudgets, self-signed TLS Secret
//! StoragePolicy   --> meta CreatePolicy / UpdatePolicy / DeletePolicy
//! Topic           --> meta CreateTopic / AddPartitions / DeleteTopic (finalizer)
//! ```
//!
//! [`crd`] holds the types (the CRD YAML in `crds/` is generated from them), [`resources`]
//! the pure builders of child objects, [`controller`] the reconcilers, [`leader`] the Lease
//! based leader election, [`admin`] the health and metrics endpoint.

pub mod admin;
pub mod controller;
pub mod crd;
pub mod error;
pub mod leader;
pub mod meta;
pub mod metrics;
pub mod resources;

pub use error::{Error, Result};

/// The one field manager every server-side apply of the operator uses, so that it owns
/// exactly the fields it sets and never fights itself.
pub const FIELD_MANAGER: &str = "robustmq-operator";
