//! `robustmq ctl`: cluster management through the meta API. Every command prints
//! readable text, or one JSON document with `--output json`.

use anyhow::{Context, bail};
use broker::meta::MetaClient;
use clap::{Parser, Subcommand, ValueEnum};
use robustmq_proto::meta::{
    self, AclAction, AclResource, AclRule, CreateUserRequest, GetClusterRequest, ListNodesRequest,
    ListRequest, NameRequest,
};
use serde_json::{Value, json};

#[derive(Parser)]
pub struct CtlArgs {
    /// Meta-service gRPC address.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:1228",
        env = "ROBUSTMQ_META"
    )]
    meta: String,
    #[arg(long, global = true, value_enum, default_value = "text")]
    output: Output,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum CtlCommand {
    #[command(subcommand)]
    Topic(TopicCmd),
    #[command(subcommand)]
    Policy(PolicyCmd),
    #[command(subcommand)]
    User(UserCmd),
    #[command(subcommand)]
    Acl(AclCmd),
    #[command(subcommand)]
    Cluster(ClusterCmd),
}

#[derive(Subcommand)]
enum TopicCmd {
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        shards: u32,
        #[arg(long, default_value = "default")]
        policy: String,
        #[arg(long, default_value = "")]
        kafka_name: String,
        #[arg(long, default_value = "")]
        mqtt_filter: String,
    },
    List,
    Delete {
        name: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    Memory,
    Segment,
    Object,
}

#[derive(Clone, Copy, ValueEnum)]
enum FsyncArg {
    Always,
    Interval,
    Never,
}

#[derive(Subcommand)]
enum PolicyCmd {
    Create {
        name: String,
        #[arg(long, value_enum)]
        engine: EngineArg,
        #[arg(long, default_value_t = 1)]
        replicas: u32,
        #[arg(long, value_enum, default_value = "always")]
        fsync: FsyncArg,
        #[arg(long, default_value_t = 1000)]
        fsync_interval_ms: u64,
    },
    List,
}

#[derive(Subcommand)]
enum UserCmd {
    Create {
        name: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        superuser: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ResourceArg {
    Any,
    MqttTopic,
    KafkaTopic,
    KafkaGroup,
}

#[derive(Clone, Copy, ValueEnum)]
enum ActionArg {
    Any,
    Publish,
    Subscribe,
    Read,
    Write,
    Admin,
}

#[derive(Subcommand)]
enum AclCmd {
    /// Adds a rule: PRINCIPAL (user or "*") may (or, with --deny, may not) do ACTION on
    /// resources matching PATTERN.
    Add {
        #[arg(long)]
        principal: String,
        #[arg(long, value_enum, default_value = "mqtt-topic")]
        resource: ResourceArg,
        #[arg(long)]
        pattern: String,
        #[arg(long, value_enum)]
        action: ActionArg,
        #[arg(long)]
        deny: bool,
    },
    List,
}

#[derive(Subcommand)]
enum ClusterCmd {
    Status,
}

pub fn run(args: CtlArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?
        .block_on(run_async(args))
}

fn topic_json(t: &meta::Topic) -> Value {
    json!({"name": t.name, "shards": t.shards, "policy": t.storage_policy,
           "kafka_name": t.kafka_name, "mqtt_filter": t.mqtt_filter})
}

fn policy_json(p: &meta::StoragePolicy) -> Value {
    json!({"name": p.name,
           "engine": meta::Engine::try_from(p.engine).map(|e| e.as_str_name()).unwrap_or("?"),
           "replicas": p.replicas,
           "fsync": meta::Fsync::try_from(p.fsync).map(|e| e.as_str_name()).unwrap_or("?"),
           "fsync_interval_ms": p.fsync_interval_ms})
}

fn acl_json(r: &AclRule) -> Value {
    json!({"id": r.id, "principal": r.principal,
           "resource": AclResource::try_from(r.resource).map(|e| e.as_str_name()).unwrap_or("?"),
           "pattern": r.pattern,
           "action": AclAction::try_from(r.action).map(|e| e.as_str_name()).unwrap_or("?"),
           "allow": r.allow})
}

fn print_rows(output: Output, v: Value, rows: &[Value], columns: &[&str]) {
    if output == Output::Json {
        println!("{v}");
        return;
    }
    println!("{}", columns.join("\t"));
    for r in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match &r[*c] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        println!("{}", cells.join("\t"));
    }
}

async fn run_async(a: CtlArgs) -> anyhow::Result<()> {
    let mut c = MetaClient::new(&a.meta)?.client();
    let out = a.output;
    match a.command {
        CtlCommand::Topic(TopicCmd::Create {
            name,
            shards,
            policy,
            kafka_name,
            mqtt_filter,
        }) => {
            if shards == 0 {
                bail!("--shards must be > 0");
            }
            if !mqtt_filter.is_empty() && !mqtt_codec::topic::is_valid_topic_filter(&mqtt_filter) {
                bail!("--mqtt-filter {mqtt_filter:?} is not a valid MQTT topic filter");
            }
            let t = c
                .create_topic(meta::Topic {
                    name,
                    shards,
                    storage_policy: policy,
                    kafka_name,
                    mqtt_filter,
                    ..Default::default()
                })
                .await
                .context("CreateTopic")?
                .into_inner();
            let t = t.topic.unwrap_or_default();
            let v = topic_json(&t);
            print_rows(
                out,
                v.clone(),
                &[v],
                &["name", "shards", "policy", "mqtt_filter", "kafka_name"],
            );
        }
        CtlCommand::Topic(TopicCmd::List) => {
            let topics = c
                .list_topics(ListRequest::default())
                .await
                .context("ListTopics")?
                .into_inner()
                .topics;
            let rows: Vec<Value> = topics.iter().map(topic_json).collect();
            print_rows(
                out,
                Value::Array(rows.clone()),
                &rows,
                &["name", "shards", "policy", "mqtt_filter", "kafka_name"],
            );
        }
        CtlCommand::Topic(TopicCmd::Delete { name }) => {
            c.delete_topic(NameRequest { name: name.clone() })
                .await
                .context("DeleteTopic")?;
            if out == Output::Json {
                println!("{}", json!({"deleted": name}));
            } else {
                println!("topic {name} deleted");
            }
        }
        CtlCommand::Policy(PolicyCmd::Create {
            name,
            engine,
            replicas,
            fsync,
            fsync_interval_ms,
        }) => {
            let engine = match engine {
                EngineArg::Memory => meta::Engine::Memory,
                EngineArg::Segment => meta::Engine::Segment,
                EngineArg::Object => meta::Engine::Object,
            };
            let fsync = match fsync {
                FsyncArg::Always => meta::Fsync::Always,
                FsyncArg::Interval => meta::Fsync::Interval,
                FsyncArg::Never => meta::Fsync::Never,
            };
            let p = c
                .create_policy(meta::StoragePolicy {
                    name,
                    engine: engine as i32,
                    replicas,
                    fsync: fsync as i32,
                    fsync_interval_ms,
                    ..Default::default()
                })
                .await
                .context("CreatePolicy")?
                .into_inner();
            let v = policy_json(&p);
            print_rows(
                out,
                v.clone(),
                &[v],
                &["name", "engine", "replicas", "fsync"],
            );
        }
        CtlCommand::Policy(PolicyCmd::List) => {
            let ps = c
                .list_policies(ListRequest::default())
                .await
                .context("ListPolicies")?
                .into_inner()
                .policies;
            let rows: Vec<Value> = ps.iter().map(policy_json).collect();
            print_rows(
                out,
                Value::Array(rows.clone()),
                &rows,
                &["name", "engine", "replicas", "fsync"],
            );
        }
        CtlCommand::User(UserCmd::Create {
            name,
            password,
            superuser,
        }) => {
            let u = c
                .create_user(CreateUserRequest {
                    name,
                    password,
                    superuser,
                })
                .await
                .context("CreateUser")?
                .into_inner();
            if out == Output::Json {
                println!("{}", json!({"name": u.name, "superuser": u.superuser}));
            } else {
                println!("user {} created", u.name);
            }
        }
        CtlCommand::Acl(AclCmd::Add {
            principal,
            resource,
            pattern,
            action,
            deny,
        }) => {
            let resource = match resource {
                ResourceArg::Any => AclResource::Any,
                ResourceArg::MqttTopic => AclResource::MqttTopic,
                ResourceArg::KafkaTopic => AclResource::KafkaTopic,
                ResourceArg::KafkaGroup => AclResource::KafkaGroup,
            };
            let action = match action {
                ActionArg::Any => AclAction::Any,
                ActionArg::Publish => AclAction::Publish,
                ActionArg::Subscribe => AclAction::Subscribe,
                ActionArg::Read => AclAction::Read,
                ActionArg::Write => AclAction::Write,
                ActionArg::Admin => AclAction::Admin,
            };
            let r = c
                .add_acl(AclRule {
                    id: 0,
                    principal,
                    resource: resource as i32,
                    pattern,
                    action: action as i32,
                    allow: !deny,
                })
                .await
                .context("AddAcl")?
                .into_inner();
            let v = acl_json(&r);
            print_rows(
                out,
                v.clone(),
                &[v],
                &["id", "principal", "resource", "pattern", "action", "allow"],
            );
        }
        CtlCommand::Acl(AclCmd::List) => {
            let rules = c
                .list_acls(ListRequest::default())
                .await
                .context("ListAcls")?
                .into_inner()
                .rules;
            let rows: Vec<Value> = rules.iter().map(acl_json).collect();
            print_rows(
                out,
                Value::Array(rows.clone()),
                &rows,
                &["id", "principal", "resource", "pattern", "action", "allow"],
            );
        }
        CtlCommand::Cluster(ClusterCmd::Status) => {
            let info = c
                .get_cluster(GetClusterRequest {})
                .await
                .context("GetCluster")?
                .into_inner();
            let nodes = c
                .list_nodes(ListNodesRequest { role: 0 })
                .await
                .context("ListNodes")?
                .into_inner()
                .nodes;
            let node_rows: Vec<Value> = nodes
                .iter()
                .filter_map(|n| n.node.as_ref().map(|x| (x, n.lease_expires_at_ms)))
                .map(|(n, lease)| {
                    json!({"id": n.id,
                           "role": meta::NodeRole::try_from(n.role).map(|r| r.as_str_name()).unwrap_or("?"),
                           "addr": n.addr,
                           "state": meta::NodeState::try_from(n.state).map(|s| s.as_str_name()).unwrap_or("?"),
                           "lease_expires_at_ms": lease})
                })
                .collect();
            let v = json!({
                "meta": {"node_id": info.node_id, "leader_id": info.leader_id,
                         "leader_addr": info.leader_addr, "term": info.term,
                         "voters": info.voters.iter().map(|m| json!({"id": m.id, "addr": m.addr})).collect::<Vec<_>>(),
                         "revision": info.revision},
                "nodes": node_rows,
            });
            if out == Output::Json {
                println!("{v}");
            } else {
                println!(
                    "meta: leader {} ({}), term {}, {} voter(s), revision {}",
                    info.leader_id,
                    info.leader_addr,
                    info.term,
                    info.voters.len(),
                    info.revision
                );
                print_rows(
                    out,
                    Value::Null,
                    &node_rows,
                    &["id", "role", "addr", "state"],
                );
            }
        }
    }
    Ok(())
}
