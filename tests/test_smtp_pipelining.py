"""SMTP PIPELINING (RFC 2920): the same per-recipient results as one command at a time."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from django_smtprelay.models import Route
from django_smtprelay.routing import RouteSpec
from django_smtprelay.transports.base import Envelope, SendResult
from django_smtprelay.transports.smtp import SMTPTransport


class Scripted:
    """Replies by address: ``reject*`` 550 at RCPT, ``later*`` 450, ``badsender*`` 553 at MAIL."""

    def __init__(self, *, pipelining: bool) -> None:
        self.pipelining = pipelining
        self.received: list[tuple[str, list[str]]] = []

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("badsender"):
            return "553 5.7.1 sender refused"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("reject"):
            return "550 5.1.1 no such user"
        if address.startswith("later"):
            return "450 4.2.1 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if b"Subject: refuse" in envelope.content:
            return "554 5.6.0 content refused"
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 2.0.0 queued"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def servers() -> Iterator[dict[bool, tuple[Scripted, int]]]:
    """Two scripted relays on 127.0.0.1: one offers PIPELINING, one does not."""
    started = {}
    controllers = []
    for pipelining in (True, False):
        handler = Scripted(pipelining=pipelining)
        port = _free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        started[pipelining] = (handler, port)
    yield started
    for controller in controllers:
        controller.stop()


def _transport(port: int) -> SMTPTransport:
    route = RouteSpec(name="test", host="127.0.0.1", port=port, security=Route.Security.NONE)
    transport = SMTPTransport(route)
    transport.open()
    return transport


def _send(
    port: int, envelopes: list[Envelope], *, announce: bool = False
) -> tuple[list[SendResult], bool]:
    """Send ``envelopes`` in one session; ``announce`` passes each next one as ``following``."""
    transport = _transport(port)
    try:
        assert transport.conn is not None
        pipelined = transport._can_pipeline(transport.conn, envelopes[0])
        results = []
        for index, envelope in enumerate(envelopes):
            following = envelopes[index + 1] if announce and index + 1 < len(envelopes) else None
            results.append(transport.send(envelope, following=following))
        return results, pipelined
    finally:
        transport.close()


def _summary(result: SendResult) -> tuple[Any, ...]:
    return (
        result.outcome,
        result.reply.stage,
        result.reply.code,
        [
            (r.address, r.verdict.outcome, r.reply.stage, r.reply.code, r.reply.enhanced)
            for r in result.recipients
        ],
    )


BODY = b"Subject: hello\r\n\r\n.leading dot\r\nbody\r\n"
CASES = [
    Envelope("from@example.com", ["ok@example.com"], BODY),
    Envelope(
        "from@example.com", ["ok@example.com", "reject@example.com", "later@example.com"], BODY
    ),
    Envelope("from@example.com", ["reject@example.com", "later@example.com"], BODY),
    Envelope("badsender@example.com", ["ok@example.com", "ok2@example.com"], BODY),
    Envelope("from@example.com", ["ok@example.com"], b"Subject: refuse\r\n\r\nbody\r\n"),
    Envelope("from@example.com", ["ok3@example.com"], BODY),  # the session is still usable
]


@pytest.mark.django_db
def test_pipelined_results_match_one_command_at_a_time(servers: Any) -> None:
    (pipe_handler, pipe_port), (plain_handler, plain_port) = servers[True], servers[False]
    pipelined, used_pipelining = _send(pipe_port, CASES)
    plain, plain_pipelining = _send(plain_port, CASES)
    assert used_pipelining and not plain_pipelining
    assert [_summary(r) for r in pipelined] == [_summary(r) for r in plain]
    assert (
        pipe_handler.received
        == plain_handler.received
        == [
            ("from@example.com", ["ok@example.com"]),
            ("from@example.com", ["ok@example.com"]),
            ("from@example.com", ["ok3@example.com"]),
        ]
    )
    outcomes = [[str(r.verdict.outcome) for r in result.recipients] for result in pipelined]
    assert outcomes == [
        ["delivered"],
        ["delivered", "permanent", "transient"],
        ["permanent", "transient"],
        ["route_fault", "route_fault"],
        ["permanent"],
        ["delivered"],
    ]


@pytest.mark.django_db
def test_next_message_pipelined_with_the_previous_content_gives_the_same_results(
    servers: Any,
) -> None:
    (pipe_handler, pipe_port), (plain_handler, plain_port) = servers[True], servers[False]
    announced, _ = _send(pipe_port, CASES, announce=True)
    plain, _ = _send(plain_port, CASES, announce=True)  # no PIPELINING: following is ignored
    one_by_one, _ = _send(plain_port, CASES)
    assert [_summary(r) for r in announced] == [_summary(r) for r in one_by_one]
    assert [_summary(r) for r in plain] == [_summary(r) for r in one_by_one]
    assert pipe_handler.received == plain_handler.received[:3]


class Watching(Scripted):
    """Notes, at each final dot, whether the next MAIL had already arrived."""

    def __init__(self) -> None:
        super().__init__(pipelining=True)
        self.next_mail_waiting: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # The client writes the next commands before it reads this reply, so
        # if it pipelines them they arrive; if not, they never come first.
        buffered = server._reader._buffer
        for _ in range(50):
            if b"MAIL FROM" in buffered:
                break
            await asyncio.sleep(0.01)
        self.next_mail_waiting.append(b"MAIL FROM" in buffered)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def watching() -> Iterator[tuple[Watching, int]]:
    handler = Watching()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.mark.django_db
def test_next_messages_commands_go_out_with_the_previous_content(watching: Any) -> None:
    handler, port = watching
    envelopes = [Envelope("from@example.com", [f"ok{i}@example.com"], BODY) for i in range(3)]
    results, _ = _send(port, envelopes, announce=True)
    assert [str(r.outcome) for r in results] == ["delivered"] * 3
    # The last message has no following one: nothing was waiting at its dot.
    assert handler.next_mail_waiting == [True, True, False]
    assert [rcpts for _sender, rcpts in handler.received] == [[e.recipients[0]] for e in envelopes]


@pytest.mark.django_db
def test_an_announced_message_is_not_delivered_when_the_session_closes_instead(
    servers: Any,
) -> None:
    handler, port = servers[True]
    first, second = (Envelope("from@example.com", [f"ok{i}@example.com"], BODY) for i in (1, 2))
    transport = _transport(port)
    assert str(transport.send(first, following=second).outcome) == "delivered"
    transport.close()  # without sending ``second``: its content never ends
    transport = _transport(port)
    try:
        third = Envelope("from@example.com", ["ok3@example.com"], BODY)
        assert str(transport.send(third).outcome) == "delivered"
    finally:
        transport.close()
    assert [rcpts for _sender, rcpts in handler.received] == [
        ["ok1@example.com"],
        ["ok3@example.com"],
    ]


@pytest.mark.django_db
def test_sending_another_message_than_the_announced_one_is_refused(servers: Any) -> None:
    handler, port = servers[True]
    first, second, other = (
        Envelope("from@example.com", [f"ok{i}@example.com"], BODY) for i in (1, 2, 3)
    )
    transport = _transport(port)
    try:
        transport.send(first, following=second)
        with pytest.raises(RuntimeError, match="must send"):
            transport.send(other)
        assert not transport.is_open
    finally:
        transport.close()
    assert [rcpts for _sender, rcpts in handler.received] == [["ok1@example.com"]]


class Gated(Scripted):
    """Answers each final dot only once the client's ``meanwhile`` callback has run."""

    def __init__(self) -> None:
        super().__init__(pipelining=True)
        self.gate = threading.Event()
        self.opened_in_time: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for _ in range(200):
            if self.gate.is_set():
                break
            await asyncio.sleep(0.01)
        self.opened_in_time.append(self.gate.is_set())
        self.gate.clear()
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.django_db
def test_meanwhile_runs_while_the_relay_holds_the_reply_to_the_dot() -> None:
    handler = Gated()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    envelopes = [Envelope("from@example.com", [f"ok{i}@example.com"], BODY) for i in range(3)]
    calls: list[int] = []
    transport = _transport(port)
    try:
        results = []
        for index, envelope in enumerate(envelopes):
            following = envelopes[index + 1] if index + 1 < len(envelopes) else None

            def meanwhile(index: int = index) -> None:
                calls.append(index)
                handler.gate.set()

            results.append(transport.send(envelope, following=following, meanwhile=meanwhile))
    finally:
        transport.close()
        controller.stop()
    assert [str(r.outcome) for r in results] == ["delivered"] * 3
    assert calls == [0, 1, 2]  # once per send
    # Had a callback run only after its reply, the relay would have waited 2s for it.
    assert handler.opened_in_time == [True, True, True]


@pytest.mark.django_db
def test_meanwhile_runs_once_when_the_relay_refuses_before_the_content(servers: Any) -> None:
    _handler, port = servers[True]
    calls: list[str] = []
    transport = _transport(port)
    try:
        refused = Envelope("badsender@example.com", ["ok@example.com"], BODY)
        result = transport.send(refused, meanwhile=lambda: calls.append("refused"))
        too_large = Envelope("from@example.com", ["ok@example.com"], BODY)
        assert transport.conn is not None
        transport.conn.esmtp_features["size"] = "10"
        small = transport.send(too_large, meanwhile=lambda: calls.append("too large"))
    finally:
        transport.close()
    assert str(result.outcome) == "route_fault" and result.reply.code == 553
    assert str(small.outcome) == "route_fault" and "SIZE 10" in small.reply.text
    assert calls == ["refused", "too large"]


def test_a_421_to_a_pipelined_rcpt_is_the_reply_not_a_lost_connection(smtp_server) -> None:
    """The relay closes after its 421 (RFC 5321 3.8), so no reply to DATA ever comes:
    every recipient gets the 421 (a throttle), none a "connection closed" route fault."""
    relay = smtp_server(rcpt_replies={"slow@x.test": "421 4.7.0 Try again later"})
    route = RouteSpec(name="r", host="127.0.0.1", port=relay.port, security=Route.Security.NONE)
    transport = SMTPTransport(route)
    transport.open()
    try:
        result = transport.send(Envelope("s@example.com", ["ok@x.test", "slow@x.test"], b"x\r\n"))
    finally:
        transport.close()
    assert [(r.reply.code, r.verdict.throttle) for r in result.recipients] == [
        (421, True),
        (421, True),
    ]
    assert result.verdict.session_over and result.reply.code == 421
    assert relay.messages == []
