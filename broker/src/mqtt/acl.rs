//! Access control: the ACL rules from meta, cached and refreshed, checked on PUBLISH and
//! SUBSCRIBE. Superusers (as meta's Authenticate says) bypass them.
//!
//! Evaluation for a principal (the username, or none for anonymous clients), an action
//! and a topic: rules whose principal is that user or `*`, whose resource is MQTT topics
//! (or any) and whose action covers this one (publish: PUBLISH, WRITE or ANY; subscribe:
//! SUBSCRIBE, READ or ANY) and whose pattern matches. Any matching deny wins; otherwise a
//! matching allow allows; with no matching rule the configured default applies
//! (`acl_allow_if_no_match`, on by default, so a fresh cluster is open).
//!
//! A subscription filter is checked as if it were a topic name against the pattern, so
//! pattern `a/#` covers filters `a/+` and `a/#`, and pattern `a/+` covers filter `a/+`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use mqtt_codec::topic;
use robustmq_proto::meta::{AclAction, AclResource, AclRule, ListRequest};
use tokio_util::sync::CancellationToken;

use crate::meta::MetaClient;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
}

#[derive(Clone, Default)]
pub struct Acl {
    rules: Arc<RwLock<Vec<AclRule>>>,
    allow_if_no_match: bool,
}

impl Acl {
    pub fn new(allow_if_no_match: bool) -> Self {
        Acl {
            rules: Arc::default(),
            allow_if_no_match,
        }
    }

    pub fn set(&self, rules: Vec<AclRule>) {
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
    }

    pub fn allowed(&self, user: Option<&str>, action: Action, name: &str) -> bool {
        let rules = self.rules.read().unwrap_or_else(|p| p.into_inner());
        let mut allow = None;
        for r in rules.iter() {
            let who = r.principal == "*" || Some(r.principal.as_str()) == user;
            let resource = r.resource == AclResource::Any as i32
                || r.resource == AclResource::MqttTopic as i32;
            let act = match action {
                Action::Publish => [AclAction::Publish, AclAction::Write, AclAction::Any],
                Action::Subscribe => [AclAction::Subscribe, AclAction::Read, AclAction::Any],
            }
            .iter()
            .any(|a| *a as i32 == r.action);
            let pattern = r.pattern == "#"
                || r.pattern == name
                || (topic::is_valid_topic_filter(&r.pattern) && topic::matches(&r.pattern, name));
            if who && resource && act && pattern {
                if !r.allow {
                    return false;
                }
                allow = Some(true);
            }
        }
        allow.unwrap_or(self.allow_if_no_match)
    }

    /// Reads the rules from meta once.
    pub async fn refresh(&self, meta: &MetaClient) -> Result<(), tonic::Status> {
        let rules = meta
            .client()
            .list_acls(ListRequest::default())
            .await?
            .into_inner()
            .rules;
        self.set(rules);
        Ok(())
    }

    /// Keeps the rules fresh: re-read on every ACL change in meta and every `every`.
    pub async fn run_refresh(self, meta: MetaClient, every: Duration, cancel: CancellationToken) {
        let m = meta.clone();
        crate::freshness::keep_fresh(meta, "acls/", every, cancel, "ACL rules", || {
            self.refresh(&m)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(principal: &str, pattern: &str, action: AclAction, allow: bool) -> AclRule {
        AclRule {
            id: 0,
            principal: principal.into(),
            resource: AclResource::MqttTopic as i32,
            pattern: pattern.into(),
            action: action as i32,
            allow,
        }
    }

    #[test]
    fn deny_wins_allow_allows_and_the_default_applies_otherwise() {
        let acl = Acl::new(true);
        acl.set(vec![
            rule("alice", "secret/#", AclAction::Publish, false),
            rule("*", "private/#", AclAction::Subscribe, false),
            rule("*", "private/alice/#", AclAction::Subscribe, true),
        ]);
        assert!(!acl.allowed(Some("alice"), Action::Publish, "secret/x"));
        assert!(acl.allowed(Some("bob"), Action::Publish, "secret/x"));
        assert!(acl.allowed(Some("alice"), Action::Subscribe, "secret/x"));
        assert!(!acl.allowed(None, Action::Subscribe, "private/+"));
        assert!(
            !acl.allowed(Some("alice"), Action::Subscribe, "private/alice/x"),
            "a deny matching too wins over an allow"
        );
        assert!(acl.allowed(None, Action::Publish, "other"));

        let closed = Acl::new(false);
        closed.set(vec![rule("alice", "a/#", AclAction::Any, true)]);
        assert!(closed.allowed(Some("alice"), Action::Subscribe, "a/+"));
        assert!(!closed.allowed(Some("bob"), Action::Publish, "a/b"));
    }
}
