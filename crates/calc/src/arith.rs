//! Binary arithmetic with errors a person can act on.
//!
//! Operands are `f64`. Rules:
//! - a NaN operand is rejected ([`ArithError::NaNOperand`]);
//! - division or modulo by zero, and `0 ^ negative`, are rejected ([`ArithError::DivisionByZero`]);
//! - finite operands whose result is infinite overflowed ([`ArithError::Overflow`]);
//! - a NaN result (e.g. `(-8) ^ 0.5`, `inf - inf`) is undefined ([`ArithError::Undefined`]).

use std::fmt;
use std::str::FromStr;

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`: the remainder of truncated division; it has the sign of the dividend.
    Rem,
    /// `^`: exponentiation.
    Pow,
}

impl Op {
    /// Every operator, in the order they are documented.
    pub const ALL: [Op; 6] = [Op::Add, Op::Sub, Op::Mul, Op::Div, Op::Rem, Op::Pow];

    /// The operator's symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Rem => "%",
            Op::Pow => "^",
        }
    }

    /// Applies the operator to two operands.
    ///
    /// # Errors
    /// See the module documentation for the rules; every error names the operation.
    pub fn apply(self, a: f64, b: f64) -> Result<f64, ArithError> {
        if a.is_nan() || b.is_nan() {
            return Err(ArithError::NaNOperand);
        }
        let result = match self {
            Op::Add => a + b,
            Op::Sub => a - b,
            Op::Mul => a * b,
            Op::Div | Op::Rem if b == 0.0 => return Err(ArithError::DivisionByZero { op: self }),
            Op::Div => a / b,
            Op::Rem => a % b,
            Op::Pow if a == 0.0 && b < 0.0 => return Err(ArithError::DivisionByZero { op: self }),
            Op::Pow => a.powf(b),
        };
        if result.is_nan() {
            Err(ArithError::Undefined { a, op: self, b })
        } else if result.is_infinite() && a.is_finite() && b.is_finite() {
            Err(ArithError::Overflow { a, op: self, b })
        } else {
            Ok(result)
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

impl FromStr for Op {
    type Err = ArithError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Op::ALL
            .into_iter()
            .find(|op| op.symbol() == s)
            .ok_or_else(|| ArithError::UnknownOperator(s.to_owned()))
    }
}

/// Why an operation has no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArithError {
    /// The operator is not one of `+ - * / % ^`.
    #[error("unknown operator {0:?}: expected one of + - * / % ^")]
    UnknownOperator(String),
    /// An operand is NaN.
    #[error("operands must be numbers, got NaN")]
    NaNOperand,
    /// Division or modulo by zero, or zero raised to a negative power.
    #[error("division by zero in {op}")]
    DivisionByZero {
        /// The operator that divided.
        op: Op,
    },
    /// Finite operands, infinite result.
    #[error("result of {} {op} {} overflows a 64-bit float", format_number(*a), format_number(*b))]
    Overflow {
        /// Left operand.
        a: f64,
        /// Operator.
        op: Op,
        /// Right operand.
        b: f64,
    },
    /// The result is not a number (e.g. a fractional power of a negative number).
    #[error("{} {op} {} has no real result", format_number(*a), format_number(*b))]
    Undefined {
        /// Left operand.
        a: f64,
        /// Operator.
        op: Op,
        /// Right operand.
        b: f64,
    },
}

/// Formats a number for people: plain decimals for ordinary magnitudes, scientific notation
/// (`1e308`, `2.5e-9`) for very large or very small ones. Parsing the text gives the number back.
pub fn format_number(x: f64) -> String {
    let magnitude = x.abs();
    if magnitude != 0.0 && magnitude.is_finite() && !(1e-6..1e16).contains(&magnitude) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

/// Parses the operator and applies it: the `Calculate` RPC without the wire.
///
/// # Errors
/// [`ArithError::UnknownOperator`] for an unknown symbol, otherwise as [`Op::apply`].
pub fn calculate(a: f64, op: &str, b: f64) -> Result<f64, ArithError> {
    op.parse::<Op>()?.apply(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_six_operators() {
        assert_eq!(calculate(10.0, "+", 5.0), Ok(15.0));
        assert_eq!(calculate(10.0, "-", 5.0), Ok(5.0));
        assert_eq!(calculate(10.0, "*", 5.0), Ok(50.0));
        assert_eq!(calculate(10.0, "/", 4.0), Ok(2.5));
        assert_eq!(calculate(-7.0, "%", 3.0), Ok(-1.0));
        assert_eq!(calculate(2.0, "^", 10.0), Ok(1024.0));
        assert_eq!(calculate(2.0, "^", -1.0), Ok(0.5));
    }

    #[test]
    fn unknown_operator_names_the_valid_ones() {
        let err = calculate(1.0, "plus", 2.0).unwrap_err();
        assert_eq!(err, ArithError::UnknownOperator("plus".into()));
        assert!(err.to_string().contains("+ - * / % ^"), "{err}");
        assert!(calculate(1.0, "", 2.0).is_err());
    }

    #[test]
    fn nan_operands_are_rejected() {
        assert_eq!(calculate(f64::NAN, "+", 1.0), Err(ArithError::NaNOperand));
        assert_eq!(calculate(1.0, "*", f64::NAN), Err(ArithError::NaNOperand));
    }

    #[test]
    fn division_and_modulo_by_zero() {
        for (op, b) in [("/", 0.0), ("/", -0.0), ("%", 0.0)] {
            assert!(matches!(
                calculate(1.0, op, b),
                Err(ArithError::DivisionByZero { .. })
            ));
        }
        assert!(matches!(
            calculate(0.0, "^", -2.0),
            Err(ArithError::DivisionByZero { op: Op::Pow })
        ));
    }

    #[test]
    fn overflow_of_finite_operands() {
        assert!(matches!(
            calculate(f64::MAX, "*", 2.0),
            Err(ArithError::Overflow { .. })
        ));
        assert!(matches!(
            calculate(10.0, "^", 400.0),
            Err(ArithError::Overflow { .. })
        ));
        // Infinite operands are allowed where IEEE 754 defines the result.
        assert_eq!(calculate(f64::INFINITY, "+", 1.0), Ok(f64::INFINITY));
    }

    #[test]
    fn numbers_format_readably_and_round_trip() {
        for (x, text) in [
            (15.0, "15"),
            (0.5, "0.5"),
            (1e308, "1e308"),
            (-2.5e-9, "-2.5e-9"),
            (0.0, "0"),
        ] {
            assert_eq!(format_number(x), text);
            assert_eq!(text.parse::<f64>().unwrap(), x);
        }
        assert_eq!(format_number(f64::INFINITY), "inf");
        let err = calculate(1e308, "*", 10.0).unwrap_err().to_string();
        assert_eq!(err, "result of 1e308 * 10 overflows a 64-bit float");
    }

    #[test]
    fn undefined_results() {
        assert!(matches!(
            calculate(-8.0, "^", 0.5),
            Err(ArithError::Undefined { .. })
        ));
        assert!(matches!(
            calculate(f64::INFINITY, "-", f64::INFINITY),
            Err(ArithError::Undefined { .. })
        ));
    }
}
