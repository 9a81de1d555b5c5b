"""Real peers on 127.0.0.1 for the alerts tests: an HTTP server standing in for Slack's
incoming webhook, and aiosmtpd SMTP servers (plain, STARTTLS with auth, implicit TLS)."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

WEBHOOK_PATH = "/services/T0001/B0002/s3cr3tT0k3nXYZ"
SMTP_USER = "alerts"
SMTP_PASSWORD = "smtp-pa55word"


@dataclass
class SlackReply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


class FakeSlack:
    """Answers webhook posts from a script of replies (then 200 "ok"), recording each."""

    def __init__(self) -> None:
        self.script: list[SlackReply] = []
        self.requests: list[dict[str, Any]] = []
        self.answered_ok = 0
        self.release = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with fake._lock:
                    fake.requests.append(
                        {
                            "path": self.path,
                            "content_type": self.headers.get("Content-Type"),
                            "json": json.loads(body),
                        }
                    )
                    reply = fake.script.pop(0) if fake.script else SlackReply()
                    if reply.status == 200 and not reply.hang:
                        fake.answered_ok += 1
                if reply.hang:
                    fake.release.wait(30)
                    return
                payload = reply.body.encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test asserts on recorded requests instead."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{WEBHOOK_PATH}"

    def payloads(self) -> list[dict[str, Any]]:
        return [request["json"] for request in self.requests]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    fake.thread.start()
    yield fake
    fake.release.set()
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join(timeout=10)


class SmtpRecorder:
    """aiosmtpd handler: scripted refusals at RCPT and DATA, then accepts and parses mail."""

    def __init__(self) -> None:
        self.refusals: list[str] = []
        self.rcpt_refusals: dict[str, list[str]] = {}
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.data_attempts = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        script = self.rcpt_refusals.get(address)
        if script:
            return script.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_attempts += 1
        if self.refusals:
            return self.refusals.pop(0)
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


class PortZeroController(Controller):
    """aiosmtpd's Controller on a port the OS picks, so parallel runs never collide."""

    def _create_server(self) -> Any:
        async def create() -> Any:
            server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=0, ssl=self.ssl_context
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return create()


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == SMTP_USER.encode()
        and data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@dataclass
class SmtpPeer:
    recorder: SmtpRecorder
    port: int
    ca_file: Path | None


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_context, ca_file


def _start(controller: PortZeroController, recorder: SmtpRecorder, ca: Path | None) -> SmtpPeer:
    controller.start()
    return SmtpPeer(recorder, controller.port, ca)


@pytest.fixture
def smtp_plain() -> Iterator[SmtpPeer]:
    recorder = SmtpRecorder()
    controller = PortZeroController(recorder, hostname="127.0.0.1")
    yield _start(controller, recorder, None)
    controller.stop()


@pytest.fixture
def smtp_starttls(tls_material: tuple[ssl.SSLContext, Path]) -> Iterator[SmtpPeer]:
    context, ca_file = tls_material
    recorder = SmtpRecorder()
    controller = PortZeroController(
        recorder,
        hostname="127.0.0.1",
        tls_context=context,
        require_starttls=True,
        authenticator=_authenticate,
        auth_required=True,
    )
    yield _start(controller, recorder, ca_file)
    controller.stop()


@pytest.fixture
def smtp_implicit_tls(tls_material: tuple[ssl.SSLContext, Path]) -> Iterator[SmtpPeer]:
    context, ca_file = tls_material
    recorder = SmtpRecorder()
    controller = PortZeroController(
        recorder,
        hostname="127.0.0.1",
        ssl_context=context,
        authenticator=_authenticate,
        auth_required=True,
        # aiosmtpd only counts STARTTLS as TLS; this session is TLS from the first byte.
        auth_require_tls=False,
    )
    yield _start(controller, recorder, ca_file)
    controller.stop()
