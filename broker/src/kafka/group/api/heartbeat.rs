//! Heartbeat (v0–4): keeps a member's session alive and tells it when to rejoin.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::code;
use crate::kafka::group::coordinator::GroupCoordinator;

impl GroupCoordinator {
    pub async fn heartbeat(&self, req: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
        let group_id = req.group_id.0.to_string();
        let error = if group_id.is_empty() {
            Some(ResponseError::InvalidGroupId)
        } else if !self.owns_group(&group_id) {
            Some(ResponseError::NotCoordinator)
        } else {
            let instance = req.group_instance_id.as_deref();
            self.with_groups(|g, now| {
                g.heartbeat(now, &group_id, &req.member_id, instance, req.generation_id)
            })
        };
        HeartbeatResponse::default().with_error_code(code(error))
    }
}
