"""DKIM signing in the benchmark: the drain signed and unsigned, and the cost of one signature.

Two figures, each a ratio to a baseline measured in the same run:

- the drain with RSA-2048 signing on the route, against the same drain
  through the same route unsigned (fresh databases, the same N messages),
  and with an Ed25519 key for comparison;
- the signing cost per message (``django_smtprelay.signing.signer.sign_message``:
  parse, canonicalize, hash, sign, build the header) against a bare RSA-2048
  signature by ``cryptography`` over the message's SHA-256, the same key,
  in the same process; dkimpy's own ``dkim.sign`` (pure-Python RSA) is timed
  beside them for reference. Target: within 1.5x of the bare signature.

Steps run in a fresh process each: ``python -m bench.dkim STEP [--n N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from typing import Any

SIGNING_TARGET = 1.5
SELECTOR = "bench"


# -- steps (in their own process, with Django set up) -------------------------


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()


def drain_route(args: argparse.Namespace) -> dict[str, Any]:
    """Deliver the queue through one SMTP route, signing with an RSA-2048 key or not."""
    from django.conf import settings

    from bench.scenarios import delivered_in_db
    from django_smtprelay.delivery import DeliveryEngine
    from django_smtprelay.models import DkimKey, Route, SenderDomain

    Route.objects.create(
        name="bench",
        host="127.0.0.1",
        port=settings.EMAIL_PORT,
        security=Route.Security.NONE,
        dkim_sign=bool(args.sign),
    )
    if args.sign:
        domain, _ = SenderDomain.objects.get_or_create(domain="example.com")
        DkimKey.generate(domain, SELECTOR, args.algorithm).activate()
    started = time.perf_counter()
    report = DeliveryEngine().run()
    seconds = time.perf_counter() - started
    from django_smtprelay.models import DeliveryAttempt

    signed = DeliveryAttempt.objects.exclude(dkim_keys="").count()
    return {
        "seconds": seconds,
        "report": vars(report),
        "delivered_in_db": delivered_in_db(),
        "signed_attempts": signed,
    }


def sign_cost(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per message: bare RSA-2048 (cryptography), sign_message, dkimpy's sign."""
    import hashlib

    import dkim
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    from django.core.mail import EmailMessage

    from bench import workload
    from django_smtprelay.envelope import prepare
    from django_smtprelay.signing import keys
    from django_smtprelay.signing.signer import SigningKey, sign_message

    messages = [
        prepare(EmailMessage(subject, body, sender, to)).data
        for subject, body, sender, to in workload.datatuples(args.n)
    ]
    pem = keys.generate(keys.RSA_SHA256)
    private = keys.load_private_key(pem)
    key = SigningKey("example.com", SELECTOR, keys.RSA_SHA256, private)
    pkcs1, prehashed = padding.PKCS1v15(), Prehashed(hashes.SHA256())
    few = messages[: max(1, min(len(messages), 200))]

    def bare() -> float:
        started = time.perf_counter()
        for data in messages:
            private.sign(hashlib.sha256(data).digest(), pkcs1, prehashed)
        return (time.perf_counter() - started) / len(messages)

    def ours() -> float:
        started = time.perf_counter()
        for data in messages:
            sign_message(data, [key])
        return (time.perf_counter() - started) / len(messages)

    def dkimpy() -> float:
        started = time.perf_counter()
        for data in few:
            dkim.sign(
                data,
                SELECTOR.encode(),
                b"example.com",
                pem.encode(),
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=[b"from", b"to", b"subject", b"date", b"message-id", b"from"],
            )
        return (time.perf_counter() - started) / len(few)

    # Alternated, so load that comes and goes falls on each alike; medians.
    runs: dict[str, list[float]] = {"bare": [], "ours": [], "dkimpy": []}
    for _ in range(args.rounds):
        runs["bare"].append(bare())
        runs["ours"].append(ours())
        runs["dkimpy"].append(dkimpy())
    return {name: statistics.median(values) for name, values in runs.items()}


STEPS = {"drain-route": drain_route, "sign-cost": sign_cost}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--sign", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--algorithm", default="rsa-sha256", help="drain-route: the key's kind")
    args = parser.parse_args(argv)
    _setup()
    result = STEPS[args.step](args)
    result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.write("BENCH-RESULT " + json.dumps(result) + "\n")


# -- orchestration (run.py) --------------------------------------------------


def run(bench: Any, db: Any, n: int, runs: int) -> dict[str, Any]:
    """The drain unsigned and signed (``runs`` times each, alternated), and the signing cost."""
    from bench import sink, workload

    rates: dict[str, list[float]] = {"unsigned": [], "signed": [], "ed25519": []}
    variants = (
        ("unsigned", 0, "rsa-sha256"),
        ("signed", 1, "rsa-sha256"),
        ("ed25519", 1, "ed25519-sha256"),
    )
    for _ in range(runs):
        for label, sign, algorithm in variants:
            database = db.fresh("smtprelay")
            try:
                with sink.SmtpSink(workdir=bench.workdir) as relay:
                    env = bench.env("smtprelay", database, relay.port)
                    bench.step("enqueue", env, "--n", str(n))
                    drained = bench.step_module(
                        "bench.dkim",
                        "drain-route",
                        env,
                        "--sign",
                        str(sign),
                        "--algorithm",
                        algorithm,
                    )
                    tally = relay.tally(workload.recipients(n))
            finally:
                db.drop(database)
            bench.check(f"{db.label} dkim {label}", tally, n, drained["delivered_in_db"])
            if sign and drained["signed_attempts"] != n:
                bench.exact_failures.append(
                    f"{db.label} dkim: {drained['signed_attempts']} of {n} attempts signed"
                )
            rates[label].append(n / drained["seconds"])
    env = bench.env("smtprelay", db.template("smtprelay"))
    cost = bench.step_module("bench.dkim", "sign-cost", env, "--n", str(min(n, 2000)))
    unsigned, signed, ed = (statistics.median(rates[k]) for k in ("unsigned", "signed", "ed25519"))
    return {
        "n": n,
        "runs": runs,
        "drain_rate_unsigned": unsigned,
        "drain_rate_signed": signed,
        "drain_ratio": signed / unsigned,
        "drain_rate_ed25519": ed,
        "drain_ratio_ed25519": ed / unsigned,
        "bare_rsa_ms": cost["bare"] * 1e3,
        "sign_message_ms": cost["ours"] * 1e3,
        "dkimpy_sign_ms": cost["dkimpy"] * 1e3,
        "signing_ratio": cost["ours"] / cost["bare"],
        "dkimpy_ratio": cost["dkimpy"] / cost["bare"],
    }


def table(label: str, result: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"DKIM signing ({label}, N={result['n']:,}, medians of {result['runs']} runs):",
            f"  drain unsigned {result['drain_rate_unsigned']:,.0f} msg/s, "
            f"RSA-2048 signed {result['drain_rate_signed']:,.0f} msg/s "
            f"= {result['drain_ratio']:.2f}x; Ed25519 signed {result['drain_rate_ed25519']:,.0f} "
            f"msg/s = {result['drain_ratio_ed25519']:.2f}x",
            f"  per message: bare RSA-2048 sign (cryptography) {result['bare_rsa_ms']:.3f} ms, "
            f"sign_message {result['sign_message_ms']:.3f} ms "
            f"({result['signing_ratio']:.2f}x), dkimpy's dkim.sign "
            f"{result['dkimpy_sign_ms']:.3f} ms ({result['dkimpy_ratio']:.1f}x)",
        ]
    )


def target(result: dict[str, Any]) -> Any:
    from bench.report import Target

    ratio = result["signing_ratio"]
    return Target(
        f"DKIM signing cost per message <= {SIGNING_TARGET}x a bare RSA-2048 signature",
        "PASS" if ratio <= SIGNING_TARGET else "FAIL",
        f"{result['sign_message_ms']:.3f} ms vs {result['bare_rsa_ms']:.3f} ms = {ratio:.2f}x; "
        f"drain signed/unsigned {result['drain_ratio']:.2f}x",
    )


if __name__ == "__main__":
    main()
