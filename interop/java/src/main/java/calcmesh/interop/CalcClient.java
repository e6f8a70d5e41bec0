package calcmesh.interop;

import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * CalcClient runs interop/scenario.json (every calculator.Calculator RPC with its expected result
 * or status) with grpc-java against a calculator server over plaintext, as the Go, Python and
 * Node clients do. Prints `ok NAME` or `FAIL NAME: why` per case and ends with
 * `N passed, M failed`; exits 1 if any case failed, 2 on a usage or scenario-file error.
 *
 * <pre>
 *   interop/java/setup.sh   # builds target/interop/java/calc-java.jar
 *   java -cp target/interop/java/calc-java.jar calcmesh.interop.CalcClient \
 *       [--target 127.0.0.1:50051] [--scenario interop/scenario.json] [--compression gzip] [--timeout 10]
 * </pre>
 * --timeout is the deadline of each call, in seconds.
 */
public final class CalcClient {
    private static final String USAGE = "usage: CalcClient [--target HOST:PORT] [--scenario FILE]"
            + " [--compression gzip] [--timeout SECONDS]";

    private CalcClient() {
    }

    public static void main(String[] args) throws InterruptedException {
        Flags flags;
        long timeoutMillis;
        List<Scenario.Case> cases;
        try {
            flags = Flags.parse(args, Map.of(
                    "target", "127.0.0.1:50051",
                    "scenario", "interop/scenario.json",
                    "compression", "",
                    "timeout", "10"));
            timeoutMillis = timeoutMillis(flags);
            checkCompression(flags.get("compression"));
            cases = Scenario.load(Path.of(flags.get("scenario")));
        } catch (Flags.HelpRequested e) {
            System.out.println(USAGE);
            return;
        } catch (Flags.UsageException e) {
            System.err.println("error: " + e.getMessage());
            System.err.println(USAGE);
            System.exit(2);
            return;
        } catch (IOException e) {
            System.err.println("error: " + e.getMessage());
            System.exit(2);
            return;
        }
        System.exit(runAll(flags.get("target"), flags.get("compression"), timeoutMillis, cases));
    }

    private static long timeoutMillis(Flags flags) throws Flags.UsageException {
        double seconds = flags.doubleValue("timeout");
        if (!(seconds > 0) || Double.isInfinite(seconds)) {
            throw new Flags.UsageException("--timeout wants a positive number of seconds");
        }
        return Math.max(1, Math.round(seconds * 1000));
    }

    private static void checkCompression(String compression) throws Flags.UsageException {
        if (!compression.isEmpty() && !compression.equals("gzip")) {
            throw new Flags.UsageException("--compression: only gzip is supported, got " + compression);
        }
    }

    /** Runs every case, prints a line for each and the tally; returns the exit status. */
    private static int runAll(String target, String compression, long timeoutMillis, List<Scenario.Case> cases)
            throws InterruptedException {
        ManagedChannel channel = Grpc.newChannelBuilder(target, InsecureChannelCredentials.create()).build();
        try {
            CaseRunner runner = new CaseRunner(channel, compression.isEmpty() ? null : compression, timeoutMillis);
            int failed = 0;
            for (Scenario.Case spec : cases) {
                String problem = Verdict.problem(runner.run(spec), spec.expect());
                if (problem != null) {
                    failed++;
                    System.out.println("FAIL " + spec.name() + ": " + problem);
                } else {
                    System.out.println("ok " + spec.name());
                }
            }
            System.out.println((cases.size() - failed) + " passed, " + failed + " failed");
            return failed > 0 ? 1 : 0;
        } finally {
            channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
    }
}
