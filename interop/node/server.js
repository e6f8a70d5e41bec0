#!/usr/bin/env node
// calculator.Calculator served by @grpc/grpc-js: all five RPCs with the Rust server's semantics.
//
//   node server.js --port 50051        # listens on 127.0.0.1:50051
//   node server.js --port 0            # a free port; prints `listening on 127.0.0.1:PORT`
//
// SIGTERM/SIGINT: stop accepting, let calls in flight finish, exit 0.
'use strict';
const { parseArgs } = require('util');
const grpc = require('@grpc/grpc-js');
const { load } = require('./proto');
const { CalcError, calculate, RunningStats, factorize } = require('./calculator');

const asStatus = (e) => (e instanceof CalcError ? e : { code: grpc.status.INTERNAL, details: String(e) });

const handlers = {
  Calculate(call, callback) {
    const { num1, operator, num2 } = call.request;
    try {
      callback(null, { result: calculate(num1, operator, num2) });
    } catch (e) {
      callback(asStatus(e));
    }
  },

  CalculateStream(call) {
    call.on('data', ({ num1, operator, num2 }) => {
      try {
        call.write({ result: calculate(num1, operator, num2) });
      } catch (e) {
        const { code, details } = asStatus(e);
        call.write({ result: 0, error: { code, message: details } });
      }
    });
    call.on('end', () => call.end());
  },

  Summarize(call, callback) {
    const stats = new RunningStats();
    let failed = false;
    call.on('data', ({ value }) => {
      if (failed) return;
      try {
        stats.push(value);
      } catch (e) {
        failed = true;
        callback(asStatus(e));
      }
    });
    call.on('end', () => failed || callback(null, stats.summary()));
  },

  Factorize(call) {
    let factors;
    try {
      factors = factorize(BigInt(call.request.number));
    } catch (e) {
      call.emit('error', asStatus(e));
      return;
    }
    for (const p of factors) call.write({ prime: p.toString() });
    call.end();
  },

  RunningSummary(call) {
    const stats = new RunningStats();
    let failed = false;
    call.on('data', ({ value }) => {
      if (failed) return;
      try {
        stats.push(value);
        call.write(stats.summary());
      } catch (e) {
        failed = true;
        call.emit('error', asStatus(e));
      }
    });
    call.on('end', () => failed || call.end());
  },
};

function main() {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '50051' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log('usage: node server.js [--host 127.0.0.1] [--port 50051]   (port 0 picks a free one)');
    return;
  }
  const calculator = load();
  const server = new grpc.Server();
  server.addService(calculator.Calculator.service, handlers);
  server.bindAsync(`${values.host}:${values.port}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) {
      console.error(`error: cannot listen on ${values.host}:${values.port}: ${err.message}`);
      process.exit(1);
    }
    console.log(`listening on ${values.host}:${port}`);
  });
  const stop = () => server.tryShutdown(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
