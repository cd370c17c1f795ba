"""Airflow's REST API (v2), as the UI uses it: a JWT from the auth manager's /auth/token, then
bearer requests. Only the calls the stack test needs."""

from __future__ import annotations

import time
from typing import Any

import httpx

FINISHED = {"success", "failed"}


class AirflowApi:
    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self._client = httpx.Client(base_url=self.base_url, timeout=30)
        self._token: str | None = None

    def close(self) -> None:
        self._client.close()

    def health(self) -> dict[str, Any]:
        return self._client.get("/api/v2/monitor/health").raise_for_status().json()

    def login(self) -> None:
        """A JWT from the FAB auth manager's token endpoint (what the UI's login form gets)."""
        answer = self._client.post("/auth/token", json={"username": self.username, "password": self.password})
        answer.raise_for_status()
        self._token = answer.json()["access_token"]

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._token is None:
            self.login()
        for attempt in range(3):
            try:
                answer = self._client.request(
                    method, f"/api/v2{path}", headers={"Authorization": f"Bearer {self._token}"}, **kwargs
                )
            except httpx.TransportError:  # the api-server is busy (2 cores): try again
                if attempt == 2:
                    raise
                time.sleep(2)
                continue
            if answer.status_code == 401 and attempt == 0:
                self.login()
                continue
            answer.raise_for_status()
            return answer.json() if answer.content else None
        raise AssertionError("unreachable")

    # --- DAGs and runs -------------------------------------------------------------------------

    def dags(self) -> dict[str, dict[str, Any]]:
        return {d["dag_id"]: d for d in self.request("GET", "/dags", params={"limit": 100})["dags"]}

    def import_errors(self) -> list[dict[str, Any]]:
        return self.request("GET", "/importErrors")["import_errors"]

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def trigger(self, dag_id: str) -> str:
        """A manual run now (the UI's Trigger button); its run id."""
        run = self.request("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": {}})
        return run["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "run_after"})[
            "dag_runs"
        ]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        found = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti for ti in found}

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries"
        return self.request("GET", path)["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            if run["state"] in FINISHED:
                return run
            time.sleep(2)
        raise TimeoutError(f"{dag_id} run {run_id} did not finish in {timeout:.0f}s (state {run['state']})")

    def wait_for_new_run(self, dag_id: str, known: set[str], timeout: float) -> dict[str, Any]:
        """The first run of `dag_id` not in `known` (e.g. started by an asset event)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fresh = [r for r in self.runs(dag_id) if r["dag_run_id"] not in known]
            if fresh:
                return fresh[0]
            time.sleep(2)
        raise TimeoutError(f"no new run of {dag_id} within {timeout:.0f}s")
