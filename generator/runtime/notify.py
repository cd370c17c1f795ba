"""Notifications: incidents reach the owning team's contact, by email (SMTP) and a generic webhook.

    kind                   sent when                                              to
    failure                a DAG run failed (on_failure_callback)                  the product's owners
    sla_miss               a run missed its freshness deadline (DeadlineAlert)     the product's owners
    gate_blocked           the governance gate blocked the publish                 the product's owners
    breaking_change        the first publish of a new major, consumers on older    the consumers' owners
    deprecation_deadline   a deprecated major they read ends within 14 days        the consumers' owners
    deprecated_kept        a major past serve_until is kept: consumers read it     the product's owners

Channels come from settings, read when a notice is sent:

    DATAMESH_NOTIFY_SMTP      host:port of an SMTP server (or the Airflow connection datamesh_notify_smtp)
    DATAMESH_NOTIFY_FROM      the sender address (default datamesh@localhost)
    DATAMESH_NOTIFY_WEBHOOK   a URL receiving Slack-compatible JSON {"text": ...} (or the Airflow
                              connection datamesh_notify_webhook, its host being the URL)

Sending never raises: a receiver that is down is logged and the run goes on (`send` returns what
happened per channel). Within Airflow, `generator.runtime.notifier.DatameshNotifier` is the same
thing as an Airflow notifier (BaseNotifier), for a DAG's callbacks.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg2.extensions

    from generator.spec.model import DataProduct

log = logging.getLogger(__name__)

SMTP_VARIABLE = "DATAMESH_NOTIFY_SMTP"
FROM_VARIABLE = "DATAMESH_NOTIFY_FROM"
WEBHOOK_VARIABLE = "DATAMESH_NOTIFY_WEBHOOK"
SMTP_CONN_ID = "datamesh_notify_smtp"
WEBHOOK_CONN_ID = "datamesh_notify_webhook"
DEFAULT_SENDER = "datamesh@localhost"
DEADLINE_NEAR_DAYS = 14  # a deprecated major ending within this many days is "near"
TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Notice:
    kind: str
    product: str  # domain/product the notice is about
    subject: str
    text: str
    to: tuple[str, ...] = ()  # email addresses; the webhook gets every notice
    details: dict[str, Any] = field(default_factory=dict)

    def webhook_payload(self) -> dict[str, Any]:
        """Slack-compatible: `text` is what a Slack incoming webhook shows; the rest is for others."""
        return {
            "text": f"*{self.subject}*\n{self.text}",
            "kind": self.kind,
            "product": self.product,
            "to": list(self.to),
            "details": self.details,
        }


@dataclass(frozen=True)
class Channels:
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    sender: str = DEFAULT_SENDER
    webhook: str | None = None

    @property
    def any(self) -> bool:
        return bool(self.smtp_host or self.webhook)


@dataclass(frozen=True)
class Delivery:
    channel: str  # "smtp" | "webhook"
    ok: bool
    error: str | None = None


def contact_for(spec: DataProduct) -> str:
    """The owning team's contact for notices about `spec`. The seam for the domain registry's
    on-call contact; until then the spec's owner email."""
    return spec.owner.email


def channels_from_settings(environ: Mapping[str, str] | None = None) -> Channels:
    """The channels the settings configure: the DATAMESH_NOTIFY_* variables, else (inside Airflow,
    or when their variables are set) the Airflow connections datamesh_notify_smtp/_webhook."""
    env = os.environ if environ is None else environ
    smtp = env.get(SMTP_VARIABLE, "").strip()
    host, port, user, password = None, 25, None, None
    if smtp:
        host, _, text = smtp.rpartition(":") if ":" in smtp else (smtp, "", "25")
        port = int(text or 25)
    else:
        conn = _airflow_connection(SMTP_CONN_ID, env)
        if conn is not None and conn.host:
            host, port, user, password = conn.host, int(conn.port or 25), conn.login, conn.password
    webhook = env.get(WEBHOOK_VARIABLE, "").strip() or None
    if webhook is None:
        conn = _airflow_connection(WEBHOOK_CONN_ID, env)
        if conn is not None and conn.host:
            webhook = conn.host if "://" in conn.host else f"{conn.conn_type or 'https'}://{conn.host}"
    return Channels(host, port, user, password, env.get(FROM_VARIABLE) or DEFAULT_SENDER, webhook)


def _airflow_connection(conn_id: str, env: Mapping[str, str]) -> Any:
    """The Airflow connection, when Airflow is loaded already or its variable is set; else None."""
    if f"AIRFLOW_CONN_{conn_id.upper()}" not in env and "airflow.sdk" not in sys.modules:
        return None
    try:
        from airflow.sdk import Connection

        return Connection.get(conn_id)
    except Exception:  # noqa: BLE001 - no Airflow, no such connection: the channel is off
        return None


def send(notice: Notice, channels: Channels | None = None) -> list[Delivery]:
    """Send `notice` on every configured channel. Never raises."""
    try:
        channels = channels or channels_from_settings()
    except Exception as exc:  # noqa: BLE001 - a malformed setting must not fail the run
        log.warning("notifications are misconfigured (%s): %s not sent", exc, notice.subject)
        return []
    deliveries = []
    if channels.smtp_host and notice.to:
        deliveries.append(_deliver("smtp", lambda: _send_mail(notice, channels), notice))
    if channels.webhook:
        deliveries.append(_deliver("webhook", lambda: _post(notice, channels.webhook or ""), notice))
    if not deliveries:
        log.info("no notification channel configured for %s: %s", notice.to or "-", notice.subject)
    return deliveries


def _deliver(channel: str, action: Any, notice: Notice) -> Delivery:
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - a receiver that is down never fails the run
        log.warning("could not send %r by %s: %s", notice.subject, channel, exc)
        return Delivery(channel, False, str(exc) or type(exc).__name__)
    log.info("sent %r by %s", notice.subject, channel)
    return Delivery(channel, True)


def _send_mail(notice: Notice, channels: Channels) -> None:
    message = EmailMessage()
    message["Subject"] = notice.subject
    message["From"] = channels.sender
    message["To"] = ", ".join(notice.to)
    message.set_content(notice.text)
    with smtplib.SMTP(channels.smtp_host or "", channels.smtp_port, timeout=TIMEOUT_SECONDS) as smtp:
        if channels.smtp_user:
            smtp.starttls()
            smtp.login(channels.smtp_user, channels.smtp_password or "")
        smtp.send_message(message)


def _post(notice: Notice, url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{WEBHOOK_VARIABLE} must be an http(s) URL, not {url!r}")
    request = urllib.request.Request(
        url,
        data=json.dumps(notice.webhook_payload(), default=str).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        response.read()


# --- the incidents ------------------------------------------------------------------------------


def failure_notice(spec: DataProduct, run_id: str | None, message: str) -> Notice:
    return Notice(
        "failure",
        f"{spec.domain}/{spec.name}",
        f"[datamesh] {spec.domain}/{spec.name}: run failed",
        f"Run {run_id or '(unknown)'} of {spec.domain}/{spec.name} {spec.version} failed: {message}\n"
        f"The published data is unchanged. `datamesh show {spec.domain}/{spec.name}` shows its runs and incidents.",
        (contact_for(spec),),
        {"run_id": run_id},
    )


def sla_miss_notice(spec: DataProduct, run_id: str | None, message: str) -> Notice:
    return Notice(
        "sla_miss",
        f"{spec.domain}/{spec.name}",
        f"[datamesh] {spec.domain}/{spec.name}: freshness SLA missed",
        f"{message} (run {run_id or 'unknown'}).",
        (contact_for(spec),),
        {"run_id": run_id},
    )


def gate_blocked_notice(spec: DataProduct, run_id: str | None, blocking: list[str]) -> Notice:
    lines = "\n".join(f"  - {m}" for m in blocking)
    return Notice(
        "gate_blocked",
        f"{spec.domain}/{spec.name}",
        f"[datamesh] {spec.domain}/{spec.name}: the governance gate blocked the publish",
        f"Run {run_id or '(unknown)'} of {spec.domain}/{spec.name} {spec.version} was not published "
        f"({len(blocking)} blocking violation(s)):\n{lines}",
        (contact_for(spec),),
        {"run_id": run_id, "blocking": list(blocking)},
    )


@dataclass(frozen=True)
class ConsumerContact:
    consumer: str  # "product d/p" or "subscriber name"
    major: int
    email: str | None


def consumers_of(conn: psycopg2.extensions.connection, spec: DataProduct) -> list[ConsumerContact]:
    """Who reads which major of `spec`, by the catalog, with their owners' email: products whose
    inputs pin a major (their owner email) and subscribers (their contact, when an address)."""
    from generator.layout import CATALOG_SCHEMA

    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f"{CATALOG_SCHEMA}.subscriptions",))
        if cur.fetchone()[0] is None:  # the first run ever: the catalog comes with its registration
            conn.rollback()
            return []
        cur.execute(
            f"""SELECT DISTINCT 'product ' || l.consumer_domain || '/' || l.consumer_product, l.major, p.owner_email
                  FROM {CATALOG_SCHEMA}.lineage l
                  LEFT JOIN {CATALOG_SCHEMA}.products p
                    ON p.domain = l.consumer_domain AND p.name = l.consumer_product
                 WHERE l.producer_domain = %(d)s AND l.producer_product = %(p)s
                UNION
                SELECT 'subscriber ' || consumer, major, CASE WHEN contact LIKE '%%@%%' THEN contact END
                  FROM {CATALOG_SCHEMA}.subscriptions WHERE domain = %(d)s AND product = %(p)s
                ORDER BY 1, 2""",
            {"d": spec.domain, "p": spec.name},
        )
        rows = cur.fetchall()
    conn.rollback()
    return [ConsumerContact(*row) for row in rows]


def publish_notices(
    spec: DataProduct, published: Mapping[str, Any], consumers: list[ConsumerContact], today: Any
) -> list[Notice]:
    """What a publish tells people: consumers of older majors when a new major ships (breaking) or
    the major they read ends soon; the owners when a major past its date is kept for its readers."""
    notices = []
    key = f"{spec.domain}/{spec.name}"
    entry = next((e for e in spec.changelog if e.version == spec.version), None)
    first_of_major = published.get("replaced") is None and spec.version.endswith(".0.0")
    older = [c for c in consumers if c.major < spec.major]
    if first_of_major and older:  # a new major is a breaking change by definition
        changes = "\n".join(f"  - {c}" for c in (entry.changes if entry else [])) or "  (no changelog entry)"
        for major in sorted({c.major for c in older}):
            readers = [c for c in older if c.major == major]
            deprecation = spec.deprecation(major)
            until = (
                f"v{major} is served until {deprecation.serve_until}"
                + (f": {deprecation.note}" if deprecation.note else "")
                if deprecation
                else f"v{major} is no longer listed among the deprecations, so it is not served any more"
            )
            notices.append(
                Notice(
                    "breaking_change",
                    key,
                    f"[datamesh] {key} {spec.version}: a breaking change; you read v{major}",
                    f"{key} published {spec.version}, a new major version. Its changes:\n{changes}\n"
                    f"{until}. Readers of v{major}: {', '.join(r.consumer for r in readers)}.",
                    tuple(sorted({r.email for r in readers if r.email})),
                    {"major": major, "version": spec.version},
                )
            )
    for deprecation in spec.deprecations:
        left = (deprecation.serve_until - today).days
        readers = [c for c in consumers if c.major == deprecation.major]
        if 0 <= left <= DEADLINE_NEAR_DAYS and readers:
            notices.append(
                Notice(
                    "deprecation_deadline",
                    key,
                    f"[datamesh] {key} v{deprecation.major} ends in {left} day(s)",
                    f"{key} v{deprecation.major} is served until {deprecation.serve_until} ({left} day(s) "
                    f"left). {deprecation.note or f'Move to v{spec.major}.'} Readers: "
                    f"{', '.join(r.consumer for r in readers)}.",
                    tuple(sorted({r.email for r in readers if r.email} | {contact_for(spec)})),
                    {"major": deprecation.major, "serve_until": str(deprecation.serve_until), "days_left": left},
                )
            )
    for kept in published.get("kept") or []:
        notices.append(
            Notice(
                "deprecated_kept",
                key,
                f"[datamesh] {key}: a deprecated major is kept for its readers",
                f"{kept}. It is retired once they move (or set deprecations[].force_drop: true).",
                (contact_for(spec),),
                {"kept": kept},
            )
        )
    return notices


def send_all(notices: list[Notice], channels: Channels | None = None) -> list[Delivery]:
    """Send each notice; never raises."""
    deliveries: list[Delivery] = []
    for notice in notices:
        deliveries += send(notice, channels)
    return deliveries
