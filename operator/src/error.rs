//! The operator library's error type. Each variant names what failed so that the reconcile
//! error metric can label it ([`Error::metric_label`]).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("meta-service at {endpoint}: {source}")]
    MetaConnect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },

    #[error("meta-service {call} for {name}: {status}")]
    Meta {
        call: &'static str,
        name: String,
        status: Box<tonic::Status>,
    },

    #[error("{kind} {name}: {reason}")]
    Invalid {
        kind: &'static str,
        name: String,
        reason: String,
    },

    #[error("{object} is missing {field}")]
    MissingField {
        object: &'static str,
        field: &'static str,
    },

    #[error("self-signed certificate for {cluster}: {source}")]
    Certificate {
        cluster: String,
        #[source]
        source: rcgen::Error,
    },

    #[error("serializing {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("finalizer of {name}: {message}")]
    Finalizer { name: String, message: String },
}

impl Error {
    /// A short, bounded label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MetaConnect { .. } => "meta_connect",
            Error::Meta { .. } => "meta",
            Error::Invalid { .. } => "invalid",
            Error::MissingField { .. } => "missing_field",
            Error::Certificate { .. } => "certificate",
            Error::Serialize { .. } => "serialize",
            Error::Finalizer { .. } => "finalizer",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
