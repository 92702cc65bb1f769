#!/usr/bin/env bash
# Runs every check and test of the workspace. This is the README's test command and what CI
# runs (.ci/run). It installs what it needs, so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

log="$(mktemp)"
log_loom="$(mktemp)"
trap 'rm -f "$log" "$log_loom"' EXIT

step "toolchain components"
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
rustup target list --installed | grep -qx thumbv7em-none-eabihf || rustup target add thumbv7em-none-eabihf

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# raft-std without its optional tokio feature must build too.
cargo clippy -p raft-std --all-targets --locked -- -D warnings

step "raft-core for a Cortex-M4F (thumbv7em-none-eabihf): no_std, no allocator"
cargo build -p raft-core --target thumbv7em-none-eabihf --release --locked

step "docs (the crate docs are the contract: broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked -p raft-core -p raft-sim -p raft-std

step "loom: raft-std's thread hand-offs, every interleaving (RUSTFLAGS=--cfg loom)"
# A target directory of its own, so the cfg change does not rebuild the main one each run.
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p raft-std --release --locked --lib loom_ 2>&1 | tee "$log_loom"

step "tests (unit, doc, simulation suites, property tests, raft-std with tokio, real processes)"
cargo test --workspace --all-features --locked 2>&1 | tee "$log"

step "real clients: redis-cli, redis-benchmark and Python redis against a tickraft-kv cluster"
bash scripts/client-compat.sh target/debug/tickraft-kv

# One closing line over every test binary, so the total is not left to the last binary's line.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\ntotal: %d passed, %d failed\n", p, f }' "$log" "$log_loom"
