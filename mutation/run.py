"""Mutation testing of the core modules with mutmut, one module at a time.

    python mutation/run.py                      # every module below
    python mutation/run.py backends envelope    # some of them
    python mutation/run.py --report-only        # rewrite the report from the last runs
    python mutation/run.py spf --only 'django_smtprelay.domains.spf_audit.x_networks_of*'

Each module is mutated in a copy of the package under ``.mutation/<module>/``
and tried against the tests that exercise it (mutmut narrows each mutant
further, to the tests that reach the mutated function), so a mutant costs
seconds rather than the whole suite. The copy keeps mutmut's results, so a run
that stops is resumed where it stopped.

The report (``mutation/report.md``) lists the score per module and every
surviving mutant with its diff; ``mutation/equivalent.md`` names the survivors
that no test can kill, each with the reason. The score counts killed and timed
out mutants against all mutants less the equivalent ones.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
REPORT = ROOT / "mutation" / "report.md"
EQUIVALENT = ROOT / "mutation" / "equivalent.md"


@dataclass(frozen=True)
class Module:
    name: str
    paths: tuple[str, ...]  # mutmut's only_mutate globs
    tests: tuple[str, ...]  # the tests that exercise it
    # The virtualenv whose Python and Django the tests run on (make mutate builds it).
    venv: str = ".venv"
    # Another leg of that module (the same code on another Django): a mutant is
    # caught when either leg's tests catch it, and the report shows one row.
    leg_of: str = ""

    @property
    def mutmut(self) -> Path:
        return ROOT / self.venv / "bin" / "mutmut"


MODULES = (
    Module(
        "backends",
        ("django_smtprelay/backends.py",),
        (
            "tests/test_backend.py",
            "tests/test_publish_bound.py",
            "tests/test_bulk.py",
            "tests/test_queue_paths.py",
            "tests/test_recipient_domain.py",
            "tests/test_backend_properties.py",
        ),
    ),
    Module(
        "envelope",
        ("django_smtprelay/envelope.py",),
        (
            "tests/test_backend.py",
            "tests/test_recipient_domain.py",
            "tests/test_backend_properties.py",
            "tests/test_envelope.py",
            "tests/test_expiry.py",
        ),
    ),
    # serialize.py has one writer for Django 4.2-5.2 (compat32) and one for Django 6
    # (modern), chosen at import: each Django's tests reach its own writer only.
    Module("serialize", ("django_smtprelay/serialize.py",), ("tests/test_serialize.py",)),
    Module(
        "serialize-django6",
        ("django_smtprelay/serialize.py",),
        ("tests/test_serialize.py",),
        venv=".venv-py312",
        leg_of="serialize",
    ),
    Module(
        "replies",
        ("django_smtprelay/replies.py",),
        (
            "tests/test_replies.py",
            "tests/test_deferred_reasons.py",
            "tests/test_reply_families_delivery.py",
            "tests/stats/test_reply_text.py",
            # classify_esp_http, classify_esp_recipient and esp_route_fault: the ESP
            # transport's answers, through a real HTTP server.
            "tests/esp/test_esp_results.py",
            "tests/esp/test_esp_routes.py",
        ),
    ),
    Module(
        "messages",
        ("django_smtprelay/models/messages.py",),
        (
            "tests/test_claims.py",
            "tests/test_cancel.py",
            "tests/test_lease.py",
            "tests/test_expiry.py",
            "tests/test_queue_paths.py",
            "tests/test_admin_message_actions.py",
        ),
    ),
    Module(
        "delivery",
        ("django_smtprelay/delivery/*",),
        (
            "tests/test_delivery.py",
            "tests/test_expiry.py",
            "tests/test_lease.py",
            "tests/test_claims.py",
            "tests/test_deferred_reasons.py",
            "tests/test_refused_after_dot.py",
            "tests/test_route_faults.py",
            "tests/test_route_health_delivery.py",
            "tests/test_smtp_transport_paths.py",
            "tests/test_smtp_pipelining.py",
            "tests/stats/test_hourly_stats.py",
            "tests/esp/test_esp_routes.py",
            "tests/esp/test_esp_results.py",
            "tests/tracking/test_smtp_provider_ids.py",
            "tests/test_large_messages.py",
            "tests/test_seven_bit.py",
            "tests/test_reply_families_delivery.py",
            "tests/test_relay_faults.py",
            "tests/esp/test_esp_look_ahead.py",
            "tests/esp/test_esp_tracking_id.py",
            "tests/dkim/test_delivery_signed.py",
            "tests/mx/test_mx_delivery.py",
            "tests/mx/test_mx_signing.py",
            "tests/health/test_destinations.py",
        ),
    ),
    Module(
        "health",
        ("django_smtprelay/health/*",),
        (
            "tests/health/test_circuit.py",
            "tests/health/test_ratelimit.py",
            "tests/health/test_score.py",
            "tests/health/test_service.py",
            "tests/health/test_admin.py",
            "tests/health/test_overview_admin.py",
            "tests/health/test_destinations.py",
            "tests/test_route_health_delivery.py",
            "tests/test_reply_families_delivery.py",
        ),
    ),
    Module(
        "routing",
        ("django_smtprelay/routing.py",),
        (
            "tests/test_routing.py",
            "tests/test_delivery.py",
            "tests/test_route_tools.py",
            "tests/health/test_destinations.py",
        ),
    ),
    Module(
        "spf",
        ("django_smtprelay/domains/spf.py", "django_smtprelay/domains/spf_audit.py"),
        ("tests/domains/test_spf.py", "tests/domains/test_spf_limits.py"),
    ),
    Module(
        "dmarc",
        ("django_smtprelay/domains/dmarc.py",),
        ("tests/domains/test_dmarc_dkim.py", "tests/domains/test_check.py"),
    ),
)

# mutmut's words for a mutant's fate, and which of them count as caught.
CAUGHT = {"killed", "timeout"}
NOT_RUN = "not checked"
_RESULT = re.compile(r"^\s+(\S+__mutmut_\d+): (.+)$")
_EQUIVALENT = re.compile(r"^- `([^`]+__mutmut_\d+)`")


def prepare(module: Module, dest: Path) -> None:
    """A copy of the package, the tests and pyproject.toml with this module's mutmut settings.

    A copy that exists is refreshed only where the sources changed, so mutmut
    keeps the verdicts of functions whose code is the same.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("django_smtprelay", "tests", "docs"):
        subprocess.run(
            [
                "rsync",
                "-a",
                "--delete",
                "--exclude=__pycache__",
                "--exclude=*.sqlite3*",
                f"{ROOT / name}/",
                f"{dest / name}/",
            ],
            check=True,
        )
    settings = (ROOT / "pyproject.toml").read_text()
    settings += "\n[tool.mutmut]\n"
    settings += 'source_paths = ["django_smtprelay"]\n'
    settings += 'also_copy = ["docs"]\n'  # tests read docs/domains.md
    settings += f"only_mutate = {list(module.paths)!r}\n".replace("'", '"')
    settings += f"pytest_add_cli_args_test_selection = {list(module.tests)!r}\n".replace("'", '"')
    # -x: the first failing test kills the mutant; no cache, no timing output. The
    # tests chosen take at most a few seconds each: one that takes 30 (a mutant that
    # loops or waits out a network timeout) fails, not the suite's 120 s later.
    settings += 'pytest_add_cli_args = ["-x", "-q", "-p", "no:cacheprovider", "-o", "timeout=30"]\n'
    # mutmut's time limit per mutant is 15 times the tests' time plus this constant:
    # its default (1 s) does not cover a test session's setup on a busy machine,
    # and a mutant that is only slow must not count as caught.
    settings += "timeout_constant = 30.0\n"
    (dest / "pyproject.toml").write_text(settings)


# mutmut's exit codes for a mutant that survived its tests, and one no test reached.
SURVIVED, NO_TESTS = 0, 33


def forget_survivors(dest: Path, only: list[str] | None = None) -> None:
    """Try the survivors again (those ``only`` names): a test added since may kill them.

    mutmut keeps every verdict until the mutated function changes; survivors
    are few, so trying them again costs little.
    """

    def again(name: str, code: int | None) -> bool:
        chosen = not only or any(fnmatch.fnmatchcase(name, glob) for glob in only)
        return code in (SURVIVED, NO_TESTS) and chosen

    for meta in (dest / "mutants").rglob("*.meta"):
        data = json.loads(meta.read_text())
        codes = data.get("exit_code_by_key", {})
        if any(again(k, v) for k, v in codes.items()):
            data["exit_code_by_key"] = {k: None if again(k, v) else v for k, v in codes.items()}
            meta.write_text(json.dumps(data))


def run(module: Module, children: int, only: list[str] | None = None) -> float:
    dest = WORK / module.name
    prepare(module, dest)
    forget_survivors(dest, only)
    env = dict(os.environ)
    # Never the caller's PostgreSQL or broker: mutants run on SQLite and the
    # in-memory broker, many at once.
    for name in (
        "SMTPRELAY_TEST_DATABASE",
        "SMTPRELAY_TEST_BROKER",
        "SMTPRELAY_TEST_REQUIRE_SERVICES",
    ):
        env.pop(name, None)
    # tests/test_serialize.py's random messages: 600, not 3000, for each mutant the
    # faster tests miss (the shapes are still each met several times).
    env.setdefault("SMTPRELAY_TEST_RANDOM_MESSAGES", "600")
    # The first test session (mutmut's run of the unmutated tests) leaves its
    # migrated database here and each mutant's session copies it (tests/conftest.py):
    # migrating anew took most of a mutant's time. Made anew each run, as the
    # migrations may have changed.
    template = dest / "template.sqlite3"
    template.unlink(missing_ok=True)
    env["SMTPRELAY_TEST_SQLITE_TEMPLATE"] = str(template)
    # A run that finishes one stopped half-way adds its time to the time already spent.
    resumed = NOT_RUN in results(module).values()
    started, cpu_before, load = time.monotonic(), _children_cpu(), os.getloadavg()[0]
    log = dest / "mutmut.log"
    stopped = False
    with log.open("w") as out:
        mutmut = subprocess.Popen(
            ["nice", "-n", "10", str(module.mutmut), "run", "--max-children", str(children)]
            + (only or []),
            cwd=dest,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            # A job started in the background has Ctrl-C ignored: mutmut needs it to stop.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            mutmut.wait()
        except KeyboardInterrupt:
            # Ctrl-C, or SIGTERM (see main): mutmut stops its mutants and keeps what
            # it has; the time spent so far is recorded, and the next run resumes.
            stopped = True
            mutmut.send_signal(signal.SIGINT)
            try:
                mutmut.wait(timeout=60)
            except subprocess.TimeoutExpired:
                mutmut.terminate()
                mutmut.wait()
    if mutmut.returncode and not stopped:
        # mutmut stops when the tests fail without any mutant (a flaky test, say).
        tail = log.read_text(errors="replace")[-3000:]
        sys.exit(f"mutmut failed on {module.name} (exit {mutmut.returncode}); {log} ends:\n{tail}")
    took = {
        "wall": round(time.monotonic() - started),
        "cpu": round(_children_cpu() - cpu_before),
        "load": [round(load, 1), round(os.getloadavg()[0], 1)],
    }
    before = _took(module) if resumed else None
    if before:
        took["wall"] += before["wall"]
        took["cpu"] += before["cpu"]
        took["load"][0] = before["load"][0]
    (dest / "took").write_text(json.dumps(took) + "\n")
    if stopped:
        sys.exit(f"stopped: {module.name}'s run resumes where it stopped")
    return took["wall"]


def _children_cpu() -> float:
    """CPU seconds of the finished child processes: mutmut and every mutant it forked."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _took(module: Module) -> dict | None:
    path = WORK / module.name / "took"
    return json.loads(path.read_text()) if path.exists() else None


def results(module: Module) -> dict[str, str]:
    dest = WORK / module.name
    if not (dest / "mutants").is_dir():
        return {}
    # Fails while a run is setting its mutants up: no results to show yet.
    out = subprocess.run(
        [str(module.mutmut), "results", "--all", "true"],
        cwd=dest,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return {m.group(1): m.group(2).strip() for m in map(_RESULT.match, out.splitlines()) if m}


def merged_results(legs: list[Module]) -> dict[str, tuple[str, Module]]:
    """Each mutant's fate over the legs that ran: caught if any leg caught it."""

    def rank(state: str) -> int:
        return 3 if state in CAUGHT else 2 if state == NOT_RUN else 0 if state == "no tests" else 1

    merged: dict[str, tuple[str, Module]] = {}
    for leg in legs:
        for name, state in results(leg).items():
            if name not in merged or rank(state) > rank(merged[name][0]):
                merged[name] = (state, leg)
    return merged


def diff(module: Module, mutant: str) -> str:
    return subprocess.run(
        [str(module.mutmut), "show", mutant],
        cwd=WORK / module.name,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def equivalents() -> set[str]:
    lines = EQUIVALENT.read_text().splitlines() if EQUIVALENT.exists() else []
    return {m.group(1) for m in map(_EQUIVALENT.match, lines) if m}


def report(modules: tuple[Module, ...]) -> tuple[int, int]:
    known = equivalents()
    rows, survivors = [], []
    caught_all = counted_all = cpu_all = 0
    for module in modules:
        if module.leg_of:
            continue
        legs = [module] + [m for m in modules if m.leg_of == module.name]
        fates = merged_results(legs)
        found = {name: state for name, (state, _leg) in fates.items()}
        label = " + ".join(leg.name for leg in legs if results(leg)) or module.name
        if not found:
            rows.append(f"| {module.name} | not run | | | | | | |")
            continue
        # A run that was stopped leaves mutants "not checked": the score is of those tried.
        tried = {n: s for n, s in found.items() if s != NOT_RUN}
        caught = sum(s in CAUGHT for s in tried.values())
        # Named equivalent and caught after all (by a test added since): caught.
        equivalent = sum(1 for n, s in tried.items() if n in known and s not in CAUGHT)
        alive = [n for n, s in sorted(tried.items()) if s not in CAUGHT and n not in known]
        counted = len(tried) - equivalent
        caught_all += caught
        counted_all += counted
        score = f"{100 * caught / counted:.1f}%" if counted else "-"
        took = []
        for spent in filter(None, map(_took, legs)):
            cpu_all += spent["cpu"]
            took.append(
                f"{spent['wall'] / 60:.0f} min, {spent['cpu'] / 60:.0f} min CPU "
                f"(load {spent['load'][0]}-{spent['load'][1]})"
            )
        untried = len(found) - len(tried)
        rows.append(
            f"| {label} | {len(found)} | {untried or ''} | {caught} | {equivalent} | "
            f"{len(alive)} | {score} | {'; '.join(took)} |"
        )
        survivors += [(fates[name][1], name, found[name]) for name in alive]
    lines = [
        "# Mutation testing: the last run",
        "",
        "Written by `make mutate` (mutation/run.py); do not edit by hand. Score: killed and",
        "timed-out mutants over the mutants tried less the equivalent ones",
        "(mutation/equivalent.md). A module with mutants not tried yet had its run stopped;",
        "`make mutate MUTATE_ARGS=<module>` resumes it. Run took: the wall time of the",
        "module's last run (niced, so longer on a busy machine, the load average at its",
        "start and end given) and the CPU time it used, mutmut and the mutants' tests",
        "together: two mutants at a time on two idle cores take about half that CPU time.",
        "A rerun only tries mutants whose code or tests changed, so it takes less.",
        "",
        "| Module | Mutants | Not tried yet | Caught | Equivalent | Alive | Score | Run took |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]
    if counted_all:
        lines += [
            f"All modules run: {caught_all} of {counted_all} caught, "
            f"{100 * caught_all / counted_all:.1f}%. CPU time of the modules' last runs: "
            f"{cpu_all / 60:.0f} min, about {cpu_all / 120:.0f} min on two idle cores.",
            "",
        ]
    lines += ["## Survivors", ""]
    if not survivors:
        lines.append("None.")
    untested: dict[str, int] = {}
    for module, name, state in survivors:
        if state == "no tests":  # grouped by function: the module's tests never call it
            function = name.rsplit("__mutmut_", 1)[0]
            untested[function] = untested.get(function, 0) + 1
            continue
        lines += [f"### `{name}` ({state})", "", "```diff", diff(module, name), "```", ""]
    if untested:
        lines += ["### Mutants in functions that the module's tests never call", ""]
        lines += [f"- `{function}`: {count}" for function, count in sorted(untested.items())]
    REPORT.write_text("\n".join(lines).rstrip() + "\n")
    return caught_all, counted_all


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="module names (default: all)")
    parser.add_argument("--children", type=int, default=2, help="mutants run at once")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--only",
        action="append",
        metavar="GLOB",
        help="only the mutants whose names match (mutmut's names, as in the report)",
    )
    args = parser.parse_args()
    by_name = {m.name: m for m in MODULES}
    unknown = [n for n in args.modules if n not in by_name]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(by_name)}")
    chosen = [by_name[n] for n in args.modules] if args.modules else list(MODULES)
    for module in chosen:
        if not module.mutmut.exists():
            parser.error(f"{module.mutmut} is missing: make mutate installs it")
    if not args.report_only:
        for module in chosen:
            print(f"mutating {module.name} ...", flush=True)
            run(module, args.children, args.only)
    caught, counted = report(MODULES)
    print(REPORT.read_text())
    return 0 if not counted or caught / counted >= 0.9 else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    if shutil.which("rsync") is None:
        sys.exit("mutation/run.py needs rsync (apt-get install rsync)")
    sys.exit(main())
