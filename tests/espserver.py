"""ESP-like HTTP APIs on 127.0.0.1, for real anymail backends to talk to.

Each flavour answers the way that ESP's send API does (the shapes are written
from the ESPs' API documentation): Postmark, Mailgun, SendGrid, Resend and
Amazon SES (v2, which boto3 reaches through ``endpoint_url``). A test can
queue its own answers (``server.answer(...)``) or make the server slow
(``server.delay``); every request is kept (``server.requests``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if isinstance(self.body, (dict, list)):
            return json.dumps(self.body).encode()
        return self.body.encode() if isinstance(self.body, str) else self.body


def _postmark_ok(request: Request) -> Answer:
    data = request.json()
    assert isinstance(data, dict)
    return Answer(
        200,
        {
            "To": data.get("To", ""),
            "SubmittedAt": "2026-11-30T12:00:00.0000000-05:00",
            "MessageID": str(uuid.uuid4()),
            "ErrorCode": 0,
            "Message": "OK",
        },
    )


def _mailgun_ok(request: Request) -> Answer:
    return Answer(
        200,
        {
            "id": f"<20261130120000.{uuid.uuid4().hex}@mg.example.com>",
            "message": "Queued. Thank you.",
        },
    )


def _sendgrid_ok(request: Request) -> Answer:
    # SendGrid answers a successful send with 202 and no body.
    return Answer(202, b"", {"X-Message-Id": uuid.uuid4().hex[:22]})


def _resend_ok(request: Request) -> Answer:
    return Answer(200, {"id": str(uuid.uuid4())})


def _ses_ok(request: Request) -> Answer:
    return Answer(200, {"MessageId": f"0100018c{uuid.uuid4().hex}-000000"})


SUCCESS: dict[str, Callable[[Request], Answer]] = {
    "postmark": _postmark_ok,
    "mailgun": _mailgun_ok,
    "sendgrid": _sendgrid_ok,
    "resend": _resend_ok,
    "amazon_ses": _ses_ok,
}

# Error answers per flavour, by kind: "auth", "rate", "server".
ERRORS: dict[str, dict[str, Answer]] = {
    "postmark": {
        "auth": Answer(
            401,
            {
                "ErrorCode": 10,
                "Message": "The Server Token you provided in the X-Postmark-Server-Token "
                "request header was invalid. Please verify that you are using a valid token.",
            },
        ),
        "rate": Answer(429, {"ErrorCode": 429, "Message": "Rate limit exceeded."}),
        "server": Answer(500, {"ErrorCode": 0, "Message": "Internal server error."}),
    },
    "mailgun": {
        "auth": Answer(401, "Forbidden", {"Content-Type": "text/plain"}),
        "rate": Answer(429, {"message": "Too many requests"}),
        "server": Answer(500, {"message": "Internal Server Error"}),
        "refused": Answer(
            400, {"message": "'to' parameter is not a valid address. please check documentation"}
        ),
    },
    "sendgrid": {
        "auth": Answer(
            401,
            {
                "errors": [
                    {
                        "message": "The provided authorization grant is invalid, expired, "
                        "or revoked",
                        "field": None,
                        "help": None,
                    }
                ]
            },
        ),
        "forbidden": Answer(
            403,
            {
                "errors": [
                    {
                        "message": "The from address does not match a verified Sender Identity.",
                        "field": "from",
                        "help": None,
                    }
                ]
            },
        ),
        "rate": Answer(429, {"errors": [{"field": None, "message": "too many requests"}]}),
        "server": Answer(500, {"errors": [{"field": None, "message": "internal error"}]}),
    },
    "resend": {
        "auth": Answer(
            401, {"statusCode": 401, "message": "API key is invalid", "name": "validation_error"}
        ),
        "rate": Answer(
            429,
            {
                "statusCode": 429,
                "message": "Too many requests. You can only make 2 requests per second.",
                "name": "rate_limit_exceeded",
            },
        ),
        "server": Answer(
            500,
            {
                "statusCode": 500,
                "message": "An unexpected error occurred.",
                "name": "internal_server_error",
            },
        ),
    },
    "amazon_ses": {
        "auth": Answer(
            403,
            {"message": "The security token included in the request is invalid."},
            {"x-amzn-ErrorType": "UnrecognizedClientException:"},
        ),
        "rate": Answer(
            429,
            {"message": "Maximum sending rate exceeded."},
            {"x-amzn-ErrorType": "TooManyRequestsException:"},
        ),
        "server": Answer(
            500, {"message": "Internal failure"}, {"x-amzn-ErrorType": "InternalFailure:"}
        ),
        "refused": Answer(
            400,
            {
                "message": "Email address is not verified. The following identities "
                "failed the check: a@example.com"
            },
            {"x-amzn-ErrorType": "MessageRejected:"},
        ),
    },
}


def postmark_inactive(addresses: list[str]) -> Answer:
    """Postmark's 422 for a send whose every recipient is inactive (ErrorCode 406)."""
    return Answer(
        422,
        {
            "ErrorCode": 406,
            "Message": "You tried to send to recipient(s) that have been marked as inactive.\n"
            f"Found inactive addresses: {', '.join(addresses)}.\n"
            "Inactive recipients are ones that have generated a hard bounce, a spam "
            "complaint, or a manual suppression. ",
        },
    )


def postmark_some_inactive(request: Request, addresses: list[str]) -> Answer:
    """Postmark's 200 for a send where some recipients are inactive."""
    answer = _postmark_ok(request)
    assert isinstance(answer.body, dict)
    answer.body["Message"] = (
        f"Message OK, but will not deliver to these inactive addresses: {', '.join(addresses)}. "
        "Inactive recipients are ones that have generated a hard bounce or a spam complaint."
    )
    return answer


class ESPServer:
    """One ESP-like API on 127.0.0.1 (a real HTTP server, in a thread)."""

    def __init__(self, flavour: str) -> None:
        self.flavour = flavour
        self.requests: list[Request] = []
        self.answers: list[Answer] = []  # what each request was answered, in order
        self.queued: list[Answer | Callable[[Request], Answer]] = []
        self.always: Answer | Callable[[Request], Answer] | None = None
        self.delay = 0.0
        self.keep_requests = True
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # No Nagle delay against the client's delayed ACK.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                request = Request("POST", self.path, dict(self.headers.items()), body)
                answer = server._answer_for(request)
                if server.delay:
                    time.sleep(server.delay)
                data = answer.encoded()
                self.send_response(answer.status)
                content_type = "application/json"
                headers = dict(answer.headers)
                content_type = headers.pop("Content-Type", content_type)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def answer(self, *answers: Answer | Callable[[Request], Answer]) -> None:
        """Answer the next requests with these, in order (then as the ESP would)."""
        with self._lock:
            self.queued.extend(answers)

    def _answer_for(self, request: Request) -> Answer:
        with self._lock:
            if self.keep_requests:
                self.requests.append(request)
            answer = self.queued.pop(0) if self.queued else self.always
        if answer is None:
            answer = SUCCESS[self.flavour]
        answered = answer(request) if callable(answer) else answer
        with self._lock:
            if self.keep_requests:
                self.answers.append(answered)
        return answered

    def __enter__(self) -> ESPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def route_options(flavour: str, server: ESPServer, **extra: object) -> dict[str, object]:
    """The route options that point ``flavour``'s anymail backend at ``server``."""
    if flavour == "postmark":
        options: dict[str, object] = {"server_token": "pm-route-token", "api_url": server.url}
    elif flavour == "mailgun":
        options = {"api_key": "mg-route-key", "api_url": server.url + "v3/"}
    elif flavour == "sendgrid":
        options = {"api_key": "SG.route-key", "api_url": server.url + "v3/"}
    elif flavour == "resend":
        options = {"api_key": "re_route_key", "api_url": server.url}
    elif flavour == "amazon_ses":
        options = {
            "aws_access_key_id": "AKIAROUTEKEY",
            "aws_secret_access_key": "route-secret-access-key",
            "region_name": "eu-west-1",
            "endpoint_url": server.url.rstrip("/"),
        }
    else:
        raise ValueError(f"no ESP-like server for {flavour!r}")
    options.update(extra)
    return options
