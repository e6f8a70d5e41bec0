#!/usr/bin/env bash
# Generates the Go messages and stubs of proto/calculator.proto into calculatorpb/ (not committed)
# with protoc (Debian's protobuf-compiler) and the plugins the test command installs, pinned:
# protoc-gen-go v1.36.12 and protoc-gen-go-grpc v1.6.2, from target/interop/go/bin.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../../.."
bin="$root/target/interop/go/bin"
pkg=calcmesh.invalid/interop/go/calculator/calculatorpb
mkdir -p "$here/calculatorpb"
PATH="$bin:$PATH" protoc -I "$root/proto" \
  --go_out="$here/calculatorpb" --go_opt=paths=source_relative --go_opt="Mcalculator.proto=$pkg" \
  --go-grpc_out="$here/calculatorpb" --go-grpc_opt=paths=source_relative --go-grpc_opt="Mcalculator.proto=$pkg" \
  calculator.proto
