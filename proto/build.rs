//! Compiles every `.proto` file under `proto/` with a vendored protoc, so that a fresh
//! machine needs no system protoc, and emits a file descriptor set for server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    unsafe_set_protoc(&protoc);

    let mut protos: Vec<PathBuf> = std::fs::read_dir("proto")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    protos.sort();
    // The directory itself, so that an added .proto file triggers a rebuild.
    println!("cargo:rerun-if-changed=proto");
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }

    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("robustmq_descriptor.bin"))
        .bytes(".")
        .compile_protos(&protos, &[PathBuf::from("proto")])?;
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_set_protoc(path: &std::path::Path) {
    // std::env::set_var is unsafe in edition 2024 because other threads may read the
    // environment; a build script runs no other threads.
    unsafe { std::env::set_var("PROTOC", path) };
}
