//! Pieces shared by the journal's benchmarks (`append_bench`, `read_bench`). (The
//! integration tests' batch builder cannot be shared: its module also starts test binaries
//! through `CARGO_BIN_EXE_*`, which only integration tests get.)

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A valid RecordBatch v2 holding one record with a `value_len`-byte value.
pub fn one_record_batch(value_len: usize) -> Bytes {
    let rec = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from(vec![0x5au8; value_len])),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&rec],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    buf.freeze()
}

/// The value following `name` on the command line (`--name value`), if given.
pub fn flag(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next().and(args.next())
}

/// `flag(name)` parsed, or `default` when absent or unparsable.
pub fn flag_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    flag(name).and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// User + system CPU time of this process so far, from /proc (USER_HZ is 100 on Linux).
pub fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}
