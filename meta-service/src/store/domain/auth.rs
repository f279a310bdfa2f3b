//! Users (salted SCRAM credentials, derived before proposing) and ACL rules.

use robustmq_proto::meta::{AclRule, User};

use crate::error::{MetaError, MetaResult};
use crate::keys;
use crate::store::validate::user_name;
use crate::store::{Output, Pb, State};

pub(super) fn create_user(s: &mut State, u: &User, now: u64) -> MetaResult<Output> {
    user_name(&u.name)?;
    if u.credentials.is_empty() {
        return Err(MetaError::invalid(
            "credentials",
            "a user needs at least one credential",
        ));
    }
    let key = keys::user(&u.name);
    if s.contains(&key) {
        return Err(MetaError::already_exists("user", &u.name));
    }
    let mut u = u.clone();
    u.created_at_ms = now;
    s.put(key, &u);
    Ok(Output::User(Pb(u)))
}

pub(super) fn delete_user(s: &mut State, name: &str) -> MetaResult<Output> {
    if !s.delete(&keys::user(name)) {
        return Err(MetaError::not_found("user", name));
    }
    Ok(Output::None)
}

pub(super) fn add_acl(s: &mut State, rule: &AclRule) -> MetaResult<Output> {
    if rule.principal.is_empty() {
        return Err(MetaError::invalid("principal", "use a user name or '*'"));
    }
    if rule.pattern.is_empty() {
        return Err(MetaError::invalid("pattern", "must not be empty"));
    }
    let mut rule = rule.clone();
    rule.id = s.counters.next_acl_id;
    s.counters.next_acl_id += 1;
    s.put(keys::acl(rule.id), &rule);
    Ok(Output::Acl(Pb(rule)))
}

pub(super) fn delete_acl(s: &mut State, id: u64) -> MetaResult<Output> {
    if !s.delete(&keys::acl(id)) {
        return Err(MetaError::not_found("acl rule", id.to_string()));
    }
    Ok(Output::None)
}
