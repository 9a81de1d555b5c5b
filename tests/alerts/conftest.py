"""Fixtures of the alerts tests; the peers themselves live in alerts_peers.py so that test
modules can import their helpers without clashing with other packages' conftest modules."""

from tests.alerts.alerts_peers import (  # noqa: F401  (fixtures are found by name in this module)
    slack,
    smtp_implicit_tls,
    smtp_plain,
    smtp_starttls,
    tls_material,
)
