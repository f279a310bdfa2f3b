//! ListGroups, DescribeGroups and DeleteGroups. A group this broker coordinates is either in
//! memory (it has or had members here) or only in the store (committed offsets, no live
//! members since it moved here): both count, the second as Empty.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::messages::{Description, GroupState};
use super::service::GroupCoordinator;
use super::state::Group;
use super::{OffsetStoreError, code, store_error};

/// The only group type this coordinator runs (ListGroups v5 `group_type`).
const CLASSIC: &str = "classic";

fn text(s: String) -> StrBytes {
    StrBytes::from_string(s)
}

impl GroupCoordinator {
    pub async fn list_groups(&self, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let stored = self.store.list_groups().await;
        let mut listed: BTreeMap<String, (GroupState, String)> = {
            let groups = self.groups();
            groups
                .iter()
                .filter(|(_, g)| g.state() != GroupState::Dead)
                .map(|(id, g)| (id.clone(), (g.state(), g.protocol_type().to_string())))
                .collect()
        };
        listed.retain(|id, _| self.owns(id));
        let error = match stored {
            Ok(names) => {
                for name in names {
                    if !listed.contains_key(&name) && self.owns(&name) {
                        listed.insert(name, (GroupState::Empty, String::new()));
                    }
                }
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing groups in the offset store failed");
                Some(store_error(&e))
            }
        };
        let wanted = |filter: &[StrBytes], value: &str| {
            filter.is_empty()
                || filter
                    .iter()
                    .any(|f| f.as_str().eq_ignore_ascii_case(value))
        };
        let groups = listed
            .into_iter()
            .filter(|(_, (state, _))| version < 4 || wanted(&req.states_filter, state.name()))
            .filter(|_| version < 5 || wanted(&req.types_filter, CLASSIC))
            .map(|(id, (state, protocol_type))| {
                let mut g = ListedGroup::default()
                    .with_group_id(GroupId(text(id)))
                    .with_protocol_type(text(protocol_type));
                if version >= 4 {
                    g.group_state = StrBytes::from_static_str(state.name());
                }
                if version >= 5 {
                    g.group_type = StrBytes::from_static_str(CLASSIC);
                }
                g
            })
            .collect();
        ListGroupsResponse::default()
            .with_error_code(code(error))
            .with_groups(groups)
    }

    pub async fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
        version: i16,
    ) -> DescribeGroupsResponse {
        let mut described = Vec::with_capacity(req.groups.len());
        for id in req.groups {
            let group = match self.describe(id.as_str()).await {
                Ok(d) => described_group(d, version),
                Err(e) => DescribedGroup::default().with_error_code(e.code()),
            };
            described.push(group.with_group_id(id));
        }
        DescribeGroupsResponse::default().with_groups(described)
    }

    async fn describe(&self, group: &str) -> Result<Description, ResponseError> {
        self.check_owner(group)?;
        if let Some(g) = self.groups().get(group) {
            return Ok(g.describe());
        }
        // Not in memory: Empty if it has offsets, else (as Kafka says of unknown groups) Dead.
        let offsets = self
            .store
            .fetch(group, Vec::new())
            .await
            .map_err(|e| store_error(&e))?;
        Ok(Description {
            state: if offsets.is_empty() {
                GroupState::Dead
            } else {
                GroupState::Empty
            },
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        })
    }

    pub async fn delete_groups(
        &self,
        req: DeleteGroupsRequest,
        _version: i16,
    ) -> DeleteGroupsResponse {
        let mut results = Vec::with_capacity(req.groups_names.len());
        for id in req.groups_names {
            let error = self.delete(id.as_str()).await.err();
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(code(error)),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }

    /// Deletes an Empty group and its offsets. The group stays Dead in memory while the
    /// store deletes, so a member joining meanwhile is turned away (and retries) rather
    /// than joining a group whose offsets are vanishing.
    async fn delete(&self, group: &str) -> Result<(), ResponseError> {
        self.check_owner(group)?;
        let held = {
            let mut groups = self.groups();
            match groups.get_mut(group) {
                Some(g) => {
                    g.begin_delete()?;
                    true
                }
                None => {
                    groups.insert(group.to_string(), Group::dead(Instant::now()));
                    false
                }
            }
        };
        let deleted = self.store.delete_group(group).await;
        {
            let mut groups = self.groups();
            if groups
                .get(group)
                .is_some_and(|g| g.state() == GroupState::Dead)
            {
                groups.remove(group);
            }
        }
        match deleted {
            Ok(()) => Ok(()),
            // A group with members but no commits yet has nothing in the store.
            Err(OffsetStoreError::GroupNotFound { .. }) if held => Ok(()),
            Err(e) => Err(store_error(&e)),
        }
    }
}

/// A DescribeGroups entry at `version` (instance ids from v4).
fn described_group(d: Description, version: i16) -> DescribedGroup {
    let members = d
        .members
        .into_iter()
        .map(|m| {
            DescribedGroupMember::default()
                .with_member_id(text(m.member_id))
                .with_group_instance_id(if version >= 4 {
                    m.instance_id.map(text)
                } else {
                    None
                })
                .with_client_id(text(m.client_id))
                .with_client_host(text(m.client_host))
                .with_member_metadata(m.metadata)
                .with_member_assignment(m.assignment)
        })
        .collect();
    DescribedGroup::default()
        .with_group_state(StrBytes::from_static_str(d.state.name()))
        .with_protocol_type(text(d.protocol_type))
        .with_protocol_data(text(d.protocol))
        .with_members(members)
}
