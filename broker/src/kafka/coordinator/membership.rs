//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup: from the decoded request to the state
//! machine and back to a response holding only fields that exist at the request's version.

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::messages::{Join, JoinResult, Protocol, Reply, Sync, SyncResult};
use super::service::GroupCoordinator;
use super::state::Group;
use super::{ClientInfo, code};

fn text(s: String) -> StrBytes {
    StrBytes::from_string(s)
}

/// `{client_id}-{uuid}` as Kafka names members (`{group_instance_id}-{uuid}` for static ones).
fn new_member_id(prefix: &str) -> String {
    let uuid = uuid::Uuid::new_v4();
    if prefix.is_empty() {
        uuid.to_string()
    } else {
        format!("{prefix}-{uuid}")
    }
}

impl GroupCoordinator {
    /// JoinGroup without the connection's client id and address: member ids are bare
    /// UUIDs and DescribeGroups shows no client. Prefer [`GroupCoordinator::join_group_from`].
    pub async fn join_group(&self, req: JoinGroupRequest, version: i16) -> JoinGroupResponse {
        self.join_group_from(req, version, &ClientInfo::default())
            .await
    }

    /// JoinGroup from a client whose request header said `client.client_id`; the id
    /// prefixes new member ids and both show in DescribeGroups.
    pub async fn join_group_from(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client: &ClientInfo,
    ) -> JoinGroupResponse {
        let group = req.group_id.as_str().to_string();
        let member_id = req.member_id.as_str().to_string();
        let result = match self
            .check_owner(&group)
            .and_then(|()| self.check_session(req.session_timeout_ms))
        {
            Err(e) => JoinResult::error(&member_id, e),
            Ok(()) => {
                let join = self.to_join(req, version, client);
                let now = Instant::now();
                let reply = {
                    let mut groups = self.groups();
                    match groups.get_mut(&group) {
                        Some(g) => g.join(join, now),
                        None if member_id.is_empty() => {
                            let delay =
                                Duration::from_millis(self.settings.initial_rebalance_delay_ms);
                            groups
                                .entry(group.clone())
                                .or_insert_with(|| Group::new(now, delay))
                                .join(join, now)
                        }
                        // The group was forgotten (or lived on another broker): join afresh.
                        None => Reply::Now(JoinResult::error(
                            &member_id,
                            ResponseError::UnknownMemberId,
                        )),
                    }
                };
                self.settle(&group, reply, || {
                    JoinResult::error(&member_id, ResponseError::RebalanceInProgress)
                })
                .await
            }
        };
        match result.error {
            None => tracing::debug!(
                group,
                member_id = %result.member_id,
                generation = result.generation,
                leader = %result.leader,
                "joined"
            ),
            Some(e) => tracing::debug!(group, member_id, error = ?e, "JoinGroup refused"),
        }
        join_response(result, version)
    }

    fn check_session(&self, session_timeout_ms: i32) -> Result<(), ResponseError> {
        let ms =
            u64::try_from(session_timeout_ms).map_err(|_| ResponseError::InvalidSessionTimeout)?;
        let s = &self.settings;
        if ms < s.min_session_timeout_ms || ms > s.max_session_timeout_ms {
            return Err(ResponseError::InvalidSessionTimeout);
        }
        Ok(())
    }

    fn to_join(&self, req: JoinGroupRequest, version: i16, client: &ClientInfo) -> Join {
        let ms = |v: i32| Duration::from_millis(u64::try_from(v).unwrap_or(0));
        let session_timeout = ms(req.session_timeout_ms);
        // v0 has no rebalance timeout: the session timeout bounds the rebalance instead.
        let rebalance_timeout = if version >= 1 && req.rebalance_timeout_ms > 0 {
            ms(req.rebalance_timeout_ms)
        } else {
            session_timeout
        };
        let instance_id = req.group_instance_id.map(|i| i.as_str().to_string());
        let fresh_id = new_member_id(instance_id.as_deref().unwrap_or(&client.client_id));
        Join {
            member_id: req.member_id.as_str().to_string(),
            instance_id,
            client_id: client.client_id.clone(),
            client_host: client.client_host.clone(),
            session_timeout,
            rebalance_timeout,
            protocol_type: req.protocol_type.as_str().to_string(),
            protocols: req
                .protocols
                .into_iter()
                .map(|p| Protocol {
                    name: p.name.as_str().to_string(),
                    metadata: p.metadata,
                })
                .collect(),
            require_known_id: version >= 4,
            fresh_id,
        }
    }

    pub async fn sync_group(&self, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let group = req.group_id.as_str().to_string();
        let result = match self.check_owner(&group) {
            Err(e) => SyncResult::error(e),
            Ok(()) => {
                let sync = Sync {
                    member_id: req.member_id.as_str().to_string(),
                    instance_id: req.group_instance_id.map(|i| i.as_str().to_string()),
                    generation: req.generation_id,
                    protocol_type: req.protocol_type.map(|p| p.as_str().to_string()),
                    protocol_name: req.protocol_name.map(|p| p.as_str().to_string()),
                    assignments: req
                        .assignments
                        .into_iter()
                        .map(|a| (a.member_id.as_str().to_string(), a.assignment))
                        .collect(),
                };
                let reply = {
                    let mut groups = self.groups();
                    match groups.get_mut(&group) {
                        Some(g) => g.sync(sync, Instant::now()),
                        None => Reply::Now(SyncResult::error(ResponseError::UnknownMemberId)),
                    }
                };
                self.settle(&group, reply, || {
                    SyncResult::error(ResponseError::RebalanceInProgress)
                })
                .await
            }
        };
        let mut resp = SyncGroupResponse::default()
            .with_error_code(code(result.error))
            .with_assignment(result.assignment);
        if version >= 5 {
            resp.protocol_type = result.protocol_type.map(text);
            resp.protocol_name = result.protocol_name.map(text);
        }
        resp
    }

    pub async fn heartbeat(&self, req: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
        let group = req.group_id.as_str();
        let result = self.check_owner(group).and_then(|()| {
            let instance = req.group_instance_id.as_ref().map(|i| i.as_str());
            match self.groups().get_mut(group) {
                Some(g) => g.heartbeat(
                    req.member_id.as_str(),
                    instance,
                    req.generation_id,
                    Instant::now(),
                ),
                None => Err(ResponseError::UnknownMemberId),
            }
        });
        HeartbeatResponse::default().with_error_code(code(result.err()))
    }

    pub async fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let group = req.group_id.as_str();
        // v3+ names several members (static ones by instance id); earlier versions one.
        let leaving: Vec<(StrBytes, Option<StrBytes>)> = if version >= 3 {
            req.members
                .into_iter()
                .map(|m| (m.member_id, m.group_instance_id))
                .collect()
        } else {
            vec![(req.member_id, None)]
        };
        let outcome: Result<Vec<Result<(), ResponseError>>, ResponseError> =
            self.check_owner(group).and_then(|()| {
                let now = Instant::now();
                let mut groups = self.groups();
                let Some(g) = groups.get_mut(group) else {
                    return Ok(leaving
                        .iter()
                        .map(|_| Err(ResponseError::UnknownMemberId))
                        .collect());
                };
                if g.state() == super::GroupState::Dead {
                    return Err(ResponseError::CoordinatorNotAvailable);
                }
                Ok(leaving
                    .iter()
                    .map(|(id, instance)| {
                        g.leave(id.as_str(), instance.as_ref().map(|i| i.as_str()), now)
                    })
                    .collect())
            });
        match outcome {
            Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
            Ok(each) if version >= 3 => LeaveGroupResponse::default().with_members(
                leaving
                    .into_iter()
                    .zip(each)
                    .map(|((id, instance), r)| {
                        MemberResponse::default()
                            .with_member_id(id)
                            .with_group_instance_id(instance)
                            .with_error_code(code(r.err()))
                    })
                    .collect(),
            ),
            Ok(each) => LeaveGroupResponse::default()
                .with_error_code(code(each.into_iter().find_map(Result::err))),
        }
    }
}

/// A JoinGroup answer at `version`: protocol type from v7, instance ids from v5, and a
/// non-null protocol name before v7 (where the field is not nullable).
pub(super) fn join_response(result: JoinResult, version: i16) -> JoinGroupResponse {
    let members = result
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(text(m.member_id))
                .with_group_instance_id(if version >= 5 {
                    m.instance_id.map(text)
                } else {
                    None
                })
                .with_metadata(m.metadata)
        })
        .collect();
    let protocol_name = match result.protocol_name {
        Some(name) => Some(text(name)),
        None if version >= 7 => None,
        None => Some(StrBytes::default()),
    };
    JoinGroupResponse::default()
        .with_error_code(code(result.error))
        .with_generation_id(result.generation)
        .with_protocol_type(if version >= 7 {
            result.protocol_type.map(text)
        } else {
            None
        })
        .with_protocol_name(protocol_name)
        .with_leader(text(result.leader))
        .with_member_id(text(result.member_id))
        .with_members(members)
}
