#!/usr/bin/env bash
# Tests the WinDbg extension's decoder on Linux: writes ring memory images with the Rust core's own
# encoder (crates/core/examples/ring_image.rs) into a temporary directory, then runs the node tests
# on them. Honors CARGO_TARGET_DIR. Needs cargo and node >= 18 (node:test); no npm packages.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"

if ! command -v node >/dev/null 2>&1; then
    echo "run.sh: node is not installed; install Node.js 18 or later" >&2
    exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
    echo "run.sh: node $(node --version) has no node:test; install Node.js 18 or later" >&2
    exit 1
fi

fixtures="$(mktemp -d "${TMPDIR:-/tmp}/ctxscope-ring-images.XXXXXX")"
trap 'rm -rf "$fixtures"' EXIT

(cd "$repo" && cargo run --quiet -p ctxscope-core --example ring_image -- "$fixtures")
CTXSCOPE_FIXTURES="$fixtures" node --test "$here"/decode.test.js
