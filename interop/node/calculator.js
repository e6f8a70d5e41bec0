// The calculator's semantics in JavaScript: the same results and status codes as the Rust service.
'use strict';
const grpc = require('@grpc/grpc-js');

const OPERATORS = ['+', '-', '*', '/', '%', '^'];

class CalcError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
    this.details = message;
  }
}

function calculate(a, op, b) {
  if (Number.isNaN(a) || Number.isNaN(b)) {
    throw new CalcError(grpc.status.INVALID_ARGUMENT, 'operands must be numbers, got NaN');
  }
  if (!OPERATORS.includes(op)) {
    throw new CalcError(grpc.status.INVALID_ARGUMENT, `unknown operator ${JSON.stringify(op)}: expected one of ${OPERATORS.join(' ')}`);
  }
  if (((op === '/' || op === '%') && b === 0) || (op === '^' && a === 0 && b < 0)) {
    throw new CalcError(grpc.status.INVALID_ARGUMENT, `division by zero in ${op}`);
  }
  const result = { '+': a + b, '-': a - b, '*': a * b, '/': a / b, '%': a % b, '^': Math.pow(a, b) }[op];
  if (Number.isNaN(result)) {
    throw new CalcError(grpc.status.INVALID_ARGUMENT, `${a} ${op} ${b} has no real result`);
  }
  if (!Number.isFinite(result) && Number.isFinite(a) && Number.isFinite(b)) {
    throw new CalcError(grpc.status.OUT_OF_RANGE, `result of ${a} ${op} ${b} overflows a 64-bit float`);
  }
  return result;
}

// Welford's mean and variance; Neumaier's compensated sum.
class RunningStats {
  constructor() {
    Object.assign(this, { count: 0, mean: 0, m2: 0, sum: 0, compensation: 0, min: 0, max: 0 });
  }

  push(x) {
    if (!Number.isFinite(x)) {
      throw new CalcError(grpc.status.INVALID_ARGUMENT, `value #${this.count + 1} is ${x}: only finite numbers can be summarized`);
    }
    this.count += 1;
    if (this.count === 1) {
      this.min = x;
      this.max = x;
    } else {
      this.min = Math.min(this.min, x);
      this.max = Math.max(this.max, x);
    }
    const delta = x - this.mean;
    this.mean += delta / this.count;
    this.m2 += delta * (x - this.mean);
    const t = this.sum + x;
    this.compensation += Math.abs(this.sum) >= Math.abs(x) ? (this.sum - t) + x : (x - t) + this.sum;
    this.sum = t;
  }

  summary() {
    if (this.count === 0) return { count: 0, sum: 0, mean: 0, min: 0, max: 0, variance: 0 };
    return {
      count: this.count, sum: this.sum + this.compensation, mean: this.mean,
      min: this.min, max: this.max, variance: this.m2 / this.count,
    };
  }
}

function powMod(base, exp, m) {
  let result = 1n;
  base %= m;
  while (exp > 0n) {
    if (exp & 1n) result = (result * base) % m;
    base = (base * base) % m;
    exp >>= 1n;
  }
  return result;
}

function isPrime(n) {
  if (n < 2n) return false;
  for (const p of [2n, 3n, 5n, 7n, 11n, 13n, 17n, 19n, 23n, 29n, 31n, 37n]) {
    if (n % p === 0n) return n === p;
  }
  let d = n - 1n;
  let s = 0;
  while ((d & 1n) === 0n) { d >>= 1n; s += 1; }
  witness: for (let a of [2n, 325n, 9375n, 28178n, 450775n, 9780504n, 1795265022n]) {
    a %= n;
    if (a === 0n) continue;
    let x = powMod(a, d, n);
    if (x === 1n || x === n - 1n) continue;
    for (let i = 1; i < s; i++) {
      x = (x * x) % n;
      if (x === n - 1n) continue witness;
    }
    return false;
  }
  return true;
}

function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}

const absDiff = (a, b) => (a > b ? a - b : b - a);

// A non-trivial divisor of an odd composite n: Pollard's rho, Brent's variant.
function rho(n) {
  for (let c = 1n; ; c++) {
    const f = (x) => (x * x + c) % n;
    let [x, y, ys, g, q, r] = [2n, 2n, 2n, 1n, 1n, 1];
    while (g === 1n) {
      x = y;
      for (let i = 0; i < r; i++) y = f(y);
      for (let k = 0; k < r && g === 1n; k += 128) {
        ys = y;
        for (let i = 0; i < Math.min(128, r - k); i++) {
          y = f(y);
          q = (q * absDiff(x, y)) % n;
        }
        g = gcd(q, n);
      }
      r *= 2;
    }
    if (g === n) {
      do {
        ys = f(ys);
        g = gcd(absDiff(x, ys), n);
      } while (g === 1n);
    }
    if (g !== n) return g;
  }
}

// The prime factors of n (a BigInt), ascending.
function factorize(n) {
  if (n < 2n) {
    throw new CalcError(grpc.status.INVALID_ARGUMENT, `${n} has no prime factorization: give a number >= 2`);
  }
  const factors = [];
  for (let p = 2n; p < 1024n; p++) {
    while (n % p === 0n) { factors.push(p); n /= p; }
  }
  const pending = n > 1n ? [n] : [];
  while (pending.length) {
    const k = pending.pop();
    if (k < 1024n * 1024n || isPrime(k)) {
      factors.push(k);
    } else {
      const d = rho(k);
      pending.push(d, k / d);
    }
  }
  return factors.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

module.exports = { CalcError, calculate, RunningStats, factorize };
