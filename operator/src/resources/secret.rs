//! The self-signed TLS Secret for the broker's TLS listeners (`tls.selfSigned: true`).
//! Created once and then left alone: regenerating it on every reconcile would change the
//! certificate clients pinned.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use rcgen::{CertificateParams, KeyPair};

use super::{Tier, child_meta, tls_secret_name};
use crate::crd::RobustMQCluster;
use crate::{Error, Result};

/// DNS names the certificate covers: the broker Service in every short form, its pods, and
/// the advertised host.
pub fn tls_dns_names(c: &RobustMQCluster) -> Vec<String> {
    let svc = Tier::Broker.name(&c.name_any());
    let ns = c.namespace().unwrap_or_default();
    let mut names = vec![
        svc.clone(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
    ];
    if let Some(h) = &c.spec.broker.advertised_host {
        names.push(h.clone());
    }
    names
}

/// A `kubernetes.io/tls` Secret with a fresh self-signed certificate (its own CA: `ca.crt`
/// is the certificate itself, for clients to trust).
pub fn self_signed_secret(c: &RobustMQCluster) -> Result<Secret> {
    let name = tls_secret_name(c).unwrap_or_else(|| format!("{}-tls", c.name_any()));
    let cert_err = |source| Error::Certificate {
        cluster: c.name_any(),
        source,
    };
    let params = CertificateParams::new(tls_dns_names(c)).map_err(cert_err)?;
    let key = KeyPair::generate().map_err(cert_err)?;
    let cert = params.self_signed(&key).map_err(cert_err)?;
    let pem = cert.pem();
    Ok(Secret {
        metadata: child_meta(c, Tier::Broker, name),
        type_: Some("kubernetes.io/tls".into()),
        string_data: Some(BTreeMap::from([
            ("tls.crt".to_string(), pem.clone()),
            ("tls.key".to_string(), key.serialize_pem()),
            ("ca.crt".to_string(), pem),
        ])),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    #[test]
    fn self_signed_secret_has_a_cert_for_the_broker_service() {
        let c = cluster("tls: {selfSigned: true}\nbroker: {advertisedHost: mq.example.com}");
        let s = self_signed_secret(&c).unwrap();
        assert_eq!(s.metadata.name.as_deref(), Some("demo-tls"));
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        let data = s.string_data.unwrap();
        assert!(data["tls.crt"].starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(data["tls.key"].contains("PRIVATE KEY"));
        assert!(tls_dns_names(&c).contains(&"demo-broker.prod.svc".to_string()));
        assert!(tls_dns_names(&c).contains(&"mq.example.com".to_string()));
    }
}
