"""Webhook posts arriving together share one transaction (tracking/group.py), over
a real threaded WSGI server: each post is answered only once its events are
committed, and a post whose events fail rolls back alone."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.db import DatabaseError, OperationalError, connection, connections, transaction

from django_smtprelay.models import Recipient, RecipientEvent
from django_smtprelay.tracking import group
from tests.tracking import payloads
from tests.tracking.conftest import BASIC, auth, post

pytestmark = pytest.mark.django_db(transaction=True)


class _QuietHandler(WSGIRequestHandler):
    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadedWSGIServer):
    request_queue_size = 64  # every client's connection at once


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    """The project's WSGI app on a threaded server at 127.0.0.1 (a port of its own)."""
    httpd = _Server(("127.0.0.1", 0), _QuietHandler, allow_reuse_address=False)
    httpd.set_app(WSGIHandler())
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield httpd.server_address[:2]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def _post(address: tuple[str, int], route: Any, payload: tuple[bytes, str, dict]) -> int:
    body, content_type, _headers = payload
    conn = http.client.HTTPConnection(*address, timeout=30)
    try:
        headers = {"Content-Type": content_type, "Authorization": auth()["HTTP_AUTHORIZATION"]}
        conn.request("POST", f"/smtprelay/webhooks/{route.name}/tracking/", body, headers)
        return conn.getresponse().status
    finally:
        conn.close()


def _recorded(provider_id: str) -> bool:
    """Read through this thread's own connection: only committed rows are seen."""
    try:
        return RecipientEvent.objects.filter(recipient__provider_message_id=provider_id).exists()
    finally:
        connections.close_all()


def _boom_on(recipient_pk: int) -> None:
    """A real database error for the events of one recipient: a trigger refuses the insert."""
    table = RecipientEvent._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER smtprelay_boom BEFORE INSERT ON {table} "
                f"WHEN NEW.recipient_id = {int(recipient_pk)} "
                "BEGIN SELECT RAISE(ABORT, 'boom'); END"
            )
        elif connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION smtprelay_boom() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.recipient_id = {int(recipient_pk)} THEN RAISE EXCEPTION 'boom'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER smtprelay_boom BEFORE INSERT ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION smtprelay_boom()"
            )
        else:  # pragma: no cover
            pytest.skip(f"no trigger written for {connection.vendor}: add one to run this test")


def test_concurrent_posts_each_answered_after_their_events_committed(server, esp_route, accepted):
    route = esp_route("postmark")
    count = 40
    for i in range(count):
        accepted(route, [f"u{i}@example.net"], provider_id=f"pm-{i}")
    seen: dict[int, tuple[int, bool]] = {}
    start = threading.Barrier(8)

    def client(indexes: list[int]) -> None:
        start.wait(10)
        for i in indexes:
            status = _post(
                server, route, payloads.postmark_delivery(f"pm-{i}", f"u{i}@example.net")
            )
            seen[i] = (status, _recorded(f"pm-{i}"))

    threads = [threading.Thread(target=client, args=(list(range(k, count, 8)),)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert seen == {i: (200, True) for i in range(count)}
    assert RecipientEvent.objects.count() == count
    assert RecipientEvent.objects.values("recipient").distinct().count() == count
    # Posted again, concurrently: every one a duplicate, nothing added.
    threads = [threading.Thread(target=client, args=(list(range(k, count, 8)),)) for k in range(8)]
    start.reset()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert RecipientEvent.objects.count() == count


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")
def test_a_post_whose_events_fail_gets_a_5xx_and_the_others_commit(
    server, esp_route, accepted, caplog
):
    """Two events a post (SendGrid); post 3's second event fails in the database:
    its first event is rolled back with it, and the other posts commit."""
    route = esp_route("sendgrid")
    for i in range(6):
        to = [f"a{i}@example.net", f"b{i}@example.net"]
        accepted(route, to, headers={"Message-ID": f"<m{i}@shop.example.com>"})
    _boom_on(Recipient.objects.get(address="b3@example.net").pk)
    # The leader waits long enough for every post inside the view to bring its events.
    committer = group.GroupCommitter(gather_seconds=5)
    statuses: dict[int, int] = {}
    start = threading.Barrier(6)
    original = group.committer
    group.committer = committer
    try:

        def client(i: int) -> None:
            start.wait(10)
            smtp_id = f"<m{i}@shop.example.com>"
            payload = payloads.sendgrid_events(
                payloads.sendgrid_event("delivered", smtp_id, f"a{i}@example.net"),
                payloads.sendgrid_event("delivered", smtp_id, f"b{i}@example.net"),
            )
            statuses[i] = _post(server, route, payload)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        group.committer = original
    assert statuses == {0: 200, 1: 200, 2: 200, 3: 500, 4: 200, 5: 200}
    recorded = set(RecipientEvent.objects.values_list("recipient__address", flat=True))
    assert recorded == {f"{x}{i}@example.net" for i in (0, 1, 2, 4, 5) for x in "ab"}
    assert "route sendgrid-route" in caplog.text
    assert BASIC.split(":")[1] not in caplog.text


def test_posts_arriving_together_share_one_transaction():
    """A leader waits for a post still inside the view, then applies both itself."""
    committer = group.GroupCommitter(gather_seconds=30)
    ran: list[tuple[str, int, bool]] = []
    first_in = threading.Event()

    def work(name: str) -> Any:
        return lambda: ran.append((name, threading.get_ident(), connection.in_atomic_block))

    def slow_post() -> None:
        with committer.arrival() as arrival:
            first_in.set()
            while committer.pending == []:  # the other post is leading and waiting for us
                threading.Event().wait(0.001)
            committer.commit([work("slow")], arrival)

    thread = threading.Thread(target=slow_post)
    thread.start()
    assert first_in.wait(10)
    with committer.arrival() as arrival:
        committer.commit([work("fast")], arrival)
    thread.join(10)
    assert [name for name, _t, _a in ran] == ["fast", "slow"]
    assert {tid for _n, tid, _a in ran} == {threading.get_ident()}  # the leader ran both
    assert all(in_atomic for _n, _t, in_atomic in ran)


def test_a_lone_post_does_not_wait_for_posts_yet_to_come(client, esp_route, accepted):
    """With nobody else inside the view, the leader commits at once (a gather of
    ten minutes would otherwise hold this post that long)."""
    route = esp_route("postmark")
    accepted(route, ["ann@example.net"], provider_id="pm-1")
    original = group.committer
    group.committer = group.GroupCommitter(gather_seconds=600)
    result: list[int] = []

    def lone() -> None:
        try:
            payload = payloads.postmark_delivery("pm-1", "ann@example.net")
            result.append(post(client, route, payload).status_code)
        finally:
            connections.close_all()

    try:
        thread = threading.Thread(target=lone, daemon=True)
        thread.start()
        thread.join(30)
    finally:
        group.committer = original
    assert result == [200]
    assert Recipient.objects.get().events.count() == 1


def test_a_post_whose_work_raises_hears_it_and_the_next_post_still_commits():
    committer = group.GroupCommitter()
    errors = []

    def boom() -> None:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        committer.commit([boom])
    committer.commit([lambda: errors.append("ran")])
    assert errors == ["ran"]
    assert committer.pending == [] and not committer.leading


@pytest.fixture
def probe() -> Iterator[Any]:
    """A table of its own, outside the app's models: ``probe.add(n)`` writes a row,
    ``probe.committed()`` reads what another connection sees."""
    table = "smtprelay_gc_probe"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {table} (n integer)")

    class Probe:
        @staticmethod
        def add(n: int) -> None:
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO smtprelay_gc_probe VALUES (%s)", [n])

        @staticmethod
        def committed() -> list[int]:
            result: list[list[int]] = []

            def read() -> None:
                try:
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT n FROM smtprelay_gc_probe ORDER BY n")
                        result.append([row[0] for row in cursor.fetchall()])
                finally:
                    connections.close_all()

            thread = threading.Thread(target=read)
            thread.start()
            thread.join(30)
            return result[0]

    try:
        yield Probe
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {table}")


def test_a_savepoint_that_will_not_roll_back_fails_every_post_of_the_group(probe, monkeypatch):
    """The server went away: the post's statement fails and so does ROLLBACK TO
    SAVEPOINT. Django then rolls the whole transaction back without raising;
    the posts applied before it must not hear 200 for rows never committed."""

    patched: list[bool] = []

    def lost() -> None:
        def refuse(sid: str) -> None:
            raise OperationalError("server closed the connection unexpectedly")

        if not patched:  # the group runs a failing post's work twice: patched once
            monkeypatch.setattr(connection, "savepoint_rollback", refuse)
            patched.append(True)
        raise OperationalError("server closed the connection unexpectedly")

    posts = [
        group.Post([lambda: probe.add(1)]),
        group.Post([lost]),
        group.Post([lambda: probe.add(3)]),
    ]
    group._apply(posts)
    monkeypatch.undo()
    assert probe.committed() == []
    assert all(isinstance(p.error, DatabaseError) for p in posts), [p.error for p in posts]


def test_a_connection_closed_inside_the_group_fails_every_post(probe):
    """A post's work that closes the connection without raising (the last post):
    nothing is committed, and no post is answered as if it were."""
    posts = [
        group.Post([lambda: probe.add(1)]),
        group.Post([lambda: probe.add(2), connection.close]),
    ]
    group._apply(posts)
    assert probe.committed() == []
    assert all(p.error is not None for p in posts), [p.error for p in posts]
    # The next group, on a new connection, commits.
    after = group.Post([lambda: probe.add(5)])
    group._apply([after])
    assert after.error is None
    assert probe.committed() == [5]


def test_a_post_rolled_back_without_an_error_hears_one_and_the_others_commit(probe):
    def rolled_back() -> None:
        probe.add(2)
        transaction.set_rollback(True)

    posts = [
        group.Post([lambda: probe.add(1)]),
        group.Post([rolled_back]),
        group.Post([lambda: probe.add(3)]),
    ]
    group._apply(posts)
    assert probe.committed() == [1, 3]
    assert [p.error is None for p in posts] == [True, False, True]


def test_under_atomic_requests_a_followers_200_means_its_events_are_committed(
    server, esp_route, accepted, monkeypatch
):
    """With ``ATOMIC_REQUESTS`` the leader's transaction would be a savepoint of its
    own request's: here the leader stays in its request until the follower's
    client has looked, and the follower's events must be committed by then."""
    monkeypatch.setitem(connections.settings["default"], "ATOMIC_REQUESTS", True)
    route = esp_route("postmark")
    for i in range(2):
        accepted(route, [f"u{i}@example.net"], provider_id=f"pm-{i}")
    followed = threading.Event()
    sizes: list[int] = []
    real_apply = group._apply
    monkeypatch.setattr(
        group, "_apply", lambda posts: (sizes.append(len(posts)), real_apply(posts))
    )

    class Lingering(group.GroupCommitter):
        calls = 0

        def commit(self, work: list[Any], arrival: group.Arrival | None = None) -> None:
            with self.lock:
                Lingering.calls += 1
                first = Lingering.calls == 1
            # The first waits for the other inside the view, the other for it to lead.
            for _ in range(10_000):  # 10 s at most
                if (self.arriving >= 2) if first else self.leading:
                    break
                threading.Event().wait(0.001)
            super().commit(work, arrival)
            if first:
                followed.wait(10)  # the leader's request is not over yet

    monkeypatch.setattr(group, "committer", Lingering(gather_seconds=30))
    seen: dict[int, tuple[int, bool]] = {}

    def client(i: int) -> None:
        status = _post(server, route, payloads.postmark_delivery(f"pm-{i}", f"u{i}@example.net"))
        seen[i] = (status, _recorded(f"pm-{i}"))
        if len(seen) == 1:
            followed.set()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert seen == {0: (200, True), 1: (200, True)}
    assert sizes == [2]  # the views are outside the request's transaction: still one group


def test_a_post_inside_an_open_transaction_is_applied_alone_under_a_savepoint(probe):
    """A caller already in a transaction never leads a group (other threads' posts
    would commit only with it); its events commit with its own transaction."""

    class NoLeader(group.GroupCommitter):
        def _lead(self) -> None:
            raise AssertionError("a caller inside a transaction led a group")

    committer = NoLeader(gather_seconds=30)
    with pytest.raises(RuntimeError, match="undone"), transaction.atomic():
        with committer.arrival() as arrival:
            committer.commit([lambda: probe.add(1)], arrival)
            assert committer.arriving == 0  # handed: no leader waits for it
        raise RuntimeError("undone")
    with transaction.atomic():
        committer.commit([lambda: probe.add(2)])
    assert probe.committed() == [2]


def test_a_group_whose_posts_all_succeed_takes_no_savepoint_per_post(probe):
    """The usual group: one transaction, no SAVEPOINT and RELEASE for each post."""
    from django.test.utils import CaptureQueriesContext

    posts = [group.Post([lambda n=n: probe.add(n)]) for n in range(1, 6)]
    with CaptureQueriesContext(connection) as captured:
        group._apply(posts)
    assert [p.error for p in posts] == [None] * 5
    assert probe.committed() == [1, 2, 3, 4, 5]
    sqls = [q["sql"] for q in captured.captured_queries]
    assert not [sql for sql in sqls if "SAVEPOINT" in sql], sqls


def test_an_unknown_id_in_a_group_applied_again_is_counted_once(esp_route):
    """A failing post makes the group apply every post again, a savepoint each: an
    event for no known recipient, in another post, is still counted once."""
    from django_smtprelay.tracking.apply import Applying, Event, unmatched_count

    route = esp_route("postmark")

    def boom() -> None:
        raise RuntimeError("no")

    unknown = Applying(Event(kind="delivered", esp="postmark", message_id="no-such-id"), route.pk)
    posts = [group.Post([unknown]), group.Post([boom])]
    group._apply(posts)
    assert posts[0].error is None and isinstance(posts[1].error, RuntimeError)
    assert unmatched_count(route.pk) == 1
