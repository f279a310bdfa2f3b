//! Services: headless ones that give meta and journal pods stable DNS names, and the
//! client-facing broker Service.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{ADMIN_PORT, JOURNAL_GRPC_PORT, META_GRPC_PORT, Tier, child_meta, selector_labels};
use crate::crd::RobustMQCluster;

fn svc_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// Headless Service of a StatefulSet tier (meta or journal). Not-ready addresses are
/// published because Raft peers must find each other before any of them is ready.
pub fn headless_service(c: &RobustMQCluster, tier: Tier) -> Service {
    let grpc = match tier {
        Tier::Meta => META_GRPC_PORT,
        _ => JOURNAL_GRPC_PORT,
    };
    Service {
        metadata: child_meta(c, tier, tier.name(&c.name_any())),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&c.name_any(), tier)),
            ports: Some(vec![svc_port("grpc", grpc), svc_port("admin", ADMIN_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The client ports the broker exposes for this spec, as (name, port); TLS ports only when
/// TLS is on.
pub fn broker_ports(c: &RobustMQCluster) -> Vec<(&'static str, i32)> {
    let l = &c.spec.broker.listeners;
    let mut ports = vec![("mqtt", l.mqtt), ("ws", l.ws), ("kafka", l.kafka)];
    if c.tls_enabled() {
        ports.extend([
            ("mqtts", l.mqtt_tls),
            ("wss", l.wss),
            ("kafka-tls", l.kafka_tls),
        ]);
    }
    ports
}

/// The broker's client Service, of the type the spec asks for.
pub fn broker_service(c: &RobustMQCluster) -> Service {
    Service {
        metadata: child_meta(c, Tier::Broker, Tier::Broker.name(&c.name_any())),
        spec: Some(ServiceSpec {
            type_: Some(c.spec.broker.listeners.service_type.as_str().into()),
            selector: Some(selector_labels(&c.name_any(), Tier::Broker)),
            ports: Some(
                broker_ports(c)
                    .into_iter()
                    .map(|(n, p)| svc_port(n, p))
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    #[test]
    fn headless_services_publish_not_ready_pods() {
        let s = headless_service(&cluster("{}"), Tier::Meta).spec.unwrap();
        assert_eq!(s.cluster_ip.as_deref(), Some("None"));
        assert_eq!(s.publish_not_ready_addresses, Some(true));
        assert_eq!(s.ports.unwrap()[0].port, 1228);
        let j = headless_service(&cluster("{}"), Tier::Journal)
            .spec
            .unwrap();
        assert_eq!(j.ports.unwrap()[0].port, 1778);
    }

    #[test]
    fn broker_service_exposes_tls_ports_only_with_tls() {
        let plain = broker_service(&cluster("broker: {listeners: {serviceType: LoadBalancer}}"));
        let spec = plain.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        let ports: Vec<i32> = spec.ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, vec![1883, 8083, 9092]);
        let tls = broker_service(&cluster("tls: {selfSigned: true}"));
        let ports: Vec<i32> = tls
            .spec
            .unwrap()
            .ports
            .unwrap()
            .iter()
            .map(|p| p.port)
            .collect();
        assert_eq!(ports, vec![1883, 8083, 9092, 8883, 8084, 9093]);
    }
}
