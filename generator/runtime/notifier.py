"""The notifications as an Airflow notifier, for a DAG's callbacks:

    from generator.runtime.notifier import DatameshNotifier
    DAG(..., on_failure_callback=DatameshNotifier("failure"))

It imports Airflow, so it is a module of its own: generator.runtime.notify stays cheap for the CLI.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseNotifier

from generator.layout import repo_root, spec_path
from generator.runtime import notify


class DatameshNotifier(BaseNotifier):
    """Sends a `failure` or `sla_miss` notice about the DAG's product to its owners. Never raises."""

    template_fields = ("message",)

    def __init__(self, kind: str = "failure", message: str = "") -> None:
        super().__init__()
        if kind not in ("failure", "sla_miss"):
            raise ValueError(f"DatameshNotifier: kind must be 'failure' or 'sla_miss', not {kind!r}")
        self.kind = kind
        self.message = message

    def notify(self, context: Any) -> None:
        try:
            from generator.spec.load import load_spec

            dag = context["dag"]
            domain, product = dag.dag_id.split("__", 1)
            spec = load_spec(spec_path(repo_root(dag.fileloc), domain, product))
            run_id = context.get("run_id")
            message = self.message or str(context.get("reason") or "the DAG run failed")
            build = notify.failure_notice if self.kind == "failure" else notify.sla_miss_notice
            notify.send(build(spec, run_id, message))
        except Exception:
            self.log.exception("could not send the %s notice", self.kind)
