#!/usr/bin/env python3
"""Runs the README's commands exactly as written, on a clean checkout, and checks what they print.

    python3 scripts/readme_check.py                      # README.md, docs/*.md, deploy/README.md
    python3 scripts/readme_check.py --list               # how each block is treated, nothing run
    python3 scripts/readme_check.py --only 'Secure it'   # blocks whose heading contains the text

Every fenced block of a checked document has a language. Every shell block (sh, bash, shell,
console) has a marker on the line right above its fence saying how this check treats it:

    <!-- readme-test: run -->                    run it, then stop what it left in the background
    <!-- readme-test: run; mesh -->              run it while the README's run command is up
    <!-- readme-test: run; keep -->              leave its background servers to the next block
    <!-- readme-test: run; vary=REGEX -->        text matching REGEX may differ (ids, timings)
    <!-- readme-test: run; any-order -->         output lines may come in any order (concurrency,
                                                 hash maps); a `…` line then allows extra lines
    <!-- readme-test: run-command -->            the README's run command: started in the
                                                 background, ready when it prints "stop with
                                                 Ctrl-C", stopped with Ctrl-C (SIGINT), exit 0
    <!-- readme-test: skip: WHY -->              not run, and why (needs Docker, several machines)

A shell block without a marker fails the check: the docs cannot grow an untested command.

Inside a run block every command runs as a person would type it, in one bash per block, from
the checkout's root, with `calcmesh` standing for `cargo run -q --release --` as the README says.
What a command should print is written in comments:

    calcmesh calc 2 ^ 10                 # unary → 1024       one line of output: "1024"
    calcmesh eval --steps "1 + 2"        # a note, no arrow   output not checked
    # 3                                  comment lines right under a command: its output,
    # step  operation  result  endpoint  line by line (whitespace runs count as one space)

In expected output `…` stands for any text, and a line that is only `…` for any number of
lines. A command must exit 0, or 1 or 2 (a failed call, bad usage) when its expected output has a
line starting `error:`.
A command ending in `&` runs in the background; the next command waits until it is ready (the
READY table below says how each kind of server shows it) and the block's end stops it (SIGTERM).

The checkout is `target/readme-check/checkout`: the files git tracks or would track (not the
ignored ones) as they are in the working tree, nothing else; its own `target/` is kept between
runs to save rebuilding.
The README's commands use fixed ports, so the check refuses to start while one is taken.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
def docs_in_order() -> list[str]:
    """README.md, the reference pages in docs/ in the order docs/README.md lists them (a page
    may use what an earlier one made: certificates, a running etcd), then deploy/README.md."""
    index = os.path.join(ROOT, "docs", "README.md")
    pages = []
    if os.path.exists(index):
        with open(index) as f:
            for name in re.findall(r"\]\(([a-z0-9-]+\.md)\)", f.read()):
                if name not in pages:
                    pages.append(name)
    return ["README.md"] + [f"docs/{p}" for p in pages] + ["deploy/README.md"]


DOCS = docs_in_order()
SHELL_LANGS = {"sh", "bash", "shell", "console"}
MARKER = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(```+)\s*(\S*)\s*$")

# How a background command shows it is ready: (pattern on the command, what to wait for).
# "log:TEXT" waits for TEXT in what the command prints; "tcp:HOST:PORT" for a port to accept.
READY = [
    (re.compile(r"--register\b"), "log:etcd: registered"),
    (re.compile(r"\bup\b"), "log:stop with Ctrl-C"),
    (re.compile(r"\bserve (calculator|evaluator)\b|calc_server\.py|server\.js|go run \./server|interop\.CalcServer|notes-server"), "log:listening on"),
    (re.compile(r"^etcd\b"), "tcp:127.0.0.1:2379"),
]
# Ports the README's commands bind; taken ones would make the check fail in confusing ways.
PORTS = [2379, 2380, 50050, 50051, 50052, 50053, 50054, 50055, 50056, 50057, 50058, 50060, 50061, 50090, 50091, 50092, 50093,
         50151, 50152, 50153]
CARGO_STATUS = re.compile(r"^\s*(Compiling|Finished|Running|Blocking|Updating|Downloaded|Downloading|Locking|Adding)\b")
PRELUDE = 'calcmesh() { cargo run -q --release -- "$@"; }\n'
BUILD_TIMEOUT = 1200  # the first command of a fresh checkout compiles everything
BLOCK_TIMEOUT = 1200


@dataclass
class Command:
    """One command of a block, with what it should print."""

    line: int  # 1-based line in the document where the command starts
    text: str  # the command as bash sees it, trailing comment removed
    background: bool = False
    expected: list[str] | None = None  # None: output not checked
    inline: bool = False  # the output was given on the command's line (`# → X`)


@dataclass
class Block:
    """A fenced shell block and what its marker says."""

    doc: str
    line: int  # line of the opening fence
    heading: str
    marker: str | None
    body: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line} (block under \"{self.heading}\")"

    def options(self) -> dict[str, str]:
        """The marker's `;`-separated options: `name` or `name=value` (`skip: WHY` too)."""
        marker = self.marker or ""
        if marker.startswith("skip"):
            return {"skip": marker[4:].lstrip(": ").strip()}
        opts = {}
        for part in marker.split(";"):
            part = part.strip()
            if not part:
                continue
            name, _, value = part.partition("=")
            opts[name.strip()] = value.strip()
        return opts


class CheckError(Exception):
    """A README that cannot be checked as it stands (unmarked block, bad marker, bad syntax)."""


# ---------------------------------------------------------------------------------------------
# Reading the documents


def read_blocks(doc: str, text: str) -> list[Block]:
    """Every fenced block of a markdown text; shell blocks without a marker are an error."""
    lines = text.splitlines()
    blocks, heading, i = [], "(top)", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        m = FENCE.match(line)
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        start = i
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        if not lang:
            raise CheckError(f"{doc}:{start + 1}: a fenced block without a language: say which (sh, text, rust, …)")
        if lang not in SHELL_LANGS:
            continue
        prev = lines[start - 1].strip() if start > 0 else ""
        marker = MARKER.match(prev)
        block = Block(doc, start + 1, heading, marker.group(1) if marker else None, body)
        if block.marker is None:
            raise CheckError(
                f"{block.where}: a shell block with no marker. Put `<!-- readme-test: run -->` "
                "(or `run; mesh`, or `skip: WHY`) on the line above its fence; see scripts/readme_check.py"
            )
        known = {"run", "run-command", "mesh", "keep", "vary", "any-order", "skip"}
        unknown = set(block.options()) - known
        if unknown:
            raise CheckError(f"{block.where}: unknown marker option(s) {sorted(unknown)}; known: {sorted(known)}")
        blocks.append(block)
    return blocks


def split_comment(line: str) -> tuple[str, str | None]:
    """Splits `cmd  # comment` as bash does: `#` starts a comment after whitespace, outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
            elif ch == "\\" and quote == '"':
                continue
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), None


def complete(text: str) -> bool:
    """Whether bash reads `text` as whole commands (a `for … do` without `done` is not)."""
    r = subprocess.run(["bash", "-n", "-c", text], capture_output=True, text=True)
    return "unexpected end of file" not in r.stderr


def parse_commands(block: Block) -> list[Command]:
    """The block's commands, continuation lines joined, each with the output its comments give."""
    commands: list[Command] = []
    pending, start = "", 0
    last: Command | None = None  # the command whose output comment lines may follow
    for n, raw in enumerate(block.body, start=block.line + 1):
        stripped = raw.strip()
        if not stripped:
            last = None
            continue
        if not pending and stripped.startswith("#"):
            if last is not None and not last.inline:
                if last.expected is None:
                    last.expected = []
                last.expected.append(stripped[1:].strip())
            continue
        code, comment = split_comment(raw)
        if not pending:
            start = n
        if code.endswith("\\"):
            pending += code[:-1] + " "
            continue
        pending += code
        if not complete(pending):
            pending += "\n"
            continue
        text, pending = pending.strip(), ""
        background = text.endswith("&") and not text.endswith("&&")
        if background:
            text = text[:-1].rstrip()
        command = Command(start, text, background)
        if comment and "→" in comment:
            out = comment.split("→", 1)[1].strip()
            command.expected = [out] if out else []
            command.inline = bool(out)
        commands.append(command)
        last = command
    if pending:
        raise CheckError(f"{block.where}: the block ends inside a command: {pending.strip()!r}")
    return commands


# ---------------------------------------------------------------------------------------------
# Comparing output


def normalise(line: str, vary: re.Pattern | None) -> str:
    line = " ".join(line.split())
    return vary.sub("\x00", line) if vary else line


def line_pattern(expected: str) -> re.Pattern:
    parts = [re.escape(p) for p in expected.split("…")]
    return re.compile(".*".join(parts), re.S)


def matches(expected: list[str], actual: list[str], vary: re.Pattern | None = None, any_order: bool = False) -> bool:
    """Whether the output lines match the expected ones (`…` any text, a lone `…` any lines)."""
    exp = [normalise(e, vary) for e in expected]
    act = [normalise(a, vary) for a in actual]
    if any_order:
        return matches_any_order(exp, act)

    def go(i: int, j: int) -> bool:
        if i == len(exp):
            return j == len(act)
        if exp[i] == "…":
            return any(go(i + 1, k) for k in range(j, len(act) + 1))
        return j < len(act) and line_pattern(exp[i]).fullmatch(act[j]) is not None and go(i + 1, j + 1)

    return go(0, 0)


def matches_any_order(exp: list[str], act: list[str]) -> bool:
    """Each expected line matches its own output line, wherever; a `…` line allows others."""
    lines = [e for e in exp if e != "…"]
    if "…" not in exp and len(lines) != len(act):
        return False
    unused = list(act)
    for e in lines:
        pattern = line_pattern(e)
        hit = next((a for a in unused if pattern.fullmatch(a)), None)
        if hit is None:
            return False
        unused.remove(hit)
    return True


def program_output(raw: str) -> list[str]:
    """What a command printed, less cargo's own status lines and blank lines."""
    return [l for l in raw.splitlines() if l.strip() and not CARGO_STATUS.match(l)]


def check_command(block: Block, cmd: Command, output: str, rc: str) -> str | None:
    """A failure message naming the document line, or None."""
    where = f"{block.doc}:{cmd.line}"
    if rc == "not-ready":
        return f"{where}: `{cmd.text}` never became ready; it printed:\n{indent(output)}"
    if rc == "":
        return f"{where}: `{cmd.text}` did not run (an earlier command of the block stopped it)"
    if cmd.background:
        return None
    wants_error = bool(cmd.expected) and any(e.startswith("error:") for e in cmd.expected)
    want_rc = ("1", "2") if wants_error else ("0",)
    got = program_output(output)
    opts = block.options()
    vary = re.compile(opts["vary"]) if opts.get("vary") else None
    if cmd.expected is not None and not matches(cmd.expected, got, vary, "any-order" in opts):
        return (f"{where}: `{cmd.text}` printed something else.\n  expected:\n{indent(chr(10).join(cmd.expected))}"
                f"\n  got (exit {rc}):\n{indent(chr(10).join(got))}")
    if rc not in want_rc:
        return f"{where}: `{cmd.text}` exited {rc}, expected {' or '.join(want_rc)}; it printed:\n{indent(output)}"
    return None


def indent(text: str) -> str:
    return "\n".join("    | " + l for l in (text.splitlines() or [""]))


# ---------------------------------------------------------------------------------------------
# Running


def ready_test(cmd: Command) -> str:
    for pattern, how in READY:
        if pattern.search(cmd.text):
            return how
    raise CheckError(f"`{cmd.text}` runs in the background but scripts/readme_check.py's READY "
                     "table does not say how to tell it is ready: add it there")


def block_script(commands: list[Command], work: str) -> str:
    """One bash script for the block: each command's output and exit status land in `work`."""
    out = [PRELUDE, READY_FUNCTIONS]
    for i, cmd in enumerate(commands):
        o, r = f"'{work}/{i}.out'", f"'{work}/{i}.rc'"
        if cmd.background:
            how, _, arg = ready_test(cmd).partition(":")
            out.append(f"{{ {cmd.text}\n}} > {o} 2>&1 < /dev/null &\n")
            out.append(f"__ready_{how} $! {o} '{arg}' || {{ echo not-ready > {r}; exit 0; }}; echo 0 > {r}\n")
        else:
            out.append(f"{{ {cmd.text}\n}} > {o} 2>&1 < /dev/null; echo $? > {r}\n")
    return "".join(out)


READY_FUNCTIONS = r"""
__ready_log() {  # PID FILE TEXT: wait until FILE holds TEXT, while PID lives (20 min at most)
  local i; for ((i = 0; i < 12000; i++)); do
    grep -qsF -- "$3" "$2" && return 0; kill -0 "$1" 2>/dev/null || return 1; sleep 0.1
  done; return 1
}
__ready_tcp() {  # PID FILE HOST:PORT: wait until the port accepts, while PID lives (60 s at most)
  local i; for ((i = 0; i < 600; i++)); do
    (exec 3<>"/dev/tcp/${3%:*}/${3##*:}") 2>/dev/null && return 0; kill -0 "$1" 2>/dev/null || return 1; sleep 0.1
  done; return 1
}
"""


def stop_group(pgid: int, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Sends `sig` to a process group and waits until it is gone (SIGKILL after `timeout`)."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        LIVE.discard(pgid)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            LIVE.discard(pgid)
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Mesh:
    """The README's run command, up in the background while `mesh` blocks run."""

    def __init__(self, block: Block, checkout: str, work: str):
        cmds = parse_commands(block)
        if len(cmds) != 1:
            raise CheckError(f"{block.where}: the run command block should hold exactly one command")
        self.block, self.cmd, self.checkout = block, cmds[0], checkout
        self.log = os.path.join(work, "run-command.out")
        self.proc: subprocess.Popen | None = None
        self.failed = False
        self.tried = False

    def start(self) -> str | None:
        self.tried = True
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(["bash", "-c", self.cmd.text], cwd=self.checkout, stdout=f,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        LIVE.add(self.proc.pid)
        deadline = time.monotonic() + BUILD_TIMEOUT
        while time.monotonic() < deadline:
            if "stop with Ctrl-C" in read(self.log):
                return None
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        return f"{self.block.doc}:{self.cmd.line}: `{self.cmd.text}` never said it was up; it printed:\n{indent(read(self.log)[-4000:])}"

    def stop(self) -> str | None:
        """Ctrl-C, as in a terminal: SIGINT to the foreground process group; expects exit 0."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop_group(proc.pid, signal.SIGKILL)
            return f"{self.block.doc}:{self.cmd.line}: `{self.cmd.text}` did not exit within 30 s of Ctrl-C"
        if rc != 0:
            return f"{self.block.doc}:{self.cmd.line}: `{self.cmd.text}` exited {rc} after Ctrl-C, expected 0:\n{indent(read(self.log)[-4000:])}"
        return None

    @property
    def up(self) -> bool:
        return self.proc is not None


def read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def run_block(block: Block, checkout: str, work: str) -> tuple[list[str], int, int]:
    """Runs a block's commands; returns (failures, commands checked, process group left running)."""
    commands = parse_commands(block)
    bwork = os.path.join(work, f"{os.path.basename(block.doc)}-{block.line}")
    shutil.rmtree(bwork, ignore_errors=True)
    os.makedirs(bwork)
    script = block_script(commands, bwork)
    with open(os.path.join(bwork, "script.sh"), "w") as f:
        f.write(script)
    proc = subprocess.Popen(["bash", "-c", script], cwd=checkout, start_new_session=True,
                            stdin=subprocess.DEVNULL)
    LIVE.add(proc.pid)
    failures = []
    try:
        proc.wait(timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        failures.append(f"{block.where}: did not finish within {BLOCK_TIMEOUT} s")
    for i, cmd in enumerate(commands):
        rc = read(os.path.join(bwork, f"{i}.rc")).strip()
        failure = check_command(block, cmd, read(os.path.join(bwork, f"{i}.out")), rc)
        if failure:
            failures.append(failure)
    return failures, len(commands), proc.pid


# ---------------------------------------------------------------------------------------------
# The checkout and the whole run


def make_checkout(dest: str) -> None:
    """`dest` becomes the files git tracks or would track, as in the working tree; its `target/`
    is kept."""
    os.makedirs(dest, exist_ok=True)
    for name in os.listdir(dest):
        if name != "target":
            path = os.path.join(dest, name)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = os.path.join(ROOT, rel)
        if not os.path.lexists(src):
            continue  # deleted in the working tree
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel), follow_symlinks=False)


def taken_ports() -> list[int]:
    taken = []
    for port in PORTS:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                taken.append(port)
    return taken


def wait_for_ports(bound: float = 90.0) -> list[int]:
    """The README's ports still taken after waiting up to `bound` seconds for them to free. A
    test's connection closed a moment ago can hold one as its local port (the kernel's ephemeral
    range, 32768-60999, holds most of them) for up to a minute after its process has gone."""
    deadline = time.monotonic() + bound
    taken = taken_ports()
    if taken:
        print(f"readme: ports {taken} are in use; waiting up to {bound:.0f} s for them to free")
    while taken and time.monotonic() < deadline:
        time.sleep(1)
        taken = taken_ports()
    return taken


def load_blocks(docs: list[str], base: str) -> list[Block]:
    blocks = []
    for doc in docs:
        with open(os.path.join(base, doc)) as f:
            blocks += read_blocks(doc, f.read())
    return blocks


# Process groups started and not yet stopped: stopped on the way out, however the run ends.
LIVE: set[int] = set()


def run_all(blocks: list[Block], checkout: str, work: str, log=print) -> tuple[list[str], int]:
    """Runs every block in document order; returns (failures, commands checked)."""
    try:
        return run_blocks(blocks, checkout, work, log)
    finally:
        for pgid in list(LIVE):
            stop_group(pgid, signal.SIGKILL, timeout=5)


def run_blocks(blocks: list[Block], checkout: str, work: str, log) -> tuple[list[str], int]:
    failures, checked = [], 0
    mesh = None
    kept: list[int] = []
    for block in blocks:
        opts = block.options()
        if "skip" in opts:
            log(f"skip  {block.where}: {opts['skip']}")
            continue
        if "run-command" in opts:
            mesh = Mesh(block, checkout, work)
            log(f"run   {block.where}: the run command, kept up for the `mesh` blocks")
            continue
        if "mesh" in opts:
            if mesh is None:
                raise CheckError(f"{block.where}: a `mesh` block before the run-command block")
            if mesh.failed:
                log(f"FAIL  {block.where}: not run, the run command did not come up")
                continue
            if not mesh.up:
                failure = mesh.start()
                if failure:
                    mesh.failed = True
                    failures.append(failure)
                    continue
        elif mesh is not None and mesh.up:
            failure = mesh.stop()  # its ports are the other blocks' ports too
            failures += [failure] if failure else []
            log(f"{'FAIL' if failure else 'ok':5} {mesh.block.where}: Ctrl-C, {'see below' if failure else 'exit 0'}")
        started = time.monotonic()
        block_failures, n, pgid = run_block(block, checkout, work)
        for g in kept:
            stop_group(g)
        kept = [pgid] if "keep" in opts else []
        if not kept:
            stop_group(pgid)
        checked += n
        failures += block_failures
        status = "FAIL" if block_failures else "ok"
        log(f"{status:5} {block.where}: {n} commands, {time.monotonic() - started:.1f} s")
    for g in kept:
        stop_group(g)
    if mesh is not None:
        if mesh.up:
            failure = mesh.stop()
            failures += [failure] if failure else []
            log(f"{'FAIL' if failure else 'ok':5} {mesh.block.where}: Ctrl-C, {'see below' if failure else 'exit 0'}")
        elif not mesh.tried:
            failures.append(f"{mesh.block.where}: no `mesh` block ran, so the run command was never tried")
    return failures, checked


def main() -> int:
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the servers started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print how each block is treated; run nothing")
    parser.add_argument("--only", help="run only the blocks whose heading contains this text (and the run command, if they need it)")
    parser.add_argument("--checkout", default=os.path.join(ROOT, "target/readme-check/checkout"))
    parser.add_argument("docs", nargs="*", default=DOCS, help="documents to check (default: %(default)s)")
    args = parser.parse_args()
    try:
        blocks = load_blocks(args.docs, ROOT)
        if args.list:
            for b in blocks:
                print(f"{b.where}: {b.marker}")
                for c in parse_commands(b):
                    print(f"    {c.line}: {c.text!r}{' &' if c.background else ''} → {c.expected}")
            return 0
        if args.only:
            chosen = [b for b in blocks if args.only in b.heading]
            needs_mesh = any("mesh" in b.options() for b in chosen)
            blocks = [b for b in blocks if b in chosen or (needs_mesh and "run-command" in b.options())]
        taken = wait_for_ports()
        if taken:
            print(f"readme: ports {taken} are in use; the README's commands bind them. Stop what holds them.")
            return 1
        print(f"readme: a clean checkout in {args.checkout}")
        make_checkout(args.checkout)
        work = os.path.join(os.path.dirname(args.checkout), "work")
        os.makedirs(work, exist_ok=True)
        failures, checked = run_all(blocks, args.checkout, work)
    except CheckError as e:
        print(f"readme: {e}")
        return 1
    for f in failures:
        print(f"\nFAIL {f}")
    ran = sum("skip" not in b.options() for b in blocks)
    print(f"\nreadme: {checked} commands in {ran} blocks run, {len(blocks) - ran} blocks skipped (each says why)")
    print(f"readme: {max(checked - len(failures), 0)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
