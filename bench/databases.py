"""Fresh databases for every measured step: migrated once per queue, then copied."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("BENCH_PG_PORT", "5432")
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("BENCH_PG_ADMIN_DB", "test")


class SQLite:
    """A migrated file per queue; each step gets a copy of it."""

    label = "SQLite"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.copies: list[Path] = []

    def template(self, subject: str) -> str:
        return f"sqlite:{self.workdir / f'template-{subject}.sqlite3'}"

    def create_template(self, subject: str) -> str:
        return self.template(subject)  # migrate creates the file

    def fresh(self, subject: str) -> str:
        path = self.workdir / f"{subject}-{uuid.uuid4().hex[:8]}.sqlite3"
        shutil.copyfile(self.workdir / f"template-{subject}.sqlite3", path)
        self.copies.append(path)
        return f"sqlite:{path}"

    def drop(self, url: str) -> None:
        Path(url.partition(":")[2]).unlink(missing_ok=True)

    def close(self) -> None:
        for path in self.copies:
            path.unlink(missing_ok=True)


class PostgreSQL:
    """A migrated template database per queue; each step gets ``CREATE DATABASE ... TEMPLATE``."""

    label = "PostgreSQL"

    def __init__(self, workdir: Path) -> None:
        self.prefix = os.environ.get("BENCH_PG_PREFIX") or f"smtprelay_bench_{os.getpid()}"
        self.created: list[str] = []

    @staticmethod
    def available() -> bool:
        try:
            with _admin():
                return True
        except Exception:
            return False

    def version(self) -> str:
        with _admin() as conn:
            return conn.execute("SHOW server_version").fetchone()[0]

    def template(self, subject: str) -> str:
        return f"postgres:{self.prefix}_{subject}_template"

    def create_template(self, subject: str) -> str:
        url = self.template(subject)
        self._create(url.partition(":")[2])
        return url

    def fresh(self, subject: str) -> str:
        name = f"{self.prefix}_{subject}_{uuid.uuid4().hex[:8]}"
        self._create(name, template=f"{self.prefix}_{subject}_template")
        return f"postgres:{name}"

    def fresh_empty(self, label: str) -> str:
        """A new, empty database (the caller migrates it)."""
        name = f"{self.prefix}_{label}"
        self._create(name)
        return f"postgres:{name}"

    def drop(self, url: str) -> None:
        name = url.partition(":")[2]
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)

    def close(self) -> None:
        for name in reversed(list(self.created)):
            self.drop(f"postgres:{name}")

    def _create(self, name: str, template: str | None = None) -> None:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            sql = f'CREATE DATABASE "{name}"'
            if template:
                sql += f' TEMPLATE "{template}"'
            conn.execute(sql)
        self.created.append(name)


def _admin():  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_ADMIN_DB, autocommit=True
    )
