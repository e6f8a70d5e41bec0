package calcmesh.interop;

import calculator.CalculatorGrpc;
// The contract's messages `Number` and `Error` would shadow java.lang's: they are named in full.
import calculator.CalculatorOuterClass;
import calculator.CalculatorOuterClass.Factor;
import calculator.CalculatorOuterClass.FactorizeRequest;
import calculator.CalculatorOuterClass.Request;
import calculator.CalculatorOuterClass.Response;
import calculator.CalculatorOuterClass.Summary;
import io.grpc.Status;
import io.grpc.StatusException;
import io.grpc.stub.StreamObserver;

/** calculator.Calculator: the five RPCs over Arithmetic, Stats and Primes. */
final class CalculatorService extends CalculatorGrpc.CalculatorImplBase {

    @Override
    public void calculate(Request request, StreamObserver<Response> responses) {
        try {
            double result = Arithmetic.calculate(request.getNum1(), request.getOperator(), request.getNum2());
            responses.onNext(Response.newBuilder().setResult(result).build());
            responses.onCompleted();
        } catch (StatusException e) {
            responses.onError(e);
        }
    }

    /** One response per request, in order; a failed item carries Response.error and the stream goes on. */
    @Override
    public StreamObserver<Request> calculateStream(StreamObserver<Response> responses) {
        return new StreamObserver<>() {
            @Override
            public void onNext(Request request) {
                responses.onNext(answer(request));
            }

            @Override
            public void onError(Throwable t) {
                // The client cancelled or the call broke: nothing left to answer.
            }

            @Override
            public void onCompleted() {
                responses.onCompleted();
            }
        };
    }

    private static Response answer(Request request) {
        try {
            return Response.newBuilder()
                    .setResult(Arithmetic.calculate(request.getNum1(), request.getOperator(), request.getNum2()))
                    .build();
        } catch (StatusException e) {
            Status status = e.getStatus();
            CalculatorOuterClass.Error error = CalculatorOuterClass.Error.newBuilder()
                    .setCode(status.getCode().value())
                    .setMessage(status.getDescription() == null ? "" : status.getDescription())
                    .build();
            return Response.newBuilder().setError(error).build();
        }
    }

    /** The summary of the whole stream; the first NaN or infinite value ends the call with INVALID_ARGUMENT. */
    @Override
    public StreamObserver<CalculatorOuterClass.Number> summarize(StreamObserver<Summary> response) {
        return new NumberObserver(response) {
            @Override
            void afterPush(Stats stats) {
            }

            @Override
            void atEnd(Stats stats) {
                response.onNext(stats.summary());
            }
        };
    }

    /** The running summary after each number. */
    @Override
    public StreamObserver<CalculatorOuterClass.Number> runningSummary(StreamObserver<Summary> summaries) {
        return new NumberObserver(summaries) {
            @Override
            void afterPush(Stats stats) {
                summaries.onNext(stats.summary());
            }

            @Override
            void atEnd(Stats stats) {
            }
        };
    }

    /** The prime factors of a u64 of 2 or more, ascending, with multiplicity. */
    @Override
    public void factorize(FactorizeRequest request, StreamObserver<Factor> factors) {
        long n = request.getNumber();
        if (Long.compareUnsigned(n, 2) < 0) {
            factors.onError(Status.INVALID_ARGUMENT
                    .withDescription(Long.toUnsignedString(n) + " has no prime factors: give a number of 2 or more")
                    .asException());
            return;
        }
        for (long p : Primes.factorize(n)) {
            factors.onNext(Factor.newBuilder().setPrime(p).build());
        }
        factors.onCompleted();
    }

    /**
     * Feeds a stream of numbers into Stats; the first refused value ends the call with its status
     * and whatever the client still sends is ignored.
     */
    private abstract static class NumberObserver implements StreamObserver<CalculatorOuterClass.Number> {
        private final StreamObserver<Summary> out;
        private final Stats stats = new Stats();
        private boolean failed;

        NumberObserver(StreamObserver<Summary> out) {
            this.out = out;
        }

        abstract void afterPush(Stats stats);

        abstract void atEnd(Stats stats);

        @Override
        public void onNext(CalculatorOuterClass.Number number) {
            if (failed) {
                return;
            }
            try {
                stats.push(number.getValue());
                afterPush(stats);
            } catch (StatusException e) {
                failed = true;
                out.onError(e);
            }
        }

        @Override
        public void onError(Throwable t) {
            // The client cancelled or the call broke: nothing left to answer.
        }

        @Override
        public void onCompleted() {
            if (!failed) {
                atEnd(stats);
                out.onCompleted();
            }
        }
    }
}
