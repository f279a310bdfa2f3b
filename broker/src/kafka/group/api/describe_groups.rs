//! DescribeGroups (v0–6): state, protocol and members of groups this broker coordinates.
//! A group with offsets but no members is Empty; one with neither is Dead before v6 and
//! GROUP_ID_NOT_FOUND from v6 (KIP-1043), as Kafka answers.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};

use super::{sb, store_error};
use crate::kafka::group::coordinator::GroupCoordinator;
use crate::kafka::group::state::{GroupDescription, GroupState};

/// The operations a group ACL can grant (READ, DELETE, DESCRIBE as `1 << AclOperation`).
/// Kafka ACLs are not enforced on groups, so all of them are reported as allowed.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

impl GroupCoordinator {
    pub async fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
        version: i16,
    ) -> DescribeGroupsResponse {
        let mut groups = Vec::with_capacity(req.groups.len());
        for id in req.groups {
            let described = self.describe_one(&id.0).await;
            let mut out = DescribedGroup::default().with_group_id(GroupId(id.0.clone()));
            match described {
                Err(e) => out = out.with_error_code(e.code()),
                Ok(None) if version >= 6 => {
                    out = out
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(sb(format!(
                            "Group {} not found.",
                            id.0.as_str()
                        ))));
                }
                Ok(None) => out = out.with_group_state(sb(GroupState::Dead.as_str())),
                Ok(Some(d)) => {
                    let members = d
                        .members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(sb(m.member_id))
                                .with_group_instance_id(
                                    m.instance_id.filter(|_| version >= 4).map(sb),
                                )
                                .with_client_id(sb(m.client_id))
                                .with_client_host(sb(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect();
                    out = out
                        .with_group_state(sb(d.state.as_str()))
                        .with_protocol_type(sb(d.protocol_type))
                        .with_protocol_data(sb(d.protocol_data))
                        .with_members(members);
                }
            }
            if version >= 3 && req.include_authorized_operations {
                out = out.with_authorized_operations(GROUP_OPERATIONS);
            }
            groups.push(out);
        }
        DescribeGroupsResponse::default().with_groups(groups)
    }

    /// `Ok(None)`: no such group.
    async fn describe_one(
        &self,
        group_id: &str,
    ) -> Result<Option<GroupDescription>, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        if !self.owns_group(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        if let Some(d) = self.lock().describe(group_id) {
            return Ok(Some(d));
        }
        let offsets = self
            .store
            .fetch(group_id, Vec::new())
            .await
            .map_err(|e| store_error(&e))?;
        Ok((!offsets.is_empty()).then(|| GroupDescription {
            state: GroupState::Empty,
            protocol_type: String::new(),
            protocol_data: String::new(),
            members: Vec::new(),
        }))
    }
}
