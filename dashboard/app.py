"""Building and serving the Dash app: access rules, optional HTTP basic login, the server.

The rule: without a login the dashboard only binds to a loopback address, because post
text, alerts and the feedback form would otherwise be open to anyone on the network.
"""

from __future__ import annotations

import hmac
import logging
import threading
from dataclasses import dataclass, field

import flask
import sqlalchemy
import sqlalchemy.exc
from dash import Dash
from werkzeug.serving import BaseWSGIServer, make_server

from dashboard import layout
from dashboard.callbacks import register
from dashboard.queries import DashboardQueries
from finsentry.config import Settings
from finsentry.runtime import is_loopback
from finsentry.store import Store, posts

log = logging.getLogger(__name__)


class DashboardConfigError(ValueError):
    """The dashboard settings are unsafe or incomplete; the message says what to set."""


def check_access(settings: Settings) -> tuple[str, str] | None:
    """The (user, password) login to require, or None; refuses unsafe combinations."""
    user, password = settings.dashboard_username, settings.dashboard_password
    if (user is None) != (password is None):
        raise DashboardConfigError(
            "set both dashboard_username and dashboard_password "
            "(FINSENTRY_DASHBOARD_USERNAME, FINSENTRY_DASHBOARD_PASSWORD) or neither"
        )
    if user is not None and password is not None:
        return user, password.get_secret_value()
    if not is_loopback(settings.dashboard_host):
        raise DashboardConfigError(
            f"refusing to serve the dashboard on {settings.dashboard_host}:"
            f"{settings.dashboard_port} without a login: anyone who can reach that address "
            "could read posts and alerts and file label corrections. Set "
            "FINSENTRY_DASHBOARD_USERNAME and FINSENTRY_DASHBOARD_PASSWORD, or bind to "
            "127.0.0.1."
        )
    return None


def create_app(store: Store, settings: Settings) -> Dash:
    """The Dash app over one store; raises DashboardConfigError before building anything."""
    login = check_access(settings)
    app = Dash(
        __name__,
        title="finsentry",
        update_title="",
        suppress_callback_exceptions=True,
        assets_folder="assets",
    )
    app.layout = layout.shell(int(settings.dashboard_refresh_s * 1000))
    register(app, DashboardQueries(store, settings.window_size_s), settings)
    _add_probes(app.server, store)
    if login is not None:
        _require_login(app.server, *login)
    return app


# Liveness and readiness for supervisors and Kubernetes probes: served without the login
# (they reveal nothing but "up"), so a probe needs no credentials.
PROBE_PATHS = ("/health", "/ready")


def _add_probes(server: flask.Flask, store: Store) -> None:
    @server.route("/health")
    def _health() -> flask.Response:
        return flask.jsonify(status="ok")

    @server.route("/ready")
    def _ready() -> tuple[flask.Response, int]:
        """Ready when the store answers a query on its posts table (schema in place).

        Anyone may ask (no login), so the answer names no host, user or SQL: the reason
        goes to the dashboard's log."""
        try:
            with store.engine.connect() as conn:
                conn.execute(sqlalchemy.select(posts.c.id).limit(1))
        except sqlalchemy.exc.SQLAlchemyError as exc:
            log.warning("/ready: the store does not answer: %s", store.redact(str(exc)))
            detail = "store does not answer (the dashboard's log says why)"
            return flask.jsonify(status="failing", detail=detail), 503
        return flask.jsonify(status="ok", detail="store answers"), 200


def _require_login(server: flask.Flask, user: str, password: str) -> None:
    expected_user, expected_password = user.encode(), password.encode()

    @server.before_request
    def _check_login() -> flask.Response | None:
        if flask.request.path in PROBE_PATHS:
            return None
        auth = flask.request.authorization
        if (
            auth is not None
            and hmac.compare_digest((auth.username or "").encode(), expected_user)
            and hmac.compare_digest((auth.password or "").encode(), expected_password)
        ):
            return None
        return flask.Response(
            "login required", 401, {"WWW-Authenticate": 'Basic realm="finsentry"'}
        )


@dataclass
class DashboardServer:
    """A threaded WSGI server for the app, started in a background thread (tests, embedding)."""

    app: Dash
    host: str = "127.0.0.1"
    port: int = 0
    _server: BaseWSGIServer | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the dashboard server is not started")
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> DashboardServer:
        self._server = make_server(self.host, self.port, self.app.server, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="dashboard-server"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


def serve(settings: Settings) -> None:
    """Serve until interrupted on settings.dashboard_host:dashboard_port."""
    check_access(settings)
    store = Store(settings.database_url)
    try:
        app = create_app(store, settings)
        server = make_server(
            settings.dashboard_host, settings.dashboard_port, app.server, threaded=True
        )
        server.serve_forever()
    finally:
        store.close()
