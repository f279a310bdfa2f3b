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
            // No wake-up for the timer task (which would scan every group): a heartbeat
            // only moves a session deadline later, a session timeout ahead, and the task
            // passes at least every `ownership_check_interval` anyway.
            let now = tokio::time::Instant::now();
            self.lock()
                .heartbeat(now, &group_id, &req.member_id, instance, req.generation_id)
        };
        HeartbeatResponse::default().with_error_code(code(error))
    }
}
