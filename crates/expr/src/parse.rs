//! The parser: shunting-yard over a character scanner, so nesting costs heap, not stack.

use calcmesh_calc::arith::Op;

/// Bounds on what an expression may cost to parse and evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest expression, in bytes. Default 64 KiB.
    pub max_length: usize,
    /// Deepest parenthesis nesting. Default 256.
    pub max_depth: usize,
    /// Most binary operations. Default 10 000.
    pub max_operations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_length: 64 * 1024,
            max_depth: 256,
            max_operations: 10_000,
        }
    }
}

/// One node of a parsed expression. Children always come before their parent in
/// [`Program::nodes`], so evaluating in order never meets an unknown operand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Node {
    /// A literal.
    Number(f64),
    /// Unary minus of the node at that index.
    Neg(usize),
    /// A binary operation on the nodes at `lhs` and `rhs`.
    Binary {
        /// The operator.
        op: Op,
        /// Index of the left operand.
        lhs: usize,
        /// Index of the right operand.
        rhs: usize,
    },
}

/// A parsed expression: a tree stored as a list, children before parents, the root last.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub(crate) nodes: Vec<Node>,
}

impl Program {
    /// The nodes, children before parents; the last is the root.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// How many binary operations evaluating this takes.
    pub fn operations(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n, Node::Binary { .. }))
            .count()
    }
}

/// Why an expression was refused. Positions are 1-based character columns.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// Longer than [`Limits::max_length`].
    #[error("expression is {length} bytes long; the limit is {max}")]
    TooLong {
        /// Its length in bytes.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// Parentheses nested deeper than [`Limits::max_depth`].
    #[error("parentheses nest deeper than {max} at character {at}")]
    TooDeep {
        /// Where the limit was crossed.
        at: usize,
        /// The limit.
        max: usize,
    },
    /// More than [`Limits::max_operations`] binary operations.
    #[error("expression has more than {max} operations (at character {at})")]
    TooManyOperations {
        /// Where the limit was crossed.
        at: usize,
        /// The limit.
        max: usize,
    },
    /// Nothing but white space.
    #[error("expression is empty: expected a number, '(' or '-'")]
    Empty,
    /// A number, `(` or unary minus was expected.
    #[error("expected a number, '(' or '-' at character {at}, found {found}")]
    ExpectedOperand {
        /// Where.
        at: usize,
        /// What was there instead.
        found: String,
    },
    /// A binary operator or `)` was expected.
    #[error("expected an operator (+ - * / % ^) or ')' at character {at}, found {found}")]
    ExpectedOperator {
        /// Where.
        at: usize,
        /// What was there instead.
        found: String,
    },
    /// A `)` with no `(` before it.
    #[error("unmatched ')' at character {at}")]
    UnmatchedClose {
        /// Where.
        at: usize,
    },
    /// A `(` never closed.
    #[error("'(' at character {at} is never closed")]
    Unclosed {
        /// Where the `(` is.
        at: usize,
    },
    /// Digits that do not make a finite number (e.g. `1e999`).
    #[error("{text:?} at character {at} is not a finite number")]
    BadNumber {
        /// The text.
        text: String,
        /// Where it starts.
        at: usize,
    },
}

impl ParseError {
    /// Whether the error is a limit (the expression is too big) rather than a mistake in it.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            ParseError::TooLong { .. }
                | ParseError::TooDeep { .. }
                | ParseError::TooManyOperations { .. }
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    Open { at: usize },
    Neg,
    Binary(Op),
}

fn precedence(p: Pending) -> u8 {
    match p {
        Pending::Open { .. } => 0,
        Pending::Binary(Op::Add | Op::Sub) => 1,
        Pending::Binary(Op::Mul | Op::Div | Op::Rem) => 2,
        Pending::Neg => 3,
        Pending::Binary(Op::Pow) => 4,
    }
}

fn describe(c: Option<char>) -> String {
    c.map_or_else(|| "the end".to_owned(), |c| format!("{c:?}"))
}

struct Builder {
    nodes: Vec<Node>,
    operands: Vec<usize>,
}

impl Builder {
    fn push(&mut self, node: Node) {
        self.operands.push(self.nodes.len());
        self.nodes.push(node);
    }

    /// Applies a pending operator to the operands on the stack. The parser only pushes an
    /// operator after its left operand and only applies it after its right one, so the operands
    /// are always there.
    fn apply(&mut self, p: Pending) {
        match p {
            Pending::Neg => {
                let x = self.operands.pop().expect("unary minus has its operand");
                self.push(Node::Neg(x));
            }
            Pending::Binary(op) => {
                let rhs = self
                    .operands
                    .pop()
                    .expect("binary operator has its right operand");
                let lhs = self
                    .operands
                    .pop()
                    .expect("binary operator has its left operand");
                self.push(Node::Binary { op, lhs, rhs });
            }
            Pending::Open { .. } => unreachable!("'(' is never applied"),
        }
    }
}

/// Parses `text` within `limits`.
///
/// # Errors
/// A [`ParseError`] that says what was expected at which character, or which limit was crossed.
pub fn parse(text: &str, limits: &Limits) -> Result<Program, ParseError> {
    if text.len() > limits.max_length {
        return Err(ParseError::TooLong {
            length: text.len(),
            max: limits.max_length,
        });
    }
    let mut b = Builder {
        nodes: Vec::new(),
        operands: Vec::new(),
    };
    let mut stack: Vec<Pending> = Vec::new();
    let (mut depth, mut operations) = (0usize, 0usize);
    let mut expect_operand = true;
    let mut chars = text.char_indices().peekable();
    let mut column = 0;
    while let Some((start, c)) = chars.next() {
        column += 1;
        let at = column;
        if c.is_whitespace() {
            continue;
        }
        if expect_operand {
            match c {
                '0'..='9' | '.' => {
                    let mut end = start + c.len_utf8();
                    let mut prev = c;
                    while let Some(&(i, d)) = chars.peek() {
                        let exponent_sign = (d == '+' || d == '-') && (prev == 'e' || prev == 'E');
                        if d.is_ascii_digit() || d == '.' || d == 'e' || d == 'E' || exponent_sign {
                            chars.next();
                            column += 1;
                            end = i + d.len_utf8();
                            prev = d;
                        } else {
                            break;
                        }
                    }
                    let word = &text[start..end];
                    let value: f64 = word.parse().map_err(|_| ParseError::BadNumber {
                        text: word.to_owned(),
                        at,
                    })?;
                    if !value.is_finite() {
                        return Err(ParseError::BadNumber {
                            text: word.to_owned(),
                            at,
                        });
                    }
                    b.push(Node::Number(value));
                    expect_operand = false;
                }
                '(' => {
                    depth += 1;
                    if depth > limits.max_depth {
                        return Err(ParseError::TooDeep {
                            at,
                            max: limits.max_depth,
                        });
                    }
                    stack.push(Pending::Open { at });
                }
                '-' => stack.push(Pending::Neg),
                '+' => {} // unary plus changes nothing
                _ => {
                    return Err(ParseError::ExpectedOperand {
                        at,
                        found: describe(Some(c)),
                    });
                }
            }
            continue;
        }
        let op = match c {
            ')' => {
                loop {
                    match stack.pop() {
                        Some(Pending::Open { .. }) => break,
                        Some(p) => b.apply(p),
                        None => return Err(ParseError::UnmatchedClose { at }),
                    }
                }
                depth -= 1;
                continue;
            }
            '+' => Op::Add,
            '-' => Op::Sub,
            '*' => Op::Mul,
            '/' => Op::Div,
            '%' => Op::Rem,
            '^' => Op::Pow,
            _ => {
                return Err(ParseError::ExpectedOperator {
                    at,
                    found: describe(Some(c)),
                });
            }
        };
        operations += 1;
        if operations > limits.max_operations {
            return Err(ParseError::TooManyOperations {
                at,
                max: limits.max_operations,
            });
        }
        let incoming = Pending::Binary(op);
        let right_assoc = op == Op::Pow;
        while let Some(&top) = stack.last() {
            let (pt, pi) = (precedence(top), precedence(incoming));
            if matches!(top, Pending::Open { .. }) || pt < pi || (pt == pi && right_assoc) {
                break;
            }
            stack.pop();
            b.apply(top);
        }
        stack.push(incoming);
        expect_operand = true;
    }
    if expect_operand {
        return Err(if b.nodes.is_empty() && stack.is_empty() {
            ParseError::Empty
        } else {
            ParseError::ExpectedOperand {
                at: column + 1,
                found: describe(None),
            }
        });
    }
    while let Some(p) = stack.pop() {
        if let Pending::Open { at } = p {
            return Err(ParseError::Unclosed { at });
        }
        b.apply(p);
    }
    Ok(Program { nodes: b.nodes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str) -> f64 {
        parse(text, &Limits::default())
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .evaluate_local()
            .unwrap()
    }

    fn err(text: &str) -> String {
        parse(text, &Limits::default()).unwrap_err().to_string()
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(eval("2 + 3 * 4"), 14.0);
        assert_eq!(eval("(2 + 3) * 4"), 20.0);
        assert_eq!(eval("10 - 4 - 3"), 3.0);
        assert_eq!(eval("64 / 4 / 2"), 8.0);
        assert_eq!(eval("2 ^ 3 ^ 2"), 512.0);
        assert_eq!(eval("7 % 4 * 2"), 6.0);
        assert_eq!(eval("1 + 2 ^ 2 * 3"), 13.0);
    }

    #[test]
    fn unary_minus() {
        assert_eq!(eval("-2 ^ 2"), -4.0);
        assert_eq!(eval("(-2) ^ 2"), 4.0);
        assert_eq!(eval("2 ^ -1"), 0.5);
        assert_eq!(eval("-3 * 2"), -6.0);
        assert_eq!(eval("2 * -3"), -6.0);
        assert_eq!(eval("--4"), 4.0);
        assert_eq!(eval("-(1 + 2)"), -3.0);
        assert_eq!(eval("1 - -1"), 2.0);
        assert_eq!(eval("+5"), 5.0);
    }

    #[test]
    fn numbers() {
        assert_eq!(eval("1.5e3 + .5 + 2."), 1502.5);
        assert_eq!(eval("1e-3 * 1E+3"), 1.0);
        assert_eq!(eval("  42  "), 42.0);
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(
            err(""),
            "expression is empty: expected a number, '(' or '-'"
        );
        assert_eq!(
            err("1 +"),
            "expected a number, '(' or '-' at character 4, found the end"
        );
        assert_eq!(
            err("1 + * 2"),
            "expected a number, '(' or '-' at character 5, found '*'"
        );
        assert_eq!(
            err("2 x 3"),
            "expected an operator (+ - * / % ^) or ')' at character 3, found 'x'"
        );
        assert_eq!(err("(1 + 2"), "'(' at character 1 is never closed");
        assert_eq!(err("1 + 2)"), "unmatched ')' at character 6");
        assert_eq!(
            err("1e999"),
            "\"1e999\" at character 1 is not a finite number"
        );
        assert_eq!(
            err("1.2.3"),
            "\"1.2.3\" at character 1 is not a finite number"
        );
        assert_eq!(
            err("()"),
            "expected a number, '(' or '-' at character 2, found ')'"
        );
        assert_eq!(
            err("é + 1"),
            "expected a number, '(' or '-' at character 1, found 'é'"
        );
    }

    #[test]
    fn limits() {
        let small = Limits {
            max_length: 20,
            max_depth: 3,
            max_operations: 2,
        };
        let e = parse(&"1".repeat(21), &small).unwrap_err();
        assert!(e.is_limit() && e.to_string().contains("21 bytes"), "{e}");
        let e = parse("((((1))))", &small).unwrap_err();
        assert_eq!(e, ParseError::TooDeep { at: 4, max: 3 });
        let e = parse("1+1+1+1", &small).unwrap_err();
        assert_eq!(e, ParseError::TooManyOperations { at: 6, max: 2 });
        assert!(!parse("1+", &small).unwrap_err().is_limit());
    }

    #[test]
    fn no_input_overflows_the_stack() {
        let unlimited = Limits {
            max_length: usize::MAX,
            max_depth: usize::MAX,
            max_operations: usize::MAX,
        };
        let deep = format!("{}1{}", "(".repeat(200_000), ")".repeat(200_000));
        assert_eq!(parse(&deep, &unlimited).unwrap().evaluate_local(), Ok(1.0));
        let negs = format!("{}1", "-".repeat(200_001));
        assert_eq!(parse(&negs, &unlimited).unwrap().evaluate_local(), Ok(-1.0));
        let chain = format!("2{}", "^1".repeat(200_000));
        assert_eq!(parse(&chain, &unlimited).unwrap().evaluate_local(), Ok(2.0));
        let sum = format!("0{}", "+1".repeat(200_000));
        let program = parse(&sum, &unlimited).unwrap();
        assert_eq!(program.operations(), 200_000);
        assert_eq!(program.evaluate_local(), Ok(200_000.0));
    }
}
