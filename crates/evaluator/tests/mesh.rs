//! The evaluator in a real mesh: three calculators and an evaluator, each a server on
//! 127.0.0.1:0, talking gRPC over loopback.

use std::collections::BTreeSet;
use std::time::Duration;

use calcmesh_calculator::CalculatorService;
use calcmesh_evaluator::{EvaluatorConfig, EvaluatorService};
use calcmesh_proto::evaluator::evaluator_client::EvaluatorClient;
use calcmesh_proto::evaluator::{EvaluateRequest, Evaluation};
use calcmesh_runtime::{ClientConfig, MeshChannel, Server, ServerConfig, Target};
use calcmesh_testkit::Running;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tonic::Code;

struct Mesh {
    calculators: Vec<(Running, CalculatorService)>,
    evaluator: Running,
}

impl Mesh {
    fn start(n: usize, evaluator: EvaluatorConfig) -> Self {
        let config = ServerConfig::default();
        let calculators: Vec<_> = (0..n)
            .map(|_| {
                let service = CalculatorService::new();
                let server = calcmesh_calculator::mesh_server(&config, service.clone());
                (Running::start(server), service)
            })
            .collect();
        let target = Target::Static(calculators.iter().map(|(r, _)| r.addr).collect());
        let channel = calcmesh_runtime::connect(&target, &ClientConfig::default()).unwrap();
        let server = Server::new(config.clone()).add_service(calcmesh_evaluator::server(
            EvaluatorService::new(channel, evaluator),
            config.max_message_size,
        ));
        Self {
            calculators,
            evaluator: Running::start(server),
        }
    }

    fn client(&self) -> EvaluatorClient<MeshChannel> {
        EvaluatorClient::new(self.evaluator.channel())
    }

    fn addrs(&self) -> BTreeSet<String> {
        self.calculators
            .iter()
            .map(|(r, _)| r.addr.to_string())
            .collect()
    }

    fn calculations(&self) -> u64 {
        self.calculators.iter().map(|(_, s)| s.calculations()).sum()
    }

    async fn stop(self) {
        self.evaluator.stop().await;
        for (running, _) in self.calculators {
            running.stop().await;
        }
    }
}

fn expr(text: &str) -> EvaluateRequest {
    EvaluateRequest {
        expression: text.into(),
    }
}

#[tokio::test]
async fn values_and_steps() {
    let mesh = Mesh::start(3, EvaluatorConfig::default());
    let mut client = mesh.client();
    let e = client
        .evaluate(expr("(2 + 3) * (7 - 1) ^ 2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.value, 180.0);
    let steps: Vec<_> = e
        .steps
        .iter()
        .map(|s| (s.left, s.operator.as_str(), s.right, s.result))
        .collect();
    assert_eq!(
        steps,
        [
            (2.0, "+", 3.0, 5.0),
            (7.0, "-", 1.0, 6.0),
            (6.0, "^", 2.0, 36.0),
            (5.0, "*", 36.0, 180.0)
        ]
    );
    for step in &e.steps {
        assert!(
            mesh.addrs().contains(&step.endpoint),
            "{} is one of the calculators",
            step.endpoint
        );
    }
    let e = client
        .evaluate(expr("-2 ^ 2 + 2 ^ 3 ^ 2 - 7 % 4 / 2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.value, -4.0 + 512.0 - 1.5);
    let e = client.evaluate(expr("42")).await.unwrap().into_inner();
    assert_eq!((e.value, e.steps.len()), (42.0, 0));
    mesh.stop().await;
}

#[tokio::test]
async fn calls_spread_over_every_calculator() {
    let mesh = Mesh::start(3, EvaluatorConfig::default());
    let text = (1..=60)
        .map(|i| format!("({i} * 2)"))
        .collect::<Vec<_>>()
        .join(" + ");
    let e = mesh
        .client()
        .evaluate(expr(&text))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.value, (1..=60).map(|i| f64::from(i) * 2.0).sum::<f64>());
    let used: BTreeSet<String> = e.steps.iter().map(|s| s.endpoint.clone()).collect();
    assert_eq!(
        used,
        mesh.addrs(),
        "119 operations reach all three calculators"
    );
    for (_, service) in &mesh.calculators {
        assert!(service.calculations() > 0);
    }
    mesh.stop().await;
}

#[tokio::test]
async fn one_connection_per_calculator_under_100_concurrent_evaluations() {
    let mesh = Mesh::start(3, EvaluatorConfig::default());
    let client = mesh.client();
    let mut evaluations = tokio::task::JoinSet::new();
    for i in 0..100 {
        let mut client = client.clone();
        evaluations.spawn(async move {
            let text = format!("({i} + 1) * (2 + 3) - (8 / 4) ^ 2");
            (i, client.evaluate(expr(&text)).await)
        });
    }
    while let Some(joined) = evaluations.join_next().await {
        let (i, result) = joined.unwrap();
        assert_eq!(
            result.unwrap().into_inner().value,
            f64::from(i + 1) * 5.0 - 4.0
        );
    }
    for (running, service) in &mesh.calculators {
        assert!(service.calculations() > 0);
        assert_eq!(
            running.stats.connections_accepted(),
            1,
            "{}: one multiplexed connection",
            running.addr
        );
    }
    assert_eq!(mesh.evaluator.stats.connections_accepted(), 1);
    mesh.stop().await;
}

#[tokio::test]
async fn a_short_deadline_stops_the_calls_downstream() {
    let mesh = Mesh::start(3, EvaluatorConfig::default());
    let mut client = mesh.client();
    // 5 000 additions in a chain: each needs the previous result, so this takes thousands of
    // round trips — far more than 1 ms.
    let chain = format!("0{}", " + 1".repeat(5_000));
    let mut request = tonic::Request::new(expr(&chain));
    request.set_timeout(Duration::from_millis(1));
    let started = std::time::Instant::now();
    let status = client.evaluate(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered quickly: {:?}",
        started.elapsed()
    );

    // The evaluation was abandoned: its downstream calls stop. What happens during a quiet
    // window is the thing under test, so this waits on time itself, not on a signal: first
    // 100 ms for calls already on the wire (the evaluator's own copy of the deadline fires a
    // little after the client's), then 300 ms in which nothing may arrive.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = mesh.calculations();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        mesh.calculations(),
        after,
        "no calculator call after the deadline"
    );
    assert!(after < 5_000, "the chain was cut short ({after} steps ran)");

    // A deadline long enough is passed on and met.
    let mut request = tonic::Request::new(expr("(1 + 2) * 3"));
    request.set_timeout(Duration::from_secs(5));
    assert_eq!(
        client.evaluate(request).await.unwrap().into_inner().value,
        9.0
    );
    mesh.stop().await;
}

#[tokio::test]
async fn errors_name_the_step_or_the_position() {
    let mesh = Mesh::start(3, EvaluatorConfig::default());
    let mut client = mesh.client();
    let cases: &[(&str, Code, &str)] = &[
        (
            "1 + 4 / (2 - 2)",
            Code::InvalidArgument,
            "step 2 (4 / 0) failed: division by zero in /",
        ),
        (
            "1e308 * 10",
            Code::OutOfRange,
            "step 1 (1e308 * 10) failed: result of 1e308 * 10 overflows",
        ),
        ("(-8) ^ 0.5", Code::InvalidArgument, "no real result"),
        (
            "2 * (3 + )",
            Code::InvalidArgument,
            "expected a number, '(' or '-' at character 10, found ')'",
        ),
        ("2 $ 3", Code::InvalidArgument, "at character 3, found '$'"),
        ("", Code::InvalidArgument, "expression is empty"),
    ];
    for &(text, code, needle) in cases {
        let status = client.evaluate(expr(text)).await.unwrap_err();
        assert_eq!(status.code(), code, "{text}: {status:?}");
        assert!(
            status.message().contains(needle),
            "{text}: {}",
            status.message()
        );
    }
    mesh.stop().await;
}

#[tokio::test]
async fn oversized_expressions_are_refused_in_bounded_time() {
    let mesh = Mesh::start(1, EvaluatorConfig::default());
    let mut client = mesh.client();
    let started = std::time::Instant::now();
    let cases = [
        ("1".repeat(100_000), "bytes long; the limit is 65536"),
        (
            format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
            "the limit is 65536",
        ),
        (
            format!("{}1{}", "(".repeat(300), ")".repeat(300)),
            "parentheses nest deeper than 256",
        ),
        (
            format!("0{}", "+1".repeat(12_000)),
            "more than 10000 operations",
        ),
        ("9".repeat(10 << 20), "larger than max"),
    ];
    for (text, needle) in cases {
        let status = client.evaluate(expr(&text)).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains(needle), "{}", status.message());
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(mesh.calculations(), 0, "nothing reached a calculator");
    // And the evaluator still answers.
    assert_eq!(
        client
            .evaluate(expr("1 + 1"))
            .await
            .unwrap()
            .into_inner()
            .value,
        2.0
    );
    mesh.stop().await;
}

#[tokio::test]
async fn evaluate_stream_answers_in_order_with_per_item_errors() {
    let mesh = Mesh::start(3, EvaluatorConfig::default());
    let items: Vec<_> = (0..50)
        .map(|i| {
            if i % 10 == 7 {
                expr(&format!("{i} / 0"))
            } else {
                expr(&format!("{i} * (1 + 1)"))
            }
        })
        .collect();
    let mut answers = mesh
        .client()
        .evaluate_stream(tokio_stream::iter(items))
        .await
        .unwrap()
        .into_inner();
    let mut i = 0;
    while let Some(Evaluation { value, error, .. }) = answers.message().await.unwrap() {
        if i % 10 == 7 {
            let error = error.expect("division by zero is an item error");
            assert_eq!(error.code, Code::InvalidArgument as i32);
            assert!(error.message.contains("division by zero"));
        } else {
            assert_eq!((value, error), (f64::from(i) * 2.0, None), "item {i}");
        }
        i += 1;
    }
    assert_eq!(i, 50);
    mesh.stop().await;
}

#[tokio::test]
async fn no_calculator_is_unavailable() {
    // Bind a port and close it again: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let channel =
        calcmesh_runtime::connect(&Target::Static(vec![addr]), &ClientConfig::default()).unwrap();
    let config = ServerConfig::default();
    let server = Server::new(config.clone()).add_service(calcmesh_evaluator::server(
        EvaluatorService::new(channel, EvaluatorConfig::default()),
        config.max_message_size,
    ));
    let evaluator = Running::start(server);
    let mut request = tonic::Request::new(expr("1 + 1"));
    request.set_timeout(Duration::from_secs(3));
    let status = EvaluatorClient::new(evaluator.channel())
        .evaluate(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().starts_with("step 1 (1 + 1) failed: "),
        "{}",
        status.message()
    );
    evaluator.stop().await;
}

/// A random expression, fully parenthesised where it nests, with unary minus and every operator.
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (0u8..20).prop_map(|n| n.to_string()),
        (0u16..1000).prop_map(|n| format!("{}.{:02}", n / 100, n % 100)),
    ];
    leaf.prop_recursive(6, 48, 2, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(vec!["+", "-", "*", "/", "%", "^"]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.prop_map(|a| format!("-{a}")),
        ]
    })
}

#[test]
fn evaluating_through_the_mesh_equals_evaluating_locally() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _context = runtime.enter();
    let mesh = Mesh::start(3, EvaluatorConfig::default());
    let client = mesh.client();
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    runner
        .run(&expression(), |text| {
            let local = calcmesh_expr::parse(&text, &Default::default())
                .unwrap()
                .evaluate_local();
            let remote = runtime.block_on(client.clone().evaluate(expr(&text)));
            match (local, remote) {
                (Ok(want), Ok(got)) => {
                    // IEEE equality, not bits: prost does not encode a double field equal to
                    // 0.0, and -0.0 == 0.0, so a -0 result arrives as 0.
                    let got = got.get_ref().value;
                    prop_assert!(got == want, "{} = {}, the mesh says {}", text, want, got);
                }
                (Err(want), Err(status)) => {
                    // With several failing steps the mesh reports whichever failed first in
                    // time; the code must agree when it names the same step.
                    if status
                        .message()
                        .starts_with(&format!("step {} ", want.step))
                    {
                        let code = if matches!(
                            want.error,
                            calcmesh_calc::arith::ArithError::Overflow { .. }
                        ) {
                            Code::OutOfRange
                        } else {
                            Code::InvalidArgument
                        };
                        prop_assert_eq!(status.code(), code, "{}: {}", text, status.message());
                    }
                }
                (local, remote) => {
                    prop_assert!(false, "{}: local {:?}, mesh {:?}", text, local, remote)
                }
            }
            Ok(())
        })
        .unwrap();
    runtime.block_on(mesh.stop());
}
