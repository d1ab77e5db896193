#!/usr/bin/env bash
# Fuzz smoke run: every cargo-fuzz target for a fixed time, seeded from the encoders; fails on
# any crash, panic, sanitizer report or timeout.
#
#   fuzz/run-smoke.sh [seconds per target]   (default 20)
#
# Needs the nightly toolchain; installs cargo-fuzz if it is missing.
set -euo pipefail

seconds="${1:-20}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "run-smoke.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# Seeds are made by the encoders each run, never committed: a fresh corpus directory per run.
corpus="$here/corpus/smoke"
rm -rf "$corpus"
cargo +nightly run --quiet --example make_seeds -- "$corpus"

targets=(protocol_decode logline_parse)
for target in "${targets[@]}"; do
    echo "== fuzzing $target for ${seconds}s"
    # -max_len covers the largest message (64 KiB + the selector byte); -timeout turns a hang
    # into a failure; libFuzzer exits non-zero on any crash.
    cargo +nightly fuzz run "$target" "$corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65537 -timeout=10 -print_final_stats=1
done
echo "fuzz smoke: ${#targets[@]} targets, no crash"
