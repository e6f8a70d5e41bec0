#!/usr/bin/env bash
# Makes the grpc-go peers ready to run: installs the pinned protoc plugins (protoc-gen-go
# v1.36.12, protoc-gen-go-grpc v1.6.2) into target/interop/go/bin and generates the Go messages
# and stubs of proto/calculator.proto into calculatorpb/ (not committed) with protoc (Debian's
# protobuf-compiler). Then `go run ./client` and `go run ./server` work here. Safe to run again.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
bin="$root/target/interop/go/bin"
GOBIN="$bin" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN="$bin" go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
pkg=calcmesh.invalid/interop/go/calculator/calculatorpb
mkdir -p "$here/calculatorpb"
PATH="$bin:$PATH" protoc -I "$root/proto" \
  --go_out="$here/calculatorpb" --go_opt=paths=source_relative --go_opt="Mcalculator.proto=$pkg" \
  --go-grpc_out="$here/calculatorpb" --go-grpc_opt=paths=source_relative --go-grpc_opt="Mcalculator.proto=$pkg" \
  calculator.proto
