package calcmesh.interop;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.List;

/**
 * Prime factorization of any u64, held in a Java long read as unsigned: trial division by 2, 3
 * and 5, then Miller–Rabin (with bases that decide every u64) and Pollard's rho for the rest.
 */
final class Primes {
    private static final long[] SMALL_PRIMES = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37};
    private static final long[] WITNESSES = {2, 325, 9375, 28178, 450775, 9780504, 1795265022};
    private static final long TWO_TO_32 = 1L << 32;

    private Primes() {
    }

    /** The prime factors of n (unsigned, at least 2), ascending, with multiplicity. */
    static List<Long> factorize(long n) {
        List<Long> out = new ArrayList<>();
        for (long p : new long[] {2, 3, 5}) {
            while (Long.remainderUnsigned(n, p) == 0) {
                out.add(p);
                n = Long.divideUnsigned(n, p);
            }
        }
        split(n, out);
        out.sort(Long::compareUnsigned);
        return out;
    }

    private static void split(long m, List<Long> out) {
        if (m == 1) {
            return;
        }
        if (isPrime(m)) {
            out.add(m);
            return;
        }
        long d = rho(m);
        split(d, out);
        split(Long.divideUnsigned(m, d), out);
    }

    /** Miller–Rabin, deterministic for every u64. */
    static boolean isPrime(long n) {
        if (Long.compareUnsigned(n, 2) < 0) {
            return false;
        }
        for (long p : SMALL_PRIMES) {
            if (Long.remainderUnsigned(n, p) == 0) {
                return n == p;
            }
        }
        int s = Long.numberOfTrailingZeros(n - 1);
        long d = (n - 1) >>> s;
        for (long a : WITNESSES) {
            a = Long.remainderUnsigned(a, n);
            if (a != 0 && witnessesComposite(a, d, s, n)) {
                return false;
            }
        }
        return true;
    }

    private static boolean witnessesComposite(long a, long d, int s, long n) {
        long x = powmod(a, d, n);
        if (x == 1 || x == n - 1) {
            return false;
        }
        for (int i = 0; i < s - 1; i++) {
            x = mulmod(x, x, n);
            if (x == n - 1) {
                return false;
            }
        }
        return true;
    }

    /** A non-trivial divisor of an odd composite n (Pollard's rho, Floyd's cycle finding). */
    private static long rho(long n) {
        for (long c = 1; ; c++) {
            long x = 2;
            long y = 2;
            long d = 1;
            while (d == 1) {
                x = step(x, c, n);
                y = step(step(y, c, n), c, n);
                d = gcd(Long.compareUnsigned(x, y) > 0 ? x - y : y - x, n);
            }
            if (d != n) {
                return d;
            }
        }
    }

    /** x² + c mod n; the addition wraps at 2^64 as the Go peer's does. */
    private static long step(long x, long c, long n) {
        return Long.remainderUnsigned(mulmod(x, x, n) + c, n);
    }

    private static long gcd(long a, long b) {
        while (b != 0) {
            long t = Long.remainderUnsigned(a, b);
            a = b;
            b = t;
        }
        return a;
    }

    private static long powmod(long a, long e, long m) {
        long r = 1;
        a = Long.remainderUnsigned(a, m);
        for (; e != 0; e >>>= 1) {
            if ((e & 1) == 1) {
                r = mulmod(r, a, m);
            }
            a = mulmod(a, a, m);
        }
        return r;
    }

    /** a·b mod m for unsigned a, b, m; exact (the product needs up to 128 bits). */
    static long mulmod(long a, long b, long m) {
        if (Long.compareUnsigned(a, TWO_TO_32) < 0 && Long.compareUnsigned(b, TWO_TO_32) < 0) {
            return Long.remainderUnsigned(a * b, m); // the product fits in 64 bits
        }
        return unsigned(a).multiply(unsigned(b)).mod(unsigned(m)).longValue();
    }

    private static BigInteger unsigned(long v) {
        BigInteger value = BigInteger.valueOf(v);
        return v >= 0 ? value : value.add(BigInteger.ONE.shiftLeft(64));
    }
}
