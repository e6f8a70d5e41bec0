#!/usr/bin/env python3
"""The image and the mesh in containers, on this machine: podman as root, no registry needed.

    .venv/bin/python deploy/containers.py image   # the bases from debootstrap, then the Dockerfile
    .venv/bin/python deploy/containers.py mesh    # etcd, three calculators and the evaluator
    .venv/bin/python deploy/containers.py pods    # deploy/kubernetes/*.yaml through podman kube play
    .venv/bin/python deploy/containers.py         # all three (deploy/README.md's block runs them)

`image` builds `localhost/calcmesh:latest` from the project's Dockerfile with `podman build`. No
registry is reachable, so the bases are made here: `debian:bookworm-slim` is a Debian bookworm
root from `debootstrap --variant=minbase`, trimmed as the slim image is (no apt lists or package
cache, no docs, man pages or locales), and the build stage's `rust:1-bookworm` is replaced by a
binary built on this machine (`cargo build --release --locked -p calcmesh-cli --features etcd`,
the build stage's own command, on the same Debian release), passed in with
`--build-arg CALCMESH_BINARY=prebuilt --build-context host-binary=DIR`.

`mesh` runs, on a podman network of its own (198.18.1.0/24), etcd, three calculators that
register in it and an evaluator that finds them there, every hop over mutual TLS with
certificates from `calcmesh certs init` for the containers' names, each container with a
read-only root and no capabilities. It checks: an evaluation whose steps name all three
calculators; `podman stop` of one drains it (NOT_SERVING, key deleted, exit 0 within the grace
period) while an evaluator under load fails no call; `podman kill` of another, whose key expires
with its lease; `grpc_health_probe` on the plaintext health port.

`pods` plays deploy/kubernetes/calculator.yaml (three pods) and evaluator.yaml with
`podman kube play`, the certificates in the Secret calcmesh-certs, on the same network, and makes
the same calls through them: the manifests' securityContext applied (uid 10001, read-only root,
no capabilities), an evaluation naming all three calculator pods, grpc_health_probe on each
pod's health port, and `podman pod stop` of one under load. What podman 4.3 does not do and what
stands in for it is listed above `POD_IPS`' use below, in "The manifests' pods".

Every container, pod, secret and the network are removed at the end, also when a check fails or
the run is interrupted. PyYAML (for the manifests) comes with the test venv.

Runs as root (podman's bridge networks). podman, buildah, runc, catatonit, debootstrap and
iptables come from Debian; etcd from Debian's etcd-server; grpc_health_probe is built pinned.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "target", "containers")
IMAGE = "localhost/calcmesh:latest"
BASE = "docker.io/library/debian:bookworm-slim"  # what the Dockerfile's FROM resolves to
LABEL = "calcmesh.test=containers"
NETWORK = "calcmesh-test"
SUBNET = "198.18.1.0/24"
ETCD_IP = "198.18.1.2"
EVALUATOR_IP = "198.18.1.20"
CALCULATORS = {f"calculator-{i}": f"198.18.1.1{i}" for i in (1, 2, 3)}
CERTS = "/etc/calcmesh/certs"
# The pods of deploy/kubernetes, on the same network; the namespace their names are made for.
POD_IPS = {f"calculator-{i}": f"198.18.1.3{i}" for i in (1, 2, 3)}
EVALUATOR_POD_IP = "198.18.1.40"
NAMESPACE = "calcmesh"
SERVICE_NAME = f"calculator.{NAMESPACE}.svc.cluster.local"  # the headless Service's DNS name
SECRET_FILES = ["ca.pem", "calculator.pem", "calculator.key", "evaluator.pem", "evaluator.key"]
REGISTER_TTL = 4  # seconds: a killed calculator's key is gone this long after its last keep-alive
HEALTH_PROBE = "github.com/grpc-ecosystem/grpc-health-probe@v0.4.62"
PACKAGES = ["podman", "buildah", "runc", "catatonit", "debootstrap", "iptables", "netavark", "aardvark-dns", "etcd-server", "etcd-client"]

# crun (podman's default) refuses this machine's hybrid cgroups, and the default ulimits are
# refused too: every podman command here reads this file (CONTAINERS_CONF).
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=1000:1000"]
[engine]
runtime = "runc"
"""


class Failed(Exception):
    """A check that did not hold, with what was seen."""


def say(text: str) -> None:
    print(f"containers: {text}", flush=True)


def run(cmd: list[str], timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise Failed(f"`{' '.join(cmd)}` exited {out.returncode}:\n{out.stdout}{out.stderr}")
    return out


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return run(["podman", *args], timeout=timeout, check=check)


def wait_for(what: str, condition, bound: float):
    """Polls `condition` until it returns something true, for `bound` seconds at most."""
    deadline = time.monotonic() + bound
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failed(f"{what}: not within {bound:.0f} s")
        time.sleep(0.1)


def setup() -> None:
    if os.geteuid() != 0:
        raise Failed("run as root: podman's bridge networks need it")
    missing = [p for p in PACKAGES if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if missing:
        say(f"installing {' '.join(missing)} (Debian's packages)")
        run(["apt-get", "update", "-qq"], timeout=600)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], timeout=900,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    os.makedirs(WORK, exist_ok=True)
    conf = os.path.join(WORK, "containers.conf")
    with open(conf, "w") as f:
        f.write(CONTAINERS_CONF)
    os.environ["CONTAINERS_CONF"] = conf


# ---------------------------------------------------------------------------------------------
# The image


def base_image() -> None:
    """debian:bookworm-slim, made here: debootstrap's minbase, trimmed as the slim image is."""
    if podman("image", "exists", BASE, check=False).returncode == 0:
        return
    tarball = os.path.join(WORK, "bookworm-minbase.tar")
    if not os.path.exists(tarball):
        root = os.path.join(WORK, "bookworm-root")
        shutil.rmtree(root, ignore_errors=True)
        say("debootstrap --variant=minbase bookworm (about 2 minutes)")
        run(["debootstrap", "--variant=minbase", "bookworm", root, "http://deb.debian.org/debian"], timeout=900)
        for trim in ["var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                     "usr/share/info", "usr/share/locale"]:
            path = os.path.join(root, trim)
            for name in os.listdir(path):
                full = os.path.join(path, name)
                shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) else os.remove(full)
        with open(os.path.join(root, "etc", "debian_version")) as f:
            say(f"base: Debian {f.read().strip()} minbase")
        run(["tar", "-C", root, "-cf", tarball + ".part", "."], timeout=300)
        os.rename(tarball + ".part", tarball)
        shutil.rmtree(root)
    podman("import", tarball, BASE, timeout=300)


def image() -> None:
    base_image()
    say("cargo build --release --locked -p calcmesh-cli --features etcd (the build stage's command)")
    run(["cargo", "build", "--release", "--locked", "-p", "calcmesh-cli", "--features", "etcd"], timeout=1800, cwd=ROOT)
    binary = os.path.join(WORK, "host-binary")
    os.makedirs(binary, exist_ok=True)
    shutil.copy2(os.path.join(ROOT, "target", "release", "calcmesh"), os.path.join(binary, "calcmesh"))
    podman("build", "--pull=never", "--network", "none", "--build-arg", "CALCMESH_BINARY=prebuilt", "--build-context",
           f"host-binary={binary}", "-t", IMAGE, ROOT, timeout=600)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    uid = podman("run", "--rm", "--network", "none", "--entrypoint", "id", IMAGE, "-u").stdout.strip()
    if uid != "10001":
        raise Failed(f"the image runs as uid {uid}, not 10001 (the Dockerfile's USER)")
    podman("run", "--rm", "--network", "none", IMAGE, "serve", "calculator", "--help")
    say(f"built {IMAGE}: {size / 2**20:.1f} MiB, runs as uid {uid}")


# ---------------------------------------------------------------------------------------------
# What the mesh and the pods share


class Evaluator:
    """How clients reach an evaluator, and how its step tables name the calculators."""

    def __init__(self, target: list[str], admin_ip: str, calculators: dict[str, str]):
        self.target = target  # --target ADDR, and --tls-server-name where ADDR is an IP
        self.admin_ip = admin_ip
        self.calculators = calculators  # container or pod -> the endpoint its steps show


def cleanup() -> None:
    ids = podman("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
    if ids:
        podman("rm", "-f", "-t", "0", *ids, check=False, timeout=60)
    pods = [f"{name}-pod-0" for name in [*POD_IPS, "evaluator"]]
    podman("pod", "rm", "-f", "--ignore", "-t", "0", *pods, check=False, timeout=60)
    podman("secret", "rm", "calcmesh-certs", check=False)
    podman("volume", "rm", "-f", "calcmesh-certs", check=False)
    podman("network", "rm", "-f", NETWORK, check=False)


def client_container(certs: str) -> list[str]:
    """`podman run` of the image as a throwaway client on the test network, as admin."""
    return ["podman", "run", "--rm", "--label", LABEL, "--network", NETWORK, "--read-only", "--cap-drop", "ALL",
            "-v", f"{certs}:{CERTS}:ro", IMAGE]


def admin_tls() -> list[str]:
    return ["--ca", f"{CERTS}/ca.pem", "--cert", f"{CERTS}/admin.pem", "--key", f"{CERTS}/admin.key"]


def calcmesh(*args: str, certs: str, timeout: float = 60) -> str:
    return run([*client_container(certs), *args, *admin_tls()], timeout=timeout).stdout


def make_certs(work: str) -> str:
    certs = os.path.join(work, "certs")
    names = [*CALCULATORS, "evaluator", SERVICE_NAME]
    run([os.path.join(ROOT, "target", "release", "calcmesh"), "certs", "init", "--dir", certs,
         *[a for name in names for a in ("--san", name)]])
    for name in os.listdir(certs):  # the containers run as 10001, as the Kubernetes pods do
        os.chown(os.path.join(certs, name), 10001, 10001)
    os.chown(certs, 10001, 10001)
    return certs


def metrics(ip: str) -> str | None:
    """An evaluator's /metrics (its --admin port), or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{ip}:9090/metrics", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return None


def evaluations_handled(ip: str) -> int:
    pattern = r'^grpc_server_handled_total\{[^}]*grpc_method="Evaluate"[^}]*\} (\d+)'
    return sum(int(n) for n in re.findall(pattern, metrics(ip) or "", re.M))


def all_three_in_one_evaluation(evaluator: Evaluator, certs: str) -> None:
    """Least-request picks two at random per step: some evaluation of 5 steps names all three."""
    for attempt in range(1, 21):
        table = calcmesh("eval", *evaluator.target, "--steps", "(1 + 2) * (3 + 4) - (5 + 6)", certs=certs)
        if not table.startswith("10\n"):
            raise Failed(f"(1 + 2) * (3 + 4) - (5 + 6) gave:\n{table}")
        if all(endpoint in table for endpoint in evaluator.calculators.values()):
            say(f"evaluation {attempt}: its steps name all three calculators")
            return
    raise Failed(f"no evaluation of 20 named all three calculators; the last:\n{table}")


def log_messages(name: str) -> list[str]:
    logs = podman("logs", name)
    lines = (logs.stdout + logs.stderr).splitlines()
    return [json.loads(line).get("message", "") for line in lines if line.startswith("{")]


def stopped_under_load(evaluator: Evaluator, certs: str, stop: list[str], container: str) -> str:
    """Runs `stop` (podman stop of a calculator) while a bench loads the evaluator: no evaluation
    may fail, and the calculator must drain and exit 0 within its 10 s grace period."""
    before = evaluations_handled(evaluator.admin_ip)
    bench = subprocess.Popen(
        [*client_container(certs), "bench", *evaluator.target, "--rpc", "evaluate", "-c", "4", "-d", "8s",
         "--warmup", "0s", "--timeout", "5s", "--json", *admin_tls()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the bench's evaluations reaching the evaluator",
                 lambda: evaluations_handled(evaluator.admin_ip) > before + 200, 30)
        started = time.monotonic()
        podman(*stop, timeout=60)
        took = time.monotonic() - started
        out, err = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
    report = json.loads(out) if out.strip().startswith("{") else {}
    if report.get("failed") != 0 or not report.get("requests"):
        raise Failed(f"the evaluations during `podman {' '.join(stop)}`: {out}{err}")
    code = podman("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip()
    if code != "0" or took > 10:
        raise Failed(f"{container} exited {code} after {took:.1f} s (want 0 within its 10 s grace period)")
    messages = log_messages(container)
    for want in ["draining: health is NOT_SERVING", "drained: every connection closed"]:
        if not any(m.startswith(want) for m in messages):
            raise Failed(f"{container}'s log has no {want!r}:\n" + "\n".join(messages))
    return f"NOT_SERVING, drained, exit 0 in {took:.1f} s; {report['requests']} evaluations meanwhile, 0 failed"


def health_probe_binary() -> str:
    probe = os.path.join(WORK, "grpc-health-probe")
    if not os.path.exists(probe):
        run(["go", "install", HEALTH_PROBE], timeout=600, env={**os.environ, "GOBIN": WORK})
    return probe


def health_probe(ip: str) -> None:
    out = run([health_probe_binary(), f"-addr={ip}:50081"], timeout=30)
    if "status: SERVING" not in out.stdout + out.stderr:
        raise Failed(f"grpc_health_probe -addr={ip}:50081: {out.stdout}{out.stderr}")
    say(f"grpc_health_probe -addr={ip}:50081: status: SERVING")


def dump_logs(names: list[str]) -> None:
    for name in names:
        logs = podman("logs", "--tail", "20", name, check=False)
        print(f"--- {name}, last lines:\n{logs.stdout}{logs.stderr}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# The mesh: etcd, three calculators registered in it, the evaluator


def registered() -> list[str]:
    out = run(["etcdctl", f"--endpoints=http://{ETCD_IP}:2379", "get", "--prefix", "--keys-only", "calculator/"])
    return sorted(line for line in out.stdout.split() if line)


def container(name: str, ip: str, *args: str, image: str = IMAGE, user: str = "", mounts: tuple = (),
              tmpfs: str = "") -> None:
    """Starts a container on the test network: read-only root, no capabilities."""
    extra = [a for m in mounts for a in ("-v", m)] + (["--tmpfs", tmpfs] if tmpfs else [])
    extra += ["--user", user] if user else []
    podman("run", "-d", "--name", name, "--hostname", name, "--label", LABEL, "--network", NETWORK, "--ip", ip,
           "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *extra, image, *args)


def start_mesh(certs: str) -> None:
    container("etcd", ETCD_IP, "etcd", "--name", "etcd", "--data-dir", "/var/lib/etcd/data",
              "--listen-client-urls", "http://0.0.0.0:2379", "--advertise-client-urls", f"http://{ETCD_IP}:2379",
              image=BASE, user="10001:10001", mounts=("/usr/bin/etcd:/usr/local/bin/etcd:ro",), tmpfs="/var/lib/etcd")
    wait_for("etcd answers", lambda: run(["etcdctl", f"--endpoints=http://{ETCD_IP}:2379", "endpoint", "health"],
                                         check=False, timeout=10).returncode == 0, 30)
    tls = ["--client-ca", f"{CERTS}/ca.pem"]
    for name, ip in CALCULATORS.items():
        container(name, ip, "serve", "calculator", "--listen", "0.0.0.0:50051", "--advertise", f"{name}:50051",
                  "--register", f"etcd://{ETCD_IP}:2379/calculator", "--register-ttl", f"{REGISTER_TTL}s",
                  "--health-listen", "0.0.0.0:50081", "--grace-period", "10s", "--log-format", "json",
                  "--tls-cert", f"{CERTS}/calculator.pem", "--tls-key", f"{CERTS}/calculator.key", *tls,
                  "--allow", "spiffe://calcmesh/evaluator=/calculator.Calculator/;spiffe://calcmesh/admin=/",
                  mounts=(f"{certs}:{CERTS}:ro",))
    container("evaluator", EVALUATOR_IP, "serve", "evaluator", "--listen", "0.0.0.0:50050",
              "--advertise", "evaluator:50050", "--admin", "0.0.0.0:9090", "--log-format", "json",
              "--tls-cert", f"{CERTS}/evaluator.pem", "--tls-key", f"{CERTS}/evaluator.key", *tls,
              "--calculator", f"etcd://{ETCD_IP}:2379/calculator", "--ca", f"{CERTS}/ca.pem",
              "--cert", f"{CERTS}/evaluator.pem", "--key", f"{CERTS}/evaluator.key", mounts=(f"{certs}:{CERTS}:ro",))
    want = sorted(f"calculator/{name}:50051" for name in CALCULATORS)
    wait_for("the three calculators registered in etcd", lambda: registered() == want, 30)
    wait_for("the evaluator serving", lambda: metrics(EVALUATOR_IP) is not None, 30)


def kill_expires(evaluator: Evaluator, certs: str) -> None:
    """podman kill of calculator-2: nothing deregisters it; its key goes with its lease."""
    podman("kill", "calculator-2")
    killed = time.monotonic()
    if "calculator/calculator-2:50051" not in registered():
        raise Failed("calculator-2's key was gone at once after SIGKILL: something deleted it")
    wait_for("calculator-2's key expiring with its lease",
             lambda: "calculator/calculator-2:50051" not in registered(), 3 * REGISTER_TTL)
    expired = time.monotonic() - killed
    table = calcmesh("eval", *evaluator.target, "--steps", "(1 + 2) * (3 + 4)", certs=certs)
    if not table.startswith("21\n") or "calculator-2" in table:
        raise Failed(f"after calculator-2 was killed, (1 + 2) * (3 + 4) gave:\n{table}")
    say(f"podman kill calculator-2: its key expired {expired:.1f} s later (lease TTL {REGISTER_TTL} s); "
        "the evaluator answers on calculator-3")


def mesh(certs: str) -> None:
    evaluator = Evaluator(["--target", "evaluator:50050"], EVALUATOR_IP, {n: f"{n}:50051" for n in CALCULATORS})
    try:
        start_mesh(certs)
        say("etcd, calculator-1..3 (registered) and the evaluator are up on " + SUBNET)
        all_three_in_one_evaluation(evaluator, certs)
        summary = stopped_under_load(evaluator, certs, ["stop", "--time", "30", "calculator-1"], "calculator-1")
        if "calculator/calculator-1:50051" in registered() or "etcd: deregistered" not in log_messages("calculator-1"):
            raise Failed("calculator-1 stopped without deleting its key from etcd")
        say(f"podman stop calculator-1: key deleted, {summary}")
        kill_expires(evaluator, certs)
        health_probe(CALCULATORS["calculator-3"])
    except Failed:
        dump_logs(["etcd", "evaluator", *CALCULATORS])
        raise


# ---------------------------------------------------------------------------------------------
# The manifests' pods: deploy/kubernetes/*.yaml through `podman kube play`

# What podman 4.3's `kube play` does not do that these manifests rely on, and what stands in:
# - one pod per Deployment, whatever `replicas` says: calculator.yaml is played once per replica,
#   as calculator-1..3;
# - no Services: the headless Service's DNS answer (every calculator pod's IP) is given to the
#   evaluator's pod as `hostAliases`, so its dns:/// target resolves as in a cluster;
# - no PodDisruptionBudgets, no gRPC probes (grpc_health_probe calls what they would call), no
#   preStop hooks (podman stop sends SIGTERM at once);
# - `podman pod stop` takes the pod's network down beside its containers: the test stops the
#   calculator's container, as a kubelet's SIGTERM does, and the pod's network stays meanwhile;
# - `status.podIP` and `metadata.namespace` are not valid fieldRefs, and `$(VAR)` in args is not
#   expanded: the copies carry the values (each pod's --ip, namespace calcmesh), as the kubelet
#   would have filled them in;
# - every containerPort is published on the host (two pods would fight over 9090): the copies
#   list none, and the pods are reached at their own addresses;
# - a Secret played with `kube play` comes back into the volume still base64-encoded: the secret
#   is made with `podman secret create` from the same Secret object with its values in the clear.


def deployment(manifest: str) -> dict:
    import yaml  # PyYAML, pinned in interop/python/requirements.txt (the test venv)

    with open(os.path.join(ROOT, "deploy", "kubernetes", manifest)) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    skipped = [f"{d['kind']} {d['metadata']['name']}" for d in docs if d["kind"] != "Deployment"]
    say(f"{manifest}: the Deployment; podman has no {', '.join(skipped)}")
    return next(d for d in docs if d["kind"] == "Deployment")


def for_podman(manifest: dict, name: str, ip: str, aliases: list | None = None) -> dict:
    """One pod of `manifest` as podman 4.3 can play it (see above)."""
    d = json.loads(json.dumps(manifest))
    d["metadata"]["name"], d["spec"]["replicas"] = name, 1
    spec = d["spec"]["template"]["spec"]
    if aliases:
        spec["hostAliases"] = aliases
    fields = {"status.podIP": ip, "metadata.namespace": NAMESPACE}
    for c in spec["containers"]:
        c.pop("ports", None)
        for e in c.get("env", []):
            field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if field in fields:
                e.pop("valueFrom")
                e["value"] = fields[field]
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        c["args"] = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1)) or m.group(0), a) for a in c["args"]]
    return d


def play(work: str, manifest: dict, ip: str) -> None:
    path = os.path.join(work, manifest["metadata"]["name"] + ".json")
    with open(path, "w") as f:
        json.dump(manifest, f)
    podman("kube", "play", "--network", NETWORK, "--ip", ip, path, timeout=120)


def start_pods(work: str, certs: str) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "calcmesh-certs"}, "type": "Opaque",
              "data": {f: open(os.path.join(certs, f)).read() for f in SECRET_FILES}}
    path = os.path.join(work, "secret.json")
    with open(path, "w") as f:
        json.dump(secret, f)
    podman("secret", "create", "calcmesh-certs", path)
    calculator = deployment("calculator.yaml")
    for name, ip in POD_IPS.items():
        play(work, for_podman(calculator, name, ip), ip)
    aliases = [{"ip": ip, "hostnames": [SERVICE_NAME]} for ip in POD_IPS.values()]
    play(work, for_podman(deployment("evaluator.yaml"), "evaluator", EVALUATOR_POD_IP, aliases), EVALUATOR_POD_IP)
    for ip in POD_IPS.values():
        wait_for(f"the calculator pod at {ip} serving", lambda ip=ip: probe_serving(ip), 30)
    wait_for("the evaluator pod serving", lambda: metrics(EVALUATOR_POD_IP) is not None, 30)


def probe_serving(ip: str) -> bool:
    return run([health_probe_binary(), f"-addr={ip}:50081"], check=False, timeout=10).returncode == 0


def as_the_manifests_say(name: str) -> None:
    """The securityContext of the manifests, as podman applied it."""
    shown = podman("inspect", "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.EffectiveCaps}}", name)
    if shown.stdout.split() != ["10001:10001", "true", "[]"]:
        raise Failed(f"{name}: user, read-only root, capabilities: {shown.stdout.strip()} (want 10001:10001 true [])")


def pods(work: str, certs: str) -> None:
    evaluator = Evaluator(["--target", f"{EVALUATOR_POD_IP}:50050", "--tls-server-name", "evaluator"],
                          EVALUATOR_POD_IP, {n: f"{ip}:50051" for n, ip in POD_IPS.items()})
    names = [f"{n}-pod-0-{'evaluator' if n == 'evaluator' else 'calculator'}" for n in [*POD_IPS, "evaluator"]]
    try:
        start_pods(work, certs)
        for name in names:
            as_the_manifests_say(name)
        say("the pods of calculator.yaml (3) and evaluator.yaml are up: uid 10001, read-only root, no capabilities")
        all_three_in_one_evaluation(evaluator, certs)
        for ip in POD_IPS.values():
            health_probe(ip)
        # The container, not the pod: `podman pod stop` takes the pod's network down beside its
        # containers, so a draining calculator's connections vanish mid-call (calls then wait out
        # their deadline); a kubelet keeps the pod's network until its containers have exited.
        summary = stopped_under_load(evaluator, certs, ["stop", "-t", "30", "calculator-1-pod-0-calculator"],
                                     "calculator-1-pod-0-calculator")
        say(f"podman stop calculator-1-pod-0-calculator: {summary}")
    except Failed:
        dump_logs(names)
        raise


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds, so cleanup() runs
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="?", choices=["image", "mesh", "pods"], help="one part only (default: all)")
    args = parser.parse_args()
    started = time.monotonic()
    try:
        setup()
        if args.what in (None, "image"):
            image()
        if args.what != "image":
            run_containers(args.what)
    except (Failed, subprocess.TimeoutExpired) as e:
        print(f"containers: FAILED: {e}", file=sys.stderr)
        return 1
    say(f"all checks passed in {time.monotonic() - started:.0f} s")
    return 0


def run_containers(what: str | None) -> None:
    """The mesh, the pods or both, on a network of their own, removed afterwards whatever happens."""
    cleanup()
    work = tempfile.mkdtemp(prefix="calcmesh-containers-")
    try:
        certs = make_certs(work)
        podman("network", "create", "--subnet", SUBNET, "--label", LABEL, NETWORK)
        if what in (None, "mesh"):
            mesh(certs)
        if what in (None, "pods"):
            pods(work, certs)
    finally:
        cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
