//! Writes the sample packets as seed inputs for the cargo-fuzz target, so fuzzing starts
//! from valid packets of every type and version instead of from nothing.
//!
//! ```text
//! cargo test -p mqtt-codec --test fuzz_seeds -- --ignored
//! ```
//!
//! Each seed is the fuzz target's selector byte (version index 0..=2, no size limit)
//! followed by one encoded packet.

mod common;

use common::{VERSIONS, encode, sample_packets};

#[test]
#[ignore = "writes files; run by hand to refresh fuzz/seeds"]
fn write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    std::fs::create_dir_all(&dir).unwrap();
    for (selector, version) in VERSIONS.into_iter().enumerate() {
        for (i, packet) in sample_packets(version).iter().enumerate() {
            let mut seed = vec![selector as u8];
            seed.extend_from_slice(&encode(packet, version));
            let name = format!("{version}-{i:02}-{:?}", packet.packet_type());
            std::fs::write(dir.join(name.to_lowercase()), seed).unwrap();
        }
    }
}
