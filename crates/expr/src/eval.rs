//! Evaluating a [`Program`]: locally, or through an async binary operation with every
//! independent operation in flight at once.

use std::future::Future;

use calcmesh_calc::arith::{ArithError, Op};
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::parse::{Node, Program};

/// One binary operation of an evaluation, and what computed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step<T> {
    /// 1-based number of the step, in evaluation (postfix) order.
    pub number: usize,
    /// Left operand.
    pub lhs: f64,
    /// Operator.
    pub op: Op,
    /// Right operand.
    pub rhs: f64,
    /// Result.
    pub result: f64,
    /// What the operation function reported alongside the result (for calcmesh: the endpoint).
    pub by: T,
}

/// A step of an evaluation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("step {step} ({lhs} {op} {rhs}) failed: {error}")]
pub struct EvalError<E> {
    /// 1-based number of the step that failed.
    pub step: usize,
    /// Its left operand.
    pub lhs: f64,
    /// Its operator.
    pub op: Op,
    /// Its right operand.
    pub rhs: f64,
    /// Why.
    pub error: E,
}

impl Program {
    /// Evaluates every operation here, in order, with [`Op::apply`].
    ///
    /// # Errors
    /// The first operation that fails, with its step number.
    pub fn evaluate_local(&self) -> Result<f64, EvalError<ArithError>> {
        let mut values: Vec<f64> = Vec::with_capacity(self.nodes.len());
        let mut step = 0;
        for node in &self.nodes {
            let value = match *node {
                Node::Number(x) => x,
                Node::Neg(i) => -values[i],
                Node::Binary { op, lhs, rhs } => {
                    step += 1;
                    let (lhs, rhs) = (values[lhs], values[rhs]);
                    op.apply(lhs, rhs).map_err(|error| EvalError {
                        step,
                        lhs,
                        op,
                        rhs,
                        error,
                    })?
                }
            };
            values.push(value);
        }
        Ok(*values
            .last()
            .expect("a parsed program has at least one node"))
    }

    /// Evaluates the program, computing every binary operation with `apply(op, lhs, rhs)`.
    /// An operation starts as soon as both its operands are known, so independent
    /// sub-expressions run concurrently, at most `max_in_flight` at a time (at least 1).
    /// Returns the value and the steps in evaluation (postfix) order.
    ///
    /// Dropping the returned future drops every operation in flight.
    ///
    /// # Errors
    /// The first operation to fail (in completion order), with its step number.
    pub async fn evaluate<F, Fut, T, E>(
        &self,
        mut apply: F,
        max_in_flight: usize,
    ) -> Result<(f64, Vec<Step<T>>), EvalError<E>>
    where
        F: FnMut(Op, f64, f64) -> Fut,
        Fut: Future<Output = Result<(f64, T), E>>,
    {
        let n = self.nodes.len();
        let mut values: Vec<Option<f64>> = vec![None; n];
        let mut waiting = vec![0u8; n];
        let mut parent = vec![usize::MAX; n];
        let mut step_number = vec![0; n];
        let mut steps: Vec<Option<Step<T>>> = Vec::new();
        let mut ready = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            match *node {
                Node::Number(_) => ready.push(i),
                Node::Neg(x) => {
                    parent[x] = i;
                    waiting[i] = 1;
                }
                Node::Binary { lhs, rhs, .. } => {
                    parent[lhs] = i;
                    parent[rhs] = i;
                    waiting[i] = 2;
                    steps.push(None);
                    step_number[i] = steps.len();
                }
            }
        }
        let max_in_flight = max_in_flight.max(1);
        let mut queued = std::collections::VecDeque::new();
        let mut in_flight = FuturesUnordered::new();
        loop {
            // Resolve everything computable without a call; queue the operations now ready.
            while let Some(i) = ready.pop() {
                let value = match self.nodes[i] {
                    Node::Number(x) => x,
                    Node::Neg(x) => -values[x].expect("operand resolved before its parent"),
                    Node::Binary { .. } => {
                        queued.push_back(i);
                        continue;
                    }
                };
                values[i] = Some(value);
                if let Some(p) = parent.get(i).copied().filter(|&p| p != usize::MAX) {
                    waiting[p] -= 1;
                    if waiting[p] == 0 {
                        ready.push(p);
                    }
                }
            }
            while in_flight.len() < max_in_flight
                && let Some(i) = queued.pop_front()
            {
                let Node::Binary { op, lhs, rhs } = self.nodes[i] else {
                    unreachable!("only binary operations are queued")
                };
                let (lhs, rhs) = (
                    values[lhs].expect("left operand resolved"),
                    values[rhs].expect("right operand resolved"),
                );
                let call = apply(op, lhs, rhs);
                in_flight.push(async move { (i, op, lhs, rhs, call.await) });
            }
            let Some((i, op, lhs, rhs, outcome)) = in_flight.next().await else {
                break;
            };
            let step = step_number[i];
            let (result, by) = outcome.map_err(|error| EvalError {
                step,
                lhs,
                op,
                rhs,
                error,
            })?;
            steps[step - 1] = Some(Step {
                number: step,
                lhs,
                op,
                rhs,
                result,
                by,
            });
            values[i] = Some(result);
            if parent[i] != usize::MAX {
                let p = parent[i];
                waiting[p] -= 1;
                if waiting[p] == 0 {
                    ready.push(p);
                }
            }
        }
        let value = values
            .last()
            .copied()
            .flatten()
            .expect("the root is resolved once nothing is in flight");
        Ok((
            value,
            steps
                .into_iter()
                .map(|s| s.expect("every step ran"))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;
    use crate::parse::{Limits, parse};

    fn program(text: &str) -> Program {
        parse(text, &Limits::default()).unwrap()
    }

    #[tokio::test]
    async fn steps_in_postfix_order_with_what_computed_them() {
        let (value, steps) = program("(2 + 3) * (10 - 4)")
            .evaluate(
                |op, a, b| async move { op.apply(a, b).map(|r| (r, "local")) },
                8,
            )
            .await
            .unwrap();
        assert_eq!(value, 30.0);
        let summary: Vec<_> = steps
            .iter()
            .map(|s| (s.number, s.lhs, s.op.symbol(), s.rhs, s.result, s.by))
            .collect();
        assert_eq!(
            summary,
            [
                (1, 2.0, "+", 3.0, 5.0, "local"),
                (2, 10.0, "-", 4.0, 6.0, "local"),
                (3, 5.0, "*", 6.0, 30.0, "local")
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn independent_operations_run_concurrently() {
        // Eight independent additions, each taking 1 s of (paused, virtual) time, then a tree of sums.
        let text = (0..8)
            .map(|i| format!("({i} + 1)"))
            .collect::<Vec<_>>()
            .join(" + ");
        let running = Cell::new(0);
        let peak = Cell::new(0);
        let started = tokio::time::Instant::now();
        let (value, steps) = program(&text)
            .evaluate(
                |op, a, b| {
                    let (running, peak) = (&running, &peak);
                    async move {
                        running.set(running.get() + 1);
                        peak.set(peak.get().max(running.get()));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        running.set(running.get() - 1);
                        op.apply(a, b).map(|r| (r, ()))
                    }
                },
                64,
            )
            .await
            .unwrap();
        assert_eq!(value, 36.0);
        assert_eq!(steps.len(), 15);
        assert_eq!(peak.get(), 8, "all eight leaves in flight at once");
        // The seven sums form a left-leaning chain after the leaves: 1 + 7 rounds.
        assert_eq!(started.elapsed(), Duration::from_secs(8));
    }

    #[tokio::test]
    async fn in_flight_is_bounded() {
        let text = (0..50)
            .map(|i| format!("({i} * 2)"))
            .collect::<Vec<_>>()
            .join(" + ");
        let running = Cell::new(0);
        let peak = Cell::new(0);
        program(&text)
            .evaluate(
                |op, a, b| {
                    let (running, peak) = (&running, &peak);
                    async move {
                        running.set(running.get() + 1);
                        peak.set(peak.get().max(running.get()));
                        tokio::task::yield_now().await;
                        running.set(running.get() - 1);
                        op.apply(a, b).map(|r| (r, ()))
                    }
                },
                4,
            )
            .await
            .unwrap();
        assert_eq!(peak.get(), 4);
    }

    #[tokio::test]
    async fn a_failed_step_is_named() {
        let err = program("1 + (4 / (2 - 2))")
            .evaluate(|op, a, b| async move { op.apply(a, b).map(|r| (r, ())) }, 8)
            .await
            .unwrap_err();
        assert_eq!((err.step, err.lhs, err.op, err.rhs), (2, 4.0, Op::Div, 0.0));
        assert_eq!(
            err.to_string(),
            "step 2 (4 / 0) failed: division by zero in /"
        );
        assert_eq!(
            program("1 + (4 / (2 - 2))")
                .evaluate_local()
                .unwrap_err()
                .step,
            2
        );
    }

    #[tokio::test]
    async fn single_numbers_and_negation_need_no_calls() {
        let (value, steps) = program("-(7)")
            .evaluate(
                |_, _, _| async { Err::<(f64, ()), _>("no call expected") },
                1,
            )
            .await
            .unwrap();
        assert_eq!((value, steps.len()), (-7.0, 0));
    }
}
