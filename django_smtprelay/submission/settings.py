"""The listener's settings (``SMTPRELAY["SUBMISSION_*"]``), typed and checked on use."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from ..conf import _number, get_config

MODES = ("starttls", "tls")


@dataclass(frozen=True)
class ListenAddress:
    """One listening socket: ``starttls`` (STARTTLS offered) or ``tls`` (implicit TLS)."""

    mode: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.mode}://{host}:{self.port}"


def parse_listen(value: str) -> ListenAddress:
    """``"starttls://127.0.0.1:587"`` or ``"tls://[::1]:465"`` -> :class:`ListenAddress`."""
    parts = urlsplit(value if "://" in value else f"starttls://{value}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in MODES or not parts.hostname or port is None or parts.path:
        raise ImproperlyConfigured(
            f"Listen address {value!r} is not understood; write 'starttls://HOST:PORT' "
            "(STARTTLS, usually port 587) or 'tls://HOST:PORT' (implicit TLS, usually 465)."
        )
    return ListenAddress(parts.scheme, parts.hostname, port)


class SubmissionSettings:
    """Typed access to the ``SUBMISSION_*`` keys of ``SMTPRELAY``."""

    @property
    def listen(self) -> list[ListenAddress]:
        value = get_config()["SUBMISSION_LISTEN"]
        if isinstance(value, str):
            value = [value]
        return [parse_listen(v) for v in value]

    @property
    def tls_files(self) -> tuple[str, str] | None:
        """(certificate chain, key) PEM paths, or None when neither is set."""
        cert = get_config()["SUBMISSION_TLS_CERT_FILE"]
        key = get_config()["SUBMISSION_TLS_KEY_FILE"]
        if not cert and not key:
            return None
        if not cert or not key:
            raise ImproperlyConfigured(
                "SMTPRELAY['SUBMISSION_TLS_CERT_FILE'] and ['SUBMISSION_TLS_KEY_FILE'] go "
                f"together; got only the {'certificate' if cert else 'key'}."
            )
        return str(cert), str(key)

    @property
    def hostname(self) -> str:
        return str(get_config()["SUBMISSION_HOSTNAME"] or socket.getfqdn())

    @property
    def trusted_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        networks = []
        for value in get_config()["SUBMISSION_TRUSTED_NETWORKS"] or []:
            try:
                networks.append(ipaddress.ip_network(value, strict=False))
            except ValueError:
                raise ImproperlyConfigured(
                    f"SMTPRELAY['SUBMISSION_TRUSTED_NETWORKS'] has {value!r}, which is not "
                    "a network; write '192.168.1.0/24', '10.0.0.5' or 'fd00::/8'."
                ) from None
        return networks

    @property
    def auth_without_tls_on_loopback(self) -> bool:
        return bool(get_config()["SUBMISSION_AUTH_WITHOUT_TLS_ON_LOOPBACK"])

    @property
    def max_message_size(self) -> int:
        return int(_number("SUBMISSION_MAX_MESSAGE_SIZE", minimum=1024))

    @property
    def max_queue_depth(self) -> int | None:
        if get_config()["SUBMISSION_MAX_QUEUE_DEPTH"] is None:
            return None
        return int(_number("SUBMISSION_MAX_QUEUE_DEPTH", minimum=1))

    @property
    def login_failure_limit(self) -> int:
        return int(_number("SUBMISSION_LOGIN_FAILURE_LIMIT", minimum=1))

    @property
    def login_failure_window(self) -> int:
        return int(_number("SUBMISSION_LOGIN_FAILURE_WINDOW_SECONDS", minimum=1))

    @property
    def timeout(self) -> float:
        return float(_number("SUBMISSION_TIMEOUT", minimum=1))

    @property
    def shutdown_grace(self) -> float:
        return float(_number("SUBMISSION_SHUTDOWN_GRACE_SECONDS"))


submission_settings = SubmissionSettings()
