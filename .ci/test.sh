#!/usr/bin/env bash
# The whole RobustMQ test suite: formatting, lints, unit and integration tests, then the
# end-to-end tests that run the real binaries on loopback. Installs nothing system-wide
# beyond what each step needs, so it works on a fresh machine with a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "build every binary (the e2e tests run them)"
cargo build --workspace --bins

step "unit and integration tests"
cargo test --workspace --exclude e2e

step "end-to-end tests (real processes, one scenario at a time)"
cargo test -p e2e -- --test-threads=1
