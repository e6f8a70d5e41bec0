#!/usr/bin/env node
// A @grpc/grpc-js client of calculator.Calculator.
//
//   node client.js --target 127.0.0.1:50051 calc 10 + 5     # one Calculate call
//   node client.js --target 127.0.0.1:50051 scenario        # every RPC, checked against interop/scenario.json
//
// With --ca (and --cert/--key for mutual TLS) the channel is TLS.
//
// `scenario` prints `ok NAME` or `FAIL NAME: ...` per case, ends with `N passed, M failed`, and
// exits 1 if any case failed.
'use strict';
const fs = require('fs');
const path = require('path');
const { parseArgs } = require('util');
const grpc = require('@grpc/grpc-js');
const { load } = require('./proto');

const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));
const SUMMARY_FIELDS = ['count', 'sum', 'mean', 'min', 'max', 'variance'];

// JSON cannot hold NaN or infinity: the scenario spells them as strings.
const number = (v) => Number(v);
const close = (a, b) => a === b || Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b), 1);
const request = (r) => ({ num1: number(r.num1), num2: number(r.num2), operator: r.operator });
const summary = (s) => Object.fromEntries(SUMMARY_FIELDS.map((f) => [f, Number(s[f])]));
const sameSummary = (got, want) => got !== undefined && SUMMARY_FIELDS.every((f) => close(got[f], want[f]));

// Collects a response stream; resolves with the items and the final status name.
function drain(call) {
  return new Promise((resolve) => {
    const items = [];
    call.on('data', (item) => items.push(item));
    call.on('error', (e) => resolve({ items, code: CODE_NAMES[e.code] }));
    call.on('end', () => resolve({ items, code: undefined }));
  });
}

async function runCase(client, c, deadline) {
  const options = () => ({ deadline: Date.now() + deadline });
  const got = {};
  if (c.rpc === 'Calculate') {
    await new Promise((resolve) => {
      client.Calculate(request(c.request), options(), (err, res) => {
        if (err) got.code = CODE_NAMES[err.code];
        else got.result = res.result;
        resolve();
      });
    });
  } else if (c.rpc === 'CalculateStream') {
    const call = client.CalculateStream(options());
    const done = drain(call);
    c.requests.forEach((r) => call.write(request(r)));
    call.end();
    const { items, code } = await done;
    got.code = code;
    got.responses = items.map((r) => (r.error ? { code: CODE_NAMES[r.error.code] } : { result: r.result }));
  } else if (c.rpc === 'Summarize') {
    await new Promise((resolve) => {
      const call = client.Summarize(options(), (err, res) => {
        if (err) got.code = CODE_NAMES[err.code];
        else got.summary = summary(res);
        resolve();
      });
      c.numbers.forEach((v) => call.write({ value: number(v) }));
      call.end();
    });
  } else if (c.rpc === 'Factorize') {
    const { items, code } = await drain(client.Factorize({ number: c.number }, options()));
    got.code = code;
    got.factors = items.map((f) => String(f.prime));
  } else if (c.rpc === 'RunningSummary') {
    const call = client.RunningSummary(options());
    const done = drain(call);
    c.numbers.forEach((v) => call.write({ value: number(v) }));
    call.end();
    const { items, code } = await done;
    got.code = code;
    got.summaries = items.map(summary);
  } else {
    return `unknown rpc ${c.rpc}`;
  }
  return compare(got, c.expect);
}

function compare(got, expect) {
  const show = JSON.stringify;
  if (expect.code !== got.code) return `status ${got.code || 'OK'}, expected ${expect.code || 'OK'}`;
  if ('result' in expect && !close(got.result, expect.result)) return `result ${got.result}, expected ${expect.result}`;
  if ('responses' in expect) {
    const [want, have] = [expect.responses, got.responses || []];
    const same = want.length === have.length
      && want.every((w, i) => w.code === have[i].code && (!('result' in w) || close(have[i].result, w.result)));
    if (!same) return `responses ${show(have)}, expected ${show(want)}`;
  }
  if ('summary' in expect && !sameSummary(got.summary, expect.summary)) return `summary ${show(got.summary)}, expected ${show(expect.summary)}`;
  if ('factors' in expect && show(got.factors) !== show(expect.factors)) return `factors ${show(got.factors)}, expected ${show(expect.factors)}`;
  if ('summaries' in expect) {
    const [want, have] = [expect.summaries, got.summaries || []];
    if (want.length !== have.length || !want.every((w, i) => sameSummary(have[i], w))) {
      return `summaries ${show(have)}, expected ${show(want)}`;
    }
  }
  return undefined;
}

async function scenario(client, file, deadline) {
  const { cases } = JSON.parse(fs.readFileSync(file, 'utf8'));
  let failed = 0;
  for (const c of cases) {
    const problem = await runCase(client, c, deadline);
    if (problem) {
      failed += 1;
      console.log(`FAIL ${c.name}: ${problem}`);
    } else {
      console.log(`ok ${c.name}`);
    }
  }
  console.log(`${cases.length - failed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      target: { type: 'string', default: 'localhost:50051' },
      timeout: { type: 'string', default: '10' },
      file: { type: 'string', default: path.join(__dirname, '..', 'scenario.json') },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
    },
  });
  const calculator = load();
  const read = (file) => (file ? fs.readFileSync(file) : null);
  const credentials = values.ca
    ? grpc.credentials.createSsl(read(values.ca), read(values.key), read(values.cert))
    : grpc.credentials.createInsecure();
  const client = new calculator.Calculator(values.target, credentials);
  const deadline = Number(values.timeout) * 1000;
  const [command, ...rest] = positionals;
  let code = 2;
  if (command === 'calc' && rest.length === 3) {
    code = await new Promise((resolve) => {
      client.Calculate({ num1: Number(rest[0]), operator: rest[1], num2: Number(rest[2]) }, { deadline: Date.now() + deadline }, (err, res) => {
        if (err) {
          console.error(`error: ${CODE_NAMES[err.code]}: ${err.details}`);
          resolve(1);
        } else {
          console.log(res.result);
          resolve(0);
        }
      });
    });
  } else if (command === 'scenario') {
    code = await scenario(client, values.file, deadline);
  } else {
    console.error('usage: node client.js [--target HOST:PORT] [--timeout SECONDS] (calc NUM1 OP NUM2 | scenario [--file FILE])');
  }
  client.close();
  process.exitCode = code;
}

main();
