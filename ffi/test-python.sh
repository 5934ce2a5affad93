#!/usr/bin/env bash
# The Python package's tests: builds the debug `tern-relay` and `tern`
# binaries the tests run, installs the `tern` package from ./ffi (maturin,
# release build) with pytest, and runs ffi/tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked -q -p tern-relay -p tern-cli
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    "pytest>=8" ./ffi
TERN_BIN_DIR="$PWD/target/debug" python3 -m pytest -q ffi/tests "$@"
