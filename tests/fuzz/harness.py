"""The property every fuzz case checks, and the profiles that size the suite.

Property: `osmotic.cli.main(argv)` returns 0 (a clean run), 2 (bad input) or 1 (the run itself
failed); a non-zero exit prints exactly one line on stderr, starting `osmotic: error: `, at most
300 characters; no exception escapes `main` (SystemExit included); nothing is written in the
case's folder outside the run's `--out` folder, and no file the case wrote there is lost or
changed.

Each case runs in its own empty folder, the working directory while `main` runs (so a file
written to a relative default path is caught too), with stdout and stderr captured as the
command line would print them: Python warnings are shown (as `python -W default`), since they
reach a user's terminal.

Sizing (environment variables):

- `HYPOTHESIS_PROFILE=fuzz` (`make fuzz`): many examples per test (`FUZZ_SCALE` multiplies them),
  failures shrunk; otherwise (`make test`) a few per test, not shrunk, the whole suite in about
  a minute. Failing cases are kept in .hypothesis/ (at the repository root) and replayed first.
- `OSMOTIC_FUZZ_COLLECT=FILE.jsonl` (`make fuzz` sets it): do not stop at a test's first
  failure; record every failing case (its signature, command and files) in FILE and fail the test
  at its end listing each distinct signature with its smallest case. Without it, Hypothesis
  stops at the first failures (and, under the fuzz profile, shrinks them).
- `OSMOTIC_FUZZ_CASE_SECONDS` (default 15): a case running longer fails (CaseTimeout).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from osmotic.cli import main

REPO = Path(__file__).resolve().parents[2]
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
COLLECT = os.environ.get("OSMOTIC_FUZZ_COLLECT") or None
if COLLECT is not None:
    COLLECT = str(Path(COLLECT).resolve())
CASE_SECONDS = float(os.environ.get("OSMOTIC_FUZZ_CASE_SECONDS", "15"))
MAX_ERROR_LINE = 300
EXAMPLES: dict[str, Any] = {"count": 0, "by_test": {}, "exits": {}}
"""Cases run in this process (printed at the end of a session by conftest.py)."""


def fuzz_settings(quick: int, deep: int) -> settings:
    """`quick` examples in a plain pytest run, `deep` (times FUZZ_SCALE) under the fuzz profile;
    no deadline, no health checks (cases write files and may train), a database under
    .hypothesis/ at the repository root whatever the working directory. A plain run does not
    shrink a failure (that can take minutes; the failing case is printed as found): `make fuzz`
    does, and saves the shrunk case, which every later run replays first."""
    fuzz = PROFILE == "fuzz"
    n = max(1, round(deep * SCALE)) if fuzz else quick
    phases = list(Phase) if fuzz else [p for p in Phase if p is not Phase.shrink]
    return settings(max_examples=n, deadline=None, phases=phases,
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=True,
                    database=DirectoryBasedExampleDatabase(REPO / ".hypothesis" / "examples"),
                    print_blob=True)


class CaseTimeout(Exception):
    """The case ran past OSMOTIC_FUZZ_CASE_SECONDS (a hang, or an unbounded amount of work)."""


class PropertyViolation(AssertionError):
    """The command broke the property (see the module docstring)."""


class EscapedExit(PropertyViolation):
    """SystemExit escaped `main` (argparse's usage error: several lines, no `osmotic: error:`)."""


class BadExitStatus(PropertyViolation):
    pass


class BadErrorLines(PropertyViolation):
    """Not exactly one stderr line on a failure, or not `osmotic: error: `, or too long."""


class TracebackOnStderr(PropertyViolation):
    pass


class WroteOutsideOut(PropertyViolation):
    pass


class ChangedInput(PropertyViolation):
    """A file the case wrote outside --out was changed or removed."""


@dataclass
class Case:
    """One case's folder: the files the test wrote (for the report) and notes on mutations."""

    root: Path
    written: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.root / "out"

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = data.encode() if isinstance(data, str) else data
        path.write_bytes(raw)
        self.written[name] = raw
        return path

    def mkdir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def note(self, text: str) -> None:
        self.notes.append(text)

    def describe(self, argv: Sequence[str], limit: int = 1500) -> str:
        lines = [f"argv: {list(argv)}", *(f"note: {n}" for n in self.notes)]
        for name, raw in sorted(self.written.items()):
            shown = raw[:limit]
            try:
                text = shown.decode()
                body = text if text.isprintable() or "\n" in text else repr(shown)
            except UnicodeDecodeError:
                body = repr(shown)
            more = f" ... ({len(raw)} bytes in all)" if len(raw) > limit else ""
            lines.append(f"file {name}:\n{body}{more}")
        return "\n".join(lines)


@contextlib.contextmanager
def new_case(root: Path) -> Iterator[Case]:
    """A fresh, empty folder for one case, removed afterwards."""
    folder = Path(tempfile.mkdtemp(dir=root))
    try:
        yield Case(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _snapshot(root: Path, skip: Path | None) -> dict[str, str]:
    """Every file and folder under `root` outside `skip`: relative path -> content hash."""
    seen: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if skip is not None and (here == skip or skip in here.parents):
            dirs[:] = []
            continue
        for d in dirs:
            p = here / d
            if skip is None or p != skip:
                seen[str(p.relative_to(root)) + "/"] = "dir"
        for f in files:
            p = here / f
            try:
                seen[str(p.relative_to(root))] = hashlib.sha1(p.read_bytes()).hexdigest()
            except OSError as e:
                seen[str(p.relative_to(root))] = f"unreadable {e.errno}"
    return seen


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"the case ran past {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Outcome:
    rc: int | None
    stdout: str
    stderr: str
    escaped: BaseException | None


def run_cli(case: Case, argv: Sequence[str], out: Path | None = None) -> Outcome:
    """Run `osmotic argv` in the case's folder and check the property; `out` is the folder the
    command may write into (default: the case's `out/`)."""
    out = case.out if out is None else out
    argv = [str(a) for a in argv]
    before = _snapshot(case.root, out)
    stdout, stderr = io.StringIO(), io.StringIO()
    rc: int | None = None
    escaped: BaseException | None = None
    cwd = os.getcwd()
    os.chdir(case.root)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
                warnings.catch_warnings():
            warnings.simplefilter("default")
            try:
                with _time_limit(CASE_SECONDS):
                    rc = main(argv)
            except BaseException as e:  # noqa: BLE001 - the property: nothing escapes main
                escaped = e
    finally:
        os.chdir(cwd)
    EXAMPLES["count"] += 1
    exit_key = "escaped" if escaped is not None else str(rc)
    EXAMPLES["exits"][exit_key] = EXAMPLES["exits"].get(exit_key, 0) + 1
    outcome = Outcome(rc, stdout.getvalue(), stderr.getvalue(), escaped)
    after = _snapshot(case.root, out)
    try:
        _check(outcome, before, after)
    except BaseException as e:  # noqa: BLE001 - an escaped exception is re-raised there
        _report(case, argv, outcome, e)
    return outcome


def _check(o: Outcome, before: dict[str, str], after: dict[str, str]) -> None:
    if isinstance(o.escaped, KeyboardInterrupt):
        raise o.escaped
    if isinstance(o.escaped, SystemExit):
        raise EscapedExit(f"SystemExit({o.escaped.code}) escaped main; stderr: "
                          f"{o.stderr.strip()[-600:]!r}")
    if o.escaped is not None:
        raise o.escaped.with_traceback(o.escaped.__traceback__)
    if o.rc not in (0, 1, 2):
        raise BadExitStatus(f"exit status {o.rc!r}; stderr: {o.stderr[-600:]!r}")
    if "Traceback (most recent call last)" in o.stderr:
        raise TracebackOnStderr(f"exit {o.rc} with a traceback on stderr: {o.stderr[-1500:]}")
    if o.rc != 0:
        lines = o.stderr.splitlines()
        if len(lines) != 1:
            raise BadErrorLines(f"exit {o.rc} with {len(lines)} stderr lines (expected one): "
                                f"{o.stderr[-1500:]!r}")
        if not lines[0].startswith("osmotic: error: "):
            raise BadErrorLines(f"exit {o.rc}: stderr does not start 'osmotic: error: ': "
                                f"{lines[0][:600]!r}")
        if len(lines[0]) > MAX_ERROR_LINE:
            raise BadErrorLines(f"exit {o.rc}: error line of {len(lines[0])} characters "
                                f"(at most {MAX_ERROR_LINE}): {lines[0][:600]!r}")
    added = sorted(set(after) - set(before))
    if added:
        raise WroteOutsideOut(f"exit {o.rc}: wrote outside --out: {added[:10]}")
    lost = sorted(set(before) - set(after))
    changed = sorted(k for k in before if k in after and before[k] != after[k])
    if lost or changed:
        raise ChangedInput(f"exit {o.rc}: removed {lost[:10]}, changed {changed[:10]}")


# -- reporting -------------------------------------------------------------------------------

COLLECTED: list[dict[str, Any]] = []
_SRC = re.compile(r"/src/(osmotic/.+)$")


def signature(e: BaseException, stderr: str = "") -> str:
    """What makes two failures the same: the exception type and the innermost frame in
    src/osmotic (an escaped exception), or the kind of violation and the error line's shape."""
    if isinstance(e, EscapedExit):  # argparse: what kind of usage error
        last = (stderr.strip().splitlines() or [""])[-1]
        kind = re.sub(r"^[^:]*: error: ", "", last)
        kind = re.sub(r"(argument \S+: invalid \S+ value|invalid choice|unrecognized "
                      r"arguments|the following arguments are required|expected \S+ "
                      r"argument|ignored explicit argument).*", r"\1", kind)
        return f"EscapedExit: argparse: {kind[:80]}"
    if isinstance(e, PropertyViolation):
        text = str(e)
        shape = re.sub(r"'[^']*'|\"[^\"]*\"|\d+(\.\d+)?|/[^\s:,)]+", "_", text)[:120]
        return f"{type(e).__name__}: {shape}"
    where = "?"
    for frame in traceback.extract_tb(e.__traceback__):
        m = _SRC.search(frame.filename.replace(os.sep, "/"))
        if m:
            where = f"{m.group(1)}:{frame.name}:{frame.lineno}"
    return f"{type(e).__name__} at {where}"


def _report(case: Case, argv: Sequence[str], o: Outcome, e: BaseException) -> None:
    description = case.describe(argv)
    if COLLECT is None:
        if hasattr(e, "add_note"):
            e.add_note(f"fuzz case (run in an empty folder):\n{description}\n"
                       f"exit: {o.rc!r}\nstderr: {o.stderr[-2000:]}")
        raise e
    tail = "".join(traceback.format_exception(e)[-6:])
    record = {"test": os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0],
              "signature": signature(e, o.stderr), "case": description,
              "size": len(description), "rc": o.rc, "stderr": o.stderr[-2000:],
              "error": tail[-3000:]}
    COLLECTED.append(record)
    Path(COLLECT).parent.mkdir(parents=True, exist_ok=True)
    with open(COLLECT, "a") as f:
        f.write(json.dumps(record) + "\n")


def collecting(test: Callable[..., None]) -> Callable[..., None]:
    """Under OSMOTIC_FUZZ_COLLECT, fail the test after all its examples, once per distinct
    failure signature (the smallest case of each), instead of at the first failure."""
    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        start = len(COLLECTED)
        name = test.__name__
        before = EXAMPLES["count"]
        try:
            test(*args, **kwargs)
        finally:
            EXAMPLES["by_test"][name] = EXAMPLES["by_test"].get(name, 0) + \
                EXAMPLES["count"] - before
        found = COLLECTED[start:]
        if found:
            best: dict[str, dict[str, Any]] = {}
            for r in found:
                if r["signature"] not in best or r["size"] < best[r["signature"]]["size"]:
                    best[r["signature"]] = r
            lines = [f"{len(found)} failing cases, {len(best)} distinct:"]
            for sig, r in sorted(best.items()):
                lines.append(f"\n== {sig}  ({sum(x['signature'] == sig for x in found)} cases)"
                             f"\n{r['case']}\nexit {r['rc']}, stderr: {r['stderr'][-400:]!r}"
                             f"\n{r['error'][-800:]}")
            raise PropertyViolation("\n".join(lines))

    return wrapper
