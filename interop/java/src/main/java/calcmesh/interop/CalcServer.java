package calcmesh.interop;

import io.grpc.InsecureServerCredentials;
import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import java.io.IOException;
import java.net.Inet6Address;
import java.net.InetSocketAddress;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * CalcServer serves calculator.Calculator (proto/calculator.proto) with grpc-java over Netty,
 * plaintext, with the same results and status codes as calcmesh and the grpc-go peer
 * (interop/go/calculator/server). Prints `listening on HOST:PORT` once bound (port 0 picks a free
 * one); SIGINT/SIGTERM stop it gracefully (calls in flight may finish; the JVM then exits 130/143).
 *
 * <pre>
 *   interop/java/setup.sh   # builds target/interop/java/calc-java.jar
 *   java -cp target/interop/java/calc-java.jar calcmesh.interop.CalcServer [--host 127.0.0.1] [--port 50051]
 * </pre>
 */
public final class CalcServer {
    private static final String USAGE = "usage: CalcServer [--host 127.0.0.1] [--port 50051 (0 picks a free one)]";
    private static final long GRACE_SECONDS = 30;

    private CalcServer() {
    }

    public static void main(String[] args) throws InterruptedException {
        Flags flags;
        int port;
        try {
            flags = Flags.parse(args, Map.of("host", "127.0.0.1", "port", "50051"));
            port = flags.intValue("port");
        } catch (Flags.HelpRequested e) {
            System.out.println(USAGE);
            return;
        } catch (Flags.UsageException e) {
            System.err.println("error: " + e.getMessage());
            System.err.println(USAGE);
            System.exit(2);
            return;
        }
        Server server;
        try {
            server = start(flags.get("host"), port);
        } catch (IOException | IllegalArgumentException e) {
            System.err.println("listen: " + e.getMessage());
            System.exit(1);
            return;
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() -> stopGracefully(server), "calc-server-shutdown"));
        System.out.println("listening on " + hostPort((InetSocketAddress) server.getListenSockets().get(0)));
        System.out.flush();
        server.awaitTermination();
    }

    private static Server start(String host, int port) throws IOException {
        InetSocketAddress address = new InetSocketAddress(host, port);
        if (address.isUnresolved()) {
            throw new IOException("no such host: " + host);
        }
        return NettyServerBuilder.forAddress(address, InsecureServerCredentials.create())
                .addService(new CalculatorService())
                .build()
                .start();
    }

    /** Lets the calls in flight finish (for a while), refusing new ones. */
    private static void stopGracefully(Server server) {
        server.shutdown();
        try {
            if (!server.awaitTermination(GRACE_SECONDS, TimeUnit.SECONDS)) {
                server.shutdownNow();
            }
        } catch (InterruptedException e) {
            server.shutdownNow();
            Thread.currentThread().interrupt();
        }
    }

    private static String hostPort(InetSocketAddress address) {
        String host = address.getAddress().getHostAddress();
        if (address.getAddress() instanceof Inet6Address) {
            host = "[" + host.replaceFirst("%.*$", "") + "]";
        }
        return host + ":" + address.getPort();
    }
}
