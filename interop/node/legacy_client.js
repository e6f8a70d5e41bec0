#!/usr/bin/env node
// A client of the original contract only, as the old project's Node client was: it loads
// proto/legacy/calculator.proto (one RPC, Calculate), connects in plaintext to localhost:50051
// (or --target), and prints each answer.
'use strict';
const { parseArgs } = require('util');
const grpc = require('@grpc/grpc-js');
const { load } = require('./proto');

const { values } = parseArgs({ options: { target: { type: 'string', default: 'localhost:50051' } } });
const calculator = load(true);
const client = new calculator.Calculator(values.target, grpc.credentials.createInsecure());
const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

const calls = [[10, '+', 5], [10, '-', 5], [10, '*', 5], [10, '/', 5], [1, '/', 0], [1, 'x', 2]];
let remaining = calls.length;
const lines = new Array(calls.length);
calls.forEach(([num1, operator, num2], i) => {
  client.Calculate({ num1, num2, operator }, { deadline: Date.now() + 10000 }, (err, res) => {
    lines[i] = err ? `${num1} ${operator} ${num2}: ${CODE_NAMES[err.code]}` : `${num1} ${operator} ${num2} = ${res.result}`;
    if (--remaining === 0) {
      console.log(lines.join('\n'));
      client.close();
    }
  });
});
