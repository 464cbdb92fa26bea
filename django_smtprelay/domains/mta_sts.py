"""MTA-STS (RFC 8461): the ``_mta-sts`` record, and the policy it announces.

A TXT record at ``_mta-sts.<domain>`` tells senders to fetch the policy from
``https://mta-sts.<domain>/.well-known/mta-sts.txt``. A record whose policy
cannot be fetched, is malformed, or names MX hosts that do not match the
domain's MX records makes senders that enforce it refuse to deliver (or, in
testing mode, report failures): it is a warning with the reason, never "ok".

The fetch is what a sender does, and no more: the host name is resolved
through the check's own resolver (so it counts toward the check's budget),
the certificate is verified for ``mta-sts.<domain>``, redirects are not
followed (section 3.3), and the whole exchange is bounded in time and size.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from dataclasses import dataclass, field

from ..conf import app_settings
from ..public_ip import is_public
from .findings import CheckResult
from .records import single_record
from .resolver import DNSMissing, DNSUnavailable, Resolver

POLICY_PATH = "/.well-known/mta-sts.txt"
MODES = ("enforce", "testing", "none")
MAX_AGE_LIMIT = 31_557_600  # one year (section 3.2)
_HEADERS_MAX = 16 * 1024


class PolicyError(Exception):
    """The policy could not be fetched; ``str()`` says why."""


class PolicyMalformed(PolicyError):
    """The policy was fetched but does not follow section 3.2; ``str()`` says how."""


@dataclass
class Policy:
    mode: str = ""
    max_age: int = 0
    mx: list[str] = field(default_factory=list)

    def matches(self, host: str) -> bool:
        """Whether an MX host matches one of the policy's ``mx`` patterns (section 4.1).

        A wildcard covers exactly one leftmost label: ``*.example.com`` matches
        ``mx1.example.com`` but neither ``example.com`` nor ``a.b.example.com``.
        """
        host = host.rstrip(".").lower()
        for pattern in self.mx:
            if pattern.startswith("*."):
                head, _, rest = host.partition(".")
                if head and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


def parse_policy(text: str) -> Policy:
    """The policy in ``text`` (section 3.2); raises PolicyMalformed naming what is wrong."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PolicyMalformed(f"line {line[:80]!r} is not 'key: value'")
        fields.setdefault(key.strip().lower(), []).append(value.strip())
    version = fields.get("version", [""])[0]
    if version != "STSv1":
        raise PolicyMalformed(f"version is {version!r}, expected 'STSv1' (and first)")
    mode = fields.get("mode", [""])[0]
    if mode not in MODES:
        raise PolicyMalformed(f"mode is {mode!r}, expected one of {', '.join(MODES)}")
    raw_age = fields.get("max_age", [""])[0]
    if not raw_age.isdigit() or len(raw_age) > 10 or int(raw_age) > MAX_AGE_LIMIT:
        raise PolicyMalformed(f"max_age is {raw_age!r}, expected seconds from 0 to {MAX_AGE_LIMIT}")
    mx = [m.rstrip(".").lower() for m in fields.get("mx", [])]
    if mode != "none" and not mx:
        raise PolicyMalformed(f"mode {mode} names no mx host")
    for pattern in mx:
        if not re.fullmatch(r"(?:\*\.)?[a-z0-9_-]+(?:\.[a-z0-9_-]+)+", pattern):
            raise PolicyMalformed(f"mx {pattern!r} is not a host name or a *.domain pattern")
    return Policy(mode, int(raw_age), mx)


def fetch_policy(domain: str, resolver: Resolver) -> str:
    """The body of ``https://mta-sts.<domain>/.well-known/mta-sts.txt``.

    Raises PolicyError with the reason: the name does not resolve, the
    connection or the certificate fails, the reply is not a 200 text/plain,
    it is larger than ``MTA_STS_MAX_BYTES`` or slower than ``MTA_STS_TIMEOUT``.
    """
    host = f"mta-sts.{domain}"
    deadline = time.monotonic() + _seconds(resolver)
    try:
        addresses = resolver.addresses(host)
    except DNSMissing as exc:
        raise PolicyError(f"{host} does not resolve ({exc.reason})") from exc
    except DNSUnavailable as exc:
        raise PolicyError(f"{host} could not be resolved ({exc.reason})") from exc
    port, cafile = app_settings.mta_sts_port, app_settings.mta_sts_ca_file
    try:
        context = ssl.create_default_context(cafile=cafile or None)
    except OSError as exc:
        raise PolicyError(
            f"SMTPRELAY['MTA_STS_CA_FILE'] = {cafile!r} cannot be read: {exc}"
        ) from exc
    errors = []
    for address in addresses[:4]:
        if not cafile and not is_public(address):
            errors.append(f"{address} is not a public address")
            continue
        try:
            return _get(host, address, port, context, deadline)
        except (OSError, PolicyError) as exc:
            errors.append(f"{address}: {_describe(exc)}")
            if isinstance(exc, PolicyError) or time.monotonic() >= deadline:
                break
    raise PolicyError(f"https://{host}{POLICY_PATH}: " + "; ".join(errors))


def _seconds(resolver: Resolver) -> float:
    seconds = app_settings.mta_sts_timeout
    if resolver.budget is not None:
        seconds = min(seconds, max(resolver.budget.remaining(), 0.01))
    return seconds


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {exc.verify_message or exc}"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def _get(host: str, address: str, port: int, context: ssl.SSLContext, deadline: float) -> str:
    limit = app_settings.mta_sts_max_bytes
    request = (
        f"GET {POLICY_PATH} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: django-smtprelay\r\n"
        "Accept: text/plain\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    data = bytearray()
    with (
        socket.create_connection((address, port), timeout=_remaining(deadline)) as raw,
        context.wrap_socket(raw, server_hostname=host) as conn,
    ):
        conn.sendall(request)
        while True:
            # The deadline bounds the whole exchange, however slowly the bytes come.
            conn.settimeout(_remaining(deadline))
            chunk = conn.recv(16384)
            if not chunk:
                break
            data += chunk
            if len(data) > limit + _HEADERS_MAX:
                raise PolicyError(f"the reply is larger than {limit} bytes")
    return _body(bytes(data), limit)


def _body(data: bytes, limit: int) -> str:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise PolicyError("the reply is not HTTP (no end of headers)")
    lines = head.decode("iso-8859-1").split("\r\n")
    status = lines[0].split()
    if len(status) < 2 or not status[0].startswith("HTTP/"):
        raise PolicyError(f"the reply is not HTTP ({lines[0][:60]!r})")
    if status[1] != "200":
        # Section 3.3: a redirect is not followed; anything but 200 is no policy.
        raise PolicyError(f"HTTP {' '.join(status[1:])[:60]}, expected 200")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "text/plain":
        raise PolicyError(f"Content-Type is {kind or 'missing'!r}, expected text/plain")
    if len(body) > limit:
        raise PolicyError(f"the policy is larger than {limit} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError("the policy is not UTF-8 text") from exc


def check_mta_sts(domain: str, resolver: Resolver) -> CheckResult:
    """The record and, when there is one, its policy and the MX hosts it names."""
    result = CheckResult("mta_sts")
    try:
        tags = single_record(result, f"_mta-sts.{domain}", "v=STSv1", resolver)
    except DNSUnavailable:
        return result
    if tags is None:
        return result
    if not tags.get("id", "").isalnum():
        result.add("mta_sts.malformed", found="; ".join(result.records), domain=domain)
        return result
    try:
        policy = parse_policy(fetch_policy(domain, resolver))
    except PolicyError as exc:
        malformed = isinstance(exc, PolicyMalformed)
        code = "mta_sts.policy_malformed" if malformed else "mta_sts.policy_unreachable"
        result.add(code, found=str(exc), domain=domain)
        return result
    result.data["policy"] = policy
    described = [f"mode={policy.mode}", f"max_age={policy.max_age}"]
    described += [f"mx={m}" for m in policy.mx]
    result.records.append("policy: " + "; ".join(described))
    if policy.mode == "none":
        return result
    try:
        hosts = [host for _, host in resolver.mx(domain) if host != "."]
    except (DNSMissing, DNSUnavailable):
        return result  # the MX check reports it
    unmatched = [h for h in hosts if not policy.matches(h)]
    if unmatched:
        result.add(
            "mta_sts.mx_mismatch",
            found=f"MX {', '.join(unmatched)} not in the policy's mx ({', '.join(policy.mx)})",
            expected=", ".join(f"mx: {h}" for h in unmatched),
            domain=domain,
        )
    return result
