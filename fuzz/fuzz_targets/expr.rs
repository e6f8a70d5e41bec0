//! The expression parser and local evaluator: any text parses to a program or to an error that
//! names a position inside it, and any program evaluates to a value or an error, without panic.
#![no_main]

use calcmesh_expr::{Limits, ParseError, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Small limits, so deep or long inputs reach the limit checks too.
    let limits = Limits {
        max_length: 4096,
        max_depth: 64,
        max_operations: 256,
    };
    match parse(text, &limits) {
        Ok(program) => {
            assert!(program.operations() <= limits.max_operations);
            let _ = program.evaluate_local();
        }
        Err(err) => {
            // Every position named is inside the text (or just past its end).
            let at = match &err {
                ParseError::TooDeep { at, .. }
                | ParseError::TooManyOperations { at, .. }
                | ParseError::ExpectedOperand { at, .. }
                | ParseError::ExpectedOperator { at, .. }
                | ParseError::UnmatchedClose { at }
                | ParseError::Unclosed { at }
                | ParseError::BadNumber { at, .. } => Some(*at),
                ParseError::TooLong { .. } | ParseError::Empty => None,
            };
            if let Some(at) = at {
                assert!(at <= text.chars().count() + 1, "{err} in {text:?}");
            }
        }
    }
});
