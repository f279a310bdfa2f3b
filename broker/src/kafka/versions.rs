//! The Kafka APIs this broker serves and at which versions: one table that both the
//! decoder (anything else is refused) and ApiVersions (anything else is not advertised)
//! read, so the two cannot disagree.
//!
//! Ceilings are where a newer version needs something the broker does not have: Fetch
//! v13+ and Produce v13 address topics by id only, DeleteTopics v6 by id, ListOffsets v9+
//! adds tiered-storage specs, DescribeCluster v2 endpoint types.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// `(api, min, max)` for the APIs implemented outside the group coordinator.
const SERVED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeCluster, 0, 1),
];

/// The served range of `api`, if it is served at all.
pub fn range(api: ApiKey) -> Option<(i16, i16)> {
    SERVED
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|&(_, lo, hi)| (lo, hi))
        .or_else(|| {
            super::group::SUPPORTED
                .iter()
                .find(|(k, _, _)| *k == api as i16)
                .map(|&(_, lo, hi)| (lo, hi))
        })
}

pub fn is_supported(api: ApiKey, version: i16) -> bool {
    range(api).is_some_and(|(lo, hi)| (lo..=hi).contains(&version))
}

/// The ApiVersions answer: every served API, nothing else.
pub fn api_versions(error_code: i16) -> ApiVersionsResponse {
    let mut keys: Vec<ApiVersion> = SERVED
        .iter()
        .map(|&(k, lo, hi)| (k as i16, lo, hi))
        .chain(super::group::SUPPORTED.iter().copied())
        .map(|(k, lo, hi)| {
            // Produce is advertised from v0 (as Apache Kafka 4 still does) because
            // librdkafka before 2.x only compresses when the broker lists Produce v0; a
            // v0-2 request itself is still refused by the decoder.
            let lo = if k == ApiKey::Produce as i16 { 0 } else { lo };
            ApiVersion::default()
                .with_api_key(k)
                .with_min_version(lo)
                .with_max_version(hi)
        })
        .collect();
    keys.sort_by_key(|k| k.api_key);
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(keys)
        .with_finalized_features_epoch(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ranges_are_within_the_codec() {
        for v in api_versions(0).api_keys {
            let key = ApiKey::try_from(v.api_key).unwrap();
            let mut codec = key.valid_versions();
            if key == ApiKey::Produce {
                assert_eq!(v.min_version, 0, "old librdkafka needs Produce v0 listed");
                assert!(!is_supported(key, 2));
                codec.min = 0;
            }
            assert!(
                v.min_version >= codec.min && v.max_version <= codec.max,
                "{key:?} {}..{} outside {codec}",
                v.min_version,
                v.max_version
            );
        }
    }

    #[test]
    fn unsupported_apis_are_not_advertised() {
        let keys: Vec<i16> = api_versions(0).api_keys.iter().map(|k| k.api_key).collect();
        assert!(!keys.contains(&(ApiKey::AddPartitionsToTxn as i16)));
        assert!(!keys.contains(&(ApiKey::OffsetForLeaderEpoch as i16)));
        assert!(keys.contains(&(ApiKey::Produce as i16)));
        assert!(!is_supported(ApiKey::Fetch, 13));
        assert!(is_supported(ApiKey::Fetch, 12));
    }
}
