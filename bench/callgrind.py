#!/usr/bin/env python3
"""Instructions per call, counted by callgrind: deterministic where bench/run.py's times are not.

Servers (calcmesh as shipped with --worker-threads 1, bare tonic on the current-thread runtime),
each under `valgrind --tool=callgrind`: 500 warm-up Calculate calls from h2load at one connection
and one stream, counters zeroed (`callgrind_control -z`), 2000 more, the counters dumped; the
dump's total over 2000. CalculateStream the same way: 100 calls of 64 messages, zeroed, 300 more
at `-m 4`, over 19 200 messages.

Clients (bench/bare's client-calls: the same generated client through calcmesh's MeshChannel or
through a tonic Channel, tokio's current-thread runtime): each run under callgrind twice, with 500
and with 2500 sequential Calculate calls against a calcmesh server outside valgrind; the
difference of the two totals over 2000 is one call (start-up and the connection cancel out).

    python3 bench/callgrind.py              # both servers and both clients, about a minute
    python3 bench/callgrind.py --only servers
    python3 bench/callgrind.py --keep       # keep the dumps, for callgrind_annotate
Needs release builds: cargo build --release -p calcmesh-cli -p calcmesh-bench-bare
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import CALCMESH, RELEASE, grpc_body  # noqa: E402

SERVERS = {
    "calcmesh (shipped)": [CALCMESH, "serve", "calculator", "--listen", "127.0.0.1:0", "--worker-threads", "1"],
    "bare tonic, current-thread": [os.path.join(RELEASE, "bare-tonic"), "--current-thread"],
}
CLIENT = os.path.join(RELEASE, "client-calls")
WORK = tempfile.mkdtemp(prefix="calcmesh-callgrind-")


def h2load(addr, body, method, *args):
    subprocess.run(["h2load", "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", body, *args,
                    f"http://{addr}/calculator.Calculator/{method}"], check=True, capture_output=True)


def total(path):
    """The instruction total of a callgrind output file."""
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no total in {path}")


class Valgrind:
    def __init__(self, name, cmd):
        self.out = os.path.join(WORK, re.sub(r"\W+", "-", name) + ".out")
        self.proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}", *cmd],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening on (\S+)", line)
        if not m:
            raise RuntimeError(f"{name} did not start under valgrind: {line!r}")
        self.addr = m.group(1)

    def control(self, flag):
        subprocess.run(["callgrind_control", flag, str(self.proc.pid)], check=True, capture_output=True)

    def dumped(self):
        """Dump the counters and return the total of the new dump."""
        before = set(glob.glob(self.out + ".*"))
        self.control("-d")
        for _ in range(200):
            new = set(glob.glob(self.out + ".*")) - before
            if new:
                time.sleep(0.2)  # the dump is written in one go, but give it its close
                return total(new.pop())
            time.sleep(0.05)
        raise RuntimeError("callgrind wrote no dump")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def per_call(server, body, method, warm, measure, count):
    h2load(server.addr, body, method, *warm)
    server.control("-z")
    h2load(server.addr, body, method, *measure)
    return server.dumped() / count


def servers():
    unary, stream = os.path.join(WORK, "unary"), os.path.join(WORK, "stream")
    grpc_body(unary)
    grpc_body(stream, 64)
    for name, cmd in SERVERS.items():
        s = Valgrind(name, cmd)
        try:
            calc = per_call(s, unary, "Calculate", ["-c1", "-m1", "-n500"], ["-c1", "-m1", "-n2000"], 2000)
            msg = per_call(s, stream, "CalculateStream", ["-c1", "-m4", "-n100"], ["-c1", "-m4", "-n300"], 300 * 64)
        finally:
            s.stop()
        print(f"{name}: {calc / 1000:.1f} k instructions per Calculate, {msg:,.0f} per CalculateStream message")


def client_run(addr, via, n):
    out = os.path.join(WORK, f"client-{via}-{n}.out")
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", CLIENT, addr, via, str(n)],
                   check=True, capture_output=True)
    return total(out)


def clients():
    server = subprocess.Popen(SERVERS["calcmesh (shipped)"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        addr = re.match(r"listening on (\S+)", server.stdout.readline()).group(1)
        figures = {}
        for via in ("tonic", "mesh"):
            figures[via] = (client_run(addr, via, 2500) - client_run(addr, via, 500)) / 2000
            label = "MeshChannel" if via == "mesh" else "tonic Channel"
            print(f"client through {label}: {figures[via] / 1000:.1f} k instructions per Calculate")
        print(f"MeshChannel / tonic Channel: {figures['mesh'] / figures['tonic']:.2f}x")
    finally:
        server.kill()
        server.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["servers", "clients"])
    ap.add_argument("--keep", action="store_true", help="keep the callgrind dumps (their folder is printed)")
    args = ap.parse_args()
    try:
        if args.only != "clients":
            servers()
        if args.only != "servers":
            clients()
    finally:
        if args.keep:
            print(f"callgrind dumps in {WORK}")
        else:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
