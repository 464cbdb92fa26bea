"""The publishing connection's timeouts reach only the transports that take
them: kombu's SQLAlchemy transport (the example site's broker) passes its
options to create_engine(), which refused the socket timeouts, so a process
whose first broker connection was the publisher's never published."""

from __future__ import annotations

from pathlib import Path

from celery import Celery

from django_smtprelay.backends import _connection


def test_an_sqlalchemy_broker_connects_in_a_fresh_process_state(tmp_path: Path) -> None:
    # A file no engine was made for yet (kombu keeps one per URL).
    app = Celery("publish-sqla", broker=f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}")
    connection = _connection(app, 2.0)
    try:
        assert "socket_timeout" not in connection.transport_options
        app.send_task("smtprelay-test", connection=connection, retry=False)
    finally:
        connection.release()


def test_redis_and_amqp_get_their_socket_timeouts() -> None:
    # Built, never connected: the options are read when a channel opens.
    redis = _connection(Celery("publish-redis", broker="redis://127.0.0.1:1/0"), 2.5)
    amqp = _connection(Celery("publish-amqp", broker="pyamqp://127.0.0.1:1//"), 2.5)
    try:
        assert redis.transport_options["socket_timeout"] == 2.5
        assert redis.transport_options["socket_connect_timeout"] == 2.5
        assert "read_timeout" not in redis.transport_options
        assert amqp.transport_options["read_timeout"] == 2.5
        assert amqp.transport_options["write_timeout"] == 2.5
        assert redis.transport_options["max_retries"] == 0
    finally:
        redis.release()
        amqp.release()
