//! JoinGroup (v0–9): a member enters the group or rejoins for a rebalance; the answer may
//! wait for the join phase to end.

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{code, sb};
use crate::kafka::group::coordinator::{ClientInfo, GroupCoordinator};
use crate::kafka::group::state::{JoinParams, JoinResult, Protocol};

fn millis(ms: i32) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

impl GroupCoordinator {
    /// JoinGroup without the caller's identity: member ids are then `-{uuid}` and
    /// DescribeGroups shows no client id or host. Prefer [`Self::join_group_from`].
    pub async fn join_group(&self, req: JoinGroupRequest, version: i16) -> JoinGroupResponse {
        self.join_group_from(req, version, ClientInfo::default())
            .await
    }

    /// JoinGroup with the request header's client id and the peer address, from which
    /// Kafka builds member ids (`{client_id}-{uuid}`) and which DescribeGroups reports.
    pub async fn join_group_from(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client: ClientInfo,
    ) -> JoinGroupResponse {
        let group_id = req.group_id.0.to_string();
        let member_id = req.member_id.to_string();
        let result = if group_id.is_empty() {
            JoinResult::error(member_id, ResponseError::InvalidGroupId)
        } else if !self.owns_group(&group_id) {
            JoinResult::error(member_id, ResponseError::NotCoordinator)
        } else {
            let session_timeout = millis(req.session_timeout_ms);
            // v0 has no rebalance timeout; Kafka bounds its rebalance by the session.
            let rebalance_timeout = if version == 0 {
                session_timeout
            } else {
                millis(req.rebalance_timeout_ms)
            };
            if let Some(reason) = req.reason.as_deref() {
                tracing::debug!(group = %group_id, member = %member_id, reason, "JoinGroup");
            }
            let params = JoinParams {
                group_id: group_id.clone(),
                member_id: member_id.clone(),
                instance_id: req.group_instance_id.map(|s| s.to_string()),
                client_id: client.client_id,
                client_host: client.client_host,
                session_timeout,
                rebalance_timeout,
                protocol_type: req.protocol_type.to_string(),
                protocols: req
                    .protocols
                    .into_iter()
                    .map(|p| Protocol {
                        name: p.name.to_string(),
                        metadata: p.metadata,
                    })
                    .collect(),
                require_known_member_id: version >= 4,
                supports_skip_assignment: version >= 9,
            };
            let (reply, deadline) = self.with_groups(|g, now| {
                let reply = g.join(now, params);
                let bound = g.rebalance_timeout(&group_id).max(rebalance_timeout)
                    + g.config().initial_rebalance_delay;
                (reply, now + bound)
            });
            // Past every timer the state machine set: tell the client to rejoin.
            self.wait(reply, deadline, || {
                JoinResult::error(member_id, ResponseError::RebalanceInProgress)
            })
            .await
        };
        response(result, version)
    }
}

fn response(r: JoinResult, version: i16) -> JoinGroupResponse {
    // The protocol name is nullable from v7; before that an absent one is "".
    let protocol_name = if version >= 7 {
        r.protocol_name.filter(|p| !p.is_empty()).map(sb)
    } else {
        Some(sb(r.protocol_name.unwrap_or_default()))
    };
    let members = r
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(sb(m.member_id))
                .with_group_instance_id(m.instance_id.filter(|_| version >= 5).map(sb))
                .with_metadata(m.metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(code(r.error))
        .with_generation_id(r.generation)
        .with_protocol_type(r.protocol_type.filter(|_| version >= 7).map(sb))
        .with_protocol_name(protocol_name)
        .with_leader(sb(r.leader))
        .with_skip_assignment(version >= 9 && r.skip_assignment)
        .with_member_id(sb(r.member_id))
        .with_members(members)
}
