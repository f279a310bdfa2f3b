//! ListGroups (v0–5): the groups this broker coordinates: those held in memory, plus
//! those with offsets in meta that hash to this broker (Empty, as Kafka shows a group
//! that has offsets but no members).

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_groups_response::ListedGroup as WireGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::sb;
use crate::kafka::group::coordinator::GroupCoordinator;
use crate::kafka::group::state::{GroupState, ListedGroup};

/// The only group type this coordinator runs (KIP-848's "consumer" groups are not).
const CLASSIC: &str = "classic";

impl GroupCoordinator {
    pub async fn list_groups(&self, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let lower = |v: &[kafka_protocol::protocol::StrBytes]| -> HashSet<String> {
            v.iter().map(|s| s.to_lowercase()).collect()
        };
        let states = if version >= 4 {
            lower(&req.states_filter)
        } else {
            HashSet::new()
        };
        let types = if version >= 5 {
            lower(&req.types_filter)
        } else {
            HashSet::new()
        };
        if !types.is_empty() && !types.contains(CLASSIC) {
            return ListGroupsResponse::default();
        }

        let stored = match self.store.list_groups().await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "ListGroups: offset store");
                return ListGroupsResponse::default()
                    .with_error_code(ResponseError::CoordinatorNotAvailable.code());
            }
        };
        let held = self.lock().list();
        let mut listed: BTreeMap<String, ListedGroup> = BTreeMap::new();
        for g in held {
            if self.owns_group(&g.group_id) {
                listed.insert(g.group_id.clone(), g);
            }
        }
        for id in stored {
            if !listed.contains_key(&id) && self.owns_group(&id) {
                listed.insert(
                    id.clone(),
                    ListedGroup {
                        group_id: id,
                        protocol_type: String::new(),
                        state: GroupState::Empty,
                    },
                );
            }
        }
        let groups = listed
            .into_values()
            .filter(|g| states.is_empty() || states.contains(&g.state.as_str().to_lowercase()))
            .map(|g| {
                WireGroup::default()
                    .with_group_id(GroupId(sb(g.group_id)))
                    .with_protocol_type(sb(g.protocol_type))
                    .with_group_state(if version >= 4 {
                        sb(g.state.as_str())
                    } else {
                        sb("")
                    })
                    .with_group_type(if version >= 5 { sb(CLASSIC) } else { sb("") })
            })
            .collect();
        ListGroupsResponse::default().with_groups(groups)
    }
}
