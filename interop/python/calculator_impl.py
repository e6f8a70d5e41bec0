"""The calculator's semantics in Python: the same results and status codes as the Rust service.

Kept apart from the gRPC plumbing (calc_server.py) so each rule reads on its own.
"""
import math

import grpc

OPERATORS = "+ - * / % ^"


class CalcError(Exception):
    """An operation without an answer, with the gRPC status code that says why."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def calculate(a: float, op: str, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        raise CalcError(grpc.StatusCode.INVALID_ARGUMENT, "operands must be numbers, got NaN")
    if op not in OPERATORS.split():
        raise CalcError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown operator {op!r}: expected one of {OPERATORS}")
    if (op in "/%" and b == 0) or (op == "^" and a == 0 and b < 0):
        raise CalcError(grpc.StatusCode.INVALID_ARGUMENT, f"division by zero in {op}")
    try:
        if op == "+":
            result = a + b
        elif op == "-":
            result = a - b
        elif op == "*":
            result = a * b
        elif op == "/":
            result = a / b
        elif op == "%":
            result = math.fmod(a, b)  # the sign of the dividend, as in Rust and C
        else:
            result = math.pow(a, b)
    except OverflowError:
        result = math.inf
    except ValueError:
        result = math.nan
    if math.isnan(result):
        raise CalcError(grpc.StatusCode.INVALID_ARGUMENT, f"{a} {op} {b} has no real result")
    if math.isinf(result) and math.isfinite(a) and math.isfinite(b):
        raise CalcError(grpc.StatusCode.OUT_OF_RANGE, f"result of {a} {op} {b} overflows a 64-bit float")
    return result


class RunningStats:
    """Welford's mean and variance; Neumaier's compensated sum."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, 0.0, 0.0
        self.min = self.max = 0.0
        self.sum, self.compensation = 0.0, 0.0

    def push(self, x: float):
        if not math.isfinite(x):
            raise CalcError(grpc.StatusCode.INVALID_ARGUMENT,
                            f"value #{self.count + 1} is {x}: only finite numbers can be summarized")
        self.count += 1
        self.min, self.max = (x, x) if self.count == 1 else (min(self.min, x), max(self.max, x))
        delta = x - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (x - self.mean)
        t = self.sum + x
        self.compensation += (self.sum - t) + x if abs(self.sum) >= abs(x) else (x - t) + self.sum
        self.sum = t

    def summary(self) -> dict:
        if self.count == 0:
            return dict(count=0, sum=0.0, mean=0.0, min=0.0, max=0.0, variance=0.0)
        return dict(count=self.count, sum=self.sum + self.compensation, mean=self.mean,
                    min=self.min, max=self.max, variance=self.m2 / self.count)


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in (2, 325, 9375, 28178, 450775, 9780504, 1795265022):
        a %= n
        if a == 0:
            continue
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _rho(n: int) -> int:
    """A non-trivial divisor of an odd composite n (Pollard's rho, Brent's variant)."""
    c = 1
    while True:
        x = y = ys = 2
        g = q = r = 1
        while g == 1:
            x = y
            for _ in range(r):
                y = (y * y + c) % n
            k = 0
            while k < r and g == 1:
                ys = y
                for _ in range(min(128, r - k)):
                    y = (y * y + c) % n
                    q = q * abs(x - y) % n
                g = math.gcd(q, n)
                k += 128
            r *= 2
        if g == n:
            while True:
                ys = (ys * ys + c) % n
                g = math.gcd(abs(x - ys), n)
                if g > 1:
                    break
        if g != n:
            return g
        c += 1


def factorize(n: int) -> list:
    if n < 2:
        raise CalcError(grpc.StatusCode.INVALID_ARGUMENT, f"{n} has no prime factorization: give a number >= 2")
    factors = []
    for p in range(2, 1024):
        while n % p == 0:
            factors.append(p)
            n //= p
    pending = [n] if n > 1 else []
    while pending:
        k = pending.pop()
        if k < 1024 * 1024 or _is_prime(k):
            factors.append(k)
        else:
            d = _rho(k)
            pending += [d, k // d]
    return sorted(factors)
