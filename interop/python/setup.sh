#!/usr/bin/env bash
# Makes the Python venv (.venv at the repository root) with the pinned grpcio, and generates the
# stubs from proto/ into interop/python/gen/ (ignored by git). Safe to run again.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
rm -rf "$here/gen"
mkdir -p "$here/gen/current" "$here/gen/legacy"
"$venv/bin/python" -m grpc_tools.protoc -I "$root/proto" \
  --python_out="$here/gen/current" --grpc_python_out="$here/gen/current" "$root/proto/calculator.proto"
"$venv/bin/python" -m grpc_tools.protoc -I "$root/proto/legacy" \
  --python_out="$here/gen/legacy" --grpc_python_out="$here/gen/legacy" "$root/proto/legacy/calculator.proto"
