"""Notifications reach the owning team: a real SMTP conversation with a local mail server and a real
POST to a local HTTP receiver (both on loopback); a receiver that is down fails nothing."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_access import spec_dict

from generator.runtime import callbacks, notify
from generator.spec.model import DataProduct

ORDERS_OWNER = "orders-team@company.com"  # dbt/commerce/orders/data_product.yaml


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) to receive a message: the server's side of smtplib's dialogue."""

    def handle(self) -> None:
        self.wfile.write(b"220 localhost test SMTP\r\n")
        while line := self.rfile.readline():
            verb = line.decode().strip().split(" ")[0].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250 localhost\r\n")
            elif verb == "DATA":
                self.wfile.write(b"354 go ahead\r\n")
                body = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    body += chunk
                self.server.received.append(body.decode())  # type: ignore[attr-defined]
                self.wfile.write(b"250 ok\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:  # MAIL, RCPT, RSET, NOOP
                self.wfile.write(b"250 ok\r\n")


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.received.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receivers() -> Iterator[tuple[notify.Channels, list[str], list[dict]]]:
    mail = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    mail.received = []  # type: ignore[attr-defined]
    hook = HTTPServer(("127.0.0.1", 0), _Hook)
    hook.received = []  # type: ignore[attr-defined]
    for server in (mail, hook):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    channels = notify.Channels(
        smtp_host="127.0.0.1",
        smtp_port=mail.server_address[1],
        webhook=f"http://127.0.0.1:{hook.server_address[1]}/hook",
    )
    yield channels, mail.received, hook.received  # type: ignore[attr-defined]
    for server in (mail, hook):
        server.shutdown()
        server.server_close()


def _spec(**fields: object) -> DataProduct:
    document = spec_dict({"roles": []}, "pnote", "orders")
    document["owner"] = {"team": "sales_team", "email": "sales-oncall@example.com"}
    document.update(fields)
    return DataProduct.model_validate(document)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_run_failure_reaches_the_owner_by_email_and_webhook(receivers):
    channels, mails, posts = receivers
    notice = notify.failure_notice(_spec(), "scheduled__2026-01-01", "dbt run failed: relation x does not exist")
    deliveries = notify.send(notice, channels)
    assert [(d.channel, d.ok) for d in deliveries] == [("smtp", True), ("webhook", True)]
    assert len(mails) == 1
    mail = email.message_from_string(mails[0], policy=email.policy.default)
    assert mail["To"] == "sales-oncall@example.com"
    assert mail["Subject"] == "[datamesh] pnote/orders: run failed"
    assert "relation x does not exist" in mail.get_content()
    assert posts[0]["text"].startswith("*[datamesh] pnote/orders: run failed*\n")
    assert posts[0]["kind"] == "failure" and posts[0]["to"] == ["sales-oncall@example.com"]


def test_a_receiver_that_is_down_fails_nothing():
    down = notify.Channels(smtp_host="127.0.0.1", smtp_port=_free_port(), webhook=f"http://127.0.0.1:{_free_port()}/")
    deliveries = notify.send(notify.gate_blocked_notice(_spec(), "r1", ["no rows"]), down)
    assert [(d.channel, d.ok) for d in deliveries] == [("smtp", False), ("webhook", False)]
    assert all(d.error for d in deliveries)


def test_the_sla_callback_records_nothing_and_still_returns_when_everything_is_down(monkeypatch, tmp_path: Path):
    # no catalog reachable (a bogus PGHOST) and no receiver: the callback logs and returns
    monkeypatch.setenv("PGHOST", str(tmp_path / "nowhere"))
    monkeypatch.setenv(notify.WEBHOOK_VARIABLE, f"http://127.0.0.1:{_free_port()}/")
    monkeypatch.setenv(notify.SMTP_VARIABLE, f"127.0.0.1:{_free_port()}")
    callbacks.record_sla_miss(
        {"dag_run": {"dag_run_id": "r1"}}, dag_file=str(tmp_path / "dags" / "x.py"), domain="pnote",
        product="orders", freshness_hours=1.0,
    )


def test_settings_name_the_channels():
    channels = notify.channels_from_settings(
        {notify.SMTP_VARIABLE: "mail.internal:2525", notify.WEBHOOK_VARIABLE: "https://hooks.example/x",
         notify.FROM_VARIABLE: "mesh@example.com"}
    )
    assert (channels.smtp_host, channels.smtp_port, channels.webhook, channels.sender) == (
        "mail.internal", 2525, "https://hooks.example/x", "mesh@example.com"
    )
    assert not notify.channels_from_settings({}).any


def test_a_new_major_and_a_near_deadline_reach_the_consumers_owners(receivers):
    channels, mails, posts = receivers
    spec = _spec(
        version="2.0.0",
        changelog=[{"version": "2.0.0", "date": "2026-01-01", "changes": ["amount renamed total"], "breaking": True}],
        deprecations=[{"major": 1, "serve_until": "2026-02-10", "note": "read total instead of amount"}],
    )
    consumers = [
        notify.ConsumerContact("product finance/revenue", 1, "finance@example.com"),
        notify.ConsumerContact("subscriber dashboard", 1, None),
        notify.ConsumerContact("product ml/churn", 2, "ml@example.com"),
    ]
    notices = notify.publish_notices(spec, {"replaced": None, "kept": ["v1 is still read by: role bi"]},
                                     consumers, dt.date(2026, 2, 1))
    assert [n.kind for n in notices] == ["breaking_change", "deprecation_deadline", "deprecated_kept"]
    breaking, deadline, kept = notices
    assert breaking.to == ("finance@example.com",)  # ml/churn reads v2 already
    assert "amount renamed total" in breaking.text and "served until 2026-02-10" in breaking.text
    assert deadline.to == ("finance@example.com", "sales-oncall@example.com")
    assert "9 day(s) left" in deadline.text and "read total instead of amount" in deadline.text
    assert kept.to == ("sales-oncall@example.com",)
    notify.send_all(notices, channels)
    assert len(mails) == 3 and len(posts) == 3


def test_the_failure_callback_tells_the_owner_even_when_the_catalog_is_down(receivers, monkeypatch, tmp_path):
    channels, mails, posts = receivers
    monkeypatch.delenv("DATAMESH_ROOT", raising=False)
    monkeypatch.setenv("PGHOST", str(tmp_path / "nowhere"))  # the catalog cannot be reached
    monkeypatch.setenv(notify.SMTP_VARIABLE, f"{channels.smtp_host}:{channels.smtp_port}")
    monkeypatch.setenv(notify.WEBHOOK_VARIABLE, channels.webhook or "")
    repo = Path(__file__).resolve().parents[1]
    context = {
        "dag": SimpleNamespace(dag_id="commerce__orders", fileloc=str(repo / "dags" / "commerce__orders.py")),
        "run_id": "manual__1",
        "task_instance": SimpleNamespace(task_id="run_models"),
        "reason": "task failure",
    }
    callbacks.record_failure(context)
    assert posts and posts[0]["kind"] == "failure" and posts[0]["product"] == "commerce/orders"
    assert "task failure (last task: run_models)" in posts[0]["text"]
    mail = email.message_from_string(mails[0], policy=email.policy.default)
    assert mail["To"] == ORDERS_OWNER


def test_the_airflow_notifier_sends_the_same_notice(receivers, monkeypatch):
    from generator.runtime.notifier import DatameshNotifier

    channels, _, posts = receivers
    monkeypatch.delenv("DATAMESH_ROOT", raising=False)
    monkeypatch.setenv(notify.WEBHOOK_VARIABLE, channels.webhook or "")
    repo = Path(__file__).resolve().parents[1]
    notifier = DatameshNotifier("sla_miss", message="not done within 1 h")
    notifier.notify({"dag": SimpleNamespace(dag_id="commerce__orders", fileloc=str(repo / "dags" / "x.py")),
                     "run_id": "r9"})
    assert posts[0]["kind"] == "sla_miss" and "not done within 1 h (run r9)." in posts[0]["text"]
    with pytest.raises(ValueError, match="kind must be 'failure' or 'sla_miss'"):
        DatameshNotifier("gossip")
