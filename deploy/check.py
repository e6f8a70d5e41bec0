#!/usr/bin/env python3
"""Offline checks of the deployment files under deploy/.

    .venv/bin/python deploy/check.py                                 # the files alone
    .venv/bin/python deploy/check.py --calcmesh target/debug/calcmesh  # and every flag they use

Kubernetes (every YAML document under deploy/kubernetes): the fields every object needs; for
Deployments, selector = template labels, image, resources, gRPC probes on the --health-listen
port, a non-root read-only securityContext, a termination grace period longer than
--grace-period + the preStop sleep, $(VARS) defined, certificate paths mounted; Services and
PodDisruptionBudgets selecting some Deployment's pods; the Service a dns:/// target names being
headless. systemd (deploy/systemd/*.service): sections, ExecStart, TimeoutStopSec longer than
--grace-period, restart and hardening settings, ${VARS} defined.

With --calcmesh, runs `calcmesh serve calculator --help` and `serve evaluator --help` and reports
every flag the files use that the binary does not have: drift between the files and cli.rs.

Prints one line per problem (file: where: what) and exits 1 if there is any. Standard library
and PyYAML only.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
# ServerConfig::default().grace_period, what `--grace-period` is when not given.
DEFAULT_GRACE_SECONDS = 10.0
# The Kubernetes default when terminationGracePeriodSeconds is not set.
DEFAULT_TERMINATION_GRACE = 30
# Flags whose value is a file the process must be able to read.
FILE_FLAGS = (
    "--tls-cert", "--tls-key", "--client-ca", "--policy",
    "--ca", "--cert", "--key", "--etcd-ca", "--etcd-cert", "--etcd-key",
)
SERVICES = ("calculator", "evaluator")
# What every unit's [Service] must say (key: the value it must have, None: any value).
UNIT_REQUIRED = {
    "Type": None,
    "ExecStart": None,
    "KillSignal": "SIGTERM",
    "TimeoutStopSec": None,
    "Restart": "on-failure",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter": "@system-service",
    "MemoryDenyWriteExecute": "yes",
    "LockPersonality": "yes",
    "RestrictNamespaces": "yes",
}


class Problems(list):
    """Problems, each `file: where: what`."""

    def add(self, file: Path | str, where: str, what: str) -> None:
        self.append(f"{display(file)}: {where}: {what}")


def display(path: Path | str) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------
# Durations and command lines


_UNITS = {
    "ns": 1e-9, "nsec": 1e-9, "us": 1e-6, "usec": 1e-6, "µs": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400,
}


def parse_duration(text: str, bare_unit: float | None = None) -> float | None:
    """Seconds in a humantime ("10s", "1m 30s", "500ms") or systemd ("30", "1min 30s") span.

    A bare number takes `bare_unit` (systemd: seconds); None if the text is not a duration.
    """
    text = text.strip()
    if bare_unit is not None and re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text) * bare_unit
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-zµ]+)", text)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([a-zµ]+)|\s", "", text):
        return None
    total = 0.0
    for number, unit in parts:
        if unit not in _UNITS:
            return None
        total += float(number) * _UNITS[unit]
    return total


def parse_flags(args: list[str]) -> dict[str, str | None]:
    """The `--flag` arguments of a command line: `--f=v` and `--f v` give v, a bare `--f` None."""
    flags: dict[str, str | None] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg.partition("=")
            if eq:
                flags[name] = value
            elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                flags[name] = args[i + 1]
                i += 1
            else:
                flags[name] = None
        i += 1
    return flags


def subcommand(args: list[str]) -> str | None:
    """`calculator` or `evaluator` from `… serve NAME …`."""
    for i, arg in enumerate(args[:-1]):
        if arg == "serve":
            return args[i + 1]
    return None


def port_of(address: str | None) -> int | None:
    if not address:
        return None
    match = re.search(r":(\d+)$", address)
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------------------------------------
# Kubernetes


class Doc:
    """One YAML document: where it came from and what it holds."""

    def __init__(self, path: Path, index: int, obj: dict):
        self.path, self.index, self.obj = path, index, obj

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", "?"))

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name", f"#{self.index}"))

    def where(self, field: str = "") -> str:
        return f"{self.kind} {self.name}" + (f" {field}" if field else "")


def load_kubernetes(directory: Path, problems: Problems) -> list[Doc]:
    docs = []
    files = sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml"))
    if not files:
        problems.add(directory, "files", "no YAML file found")
    for path in files:
        try:
            loaded = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as err:
            problems.add(path, "YAML", str(err).replace("\n", " "))
            continue
        for index, obj in enumerate(loaded):
            if obj is None:
                continue
            if not isinstance(obj, dict):
                problems.add(path, f"document {index + 1}", "is not a mapping")
                continue
            docs.append(Doc(path, index, obj))
    return docs


def get(obj, *keys, default=None):
    for key in keys:
        if isinstance(obj, dict):
            obj = obj.get(key)
        elif isinstance(obj, list) and isinstance(key, int) and key < len(obj):
            obj = obj[key]
        else:
            return default
        if obj is None:
            return default
    return obj


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def prestop_sleep(container: dict) -> float:
    """Seconds the preStop hook sleeps: `sleep: {seconds: N}` or an exec of `sleep N`."""
    pre = get(container, "lifecycle", "preStop", default={})
    seconds = get(pre, "sleep", "seconds")
    if seconds is not None:
        return float(seconds)
    command = " ".join(str(c) for c in get(pre, "exec", "command", default=[]))
    match = re.search(r"\bsleep\s+(\d+(?:\.\d+)?)", command)
    return float(match.group(1)) if match else 0.0


def check_kubernetes(docs: list[Doc], problems: Problems) -> list[tuple[Doc, str, str, list[str]]]:
    """Checks the objects; returns (doc, container, subcommand, args) of every calcmesh container."""
    seen: dict[tuple[str, str], Doc] = {}
    for doc in docs:
        for field in ("apiVersion", "kind"):
            if not doc.obj.get(field):
                problems.add(doc.path, doc.where(field), "missing")
        if not get(doc.obj, "metadata", "name"):
            problems.add(doc.path, doc.where("metadata.name"), "missing")
        if get(doc.obj, "metadata", "namespace"):
            problems.add(doc.path, doc.where("metadata.namespace"),
                         "set; the manifests are namespace-free (kubectl apply -n NS)")
        key = (doc.kind, doc.name)
        if key in seen:
            problems.add(doc.path, doc.where(), f"defined twice (also in {display(seen[key].path)})")
        seen[key] = doc

    deployments = [d for d in docs if d.kind == "Deployment"]
    containers = []
    for doc in deployments:
        containers += check_deployment(doc, problems)

    def pods_of(selector: dict) -> list[Doc]:
        return [d for d in deployments
                if selects(selector, get(d.obj, "spec", "template", "metadata", "labels", default={}))]

    services = {d.name: d for d in docs if d.kind == "Service"}
    for doc in services.values():
        selector = get(doc.obj, "spec", "selector", default={})
        targets = pods_of(selector)
        if not targets:
            problems.add(doc.path, doc.where("spec.selector"),
                         f"{selector} selects no Deployment's pod template labels")
        ports = get(doc.obj, "spec", "ports", default=[])
        if not ports:
            problems.add(doc.path, doc.where("spec.ports"), "missing")
        for i, port in enumerate(ports):
            if not isinstance(port.get("port"), int):
                problems.add(doc.path, doc.where(f"spec.ports[{i}].port"), "missing or not a number")
            target = port.get("targetPort", port.get("port"))
            for dep in targets:
                names, numbers = container_ports(dep)
                if target not in names and target not in numbers:
                    problems.add(doc.path, doc.where(f"spec.ports[{i}].targetPort"),
                                 f"{target!r} is no container port of Deployment {dep.name}")

    for doc in docs:
        if doc.kind != "PodDisruptionBudget":
            continue
        spec = doc.obj.get("spec") or {}
        selector = get(spec, "selector", "matchLabels", default={})
        targets = pods_of(selector)
        if not targets:
            problems.add(doc.path, doc.where("spec.selector.matchLabels"),
                         f"{selector} selects no Deployment's pod template labels")
        if ("minAvailable" in spec) == ("maxUnavailable" in spec):
            problems.add(doc.path, doc.where("spec"), "needs exactly one of minAvailable, maxUnavailable")
        minimum = spec.get("minAvailable")
        for dep in targets:
            replicas = get(dep.obj, "spec", "replicas", default=1)
            if isinstance(minimum, int) and minimum >= replicas:
                problems.add(doc.path, doc.where("spec.minAvailable"),
                             f"{minimum} >= the {replicas} replicas of {dep.name}: no pod could ever be evicted")

    # A dns:/// target must name a headless Service (clusterIP: None) with that port: a virtual
    # IP would give the client one address, hence one connection to one pod.
    for doc, cname, _, args in containers:
        for flag, value in parse_flags(args).items():
            match = re.match(r"dns://[^/]*/([^.:/]+)[^:]*:(\d+)$", value or "")
            if not match:
                continue
            where = doc.where(f"container {cname} args {flag}")
            service = services.get(match.group(1))
            if service is None:
                problems.add(doc.path, where, f"names Service {match.group(1)!r}, which is not defined")
                continue
            if get(service.obj, "spec", "clusterIP") != "None":
                problems.add(service.path, service.where("spec.clusterIP"),
                             f"must be None (headless): {display(doc.path)} dials it with {value}")
            ports = [p.get("port") for p in get(service.obj, "spec", "ports", default=[])]
            if int(match.group(2)) not in ports:
                problems.add(doc.path, where, f"port {match.group(2)} is not a port of Service {service.name}")
    return containers


def container_ports(dep: Doc) -> tuple[set, set]:
    names, numbers = set(), set()
    for c in get(dep.obj, "spec", "template", "spec", "containers", default=[]):
        for p in c.get("ports") or []:
            if p.get("name"):
                names.add(p["name"])
            numbers.add(p.get("containerPort"))
    return names, numbers


def check_deployment(doc: Doc, problems: Problems) -> list[tuple[Doc, str, str, list[str]]]:
    p, spec = doc.path, doc.obj.get("spec") or {}
    add = lambda field, what: problems.add(p, doc.where(field), what)  # noqa: E731
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 1:
        add("spec.replicas", f"{replicas!r} is not a positive number")
    selector = get(spec, "selector", "matchLabels", default={})
    labels = get(spec, "template", "metadata", "labels", default={})
    if not selector:
        add("spec.selector.matchLabels", "missing")
    elif not selects(selector, labels):
        add("spec.selector.matchLabels", f"{selector} does not match the template labels {labels}")
    pod = get(spec, "template", "spec", default={})
    pod_sc = pod.get("securityContext") or {}
    annotations = get(spec, "template", "metadata", "annotations", default={})
    for i, tsc in enumerate(pod.get("topologySpreadConstraints") or []):
        if not selects(get(tsc, "labelSelector", "matchLabels", default={}), labels):
            add(f"topologySpreadConstraints[{i}].labelSelector", "does not match the template labels")
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    termination = pod.get("terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE)
    found = []
    cs = pod.get("containers") or []
    if not cs:
        add("spec.template.spec.containers", "missing")
    for c in cs:
        cname = c.get("name", "?")
        at = lambda field: f"container {cname} {field}"  # noqa: E731
        if not c.get("image"):
            add(at("image"), "missing")
        for part in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if get(c, "resources", part, resource) is None:
                    add(at(f"resources.{part}.{resource}"), "missing")
        args = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
        flags = parse_flags(args)
        health = port_of(flags.get("--health-listen"))
        for probe in ("livenessProbe", "readinessProbe"):
            port = get(c, probe, "grpc", "port")
            if port is None:
                add(at(f"{probe}.grpc.port"), "missing: probe grpc.health.v1 natively")
            elif health is not None and port != health:
                add(at(f"{probe}.grpc.port"), f"{port}, but --health-listen serves health on port {health}")
            elif health is None and subcommand(args) in SERVICES:
                add(at(f"{probe}.grpc.port"),
                    "no --health-listen: the main port serves TLS, which the kubelet's probe cannot do")
        sc = c.get("securityContext") or {}
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            add(at("securityContext.runAsNonRoot"), "must be true (container or pod)")
        if sc.get("readOnlyRootFilesystem") is not True:
            add(at("securityContext.readOnlyRootFilesystem"), "must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            add(at("securityContext.allowPrivilegeEscalation"), "must be false")
        if "ALL" not in (get(sc, "capabilities", "drop", default=[])):
            add(at("securityContext.capabilities.drop"), "must contain ALL")

        sub = subcommand(args)
        if sub is None:
            continue
        if sub not in SERVICES:
            add(at("args"), f"serve {sub}: not a calcmesh service ({', '.join(SERVICES)})")
        found.append((doc, cname, sub, args))
        if "--insecure" in flags:
            add(at("args --insecure"), "plaintext on a pod address; use the TLS flags")
        grace = parse_duration(flags.get("--grace-period") or "", None) \
            if "--grace-period" in flags else DEFAULT_GRACE_SECONDS
        if grace is None:
            add(at("args --grace-period"), f"{flags['--grace-period']!r} is not a duration")
            grace = DEFAULT_GRACE_SECONDS
        sleep = prestop_sleep(c)
        if not isinstance(termination, (int, float)) or termination <= grace + sleep:
            add("spec.template.spec.terminationGracePeriodSeconds",
                f"{termination} s does not cover the preStop sleep ({sleep:g} s) + --grace-period "
                f"({grace:g} s) of container {cname}: the kubelet would SIGKILL a draining server")
        names, numbers = container_ports(doc)
        listen = port_of(flags.get("--listen"))
        if listen is None:
            add(at("args --listen"), "missing: the default is 127.0.0.1, unreachable from other pods")
        elif listen not in numbers:
            add(at("ports"), f"no containerPort {listen} (--listen)")
        admin = port_of(flags.get("--admin"))
        if admin is not None:
            if str(annotations.get("prometheus.io/scrape")) != "true":
                add("spec.template.metadata.annotations", "--admin serves /metrics but prometheus.io/scrape is not \"true\"")
            elif str(annotations.get("prometheus.io/port")) != str(admin):
                add("spec.template.metadata.annotations prometheus.io/port",
                    f"{annotations.get('prometheus.io/port')!r}, but --admin listens on {admin}")
        env = {e.get("name") for e in c.get("env") or []}
        for var in sorted({v for a in args for v in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", a)}):
            if var not in env:
                add(at("args"), f"$({var}) is not in env: Kubernetes would pass it literally")
        check_mounted_files(doc, c, flags, volumes, add, at)
    return found


def check_mounted_files(doc, container, flags, volumes, add, at) -> None:
    """Every certificate/key flag names a file under a mount, present in a Secret's items."""
    mounts = []
    for m in container.get("volumeMounts") or []:
        if m.get("name") not in volumes:
            add(at(f"volumeMounts {m.get('name')}"), "names no volume of the pod")
            continue
        mounts.append((m.get("mountPath", "").rstrip("/") + "/", volumes[m["name"]]))
    for flag in FILE_FLAGS:
        path = flags.get(flag)
        if not path:
            continue
        mount = next(((mp, v) for mp, v in mounts if path.startswith(mp)), None)
        if mount is None:
            add(at(f"args {flag}"), f"{path} is under no volumeMount")
            continue
        items = get(mount[1], "secret", "items")
        relative = path[len(mount[0]):]
        if items is not None and relative not in {i.get("path") for i in items}:
            add(at(f"args {flag}"), f"{path}: {relative} is not among the Secret volume's items")


# ---------------------------------------------------------------------------------------------
# systemd


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file: section → [(key, value)], keeping repeated keys, joining `\\` continuations."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if pending and line[:1] in ("#", ";"):
            continue  # comment lines inside a continuation are skipped, as systemd does
        line = pending + line
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
        elif "=" in line and current is not None:
            key, _, value = line.partition("=")
            sections[current].append((key.strip(), value.strip()))
        else:
            sections.setdefault("?", []).append((line, ""))
    return sections


def unit_value(section: list[tuple[str, str]], key: str) -> str | None:
    values = [v for k, v in section if k == key]
    return values[-1] if values else None


def env_file_vars(path: Path) -> set[str]:
    names = set()
    if path.is_file():
        for line in path.read_text().splitlines():
            match = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", line)
            if match:
                names.add(match.group(1))
    return names


def check_unit(path: Path, text: str, problems: Problems) -> tuple[str, list[str]] | None:
    """Checks one unit; returns (subcommand, ExecStart arguments) if it runs `calcmesh serve`."""
    unit = parse_unit(text)
    for junk, _ in unit.get("?", []):
        problems.add(path, "syntax", f"not a section, key=value or comment: {junk!r}")
    for section in ("Unit", "Service", "Install"):
        if section not in unit:
            problems.add(path, f"[{section}]", "missing")
    service = unit.get("Service", [])
    for key, want in UNIT_REQUIRED.items():
        values = [v for k, v in service if k == key]
        if not values:
            problems.add(path, f"[Service] {key}", "missing")
        elif want is not None and want not in values:
            problems.add(path, f"[Service] {key}", f"{values[-1]!r}, expected {want!r}")
    if not unit_value(unit.get("Install", []), "WantedBy"):
        problems.add(path, "[Install] WantedBy", "missing")
    exec_start = unit_value(service, "ExecStart")
    if not exec_start:
        return None
    try:
        args = shlex.split(exec_start)
    except ValueError as err:
        problems.add(path, "[Service] ExecStart", f"cannot be split into words: {err}")
        return None
    binary = args[0].lstrip("@-:+!") if args else ""
    if not binary.startswith("/"):
        problems.add(path, "[Service] ExecStart", f"{binary!r} is not an absolute path")
    sub = subcommand(args)
    if sub not in SERVICES:
        problems.add(path, "[Service] ExecStart", f"does not run `calcmesh serve {'|'.join(SERVICES)}`")
        return None
    flags = parse_flags(args)
    if "--insecure" in flags:
        problems.add(path, "[Service] ExecStart --insecure", "plaintext on a host address; use the TLS flags")
    if "--grace-period" in flags:
        grace = parse_duration(flags["--grace-period"] or "")
        if grace is None:
            problems.add(path, "[Service] ExecStart --grace-period", f"{flags['--grace-period']!r} is not a duration")
            grace = DEFAULT_GRACE_SECONDS
    else:
        grace = DEFAULT_GRACE_SECONDS
    stop = unit_value(service, "TimeoutStopSec")
    if stop is not None and stop != "infinity":
        seconds = parse_duration(stop, bare_unit=1.0)
        if seconds is None:
            problems.add(path, "[Service] TimeoutStopSec", f"{stop!r} is not a time span")
        elif seconds <= grace:
            problems.add(path, "[Service] TimeoutStopSec",
                         f"{stop} does not cover --grace-period ({grace:g} s): systemd would SIGKILL a draining server")
    defined = set()
    for key, value in service:
        if key == "Environment":
            defined |= {w.split("=", 1)[0] for w in shlex.split(value) if "=" in w}
        elif key == "EnvironmentFile":
            example = path.parent / Path(value.lstrip("-")).name
            if not example.is_file():
                problems.add(path, "[Service] EnvironmentFile",
                             f"{value}: no example {Path(value.lstrip('-')).name} next to the unit")
            defined |= env_file_vars(example)
    for var in sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", exec_start))):
        if var not in defined:
            problems.add(path, "[Service] ExecStart", f"${{{var}}} is set by no Environment= or EnvironmentFile=")
    return sub, args


# ---------------------------------------------------------------------------------------------
# Flags against the binary


HELP_FLAG = re.compile(r"^\s{1,8}(?:-[A-Za-z0-9], )?--([a-z0-9][a-z0-9-]*)", re.MULTILINE)


def binary_flags(binary: str, sub: str, problems: Problems) -> set[str] | None:
    """The flags `calcmesh serve SUB --help` lists (option lines only, not prose)."""
    command = [binary, "serve", sub, "--help"]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        problems.add(binary, " ".join(command[1:]), f"cannot run: {err}")
        return None
    flags = {f"--{m}" for m in HELP_FLAG.findall(out.stdout)}
    if out.returncode != 0 or not flags:
        problems.add(binary, " ".join(command[1:]),
                     f"exit {out.returncode}, {len(flags)} flags read: {out.stderr.strip()[:200]}")
        return None
    return flags


def check_flags(binary: str, used: list[tuple[Path, str, str, list[str]]], problems: Problems) -> None:
    known = {sub: binary_flags(binary, sub, problems) for sub in sorted({u[2] for u in used})}
    for path, where, sub, args in used:
        flags = known.get(sub)
        if flags is None:
            continue
        for flag in parse_flags(args):
            if flag not in flags:
                problems.add(path, f"{where} {flag}",
                             f"not an option of `calcmesh serve {sub}` (absent from its --help)")


# ---------------------------------------------------------------------------------------------


def run(calcmesh: str | None = None, deploy: Path = DEPLOY) -> Problems:
    problems = Problems()
    used: list[tuple[Path, str, str, list[str]]] = []
    docs = load_kubernetes(deploy / "kubernetes", problems)
    for doc, cname, sub, args in check_kubernetes(docs, problems):
        used.append((doc.path, doc.where(f"container {cname} args"), sub, args))
    units = sorted((deploy / "systemd").glob("*.service"))
    if not units:
        problems.add(deploy / "systemd", "files", "no .service file found")
    for path in units:
        found = check_unit(path, path.read_text(), problems)
        if found:
            used.append((path, "[Service] ExecStart", found[0], found[1]))
    for sub in SERVICES:
        if not any(u[2] == sub for u in used):
            problems.add(deploy, "files", f"nothing runs `calcmesh serve {sub}`")
    if calcmesh:
        check_flags(calcmesh, used, problems)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calcmesh", metavar="PATH",
                        help="the calcmesh binary: also check every flag the files use against its --help")
    options = parser.parse_args()
    problems = run(options.calcmesh)
    for problem in problems:
        print(problem)
    if problems:
        print(f"deploy/check.py: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("deploy/check.py: ok" + (" (flags checked against " + options.calcmesh + ")" if options.calcmesh else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
