"""The settings the documentation shows are the code's: every key, every default.

The README's ``SMTPRELAY = {...}`` block and the settings tables in ``docs/``
are written by hand; these tests read them back and compare them with
:data:`django_smtprelay.conf.DEFAULTS`, so a changed default or a new key
cannot leave the documentation behind.
"""

from __future__ import annotations

import ast
import operator
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from django_smtprelay.conf import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def literal(node: ast.expr, where: str) -> Any:
    """A documented value: a Python literal, or arithmetic on numbers (``5 * 24 * 3600``)."""
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](literal(node.left, where), literal(node.right, where))
    try:
        return ast.literal_eval(node)
    except ValueError:
        pytest.fail(f"{where}: {ast.unparse(node)!r} is not a literal value")


def readme_settings() -> dict[str, Any]:
    """The README's ``SMTPRELAY = {...}`` block under "## Configuration", as a dict."""
    text = README.read_text(encoding="utf-8")
    section = text.partition("\n## Configuration\n")[2].partition("\n## ")[0]
    block = re.search(r"```python\n(SMTPRELAY = \{\n.*?\n\})\n```", section, re.DOTALL)
    assert block, "README.md: no ```python SMTPRELAY = {...}``` block under '## Configuration'"
    tree = ast.parse(block.group(1))
    value = tree.body[0].value  # type: ignore[attr-defined]
    assert isinstance(value, ast.Dict)
    settings: dict[str, Any] = {}
    for key, item in zip(value.keys, value.values, strict=True):
        assert isinstance(key, ast.Constant), f"README.md: a key that is not a string: {key}"
        settings[key.value] = literal(item, f"README.md, {key.value}")
    return settings


def docs_settings_tables() -> list[tuple[str, str, str]]:
    """(file, key, default) for each row of the "| Key | Default | ..." tables in docs/."""
    rows = []
    for path in sorted((ROOT / "docs").glob("*.md")):
        in_table = False
        for line in path.read_text(encoding="utf-8").splitlines():
            if re.match(r"\|\s*Key\s*\|\s*Default\s*\|", line):
                in_table = True
            elif not line.startswith("|"):
                in_table = False
            elif in_table and (row := re.match(r"\|\s*`(\w+)`\s*\|\s*`([^`]*)`\s*\|", line)):
                rows.append((path.name, row.group(1), row.group(2)))
    return rows


def differences(documented: dict[str, Any], where: str) -> list[str]:
    """Every key whose documented default is not the code's, named with both values."""
    found = []
    for key, value in documented.items():
        if key not in DEFAULTS:
            found.append(f"{key}: {where} shows it, but conf.DEFAULTS has no such key")
        elif (type(value), value) != (type(DEFAULTS[key]), DEFAULTS[key]):
            found.append(f"{key}: the code's default is {DEFAULTS[key]!r}, {where} shows {value!r}")
    return found


def test_readme_settings_block_shows_every_default_of_the_code() -> None:
    documented = readme_settings()

    problems = differences(documented, "README.md")
    problems += [
        f"{key}: missing from README.md (the code's default is {DEFAULTS[key]!r})"
        for key in DEFAULTS
        if key not in documented
    ]
    assert not problems, "README.md's SMTPRELAY block and conf.DEFAULTS differ:\n" + "\n".join(
        problems
    )


def test_settings_tables_in_docs_show_the_codes_defaults() -> None:
    rows = docs_settings_tables()
    assert rows, "no '| Key | Default |' settings table found in docs/*.md"

    problems = []
    for name, key, default in rows:
        value = literal(ast.parse(default, mode="eval").body, f"docs/{name}, {key}")
        problems += differences({key: value}, f"docs/{name}")
    assert not problems, "docs/ settings tables and conf.DEFAULTS differ:\n" + "\n".join(problems)


def readme_block_after(marker: str) -> str:
    """The first ```python block after ``marker`` in the README."""
    text = README.read_text(encoding="utf-8")
    assert marker in text, f"README.md no longer says {marker!r}"
    block = re.search(r"```python\n(.*?)```", text.partition(marker)[2], re.DOTALL)
    assert block, f"README.md: no ```python block after {marker!r}"
    return block.group(1)


SITE_SETTINGS = """
SECRET_KEY = "readme"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_smtprelay"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
EMAIL_BACKEND = "django_smtprelay.backends.QueuedEmailBackend"
CELERY_BROKER_URL = "memory://the-site-broker"
"""

PROBE = """
import django
django.setup()
from django_smtprelay.tasks import deliver
print(deliver.app.conf.broker_url)
"""


def test_readme_celery_setup_publishes_through_the_sites_broker(tmp_path: Path) -> None:
    # A site set up as the README says: send_mail() in the web process must
    # publish through the site's Celery app, not Celery's default app.
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "celery.py").write_text(readme_block_after("(`proj/celery.py`)"))
    (proj / "__init__.py").write_text(readme_block_after("(`proj/__init__.py`)"))
    (proj / "settings.py").write_text(SITE_SETTINGS)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "proj.settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "memory://the-site-broker"
