//! LeaveGroup (v0–5): members leave at once (v3+ in batches, possibly by instance id
//! alone), which starts a rebalance for the others.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{code, sb};
use crate::kafka::group::coordinator::GroupCoordinator;
use crate::kafka::group::state::LeavingMember;

impl GroupCoordinator {
    pub async fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let group_id = req.group_id.0.to_string();
        let leaving: Vec<LeavingMember> = if version < 3 {
            vec![(req.member_id.to_string(), None)]
        } else {
            req.members
                .iter()
                .map(|m| {
                    if let Some(reason) = m.reason.as_deref() {
                        tracing::debug!(group = %group_id, member = %m.member_id.as_str(), reason, "LeaveGroup");
                    }
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|s| s.to_string()),
                    )
                })
                .collect()
        };
        let outcome = if group_id.is_empty() {
            Err(ResponseError::InvalidGroupId)
        } else if !self.owns_group(&group_id) {
            Err(ResponseError::NotCoordinator)
        } else {
            self.with_groups(|g, now| g.leave(now, &group_id, &leaving))
        };
        let results = match outcome {
            Err(e) => return LeaveGroupResponse::default().with_error_code(e.code()),
            Ok(results) => results,
        };
        if version < 3 {
            // One member, no per-member list: its error is the response's.
            let error = results.into_iter().flatten().next();
            return LeaveGroupResponse::default().with_error_code(code(error));
        }
        let members = leaving
            .into_iter()
            .zip(results)
            .map(|((member_id, instance_id), error)| {
                MemberResponse::default()
                    .with_member_id(sb(member_id))
                    .with_group_instance_id(instance_id.map(sb))
                    .with_error_code(code(error))
            })
            .collect();
        LeaveGroupResponse::default().with_members(members)
    }
}
