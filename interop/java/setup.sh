#!/usr/bin/env bash
# Builds the grpc-java peers of the calculator contract (needs a JDK 17+ and Maven). Maven puts into
# its local repository (~/.m2/repository) the pinned grpc-java 1.85.1 (Netty shaded), protobuf-java
# 4.36.2, gson 2.13.2, the build plugins, and from Maven Central the executables protoc 4.36.2 and
# protoc-gen-grpc-java 1.83.1; it generates the messages and stubs of proto/calculator.proto (not
# committed) and writes target/interop/java/calc-java.jar, its dependencies in
# target/interop/java/lib. Nothing lands in the source tree. Then, from the repository root:
#   java -cp target/interop/java/calc-java.jar calcmesh.interop.CalcServer --port 0
#   java -cp target/interop/java/calc-java.jar calcmesh.interop.CalcClient --target HOST:PORT --scenario interop/scenario.json
# Safe to run again. Arguments go to mvn (e.g. -o offline, -Dmaven.repo.local=DIR).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
rm -rf "$root/target/interop/java/lib" # copied afresh: no jar of an older pin lingers there
mvn -B -q --no-transfer-progress -DskipTests -f "$here/pom.xml" package "$@"
