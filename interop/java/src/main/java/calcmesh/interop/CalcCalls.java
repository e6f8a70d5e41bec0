package calcmesh.interop;

import calculator.CalculatorGrpc;
import calculator.CalculatorOuterClass.Request;
import com.google.gson.Gson;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

/**
 * CalcCalls makes N Calculate calls (10 * 5), one after another, with grpc-java and a gRPC
 * service config, and prints one JSON line: how many calls ended with each status, and how long
 * they took — what interop/go/calculator/calls does with grpc-go. calcmesh's tests give the same
 * config to grpc-java and to calcmesh's client against the same faulty server and compare, for
 * what grpc-go lacks: hedging.
 *
 * <pre>
 *   java -cp target/interop/java/calc-java.jar calcmesh.interop.CalcCalls \
 *       --target 127.0.0.1:50051 --service-config '{"methodConfig": [...]}' -n 10 [--timeout 3]
 * </pre>
 */
public final class CalcCalls {
    private static final String USAGE = "usage: CalcCalls [--target HOST:PORT] [--service-config JSON|FILE]"
            + " [--n CALLS] [--timeout SECONDS]";

    private CalcCalls() {
    }

    public static void main(String[] args) throws InterruptedException {
        Flags flags;
        Map<String, ?> config;
        int calls;
        try {
            flags = Flags.parse(args, Map.of("target", "127.0.0.1:50051", "service-config", "{}",
                    "n", "10", "timeout", "10"));
            config = serviceConfig(flags.get("service-config"));
            calls = flags.intValue("n");
        } catch (Flags.HelpRequested e) {
            System.out.println(USAGE);
            return;
        } catch (Flags.UsageException | IOException e) {
            System.err.println("error: " + e.getMessage());
            System.exit(2);
            return;
        }
        long timeoutMillis = Math.round(Double.parseDouble(flags.get("timeout")) * 1000);
        ManagedChannel channel = Grpc.newChannelBuilder(flags.get("target"), InsecureChannelCredentials.create())
                .defaultServiceConfig(config)
                .enableRetry()
                .build();
        try {
            System.out.println(run(channel, calls, timeoutMillis));
        } finally {
            channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
    }

    /** The flag's JSON, or the file it names, as grpc-java takes a service config: a map. */
    @SuppressWarnings("unchecked")
    private static Map<String, ?> serviceConfig(String value) throws IOException {
        String json = value.trim().startsWith("{") ? value : Files.readString(Path.of(value));
        return new Gson().fromJson(json, Map.class);
    }

    private static String run(ManagedChannel channel, int calls, long timeoutMillis) {
        Map<String, Integer> counts = new TreeMap<>();
        Request request = Request.newBuilder().setNum1(10).setOperator("*").setNum2(5).build();
        long start = System.nanoTime();
        for (int i = 0; i < calls; i++) {
            String code = "OK";
            try {
                CalculatorGrpc.newBlockingStub(channel)
                        .withDeadlineAfter(timeoutMillis, TimeUnit.MILLISECONDS)
                        .calculate(request);
            } catch (StatusRuntimeException e) {
                code = StatusNames.of(e.getStatus());
            }
            counts.merge(code, 1, Integer::sum);
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        return new Gson().toJson(Map.of("status", counts, "seconds", seconds));
    }
}
