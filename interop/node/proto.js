// Loads calculator.proto at run time with @grpc/proto-loader (no code generation step).
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_DIR = path.join(__dirname, '..', '..', 'proto');

// longs: String keeps every u64 exact; defaults fill absent fields like other languages do.
const OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

function load(legacy = false) {
  const file = legacy ? path.join(PROTO_DIR, 'legacy', 'calculator.proto') : path.join(PROTO_DIR, 'calculator.proto');
  return grpc.loadPackageDefinition(protoLoader.loadSync(file, OPTIONS)).calculator;
}

module.exports = { load };
