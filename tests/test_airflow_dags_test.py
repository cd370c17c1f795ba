"""`airflow dags test` as generator.dev.airflow_dags_test runs it: its in-process execution API
narrowed to the Task SDK's own version serves that version exactly as Airflow's full API does.

Each side in a process of its own: the narrowing changes Airflow's module state for good.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The OpenAPI document of the version the Task SDK speaks, as the in-process API serves it.
SERVED = r"""
import json, sys

if sys.argv[1] == "narrowed":
    from generator.dev.airflow_dags_test import serve_newest_api_version_only

    assert serve_newest_api_version_only(), "the installed Airflow could not be narrowed"
import httpx
from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI
from airflow.sdk.api.datamodels._generated import API_VERSION

client = httpx.Client(transport=InProcessExecutionAPI().transport, base_url="http://in-process.invalid/")
answer = client.get("/openapi.json", params={"version": API_VERSION})
assert answer.status_code == 200, answer.text
print(json.dumps(answer.json(), sort_keys=True))
"""


def served(mode: str) -> dict:  # type: ignore[type-arg]
    done = subprocess.run([sys.executable, "-c", SERVED, mode], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_the_narrowed_execution_api_serves_the_task_sdks_version_as_the_full_one_does() -> None:
    narrowed, full = served("narrowed"), served("full")
    assert narrowed["paths"], "no routes served"
    assert any(path.startswith("/task-instances/") for path in narrowed["paths"])
    assert narrowed == full  # every route, parameter and schema of that version
