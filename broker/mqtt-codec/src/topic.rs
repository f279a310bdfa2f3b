//! Topic names, topic filters and matching.
//!
//! ```text
//! topic name     sensors/room-1/temp          levels split by '/', no wildcards
//! topic filter   sensors/+/temp   sensors/#    '+' = exactly one level, '#' = this level
//!                                              and all below (including the parent)
//! shared         $share/{group}/{filter}      group: non-empty, no '/', '+' or '#'
//! ```
//!
//! Topics starting with `$` (such as `$SYS/...`) are not matched by a filter whose first
//! level is a wildcard ([MQTT-4.7.2-1]): `#` must not deliver broker statistics to every
//! catch-all subscriber.

/// Prefix of a shared subscription filter.
pub const SHARE_PREFIX: &str = "$share/";

/// A topic name a PUBLISH may carry: non-empty, at most 65,535 bytes, no `+`, `#` or
/// U+0000.
pub fn is_valid_topic_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= usize::from(u16::MAX) && !name.contains(['+', '#', '\0'])
}

/// A topic filter a SUBSCRIBE or UNSUBSCRIBE may carry: non-empty, `#` only as the whole
/// last level, `+` only as a whole level, and a `$share/` filter well-formed.
pub fn is_valid_topic_filter(filter: &str) -> bool {
    if filter.starts_with(SHARE_PREFIX) {
        return parse_shared(filter).is_some();
    }
    is_valid_plain_filter(filter)
}

fn is_valid_plain_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > usize::from(u16::MAX) || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}

/// A `$share/{group}/{filter}` subscription, split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    /// The share name: subscribers with the same group and filter split the messages.
    pub group: &'a str,
    /// The filter that topics are matched against.
    pub filter: &'a str,
}

/// Splits a shared subscription filter. Returns `None` if `filter` does not start with
/// `$share/` or is not a well-formed shared filter.
pub fn parse_shared(filter: &str) -> Option<SharedFilter<'_>> {
    let rest = filter.strip_prefix(SHARE_PREFIX)?;
    let (group, inner) = rest.split_once('/')?;
    if group.is_empty() || group.contains(['+', '#']) || !is_valid_plain_filter(inner) {
        return None;
    }
    Some(SharedFilter {
        group,
        filter: inner,
    })
}

/// Whether `filter` (a valid, non-shared topic filter) matches topic name `topic`.
///
/// Runs for every route lookup and every candidate subscription of every message, so it
/// walks the bytes once instead of splitting both strings into levels.
pub fn matches(filter: &str, topic: &str) -> bool {
    // A topic name holds no wildcards: equal strings are a match, and the usual one.
    if filter == topic {
        return true;
    }
    let (f, t) = (filter.as_bytes(), topic.as_bytes());
    if t.first() == Some(&b'$') && matches!(f.first(), Some(b'+' | b'#')) {
        return false;
    }
    let level_end = |b: &[u8], from: usize| {
        b[from..]
            .iter()
            .position(|&c| c == b'/')
            .map_or(b.len(), |p| from + p)
    };
    let (mut i, mut j) = (0, 0);
    loop {
        let fe = level_end(f, i);
        let level = &f[i..fe];
        if level == b"#" {
            return true;
        }
        let te = level_end(t, j);
        if level != b"+" && level != &t[j..te] {
            return false;
        }
        match (fe == f.len(), te == t.len()) {
            (true, true) => return true,
            (true, false) => return false,
            // '#' also matches the parent level: "a/#" matches "a".
            (false, true) => return &f[fe + 1..] == b"#",
            (false, false) => (i, j) = (fe + 1, te + 1),
        }
    }
}

/// Number of levels in a topic name or filter (`a/b/c` has 3), for a configured limit.
pub fn level_count(topic: &str) -> usize {
    topic.bytes().filter(|&b| b == b'/').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The level-by-level definition `matches` must agree with.
    fn matches_by_levels(filter: &str, topic: &str) -> bool {
        if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
            return false;
        }
        let mut f = filter.split('/');
        let mut t = topic.split('/');
        loop {
            match (f.next(), t.next()) {
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(fl), Some(tl)) if fl == tl => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    #[test]
    fn matching_agrees_with_the_level_by_level_definition() {
        let levels = ["a", "b", "", "$SYS", "ab"];
        let mut topics = vec![];
        for a in levels {
            topics.push(a.to_string());
            for b in levels {
                topics.push(format!("{a}/{b}"));
                for c in levels {
                    topics.push(format!("{a}/{b}/{c}"));
                }
            }
        }
        let topics: Vec<String> = topics
            .into_iter()
            .filter(|t| is_valid_topic_name(t))
            .collect();
        let mut filters = topics.clone();
        for t in &topics {
            let parts: Vec<&str> = t.split('/').collect();
            for i in 0..parts.len() {
                let mut plus = parts.clone();
                plus[i] = "+";
                filters.push(plus.join("/"));
                filters.push(format!("{}/#", parts[..i].join("/")));
                filters.push(format!("{}/#", parts[..=i].join("/")));
            }
        }
        filters.extend(["#".to_string(), "+".to_string(), "+/#".to_string()]);
        let mut checked = 0;
        for f in filters.iter().filter(|f| is_valid_topic_filter(f)) {
            for t in &topics {
                assert_eq!(matches(f, t), matches_by_levels(f, t), "{f:?} vs {t:?}");
                checked += 1;
            }
        }
        assert!(checked > 10_000, "only {checked} pairs");
        assert_eq!(level_count("a//b/"), 4);
    }

    #[test]
    fn topic_names_reject_wildcards_and_empty() {
        assert!(is_valid_topic_name("a/b/c"));
        assert!(is_valid_topic_name("/"));
        assert!(is_valid_topic_name("$SYS/brokers"));
        assert!(!is_valid_topic_name(""));
        assert!(!is_valid_topic_name("a/+/c"));
        assert!(!is_valid_topic_name("a/#"));
        assert!(!is_valid_topic_name("a\0b"));
    }

    #[test]
    fn filters_place_wildcards_only_as_whole_levels() {
        for ok in [
            "#", "+", "a/#", "a/+/b", "+/+", "/", "a//b", "+/#", "$SYS/#",
        ] {
            assert!(is_valid_topic_filter(ok), "{ok:?} should be valid");
        }
        for bad in [
            "", "a#", "a/#/b", "a/b#", "a+/b", "a/+b", "#/a", "a/##", "++",
        ] {
            assert!(!is_valid_topic_filter(bad), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn shared_filters_need_a_group_and_a_filter() {
        assert_eq!(
            parse_shared("$share/g1/sensors/+"),
            Some(SharedFilter {
                group: "g1",
                filter: "sensors/+"
            })
        );
        assert!(is_valid_topic_filter("$share/g/#"));
        for bad in [
            "$share/",
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/g/",
            "$share/g/a#",
        ] {
            assert!(!is_valid_topic_filter(bad), "{bad:?} should be invalid");
        }
        assert_eq!(parse_shared("sensors/#"), None);
    }

    #[test]
    fn wildcards_match_levels() {
        let cases = [
            ("a/b/c", "a/b/c", true),
            ("a/+/c", "a/b/c", true),
            ("a/+/c", "a/b/d", false),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("+", "a", true),
            ("+", "a/b", false),
            ("+/+", "/", true),
            ("/+", "/a", true),
            ("a/b", "a", false),
            ("a", "a/b", false),
            ("+/#", "a", true),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(matches(filter, topic), expected, "{filter:?} vs {topic:?}");
        }
    }

    #[test]
    fn dollar_topics_escape_leading_wildcards() {
        assert!(!matches("#", "$SYS/brokers"));
        assert!(!matches("+/brokers", "$SYS/brokers"));
        assert!(matches("$SYS/#", "$SYS/brokers"));
        assert!(matches("$SYS/+", "$SYS/brokers"));
    }

    #[test]
    fn level_count_counts_separators_plus_one() {
        assert_eq!(level_count("a"), 1);
        assert_eq!(level_count("a/b/c"), 3);
        assert_eq!(level_count("/"), 2);
    }
}
