//! Clients of the clusters' meta-services. The endpoint of cluster `c` in namespace `ns` is
//! its meta Service, `http://c-meta.ns.svc:1228`; `--meta-endpoint` overrides it for every
//! cluster (tests run the operator outside the cluster network, against a local meta).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use robustmq_proto::meta::meta_service_client::MetaServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::resources::meta_endpoint;
use crate::{Error, Result};

/// A cache of gRPC channels by endpoint. Channels connect lazily and reconnect by
/// themselves, so one per endpoint serves every reconcile.
#[derive(Default)]
pub struct MetaClients {
    endpoint_override: Option<String>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl MetaClients {
    pub fn new(endpoint_override: Option<String>) -> Self {
        MetaClients {
            endpoint_override: endpoint_override.map(|e| {
                if e.contains("://") {
                    e
                } else {
                    format!("http://{e}")
                }
            }),
            channels: Mutex::default(),
        }
    }

    /// Whether every cluster's meta is reached through one overridden endpoint.
    pub fn is_overridden(&self) -> bool {
        self.endpoint_override.is_some()
    }

    /// The endpoint of a cluster's meta-service.
    pub fn endpoint(&self, cluster: &str, namespace: &str) -> String {
        self.endpoint_override
            .clone()
            .unwrap_or_else(|| meta_endpoint(cluster, namespace))
    }

    /// A client of a cluster's meta-service. Calls time out after 10 s so a dead meta
    /// cannot wedge a reconcile.
    pub fn client(&self, cluster: &str, namespace: &str) -> Result<MetaServiceClient<Channel>> {
        let endpoint = self.endpoint(cluster, namespace);
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = channels.get(&endpoint) {
            return Ok(MetaServiceClient::new(ch.clone()));
        }
        let ch = Endpoint::from_shared(endpoint.clone())
            .map_err(|source| Error::MetaConnect {
                endpoint: endpoint.clone(),
                source,
            })?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        channels.insert(endpoint, ch.clone());
        Ok(MetaServiceClient::new(ch))
    }
}

/// Wraps a failed meta call with what was being done.
pub fn meta_err(call: &'static str, name: &str, status: tonic::Status) -> Error {
    Error::Meta {
        call,
        name: name.to_string(),
        status: Box::new(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_comes_from_the_meta_service_unless_overridden() {
        let m = MetaClients::new(None);
        assert_eq!(m.endpoint("prod", "mq"), "http://prod-meta.mq.svc:1228");
        let m = MetaClients::new(Some("127.0.0.1:5000".into()));
        assert_eq!(m.endpoint("prod", "mq"), "http://127.0.0.1:5000");
        assert!(m.is_overridden());
    }
}
