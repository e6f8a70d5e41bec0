//! Prime factorization of any `u64`.
//!
//! Small factors come from trial division by every number below [`TRIAL_LIMIT`]; what remains is
//! split with Pollard's rho (Brent's variant, batched gcd) and tested with a deterministic
//! Miller–Rabin. The worst `u64` (a product of two ~32-bit primes) takes well under a millisecond
//! to a few milliseconds.

use std::ops::ControlFlow;

/// Trial division runs over every odd candidate below this bound.
pub const TRIAL_LIMIT: u64 = 1 << 10;

/// Why a number has no prime factorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FactorError {
    /// 0 and 1 have no prime factors.
    #[error("{0} has no prime factorization: give a number >= 2")]
    NoFactorization(u64),
}

/// The prime factors of `n`, ascending, with multiplicity.
///
/// # Errors
/// [`FactorError::NoFactorization`] for 0 and 1.
pub fn factorize(n: u64) -> Result<Vec<u64>, FactorError> {
    let mut factors = Vec::new();
    // The closure never breaks, so the flow is always `Continue`.
    let _: ControlFlow<()> = factorize_with(n, |p| {
        factors.push(p);
        ControlFlow::Continue(())
    })?;
    Ok(factors)
}

/// Emits the prime factors of `n` in ascending order, each as soon as its place in the order is
/// known: small factors while trial division finds them, the large ones once split and sorted.
/// `emit` returning [`ControlFlow::Break`] stops the work (e.g. the caller went away); the result
/// is then `Ok(ControlFlow::Break(()))`.
///
/// # Errors
/// [`FactorError::NoFactorization`] for 0 and 1.
pub fn factorize_with(
    n: u64,
    mut emit: impl FnMut(u64) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, FactorError> {
    if n < 2 {
        return Err(FactorError::NoFactorization(n));
    }
    let mut m = n;
    let mut d = 2;
    while d < TRIAL_LIMIT && d * d <= m {
        while m.is_multiple_of(d) {
            m /= d;
            if emit(d).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        d += if d == 2 { 1 } else { 2 };
    }
    if m == 1 {
        return Ok(ControlFlow::Continue(()));
    }
    let mut large = Vec::new();
    let mut pending = vec![m];
    while let Some(k) = pending.pop() {
        if k < TRIAL_LIMIT * TRIAL_LIMIT || is_prime(k) {
            // Below TRIAL_LIMIT², anything left after trial division is prime.
            large.push(k);
        } else {
            let f = find_divisor(k);
            pending.push(f);
            pending.push(k / f);
        }
    }
    large.sort_unstable();
    for p in large {
        if emit(p).is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(m)) as u64
}

fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut result = 1 % m;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = mul_mod(result, base, m);
        }
        base = mul_mod(base, base, m);
        exp >>= 1;
    }
    result
}

/// Deterministic Miller–Rabin for every `u64`.
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    for p in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    // These seven bases decide primality for every n < 2^64 (Jim Sinclair's set).
    'witness: for a in [2u64, 325, 9375, 28178, 450775, 9780504, 1795265022] {
        let a = a % n;
        if a == 0 {
            continue;
        }
        let mut x = pow_mod(a, d, n);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul_mod(x, x, n);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A non-trivial divisor of an odd composite `n`.
fn find_divisor(n: u64) -> u64 {
    (1..)
        .find_map(|c| brent(n, c))
        .expect("Pollard's rho finds a divisor of a composite for some c")
}

/// Pollard's rho with Brent's cycle detection and batched gcds; `None` when this `c` fails.
fn brent(n: u64, c: u64) -> Option<u64> {
    const BATCH: u64 = 128;
    let f = |x: u64| ((u128::from(x) * u128::from(x) + u128::from(c)) % u128::from(n)) as u64;
    let (mut x, mut y, mut ys) = (2u64, 2u64, 2u64);
    let (mut g, mut q, mut r) = (1u64, 1u64, 1u64);
    while g == 1 {
        x = y;
        for _ in 0..r {
            y = f(y);
        }
        let mut k = 0;
        while k < r && g == 1 {
            ys = y;
            for _ in 0..BATCH.min(r - k) {
                y = f(y);
                q = mul_mod(q, x.abs_diff(y), n);
            }
            g = gcd(q, n);
            k += BATCH;
        }
        r *= 2;
    }
    if g == n {
        // The batch overshot: step one at a time from the last saved point.
        loop {
            ys = f(ys);
            g = gcd(x.abs_diff(ys), n);
            if g > 1 {
                break;
            }
        }
    }
    (g != n).then_some(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial_division(mut n: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut d = 2;
        while d * d <= n {
            while n.is_multiple_of(d) {
                out.push(d);
                n /= d;
            }
            d += 1;
        }
        if n > 1 {
            out.push(n);
        }
        out
    }

    #[test]
    fn matches_trial_division_up_to_100_000() {
        for n in 2..=100_000u64 {
            assert_eq!(factorize(n).unwrap(), trial_division(n), "n = {n}");
        }
    }

    #[test]
    fn zero_and_one_have_no_factorization() {
        assert_eq!(factorize(0), Err(FactorError::NoFactorization(0)));
        assert_eq!(factorize(1), Err(FactorError::NoFactorization(1)));
    }

    #[test]
    fn hard_u64() {
        let p32a = 4_294_967_291u64; // largest prime below 2^32
        let p32b = 4_294_967_279u64;
        let cases: &[(u64, &[u64])] = &[
            (18_446_744_073_709_551_557, &[18_446_744_073_709_551_557]), // largest u64 prime
            (u64::MAX, &[3, 5, 17, 257, 641, 65_537, 6_700_417]),
            (p32a * p32a, &[p32a, p32a]),
            (p32b * p32a, &[p32b, p32a]),
            (1 << 63, &[2; 63]),
            (3_215_031_751, &[151, 751, 28_351]), // strong pseudoprime to bases 2, 3, 5, 7
            (1_000_000_007 * 998_244_353, &[998_244_353, 1_000_000_007]),
            (
                2_147_483_647 * 2_147_483_629,
                &[2_147_483_629, 2_147_483_647],
            ),
        ];
        for &(n, want) in cases {
            let got = factorize(n).unwrap();
            assert_eq!(got, want, "n = {n}");
            assert_eq!(got.iter().product::<u64>(), n);
        }
    }

    #[test]
    fn primality_of_known_numbers() {
        assert!(is_prime(2) && is_prime(3) && is_prime(1_000_000_007));
        assert!(!is_prime(1) && !is_prime(561) && !is_prime(3_215_031_751));
        assert!(is_prime(18_446_744_073_709_551_557));
    }

    #[test]
    fn break_stops_emitting() {
        let mut seen = Vec::new();
        let flow = factorize_with(1 << 20, |p| {
            seen.push(p);
            if seen.len() == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(flow, Ok(ControlFlow::Break(())));
        assert_eq!(seen, [2, 2, 2]);
    }
}
