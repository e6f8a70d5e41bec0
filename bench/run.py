#!/usr/bin/env python3
"""The side-by-side benchmark: calcmesh's shipped calculator against the peers, on this machine, in
one run: a bare tonic server on both of tokio's runtimes (current-thread, the one calcmesh picks on
one CPU, and multi-thread), the grpc-go (GOMAXPROCS=1) and grpc-java (one CPU, after a 5 s JIT
warm-up) calculator servers from interop/, and the Python (sync and asyncio) and Node servers.
The ratio table names the fastest peer: the one calcmesh answers to.

Each server runs pinned to core 0; load comes from h2load (nghttp2-client, independent of our
code) pinned to core 1, with the same request bytes (Calculate 10 * 5). Per server and round:
requests/s at -c 4 -m 64, server CPU time per request (from /proc), RSS idle and after load,
and the slowest connect of 1 000 connections. Latency at one connection and one stream (p50,
p90, p99 from h2load --log-file) is measured with every server up at once, in 1-second slices
that take turns, so a noisy moment on the machine falls on all of them alike. Rounds are
interleaved; the report gives medians and ratios, which are the only figures that mean anything
on a shared, noisy machine.

Also: CalculateStream messages/s against unary calls/s on the same server (calcmesh bench), and
the evaluator's extra latency over a direct Calculate.

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
    if shutil.which("h2load") is None:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "nghttp2-client"], check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "calcmesh-cli", "-p", "calcmesh-bench-bare"], cwd=ROOT, check=True)
    subprocess.run([os.path.join(ROOT, "interop", "setup")], check=True)
    go = os.path.join(ROOT, "interop", "go", "calculator")
    subprocess.run(["go", "build", "-o", os.path.join(GO_BIN, "calc-server"), "./server"], cwd=go, check=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))


def grpc_body(path):
    """Calculate(Request{num1: 10, num2: 5, operator: "*"}) as a gRPC frame."""
    msg = b"\x09" + struct.pack("<d", 10.0) + b"\x11" + struct.pack("<d", 5.0) + b"\x1a\x01*"
    with open(path, "wb") as f:
        f.write(b"\x00" + struct.pack(">I", len(msg)) + msg)


GO_BIN = os.path.join(ROOT, "target", "interop", "go", "bin")
JAVA_JAR = os.path.join(ROOT, "target", "interop", "java", "calc-java.jar")
SERVERS = {
    "calcmesh (shipped)": [CALCMESH, "serve", "calculator", "--listen", "127.0.0.1:0"],
    "bare tonic, current-thread runtime": [os.path.join(RELEASE, "bare-tonic"), "--current-thread"],
    "bare tonic, multi-thread runtime": [os.path.join(RELEASE, "bare-tonic")],
    "grpc-go (GOMAXPROCS=1)": ["env", "GOMAXPROCS=1", os.path.join(GO_BIN, "calc-server"), "-port", "0"],
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


def idle_connection_kib(server, n=1000):
    """RSS per idle HTTP/2 connection: n connections opened, each answered with the server's
    SETTINGS (so the server has set it up), then RSS compared with before."""
    before = server.rss_mib()
    host, port = server.addr.rsplit(":", 1)
    conns = []
    try:
        for _ in range(n):
            c = socket.create_connection((host, int(port)), timeout=10)
            c.sendall(PREFACE)
            conns.append(c)
        for c in conns:
            c.recv(64)  # the server's SETTINGS
        return (server.rss_mib() - before) * 1024 / n
    finally:
        for c in conns:
            c.close()


def h2load(addr, body, *args):
    cmd = ["taskset", "-c", "1", "h2load", "-H", "content-type: application/grpc", "-H", "te: trailers",
           "-d", body, *args, f"http://{addr}/calculator.Calculator/Calculate"]
    return sh(cmd)


def parse_rate(out):
    m = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    return float(m.group(1)), int(done.group(2))


def measure(name, cmd, body, seconds, conns_test):
    s = Server(name, cmd)
    try:
        out = sh([CALCMESH, "calc", "--target", s.addr, "10", "*", "5"])
        assert out.strip() == "50", f"{name}: grpc-status check failed: {out!r}"
        time.sleep(0.5)  # let start-up allocations settle before reading idle RSS
        rss_idle = s.rss_mib()
        # Before any load, so the allocator has no freed memory to hand the connections.
        idle_kib = idle_connection_kib(s) if conns_test else float("nan")
        warm = "5" if "java" in name else "1"  # the JVM's JIT needs longer to settle
        h2load(s.addr, body, "-c", "4", "-m", "64", "-D", warm)  # warm-up
        cpu0 = s.cpu_seconds()
        rate, succeeded = parse_rate(h2load(s.addr, body, "-c", "4", "-m", "64", "-D", str(seconds)))
        cpu_us = (s.cpu_seconds() - cpu0) * 1e6 / max(succeeded, 1)
        rss_load = s.rss_mib()
        connect_max = float("nan")
        if conns_test:
            out = h2load(s.addr, body, "-c", "1000", "-n", "2000", "-m", "1")
            m = re.search(r"time for connect:\s+\S+\s+(\S+)", out)
            connect_max = to_ms(m.group(1)) if m else float("nan")
        return dict(rps=rate, cpu_us=cpu_us, rss_idle=rss_idle, rss_load=rss_load, connect_max_ms=connect_max, idle_conn_kib=idle_kib)
    finally:
        s.stop()


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
    """CalculateStream vs unary messages/s, and the evaluator's extra latency."""
    calc = Server("calcmesh", SERVERS["calcmesh (shipped)"])
    evaluator = Server("evaluator", [CALCMESH, "serve", "evaluator", "--listen", "127.0.0.1:0", "--calculator", calc.addr], core="0")
    try:
        d = f"{seconds}s"
        # The same 256 messages in flight: 256 unary calls, or 4 streams pipelining 64 each.
        unary = bench_json("--target", calc.addr, "-c", "256", "-d", d)
        stream = bench_json("--target", calc.addr, "--rpc", "calculate-stream", "-c", "4", "--pipeline", "64", "-d", d)
        direct = bench_json("--target", calc.addr, "-c", "1", "-d", d)
        via = bench_json("--target", evaluator.addr, "--rpc", "evaluate", "--expression", "10 * 5", "-c", "1", "-d", d)
        return dict(
            unary_rps=unary["requests_per_second"], stream_rps=stream["requests_per_second"],
            direct_p50_us=direct["latency_us"]["p50"], evaluate_p50_us=via["latency_us"]["p50"],
        )
    finally:
        evaluator.stop()
        calc.stop()


def median_of(rounds, key):
    return statistics.median(r[key] for r in rounds)


def table(results):
    lines = ["| server | requests/s | CPU µs/request | latency p50 / p90 / p99, 1 conn × 1 stream | RSS idle | RSS after load | RSS per idle connection | slowest of 1 000 connects |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, rounds in results.items():
        lines.append(f"| {name} | {median_of(rounds, 'rps'):,.0f} | {median_of(rounds, 'cpu_us'):.1f} | {median_of(rounds, 'p50_us'):.0f} / {median_of(rounds, 'p90_us'):.0f} / {median_of(rounds, 'p99_us'):.0f} µs | "
                     f"{median_of(rounds, 'rss_idle'):.1f} MiB | {median_of(rounds, 'rss_load'):.1f} MiB | {rounds[0]['idle_conn_kib']:.1f} KiB | {rounds[0]['connect_max_ms']:.0f} ms |")
    return "\n".join(lines)


def fastest_peer(results):
    """The peer with the most requests/s (median): the one calcmesh answers to."""
    peers = [p for p in results if p != "calcmesh (shipped)"]
    return max(peers, key=lambda p: median_of(results[p], "rps")) if peers else None


def ratios(results):
    ours = results["calcmesh (shipped)"]
    out = []
    fastest = fastest_peer(results)
    for peer in [p for p in SERVERS if p in results and p != "calcmesh (shipped)"]:
        r = median_of(ours, "rps") / median_of(results[peer], "rps")
        c = median_of(ours, "cpu_us") / median_of(results[peer], "cpu_us")
        p = median_of(ours, "p50_us") / median_of(results[peer], "p50_us")
        mark = " (the fastest peer)" if peer == fastest else ""
        out.append(f"| calcmesh ÷ {peer}{mark} | {r:.2f}× requests/s | {c:.2f}× CPU per request | {p:.2f}× p50 latency |")
    return "| ratio (medians, same run) | throughput | CPU | latency |\n| --- | --- | --- | --- |\n" + "\n".join(out)


def chart(results, path):
    """A bar chart of requests/s and latency percentiles per server, as SVG."""
    names = list(results)
    panels = [("requests/s (-c 4 -m 64)", [median_of(results[n], "rps") for n in names], "/s", "#3b7dd8")]
    panels += [(f"p{q} latency, 1 connection × 1 stream", [median_of(results[n], f"p{q}_us") for n in names], " µs", color)
               for q, color in [(50, "#d8823b"), (90, "#c0602a"), (99, "#8f3d17")]]
    w, row = 760, 24
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
            parts.append(f'<rect x="190" y="{y + 4}" width="{bar:.1f}" height="18" fill="{color}"/>')
            parts.append(f'<text x="{196 + bar:.1f}" y="{y + 17}">{v:,.0f}{unit}</text>')
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
    body = os.path.join(tempfile.mkdtemp(), "calculate.bin")
    grpc_body(body)
    results = {name: [] for name in servers}
    for r in range(args.rounds):
        for name, cmd in servers.items():
            print(f"round {r + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
            results[name].append(measure(name, cmd, body, args.seconds, conns_test=(r == 0)))
        print(f"round {r + 1}/{args.rounds}: latency, every server in turn", file=sys.stderr, flush=True)
        for name, figures in latency(servers, body, slices=max(3, args.seconds)).items():
            results[name][-1].update(figures)
    fastest = fastest_peer(results)
    report = "\n\n".join([table(results), f"The fastest peer in this run: **{fastest}**.", ratios(results)])
    if args.only:
        print(report)
        return
    extra = extras(args.seconds)
    report = "\n\n".join([
        report,
        f"| CalculateStream vs unary (calcmesh bench, 256 in flight: 4 streams × 64 vs 256 calls) | {extra['stream_rps']:,.0f} msgs/s vs {extra['unary_rps']:,.0f} calls/s = {extra['stream_rps'] / extra['unary_rps']:.2f}× |\n| --- | --- |\n"
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
