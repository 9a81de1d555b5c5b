"""Alerts: route spike alerts to Slack and e-mail, once each, with evidence, never lost.

The flow, one module per step::

    Kafka "alerts" ──► service.py ──► dispatch.py ─┬─► routing.py   which routes, quiet hours
    (Alert JSON)      consume, commit   accept/tick ├─► grouping.py  group wait/interval/repeat
                      after record                  ├─► retry.py     exponential backoff
                                                    ├─► message.py   Block Kit, text, HTML
                                                    └─► notifiers.py Slack webhook, SMTP
                      store.deliveries (alert id + channel): pending → retrying → delivered | failed

routing, grouping, retry and message are pure (the clock is a parameter); notifiers, dispatch
and service are the thin I/O around them. secrets.py keeps the webhook URL and SMTP password
out of config files and logs; errors.py draws the exception tree. See
deploy/alerts.example.toml for a routing file.
"""
