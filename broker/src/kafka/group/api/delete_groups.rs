//! DeleteGroups (v0–2): deletes a group without members and its offsets in meta.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::{code, store_error};
use crate::kafka::group::OffsetStoreError;
use crate::kafka::group::coordinator::GroupCoordinator;

impl GroupCoordinator {
    pub async fn delete_groups(
        &self,
        req: DeleteGroupsRequest,
        _version: i16,
    ) -> DeleteGroupsResponse {
        let mut results = Vec::with_capacity(req.groups_names.len());
        for id in req.groups_names {
            let error = self.delete_one(&id.0).await;
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(code(error)),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }

    async fn delete_one(&self, group_id: &str) -> Option<ResponseError> {
        if group_id.is_empty() {
            return Some(ResponseError::InvalidGroupId);
        }
        if !self.owns_group(group_id) {
            return Some(ResponseError::NotCoordinator);
        }
        let held = match self.with_groups(|g, now| g.begin_delete(now, group_id)) {
            Ok(held) => held,
            Err(e) => return Some(e),
        };
        let deleted = self.store.delete_group(group_id).await;
        self.lock().end_delete(group_id);
        match deleted {
            Ok(()) => None,
            // An empty group held in memory exists even if it never committed.
            Err(OffsetStoreError::NotFound { .. }) if held => None,
            Err(OffsetStoreError::NotFound { .. }) => Some(ResponseError::GroupIdNotFound),
            Err(e) => {
                tracing::warn!(group = group_id, error = %e, "DeleteGroups: offset store");
                Some(store_error(&e))
            }
        }
    }
}
