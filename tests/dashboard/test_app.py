"""Access rules and the login, checked over real HTTP against the served app."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request

import pytest
import typer
from typer.testing import CliRunner

from dashboard.app import DashboardConfigError, DashboardServer, check_access, create_app
from dashboard.cli import dashboard
from finsentry.config import load_settings

pytestmark = pytest.mark.unit


def test_localhost_without_login_is_allowed():
    assert check_access(load_settings()) is None
    assert check_access(load_settings(dashboard_host="::1")) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "dashboard.internal"])
def test_off_localhost_without_login_is_refused(host):
    with pytest.raises(DashboardConfigError, match=f"refusing to serve the dashboard on {host}"):
        check_access(load_settings(dashboard_host=host))


def test_off_localhost_with_login_is_allowed():
    settings = load_settings(
        dashboard_host="0.0.0.0", dashboard_username="ana", dashboard_password="s3cret"
    )
    assert check_access(settings) == ("ana", "s3cret")


def test_half_a_login_is_refused():
    with pytest.raises(DashboardConfigError, match="set both dashboard_username"):
        check_access(load_settings(dashboard_username="ana"))


def test_cli_refuses_unsafe_binding_with_a_clear_message():
    app = typer.Typer()
    app.command()(dashboard)
    result = CliRunner().invoke(app, ["--host", "0.0.0.0", "--port", "8999"])
    assert result.exit_code == 2
    assert "without a login" in result.output
    assert "FINSENTRY_DASHBOARD_USERNAME" in result.output


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_login_is_required_for_every_route(store, tmp_path):
    settings = load_settings(
        data_dir=tmp_path, dashboard_username="ana", dashboard_password="s3cret"
    )
    server = DashboardServer(create_app(store, settings)).start()
    try:
        for path in ("/", "/_dash-layout", "/alert/x"):
            assert _get(server.url + path) == 401
            assert _get(server.url + path, ("ana", "wrong")) == 401
            assert _get(server.url + path, ("ana", "s3cret")) == 200
    finally:
        server.stop()


def test_without_login_pages_are_served(store, settings):
    server = DashboardServer(create_app(store, settings)).start()
    try:
        assert _get(server.url + "/key/ticker%3ATSLA") == 200
    finally:
        server.stop()


def test_probes_answer_without_the_login(store, tmp_path):
    settings = load_settings(
        data_dir=tmp_path, dashboard_username="ana", dashboard_password="s3cret"
    )
    server = DashboardServer(create_app(store, settings)).start()
    try:
        assert _get(server.url + "/health") == 200
        assert _get(server.url + "/ready") == 200
        assert _get(server.url + "/") == 401
        with urllib.request.urlopen(server.url + "/ready", timeout=10) as response:
            assert b"store answers" in response.read()
    finally:
        server.stop()


def test_ready_fails_when_the_store_does_not_answer(tmp_path):
    from finsentry.store import Store

    broken = Store(f"sqlite:///{tmp_path / 'gone' / 'store.db'}", create=False)
    server = DashboardServer(create_app(broken, load_settings(data_dir=tmp_path))).start()
    try:
        assert _get(server.url + "/health") == 200
        assert _get(server.url + "/ready") == 503
    finally:
        server.stop()
        broken.close()


def test_ready_tells_an_anonymous_caller_nothing_about_the_database(
    postgres_url: str, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    """The failure text named the database host, user and SQL to anyone who asked; it now
    goes to the log only (without the password)."""
    from finsentry.store import Store

    # A real server, a database that does not exist on it, a password to keep out of logs.
    url = postgres_url.replace("finsentry@", "finsentry:pw-0f-db@").rsplit("/", 1)[0]
    broken = Store(f"{url}/no_such_db", create=False)
    server = DashboardServer(create_app(broken, load_settings(data_dir=tmp_path))).start()
    try:
        try:
            urllib.request.urlopen(server.url + "/ready", timeout=10)
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode()
        assert status == 503
        assert "no_such_db" not in body and "127.0.0.1" not in body and "SELECT" not in body
        assert "finsentry" not in body and "store does not answer" in body
        assert "no_such_db" in caplog.text and "pw-0f-db" not in caplog.text
    finally:
        server.stop()
        broken.close()
