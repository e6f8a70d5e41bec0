#!/usr/bin/env python3
"""The side-by-side benchmark: calcmesh's shipped calculator against the peers, on this machine, in
one run: a bare tonic server on both of tokio's runtimes (current-thread, the one calcmesh picks on
one CPU, and multi-thread), the grpc-go (GOMAXPROCS=1) and grpc-java (one CPU, after a 5 s JIT
warm-up) calculator servers from interop/, C++ gRPC (Debian's libgrpc++ 1.51, the callback API;
bench/cpp), and the Python (sync and asyncio) and Node servers. The ratio table names the
fastest peer: the one calcmesh answers to.

Each server runs pinned to core 0; load comes from h2load (nghttp2-client, independent of our
code) pinned to core 1, with the same request bytes (Calculate 10 * 5). Per server and round:
requests/s at -c 4 -m 64, server CPU time per request (from /proc), CalculateStream messages/s
and CPU per message (h2load again: 64 calls open, each sending 64 messages), RSS idle and after
load. In the first round, on a server of its own and before any
load, 10 000 idle connections are opened one by one: RSS per connection, the slowest connect,
and requests/s with them open divided by requests/s once they are closed. Latency at one connection and one stream (p50,
p90, p99 from h2load --log-file) is measured with every server up at once, in 1-second slices
that take turns, so a noisy moment on the machine falls on all of them alike. Rounds are
interleaved; the report gives medians and ratios, which are the only figures that mean anything
on a shared, noisy machine.

Also, calcmesh alone: CalculateStream messages/s against unary calls/s, mutual TLS against
plaintext (calcmesh bench), and the evaluator's extra latency over a direct Calculate; and new
mutual-TLS connections per second (each a handshake and one call) against grpc-go's.

    python3 bench/run.py                 # 3 rounds, ~5 minutes; rewrites BENCHMARKS.md's table and bench/chart.svg
    python3 bench/run.py --rounds 1 --seconds 2 --no-write   # a quick look
    python3 bench/run.py --only calcmesh,bare --rounds 5       # an A/B of ours against bare tonic (prints only)
"""
import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
CALCMESH = os.path.join(RELEASE, "calcmesh")
TICKS = os.sysconf("SC_CLK_TCK")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def prepare():
    # h2load, and protoc for the interop peers' stubs (interop/setup); bench/cpp/build installs its own.
    missing = [p for p in ("nghttp2-client", "protobuf-compiler") if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", *missing], check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "calcmesh-cli", "-p", "calcmesh-bench-bare"], cwd=ROOT, check=True)
    subprocess.run([os.path.join(ROOT, "interop", "setup")], check=True)
    go = os.path.join(ROOT, "interop", "go", "calculator")
    subprocess.run(["go", "build", "-o", os.path.join(GO_BIN, "calc-server"), "./server"], cwd=go, check=True)
    subprocess.run([os.path.join(ROOT, "bench", "cpp", "build"), BENCH_BIN], check=True, stdout=subprocess.DEVNULL)
    # The crowd test holds CROWD connections here and in the server (which inherits the limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < CROWD + 1000:
        sys.exit(f"the open-files limit is {hard}; the crowd test needs {CROWD + 1000} (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def grpc_body(path, messages=1):
    """Request{num1: 10, num2: 5, operator: "*"} as a gRPC frame, `messages` times over."""
    msg = b"\x09" + struct.pack("<d", 10.0) + b"\x11" + struct.pack("<d", 5.0) + b"\x1a\x01*"
    with open(path, "wb") as f:
        f.write((b"\x00" + struct.pack(">I", len(msg)) + msg) * messages)


GO_BIN = os.path.join(ROOT, "target", "interop", "go", "bin")
JAVA_JAR = os.path.join(ROOT, "target", "interop", "java", "calc-java.jar")
BENCH_BIN = os.path.join(ROOT, "target", "bench")
CROWD = 10_000
# The request bodies h2load sends.
BODIES = tempfile.mkdtemp()
SERVERS = {
    "calcmesh (shipped)": [CALCMESH, "serve", "calculator", "--listen", "127.0.0.1:0"],
    "bare tonic, current-thread runtime": [os.path.join(RELEASE, "bare-tonic"), "--current-thread"],
    "bare tonic, multi-thread runtime": [os.path.join(RELEASE, "bare-tonic")],
    "grpc-go (GOMAXPROCS=1)": ["env", "GOMAXPROCS=1", os.path.join(GO_BIN, "calc-server"), "-port", "0"],
    "C++ gRPC (callback API, 1 CPU)": [os.path.join(BENCH_BIN, "calc-server-cpp"), "--port", "0"],
    "grpc-java (1 CPU)": ["java", "-XX:ActiveProcessorCount=1", "-cp", JAVA_JAR, "calcmesh.interop.CalcServer", "--port", "0"],
    "python grpcio sync": [os.path.join(ROOT, ".venv", "bin", "python"), os.path.join(ROOT, "interop", "python", "calc_server.py"), "--port", "0"],
    "python grpc.aio": [os.path.join(ROOT, ".venv", "bin", "python"), os.path.join(ROOT, "interop", "python", "calc_server.py"), "--port", "0", "--asyncio"],
    "node grpc-js": ["node", os.path.join(ROOT, "interop", "node", "server.js"), "--port", "0"],
}


class Server:
    def __init__(self, name, cmd, core="0"):
        self.name = name
        self.proc = subprocess.Popen(["taskset", "-c", core] + cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening on (\S+)", line)
        if not m:
            raise RuntimeError(f"{name} did not start: {line!r}")
        self.addr = m.group(1)

    def cpu_seconds(self):
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss_mib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# The client connection preface and an empty SETTINGS frame: an HTTP/2 connection, idle.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


class Crowd:
    """CROWD idle HTTP/2 connections, opened one after another: each sends the preface and waits
    for the server's SETTINGS (so the server has set it up). Records the slowest connect (TCP
    connect to the server's first bytes) and the server's RSS per connection."""

    def __init__(self, server, n=CROWD):
        before = server.rss_mib()
        host, port = server.addr.rsplit(":", 1)
        self.conns, self.slowest_ms = [], 0.0
        try:
            for _ in range(n):
                start = time.perf_counter()
                c = socket.create_connection((host, int(port)), timeout=10)
                self.conns.append(c)
                c.sendall(PREFACE)
                if not c.recv(64):
                    raise RuntimeError(f"{server.name} closed connection {len(self.conns)} of {n}")
                self.slowest_ms = max(self.slowest_ms, (time.perf_counter() - start) * 1000)
        except BaseException:
            self.close()
            raise
        self.kib_each = (server.rss_mib() - before) * 1024 / n

    def close(self):
        for c in self.conns:
            c.close()


def h2load(addr, body, *args, method="Calculate"):
    cmd = ["taskset", "-c", "1", "h2load", "-H", "content-type: application/grpc", "-H", "te: trailers",
           "-d", body, *args, f"http://{addr}/calculator.Calculator/{method}"]
    return sh(cmd)


def parse_rate(out):
    m = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    return float(m.group(1)), int(done.group(2))


def warm_up_seconds(name):
    return "5" if "java" in name else "1"  # the JVM's JIT needs longer to settle


def measure(name, cmd, body, seconds):
    s = Server(name, cmd)
    try:
        out = sh([CALCMESH, "calc", "--target", s.addr, "10", "*", "5"])
        assert out.strip() == "50", f"{name}: grpc-status check failed: {out!r}"
        time.sleep(0.5)  # let start-up allocations settle before reading idle RSS
        figures = dict(rss_idle=s.rss_mib())
        warm = warm_up_seconds(name)
        h2load(s.addr, body, "-c", "4", "-m", "64", "-D", warm)  # warm-up
        cpu0 = s.cpu_seconds()
        rate, succeeded = parse_rate(h2load(s.addr, body, "-c", "4", "-m", "64", "-D", str(seconds)))
        figures.update(rps=rate, cpu_us=(s.cpu_seconds() - cpu0) * 1e6 / max(succeeded, 1), rss_load=s.rss_mib())
        figures.update(stream_figures(s, seconds, warm))
        return figures
    finally:
        s.stop()


def crowd_figures(name, cmd, body, seconds):
    """On a server of its own: CROWD idle connections opened before any load (so the allocator
    has no freed memory to hand them), then requests/s with them open and after they close."""
    s = Server(name, cmd)
    try:
        time.sleep(0.5)  # as in measure(): start-up allocations settle before RSS is read
        crowd = Crowd(s)
        load = lambda: parse_rate(h2load(s.addr, body, "-c", "4", "-m", "64", "-D", str(seconds)))[0]  # noqa: E731
        try:
            h2load(s.addr, body, "-c", "4", "-m", "64", "-D", warm_up_seconds(name))  # warm-up
            beside = load()
        finally:
            crowd.close()
        return dict(idle_conn_kib=crowd.kib_each, connect_max_ms=crowd.slowest_ms, crowd_ratio=beside / load())
    finally:
        s.stop()


# Request messages per CalculateStream call in the streaming load.
STREAM_MESSAGES = 64
STREAM_BODY = "calculate-stream.bin"


def stream_figures(server, seconds, warm):
    """CalculateStream through one server, the server the bottleneck: h2load on core 1 keeps 64
    calls open (4 connections × 16), each sending STREAM_MESSAGES requests, which the server
    answers one by one. Messages/s and server CPU per message. First, as the warm-up, calcmesh
    bench streams for `warm` seconds (4 streams × 64 in flight) and checks every answer, which
    h2load cannot. (calcmesh bench as the load saturated its own core before the servers did.)"""
    out = bench_json("--target", server.addr, "--rpc", "calculate-stream", "-c", "4", "--pipeline", "64", "-d", f"{warm}s")
    assert out["failed"] == 0, f"{server.name}: CalculateStream failed: {out['status']}"
    cpu0 = server.cpu_seconds()
    body = os.path.join(BODIES, STREAM_BODY)
    rate, calls = parse_rate(h2load(server.addr, body, "-c", "4", "-m", "16", "-D", str(seconds), method="CalculateStream"))
    messages = calls * STREAM_MESSAGES
    return dict(stream_mps=rate * STREAM_MESSAGES, stream_cpu_us=(server.cpu_seconds() - cpu0) * 1e6 / max(messages, 1))


def latency(servers, body, slices):
    """Latency at 1 connection × 1 stream: every server up (idle ones cost the others nothing),
    each loaded for 1 s per slice, in an order that rotates, for `slices` slices; the request
    durations of all slices are pooled per server. Returns {name: {p50_us, p90_us, p99_us}}."""
    running = {}
    durations = {name: [] for name in servers}
    try:
        for name, cmd in servers.items():
            running[name] = Server(name, cmd)
        names = list(servers)
        for s in running.values():
            h2load(s.addr, body, "-c", "1", "-m", "1", "-n", "1000")  # warm-up
        for i in range(slices):
            for name in names[i % len(names):] + names[:i % len(names)]:
                with tempfile.NamedTemporaryFile(mode="r", suffix=".log") as log:
                    h2load(running[name].addr, body, "-c", "1", "-m", "1", "-D", "1", "--log-file", log.name)
                    durations[name] += [int(line.split()[2]) for line in log if line.strip()]
    finally:
        for s in running.values():
            s.stop()
    return {name: {f"p{q}_us": percentile(d, q) for q in (50, 90, 99)} for name, d in durations.items()}


def percentile(values, q):
    """The nearest-rank percentile."""
    if not values:
        return float("nan")
    values = sorted(values)
    return values[max(0, -(-len(values) * q // 100) - 1)]


def to_ms(text):
    value = float(re.match(r"[\d.]+", text).group(0))
    return value / 1000 if text.endswith("us") else value * 1000 if text.endswith("s") and not text.endswith("ms") else value


def bench_json(*args):
    return json.loads(sh(["taskset", "-c", "1", CALCMESH, "bench", "--json", *args]))


def extras(seconds):
    """CalculateStream vs unary messages/s, mutual TLS vs plaintext, and the evaluator's extra
    latency: calcmesh bench (core 1) against calcmesh servers (core 0)."""
    certs = tempfile.mkdtemp()
    sh([CALCMESH, "certs", "init", "--dir", certs])
    pem = lambda name: os.path.join(certs, name)  # noqa: E731
    calc = Server("calcmesh", SERVERS["calcmesh (shipped)"])
    mtls = Server("calcmesh, mutual TLS", SERVERS["calcmesh (shipped)"] + [
        "--tls-cert", pem("calculator.pem"), "--tls-key", pem("calculator.key"), "--client-ca", pem("ca.pem")])
    go_mtls = Server("grpc-go, mutual TLS", ["env", "GOMAXPROCS=1", os.path.join(GO_BIN, "calc-server"), "-port", "0",
                                              "-tls-cert", pem("calculator.pem"), "-tls-key", pem("calculator.key"), "-client-ca", pem("ca.pem")])
    evaluator = Server("evaluator", [CALCMESH, "serve", "evaluator", "--listen", "127.0.0.1:0", "--calculator", calc.addr], core="0")
    try:
        d = f"{seconds}s"
        # The same 256 messages in flight: 256 unary calls, or 4 streams pipelining 64 each.
        unary = bench_json("--target", calc.addr, "-c", "256", "-d", d)
        stream = bench_json("--target", calc.addr, "--rpc", "calculate-stream", "-c", "4", "--pipeline", "64", "-d", d)
        client_cert = ["--ca", pem("ca.pem"), "--cert", pem("admin.pem"), "--key", pem("admin.key")]
        secure = bench_json("--target", mtls.addr, *client_cert, "-c", "256", "-d", d)
        handshakes = {name: new_connections(server, client_cert, seconds) for name, server in (("calcmesh", mtls), ("grpc-go", go_mtls))}
        direct = bench_json("--target", calc.addr, "-c", "1", "-d", d)
        via = bench_json("--target", evaluator.addr, "--rpc", "evaluate", "--expression", "10 * 5", "-c", "1", "-d", d)
        return dict(
            unary_rps=unary["requests_per_second"], stream_rps=stream["requests_per_second"],
            mtls_rps=secure["requests_per_second"], handshakes=handshakes,
            direct_p50_us=direct["latency_us"]["p50"], evaluate_p50_us=via["latency_us"]["p50"],
        )
    finally:
        for s in (evaluator, go_mtls, mtls, calc):
            s.stop()
        shutil.rmtree(certs)


def new_connections(server, client_cert, seconds):
    """Calls each on a new mutual-TLS connection (TCP, handshake, one Calculate, close), 4 at a
    time from calcmesh bench on core 1: per second, and the server's CPU per connection."""
    args = ["--target", server.addr, *client_cert, "--new-connection", "-c", "4"]
    bench_json(*args, "-d", "1s")  # warm-up
    cpu0 = server.cpu_seconds()
    out = bench_json(*args, "-d", f"{seconds}s")
    assert out["failed"] == 0, f"{server.name}: {out['status']}"
    return dict(per_second=out["requests_per_second"], cpu_us=(server.cpu_seconds() - cpu0) * 1e6 / max(out["ok"], 1))


def median_of(rounds, key):
    return statistics.median(r[key] for r in rounds)


def table(results):
    lines = ["| server | requests/s | CPU µs/request | latency p50 / p90 / p99, 1 conn × 1 stream | CalculateStream messages/s | CPU µs/message |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, rounds in results.items():
        lines.append(f"| {name} | {median_of(rounds, 'rps'):,.0f} | {median_of(rounds, 'cpu_us'):.1f} | {median_of(rounds, 'p50_us'):.0f} / {median_of(rounds, 'p90_us'):.0f} / {median_of(rounds, 'p99_us'):.0f} µs | "
                     f"{median_of(rounds, 'stream_mps'):,.0f} | {median_of(rounds, 'stream_cpu_us'):.2f} |")
    return "\n".join(lines)


def memory_table(results):
    lines = [f"| server | RSS idle | RSS after load | RSS per idle connection, {CROWD:,} open | slowest of {CROWD:,} connects | requests/s beside them ÷ alone |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, rounds in results.items():
        first = rounds[0]
        lines.append(f"| {name} | {median_of(rounds, 'rss_idle'):.1f} MiB | {median_of(rounds, 'rss_load'):.1f} MiB | {first['idle_conn_kib']:.1f} KiB | "
                     f"{first['connect_max_ms']:.1f} ms | {first['crowd_ratio']:.2f}× |")
    return "\n".join(lines)


def fastest_peer(results, key="rps"):
    """The peer with the highest median `key`: the one calcmesh answers to."""
    peers = [p for p in results if p != "calcmesh (shipped)"]
    return max(peers, key=lambda p: median_of(results[p], key)) if peers else None


def ratios(results):
    ours = results["calcmesh (shipped)"]
    out = []
    fastest, fastest_stream = fastest_peer(results), fastest_peer(results, "stream_mps")
    for peer in [p for p in SERVERS if p in results and p != "calcmesh (shipped)"]:
        r, c, p, sm, sc = (median_of(ours, k) / median_of(results[peer], k) for k in ("rps", "cpu_us", "p50_us", "stream_mps", "stream_cpu_us"))
        marks = [m for m, f in (("requests/s", fastest), ("streaming", fastest_stream)) if peer == f]
        mark = f" (the fastest peer: {', '.join(marks)})" if marks else ""
        out.append(f"| calcmesh ÷ {peer}{mark} | {r:.2f}× | {c:.2f}× | {p:.2f}× | {sm:.2f}× | {sc:.2f}× |")
    head = "| ratio (medians, same run) | requests/s | CPU per request | p50 latency | CalculateStream messages/s | CPU per message |\n| --- | --- | --- | --- | --- | --- |\n"
    return head + "\n".join(out)


def chart(results, path):
    """A bar chart of requests/s and latency percentiles per server, as SVG."""
    names = list(results)
    panels = [("requests/s (-c 4 -m 64)", [median_of(results[n], "rps") for n in names], "/s", "#3b7dd8"),
              (f"CalculateStream messages/s (64 calls × {STREAM_MESSAGES} messages)", [median_of(results[n], "stream_mps") for n in names], "/s", "#3ba86b")]
    panels += [(f"p{q} latency, 1 connection × 1 stream", [median_of(results[n], f"p{q}_us") for n in names], " µs", color)
               for q, color in [(50, "#d8823b"), (90, "#c0602a"), (99, "#8f3d17")]]
    w, row = 840, 24
    h = 40 + (row * len(names) + 40) * len(panels) + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="13">',
             '<rect width="100%" height="100%" fill="white"/>',
             '<text x="10" y="22" font-size="16" font-weight="bold">calcmesh benchmark (medians of one run)</text>']
    y = 50
    for title, values, unit, color in panels:
        parts.append(f'<text x="10" y="{y}" font-weight="bold">{title}</text>')
        y += 10
        top = max(values) or 1
        for n, v in zip(names, values):
            bar = 380 * v / top
            parts.append(f'<text x="10" y="{y + 17}">{n}</text>')
            parts.append(f'<rect x="250" y="{y + 4}" width="{bar:.1f}" height="18" fill="{color}"/>')
            parts.append(f'<text x="{256 + bar:.1f}" y="{y + 17}">{v:,.0f}{unit}</text>')
            y += row
        y += 30
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="length of each throughput run; latency takes max(3, SECONDS) 1-second turns per server and round")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md, bench/chart.svg and bench/results.json alone")
    parser.add_argument("--only", help="comma-separated parts of server names (e.g. calcmesh,bare): measure only those, skip the stream and evaluator figures, write nothing")
    args = parser.parse_args()
    servers = SERVERS
    if args.only:
        wanted = args.only.split(",")
        servers = {n: c for n, c in SERVERS.items() if any(w in n for w in wanted)}
        if "calcmesh (shipped)" not in servers:
            parser.error("--only must include calcmesh: every ratio is against it")
        args.no_write = True
    prepare()
    body = os.path.join(BODIES, "calculate.bin")
    grpc_body(body)
    grpc_body(os.path.join(BODIES, STREAM_BODY), STREAM_MESSAGES)
    results = {name: [] for name in servers}
    for r in range(args.rounds):
        for name, cmd in servers.items():
            print(f"round {r + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
            results[name].append(measure(name, cmd, body, args.seconds))
            if r == 0:
                results[name][0].update(crowd_figures(name, cmd, body, args.seconds))
        print(f"round {r + 1}/{args.rounds}: latency, every server in turn", file=sys.stderr, flush=True)
        for name, figures in latency(servers, body, slices=max(3, args.seconds)).items():
            results[name][-1].update(figures)
    fastest = f"The fastest peer in this run: **{fastest_peer(results)}** (requests/s), **{fastest_peer(results, 'stream_mps')}** (CalculateStream)."
    report = "\n\n".join([table(results), fastest, ratios(results), memory_table(results)])
    if args.only:
        print(report)
        return
    extra = extras(args.seconds)
    report = "\n\n".join([
        report,
        f"| CalculateStream vs unary (calcmesh bench, 256 in flight: 4 streams × 64 vs 256 calls) | {extra['stream_rps']:,.0f} msgs/s vs {extra['unary_rps']:,.0f} calls/s = {extra['stream_rps'] / extra['unary_rps']:.2f}× |\n| --- | --- |\n"
        f"| mutual TLS vs plaintext (calcmesh bench, 256 calls in flight, one connection) | {extra['mtls_rps']:,.0f} vs {extra['unary_rps']:,.0f} calls/s = {extra['mtls_rps'] / extra['unary_rps']:.2f}× |\n"
        f"| new mutual-TLS connections (a handshake and one call each, 4 at a time): calcmesh vs grpc-go (GOMAXPROCS=1) | {extra['handshakes']['calcmesh']['per_second']:,.0f} vs {extra['handshakes']['grpc-go']['per_second']:,.0f} per second = {extra['handshakes']['calcmesh']['per_second'] / extra['handshakes']['grpc-go']['per_second']:.2f}×; server CPU {extra['handshakes']['calcmesh']['cpu_us']:,.0f} vs {extra['handshakes']['grpc-go']['cpu_us']:,.0f} µs each = {extra['handshakes']['calcmesh']['cpu_us'] / extra['handshakes']['grpc-go']['cpu_us']:.2f}× |\n"
        f"| evaluator's extra latency (p50, `10 * 5` via Evaluate vs Calculate direct) | {extra['evaluate_p50_us'] - extra['direct_p50_us']:.0f} µs ({extra['evaluate_p50_us']} vs {extra['direct_p50_us']} µs) |",
    ])
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report = f"Run {stamp}, `python3 bench/run.py --rounds {args.rounds} --seconds {args.seconds}`, {os.cpu_count()} cores.\n\n" + report
    print(report)
    if not args.no_write:
        with open(os.path.join(ROOT, "bench", "results.json"), "w") as f:
            json.dump(dict(results=results, extras=extra, stamp=stamp), f, indent=1)
        chart(results, os.path.join(ROOT, "bench", "chart.svg"))
        path = os.path.join(ROOT, "BENCHMARKS.md")
        text = open(path).read()
        text = re.sub(r"<!-- results -->.*<!-- /results -->", lambda _: f"<!-- results -->\n{report}\n<!-- /results -->", text, flags=re.S)
        open(path, "w").write(text)


if __name__ == "__main__":
    main()
