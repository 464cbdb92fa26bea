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


def test_the_metrics_view_works_in_a_site_without_the_admin(tmp_path):
    (tmp_path / "noadmin_metrics_settings.py").write_text(
        textwrap.dedent(
            f"""
            SECRET_KEY = "tests-only"
            USE_TZ = True
            ALLOWED_HOSTS = ["testserver"]
            INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth",
                              "django_smtprelay"]
            DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3",
                                       "NAME": {str(tmp_path / "db.sqlite3")!r}}}}}
            ROOT_URLCONF = "noadmin_metrics_urls"
            SMTPRELAY = {{"METRICS_TOKEN": "t0ken-for-tests-only"}}
            """
        )
    )
    (tmp_path / "noadmin_metrics_urls.py").write_text(
        "from django.urls import include, path\n"
        'urlpatterns = [path("smtprelay/", include("django_smtprelay.urls"))]\n'
    )
    script = (
        "import django; django.setup();"
        "from django.core.management import call_command; call_command('migrate', verbosity=0);"
        "from django.test import Client;"
        "r = Client().get('/smtprelay/metrics/', HTTP_AUTHORIZATION='Bearer t0ken-for-tests-only');"
        "import sys; print('django.contrib.admin' in sys.modules);"
        "print(r.status_code); print(r.content.decode())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={
            "DJANGO_SETTINGS_MODULE": "noadmin_metrics_settings",
            "PYTHONPATH": f"{tmp_path}:{ROOT}",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    admin_loaded, status, body = result.stdout.split("\n", 2)
    assert (admin_loaded, status) == ("False", "200"), body
    assert 'smtprelay_queue_messages{status="queued"} 0.0' in body
