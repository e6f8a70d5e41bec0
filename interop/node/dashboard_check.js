// Drives the dashboard in a real browser — Debian's chromium, headless, through playwright-core
// (which downloads no browser of its own) — for crates/cli/tests/dashboard.rs. The test owns the
// mesh; this script reports what the page shows, one line per step, and waits on stdin for the
// test to act between steps:
//
//   node dashboard_check.js --url http://127.0.0.1:PORT/ --screenshot FILE
//   → "serving 3"                  every calculator drawn SERVING
//   → "evaluated 9 by A,B"         the try-it box answered over gRPC-Web, steps highlighted
//   ← "load"                       the test started `calcmesh bench`
//   → "rate N"                     the page shows the calls per second rising
//   → "latency P50 P99"            the served Evaluate method's p50 and p99 (ms), as shown
//   → "screenshot"                 FILE written
//   ← "killed ADDR"                the test killed that calculator
//   → "down ADDR in MS ms"         the page shows it down
//   → "console clean"              no console error or page error along the way

'use strict';

const readline = require('node:readline');
const { chromium } = require('playwright-core');

function flag(name) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) {
    console.error(`usage: node dashboard_check.js --url URL --screenshot FILE (missing --${name})`);
    process.exit(2);
  }
  return process.argv[i + 1];
}

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function expect(word) {
  const { value, done } = await lines.next();
  if (done || !value.startsWith(word)) throw new Error(`expected "${word}" on stdin, got ${value}`);
  return value.slice(word.length).trim();
}

const say = (line) => console.log(line);

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const problems = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 820 } });
    page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
    page.on('pageerror', (e) => problems.push(String(e)));
    await page.goto(flag('url'));

    const serving = 'g.endpoint[data-state="SERVING"]';
    await page.waitForFunction((s) => document.querySelectorAll(s).length === 3, serving, { timeout: 10000 });
    say('serving 3');

    await page.fill('#expression', '(1 + 2) * 3');
    await page.click('#evaluate');
    await page.waitForSelector('#value', { timeout: 10000 });
    const value = await page.textContent('#value');
    const by = await page.$$eval('#steps li', (items) => items.map((i) => i.dataset.endpoint));
    const lit = await page.$$eval('g.endpoint.lit', (nodes) => nodes.map((n) => n.dataset.endpoint));
    if (by.length !== 2 || !by.every((e) => lit.includes(e))) throw new Error(`steps ${by}, lit ${lit}`);
    say(`evaluated ${value} by ${by.join(',')}`);

    await expect('load');
    await page.waitForFunction(() => Number(document.getElementById('rate').textContent) > 10, null, { timeout: 5000 });
    say(`rate ${await page.textContent('#rate')}`);
    const evaluate = 'table.served tr[data-method="/calcmesh.evaluator.v1.Evaluator/Evaluate"] td.num';
    await page.waitForSelector(evaluate, { timeout: 5000 });
    const [, p50, p99] = await page.$$eval(evaluate, (cells) => cells.map((c) => parseFloat(c.textContent)));
    say(`latency ${p50} ${p99}`);
    await page.screenshot({ path: flag('screenshot') });
    say('screenshot');

    const killed = await expect('killed');
    const started = Date.now();
    await page.waitForFunction((a) => {
      const node = document.querySelector(`g.endpoint[data-endpoint="${a}"]`);
      return node && node.dataset.state !== 'SERVING';
    }, killed, { timeout: 2000 });
    say(`down ${killed} in ${Date.now() - started} ms`);

    if (problems.length) throw new Error(`console: ${problems.join(' | ')}`);
    say('console clean');
  } finally {
    await browser.close();
  }
}

main().then(() => process.exit(0)).catch((err) => {
  console.error('error:', err.message || err);
  process.exit(1);
});
