// A gRPC-Web client from npm (@connectrpc/connect-node's gRPC-Web transport, over HTTP/1.1)
// calling calcmesh's evaluator and calculator: unary and server-streaming RPCs, answers and
// error statuses. Prints one JSON object; calcmesh's tests compare it with what a gRPC client
// gets from the same servers.
//
//   node grpc_web_client.js --evaluator http://127.0.0.1:50050 --calculator http://127.0.0.1:50051
//
// The service descriptions come from proto/*.proto through Debian's protoc (a
// FileDescriptorSet), so no generated code is kept here.

'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { fromBinary, createFileRegistry } = require('@bufbuild/protobuf');
const { FileDescriptorSetSchema } = require('@bufbuild/protobuf/wkt');
const { createClient, ConnectError, Code } = require('@connectrpc/connect');
const { createGrpcWebTransport } = require('@connectrpc/connect-node');

function flag(name) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) {
    console.error(`usage: node grpc_web_client.js --evaluator URL --calculator URL (missing --${name})`);
    process.exit(2);
  }
  return process.argv[i + 1];
}

function registry() {
  const protoDir = path.join(__dirname, '..', '..', 'proto');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calcmesh-grpc-web-'));
  const out = path.join(dir, 'protos.pb');
  try {
    execFileSync('protoc', ['-I', protoDir, '--include_imports', `--descriptor_set_out=${out}`,
      'calculator.proto', 'evaluator.proto']);
    return createFileRegistry(fromBinary(FileDescriptorSetSchema, fs.readFileSync(out)));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// The status name as gRPC spells it (INVALID_ARGUMENT), or OK.
function codeName(err) {
  if (!err) return 'OK';
  const code = ConnectError.from(err).code;
  return Code[code].replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase();
}

async function outcome(call) {
  try {
    return { code: 'OK', value: await call() };
  } catch (err) {
    return { code: codeName(err), message: ConnectError.from(err).rawMessage };
  }
}

async function main() {
  const reg = registry();
  const client = (url, name) => createClient(reg.getService(name),
    createGrpcWebTransport({ baseUrl: url, httpVersion: '1.1' }));
  const evaluator = client(flag('evaluator'), 'calcmesh.evaluator.v1.Evaluator');
  const calculator = client(flag('calculator'), 'calculator.Calculator');
  const evaluation = (e) => ({
    value: e.value,
    steps: e.steps.map((s) => `${s.left} ${s.operator} ${s.right} = ${s.result}`),
    endpoints: e.steps.map((s) => s.endpoint),
  });
  const results = {
    evaluate: await outcome(async () => evaluation(await evaluator.evaluate({ expression: '(1 + 2) * 3' }))),
    evaluate_error: await outcome(() => evaluator.evaluate({ expression: '1 / 0' })),
    calculate: await outcome(async () => (await calculator.calculate({ num1: 6, operator: '*', num2: 7 })).result),
    calculate_error: await outcome(() => calculator.calculate({ num1: 1, operator: '/', num2: 0 })),
    factorize: await outcome(async () => {
      const factors = [];
      for await (const f of calculator.factorize({ number: 600851475143n })) factors.push(f.prime.toString());
      return factors;
    }),
    factorize_error: await outcome(async () => {
      for await (const _ of calculator.factorize({ number: 1n })) { /* none */ }
    }),
  };
  console.log(JSON.stringify(results));
}

main().catch((err) => {
  console.error('error:', err);
  process.exit(1);
});
