//! Every request message the services take, decoded from arbitrary bytes and handed to the
//! domain code the services call: decoding fails cleanly or yields a message, and the domain
//! answers it or refuses it, without panic. Factorization is checked against its product.
#![no_main]

use calcmesh_calc::{arith, factor, stats};
use calcmesh_proto::calculator::{FactorizeRequest, Number, Request};
use calcmesh_proto::evaluator::EvaluateRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::decode(data) {
        let _ = arith::calculate(r.num1, &r.operator, r.num2);
    }
    if let Ok(n) = Number::decode(data) {
        let mut running = stats::RunningStats::new();
        if running.push(n.value).is_ok() {
            assert_eq!(running.summary().count, 1);
        }
    }
    if let Ok(f) = FactorizeRequest::decode(data)
        && let Ok(factors) = factor::factorize(f.number)
    {
        assert!(factors.windows(2).all(|w| w[0] <= w[1]), "ascending");
        let product = factors
            .iter()
            .try_fold(1u64, |p, &q| p.checked_mul(q))
            .expect("the product of the factors fits: it is the number");
        assert!(
            product == f.number || f.number < 2,
            "{} -> {factors:?}",
            f.number
        );
    }
    if let Ok(e) = EvaluateRequest::decode(data) {
        let _ = calcmesh_expr::parse(&e.expression, &calcmesh_expr::Limits::default());
    }
});
