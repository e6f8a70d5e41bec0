package calcmesh.interop;

import calculator.CalculatorGrpc;
import calculator.CalculatorOuterClass;
import calculator.CalculatorOuterClass.Factor;
import calculator.CalculatorOuterClass.FactorizeRequest;
import calculator.CalculatorOuterClass.Request;
import calculator.CalculatorOuterClass.Response;
import calculator.CalculatorOuterClass.Summary;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import io.grpc.Channel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Performs one scenario case's call against the server and records what came back. */
final class CaseRunner {
    /** Extra wait past the call's deadline before giving up on a stream that never ends. */
    private static final long SLACK_MILLIS = 5_000;

    private final CalculatorGrpc.CalculatorStub async;
    private final CalculatorGrpc.CalculatorBlockingStub blocking;
    private final long timeoutMillis;

    /** compression: "gzip" to compress requests, or null. */
    CaseRunner(Channel channel, String compression, long timeoutMillis) {
        CalculatorGrpc.CalculatorStub async = CalculatorGrpc.newStub(channel);
        CalculatorGrpc.CalculatorBlockingStub blocking = CalculatorGrpc.newBlockingStub(channel);
        if (compression != null) {
            async = async.withCompression(compression);
            blocking = blocking.withCompression(compression);
        }
        this.async = async;
        this.blocking = blocking;
        this.timeoutMillis = timeoutMillis;
    }

    Outcome run(Scenario.Case spec) throws InterruptedException {
        Outcome got = new Outcome();
        try {
            switch (spec.rpc()) {
                case "Calculate" -> calculate(spec.spec(), got);
                case "CalculateStream" -> calculateStream(spec.spec(), got);
                case "Summarize" -> summarize(spec.spec(), got);
                case "Factorize" -> factorize(spec.spec(), got);
                case "RunningSummary" -> runningSummary(spec.spec(), got);
                default -> got.problem = "unknown rpc " + spec.rpc();
            }
        } catch (StatusRuntimeException e) {
            got.code = StatusNames.of(e.getStatus());
        } catch (RuntimeException e) { // a malformed case: a missing field, a bad number
            got.problem = "scenario: " + e;
        }
        return got;
    }

    private CalculatorGrpc.CalculatorStub async() {
        return async.withDeadlineAfter(timeoutMillis, TimeUnit.MILLISECONDS);
    }

    private CalculatorGrpc.CalculatorBlockingStub blocking() {
        return blocking.withDeadlineAfter(timeoutMillis, TimeUnit.MILLISECONDS);
    }

    private void calculate(JsonObject spec, Outcome got) {
        got.result = blocking().calculate(request(spec.getAsJsonObject("request"))).getResult();
    }

    /** Sends every request, then reads the answers, in order. */
    private void calculateStream(JsonObject spec, Outcome got) throws InterruptedException {
        Collector<Response> answers = new Collector<>();
        StreamObserver<Request> requests = async().calculateStream(answers);
        for (JsonElement r : spec.getAsJsonArray("requests")) {
            requests.onNext(request(r.getAsJsonObject()));
        }
        requests.onCompleted();
        Status status = answers.await(timeoutMillis + SLACK_MILLIS);
        got.responses = new ArrayList<>();
        answers.items().forEach(response -> got.responses.add(Outcome.Item.of(response)));
        record(status, got);
    }

    private void summarize(JsonObject spec, Outcome got) throws InterruptedException {
        Collector<Summary> answer = new Collector<>();
        send(Scenario.numbers(spec.getAsJsonArray("numbers")), async().summarize(answer), answer);
        Status status = answer.await(timeoutMillis + SLACK_MILLIS);
        if (status.isOk() && !answer.items().isEmpty()) {
            got.summary = Outcome.fields(answer.items().get(0));
        }
        record(status, got);
    }

    private void runningSummary(JsonObject spec, Outcome got) throws InterruptedException {
        Collector<Summary> summaries = new Collector<>();
        send(Scenario.numbers(spec.getAsJsonArray("numbers")), async().runningSummary(summaries), summaries);
        Status status = summaries.await(timeoutMillis + SLACK_MILLIS);
        got.summaries = Outcome.fields(summaries.items());
        record(status, got);
    }

    private void factorize(JsonObject spec, Outcome got) {
        long n = Long.parseUnsignedLong(spec.get("number").getAsString());
        Iterator<Factor> factors = blocking().factorize(FactorizeRequest.newBuilder().setNumber(n).build());
        got.factors = new ArrayList<>();
        while (factors.hasNext()) {
            got.factors.add(Long.toUnsignedString(factors.next().getPrime()));
        }
    }

    /**
     * Streams the numbers, then half-closes. Stops sending once the server has ended the call
     * (it answered early, e.g. with INVALID_ARGUMENT): the collector then holds its status.
     */
    private static void send(List<Double> numbers, StreamObserver<CalculatorOuterClass.Number> out, Collector<?> in) {
        for (double value : numbers) {
            if (in.isDone()) {
                break;
            }
            try {
                out.onNext(CalculatorOuterClass.Number.newBuilder().setValue(value).build());
            } catch (RuntimeException e) {
                break; // the call is over; its status says how
            }
        }
        out.onCompleted();
    }

    private static void record(Status status, Outcome got) {
        if (!status.isOk()) {
            got.code = StatusNames.of(status);
        }
    }

    private static Request request(JsonObject r) {
        return Request.newBuilder()
                .setNum1(Scenario.number(r.get("num1")))
                .setNum2(Scenario.number(r.get("num2")))
                .setOperator(r.get("operator").getAsString())
                .build();
    }
}
