"""The ESPs django-anymail ships, and the options each one's backend takes.

Nothing here is a copy of anymail's list: the ESPs are the modules of
``anymail.backends``, and an ESP's options are the names its backend reads
with ``get_anymail_setting(name, ..., kwargs=kwargs)``, found in its source.
An option read without a ``default`` is one the ESP cannot work without (a
credential, or a base URL with no default): a route must set it, since
anymail would otherwise borrow the site's global ``ANYMAIL`` setting. An
option with a plain default is passed explicitly with that default when the
route leaves it out, for the same reason.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .exceptions import SMTPRelayError

# anymail.backends modules that are not ESPs: they deliver nowhere.
_NOT_ESPS = frozenset({"test", "console"})

# Options whose value is a secret: stored sealed, never shown back.
_SECRET = re.compile(r"key|token|secret|password", re.IGNORECASE)
# Options that say where the request goes: a secret is sealed to them too.
_ENDPOINT = re.compile(r"url|endpoint|region|host", re.IGNORECASE)
# Names anymail reads only to refuse them (SendGrid's old username/password).
_REFUSED_BY_ANYMAIL = frozenset({"username", "password"})

# Backends that talk to AWS through boto3 read two dicts of boto3 parameters;
# a route gives their members as flat options instead.
_BOTO3_OPTIONS: dict[str, tuple[tuple[str, bool], ...]] = {
    "session_params": (
        ("aws_access_key_id", True),
        ("aws_secret_access_key", True),
        ("aws_session_token", False),
        ("region_name", True),
    ),
    "client_params": (("endpoint_url", False),),
}


class ESPOptionsError(SMTPRelayError, ValueError):
    """A route's ESP or its options are not what the ESP takes."""


_UNSET = object()


@dataclass(frozen=True)
class ESPOption:
    name: str
    required: bool
    secret: bool
    endpoint: bool
    # The backend's own default, passed explicitly when the route leaves the
    # option out (``_UNSET``: not a plain value; such an option is not passed).
    default: Any = _UNSET
    boto3_group: str = ""  # "session_params" or "client_params" for boto3 backends


@dataclass(frozen=True)
class ESP:
    """One ESP anymail ships a backend for."""

    name: str  # anymail's module name: "postmark", "amazon_ses"
    label: str  # the backend's esp_name: "Postmark", "Amazon SES"
    options: tuple[ESPOption, ...]

    def option(self, name: str) -> ESPOption | None:
        return next((o for o in self.options if o.name == name), None)

    @property
    def raw_mime(self) -> bool:
        """The ESP takes the message as MIME (SES): the stored bytes go as they are."""
        return any(o.boto3_group for o in self.options)

    def backend_class(self) -> type:
        """The anymail backend class (imported now: it may need an extra package)."""
        from anymail.exceptions import AnymailImproperlyInstalled

        try:
            module = importlib.import_module(f"anymail.backends.{self.name}")
        except AnymailImproperlyInstalled as exc:
            raise ESPOptionsError(f"The {self.label} backend cannot be loaded: {exc}") from exc
        return module.EmailBackend


def _source_tree(module_name: str) -> ast.Module | None:
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    with open(spec.origin, encoding="utf-8") as source:
        return ast.parse(source.read(), spec.origin)


def _backend_class(tree: ast.Module) -> ast.ClassDef | None:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "EmailBackend":
            return node
    return None


def _esp_name(cls: ast.ClassDef) -> str:
    for node in cls.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "esp_name" for t in node.targets)
            and isinstance(node.value, ast.Constant)
        ):
            return str(node.value.value)
    return ""


def _is_alias(tree: ast.Module) -> bool:
    """An old name of another ESP: its backend is that ESP's backend, subclassed."""
    return any(
        isinstance(node, ast.ImportFrom)
        and node.level == 1
        and node.module
        and not node.module.startswith("base")
        and any(alias.name == "EmailBackend" for alias in node.names)
        for node in tree.body
    )


def _options(tree: ast.Module) -> list[ESPOption]:
    """Every option the module reads from a backend's keyword arguments."""
    found: dict[str, ESPOption] = {}
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", "")) == "get_anymail_setting"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and any(k.arg == "kwargs" for k in node.keywords)
        ):
            continue
        name = str(node.args[0].value)
        if name in _REFUSED_BY_ANYMAIL or name in found:
            continue
        default_node = next((k.value for k in node.keywords if k.arg == "default"), None)
        if name in _BOTO3_OPTIONS:
            for flat, required in _BOTO3_OPTIONS[name]:
                found[flat] = ESPOption(
                    flat,
                    required=required,
                    secret=bool(_SECRET.search(flat)) and flat != "aws_access_key_id",
                    endpoint=bool(_ENDPOINT.search(flat)),
                    boto3_group=name,
                )
            continue
        default: Any = _UNSET
        if isinstance(default_node, ast.Constant):
            default = default_node.value
        endpoint = bool(_ENDPOINT.search(name))
        found[name] = ESPOption(
            name,
            # An endpoint whose default anymail computes is set on the route:
            # else a global setting could send the route's secret elsewhere.
            required=default_node is None or (endpoint and default is _UNSET),
            secret=bool(_SECRET.search(name)),
            endpoint=endpoint,
            default=default,
        )
    return list(found.values())


@lru_cache(maxsize=1)
def available() -> dict[str, ESP]:
    """anymail's ESPs by name, read from the installed anymail's source."""
    import anymail.backends

    esps: dict[str, ESP] = {}
    for info in pkgutil.iter_modules(anymail.backends.__path__):
        if info.name.startswith("base") or info.name in _NOT_ESPS:
            continue
        tree = _source_tree(f"anymail.backends.{info.name}")
        if tree is None or _is_alias(tree):
            continue
        cls = _backend_class(tree)
        if cls is None:
            continue
        label = _esp_name(cls) or info.name
        esps[info.name] = ESP(info.name, label, tuple(_options(tree)))
    return dict(sorted(esps.items(), key=lambda item: item[1].label.lower()))


def get(name: str) -> ESP:
    """The ESP called ``name``; a clear error naming the ones there are if none is."""
    esp = available().get(name)
    if esp is None:
        names = ", ".join(available()) or "none"
        raise ESPOptionsError(
            f"{name!r} is not an ESP django-anymail {_anymail_version()} ships a backend for "
            f"(it has: {names})."
        )
    return esp


def _anymail_version() -> str:
    import anymail

    return getattr(anymail, "__version__", "")


def validate(esp_name: str, options: dict[str, Any]) -> ESP:
    """Check ``options`` against what the ESP takes; the ESP, or ``ESPOptionsError``.

    Names each unknown option with the ones the ESP takes, and each missing
    required one, so the admin form (and a worker's route fault) say what to set.
    """
    esp = get(esp_name)
    known = {o.name for o in esp.options}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ESPOptionsError(
            f"{esp.label} takes no option {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(sorted(known)) or 'none'}."
        )
    missing = [o.name for o in esp.options if o.required and options.get(o.name) in (None, "")]
    if missing:
        raise ESPOptionsError(
            f"{esp.label} needs {', '.join(map(repr, missing))}: set "
            f"{'it' if len(missing) == 1 else 'them'} on the route (the site's global "
            f"ANYMAIL settings are never used for a route)."
        )
    return esp


def is_secret(esp_name: str, option: str) -> bool:
    """Whether ``option`` is kept sealed: the ESP's secrets, and any unknown name that
    looks like one (a misspelt ``server_tokn`` is still a token)."""
    esp = available().get(esp_name)
    known = esp.option(option) if esp else None
    return known.secret if known else bool(_SECRET.search(option))


def endpoint(esp_name: str, options: dict[str, Any]) -> str:
    """Where the ESP's requests go, in words: its endpoint options as set."""
    esp = available().get(esp_name)
    if esp is None:
        return ""
    parts = [
        f"{o.name}={str(options.get(o.name, '')).strip().lower()}"
        for o in esp.options
        if o.endpoint and options.get(o.name) not in (None, "")
    ]
    return " ".join(parts)


def backend_kwargs(esp: ESP, options: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """The keyword arguments for the ESP's backend: every option explicit, so
    nothing is taken from the site's global ``ANYMAIL`` settings."""
    kwargs: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {}
    for option in esp.options:
        value = options.get(option.name, _UNSET)
        if option.boto3_group:
            group = groups.setdefault(option.boto3_group, {})
            if value is not _UNSET and value not in (None, ""):
                group[option.name] = value
            continue
        if value is _UNSET:
            value = option.default
        if value is not _UNSET:
            kwargs[option.name] = value
    kwargs.update(groups)
    if "client_params" in groups:
        groups["client_params"]["config"] = {
            "connect_timeout": timeout,
            "read_timeout": timeout,
            "retries": {"total_max_attempts": 1},
        }
    kwargs.update(
        {
            # The route reads each recipient's status itself (see transports.esp).
            "ignore_recipient_status": True,
            "ignore_unsupported_features": False,
            "debug_api_requests": False,
        }
    )
    return kwargs
