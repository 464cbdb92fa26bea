"""The app works in a site without django.contrib.admin (a worker's settings, say)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_templates_render_in_a_site_without_the_admin(tmp_path):
    # Django imports every installed app's template tag libraries when a
    # template engine starts; none of ours may need the admin.
    (tmp_path / "noadmin_settings.py").write_text(
        textwrap.dedent(
            f"""
            SECRET_KEY = "tests-only"
            USE_TZ = True
            INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth",
                              "django_smtprelay"]
            DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3",
                                       "NAME": {str(tmp_path / "db.sqlite3")!r}}}}}
            TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates",
                           "APP_DIRS": True}}]
            """
        )
    )
    script = (
        "import django; django.setup();"
        "from django.template import engines;"
        "print(engines['django'].from_string('{% load smtprelay_dashboard %}ok').render())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"DJANGO_SETTINGS_MODULE": "noadmin_settings", "PYTHONPATH": f"{tmp_path}:{ROOT}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
