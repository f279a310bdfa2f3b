//! ListGroups, DescribeGroups and DeleteGroups.

use kafka_protocol::ResponseError;

use super::*;

async fn delete(c: &GroupCoordinator, group: &str) -> i16 {
    let req = DeleteGroupsRequest::default().with_groups_names(vec![gid(group)]);
    c.delete_groups(req, 2).await.results[0].error_code
}

async fn describe(c: &GroupCoordinator, group: &str) -> (i16, String, usize) {
    let req = DescribeGroupsRequest::default().with_groups(vec![gid(group)]);
    let resp = c.describe_groups(req, 5).await;
    let g = &resp.groups[0];
    assert_eq!(g.group_id.as_str(), group);
    (g.error_code, g.group_state.to_string(), g.members.len())
}

async fn list(
    c: &GroupCoordinator,
    states: &[&str],
    types: &[&str],
) -> Vec<(String, String, String)> {
    let req = ListGroupsRequest::default()
        .with_states_filter(states.iter().map(|x| s(x)).collect())
        .with_types_filter(types.iter().map(|x| s(x)).collect());
    let resp = c.list_groups(req, 5).await;
    assert_eq!(resp.error_code, NONE);
    resp.groups
        .iter()
        .map(|g| {
            assert_eq!(g.group_type.as_str(), "classic");
            (
                g.group_id.to_string(),
                g.group_state.to_string(),
                g.protocol_type.to_string(),
            )
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_group_with_members_cannot_be_deleted_and_an_empty_one_loses_its_offsets() {
    let f = Fixture::new(0);
    let joined = join_new(&f.c, "g", "a").await;
    let me = joined.member_id.to_string();
    sync(&f.c, "g", &me, joined.generation_id, &[(&me, "x")]).await;
    assert_eq!(
        commit(&f.c, "g", &me, joined.generation_id, &[("orders", 0, 3)]).await,
        vec![NONE]
    );

    assert_eq!(delete(&f.c, "g").await, err(ResponseError::NonEmptyGroup));
    assert_eq!(describe(&f.c, "g").await, (NONE, "Stable".to_string(), 1));

    leave(&f.c, "g", &[(me.as_str(), None)]).await;
    assert_eq!(describe(&f.c, "g").await, (NONE, "Empty".to_string(), 0));
    assert_eq!(delete(&f.c, "g").await, NONE);
    assert_eq!(
        fetch(&f.c, "g", Some(&[("orders", &[0])])).await.1,
        vec![("orders".to_string(), 0, -1)]
    );
    assert_eq!(describe(&f.c, "g").await, (NONE, "Dead".to_string(), 0));
    assert_eq!(delete(&f.c, "g").await, err(ResponseError::GroupIdNotFound));
    assert_eq!(delete(&f.c, "").await, err(ResponseError::InvalidGroupId));

    // A group known only by its offsets (its coordinator moved here) is deleted too.
    commit(&f.c, "offsets-only", "", -1, &[("events", 0, 1)]).await;
    assert_eq!(
        describe(&f.c, "offsets-only").await,
        (NONE, "Empty".to_string(), 0)
    );
    assert_eq!(delete(&f.c, "offsets-only").await, NONE);
    assert_eq!(list(&f.c, &[], &[]).await, Vec::new());

    f.set_owned(false);
    assert_eq!(delete(&f.c, "g").await, err(ResponseError::NotCoordinator));
    assert_eq!(
        describe(&f.c, "g").await.0,
        err(ResponseError::NotCoordinator)
    );
}

#[tokio::test(start_paused = true)]
async fn list_groups_shows_groups_in_memory_and_in_the_store_with_their_state() {
    let f = Fixture::new(3_000);
    stable_group(&f, "live", &["a"]).await;
    commit(&f.c, "offsets-only", "", -1, &[("orders", 0, 1)]).await;
    let all = list(&f.c, &[], &[]).await;
    assert_eq!(
        all,
        vec![
            (
                "live".to_string(),
                "Stable".to_string(),
                "consumer".to_string()
            ),
            (
                "offsets-only".to_string(),
                "Empty".to_string(),
                String::new()
            ),
        ]
    );
    assert_eq!(
        list(&f.c, &["stable"], &[]).await.len(),
        1,
        "state filters ignore case"
    );
    assert_eq!(
        list(&f.c, &["Empty", "Dead"], &[]).await[0].0,
        "offsets-only"
    );
    assert_eq!(list(&f.c, &[], &["Classic"]).await.len(), 2);
    assert!(
        list(&f.c, &[], &["consumer"]).await.is_empty(),
        "no new-protocol groups here"
    );

    let v3 = f.c.list_groups(ListGroupsRequest::default(), 3).await;
    assert_eq!(v3.groups.len(), 2);
    assert!(
        v3.groups
            .iter()
            .all(|g| g.group_state.is_empty() && g.group_type.is_empty())
    );

    f.set_owned(false);
    assert!(
        list(&f.c, &[], &[]).await.is_empty(),
        "another broker's groups are its own to list"
    );
}
