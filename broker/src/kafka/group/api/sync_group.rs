//! SyncGroup (v0–5): the leader hands in the assignments; every member gets its own,
//! followers waiting for the leader if they come first.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{code, sb};
use crate::kafka::group::coordinator::GroupCoordinator;
use crate::kafka::group::state::{SyncParams, SyncResult};

impl GroupCoordinator {
    pub async fn sync_group(&self, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let group_id = req.group_id.0.to_string();
        let result = if group_id.is_empty() {
            SyncResult::error(ResponseError::InvalidGroupId)
        } else if !self.owns_group(&group_id) {
            SyncResult::error(ResponseError::NotCoordinator)
        } else {
            let params = SyncParams {
                group_id: group_id.clone(),
                member_id: req.member_id.to_string(),
                instance_id: req.group_instance_id.map(|s| s.to_string()),
                generation: req.generation_id,
                protocol_type: req.protocol_type.map(|s| s.to_string()),
                protocol_name: req.protocol_name.map(|s| s.to_string()),
                assignments: req
                    .assignments
                    .into_iter()
                    .map(|a| (a.member_id.to_string(), a.assignment))
                    .collect(),
            };
            let (reply, deadline) = self.with_groups(|g, now| {
                let bound = g.rebalance_timeout(&group_id);
                (g.sync(now, params), now + bound)
            });
            self.wait(reply, deadline, || {
                SyncResult::error(ResponseError::RebalanceInProgress)
            })
            .await
        };
        let v5 = version >= 5;
        SyncGroupResponse::default()
            .with_error_code(code(result.error))
            .with_protocol_type(result.protocol_type.filter(|_| v5).map(sb))
            .with_protocol_name(result.protocol_name.filter(|_| v5).map(sb))
            .with_assignment(result.assignment)
    }
}
