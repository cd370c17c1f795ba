"""Long-running processes of the stack: each in its own process group, its output in a log file.

A service is stopped (or killed, as a fault) with everything it started: its process group and
any descendant that left the group (Celery's pool, the task supervisor, dbt), found with psutil
before the signal is sent, since children of a killed parent are re-parented and lost from view.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

# Every process the stack starts carries this variable (value: the test's run id), so teardown can
# prove that nothing is left behind, whatever re-parenting happened.
MARKER = "DATAMESH_STACK_TEST"


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    cwd: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _handle: object = field(default=None, repr=False)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handle = self.log.open("ab")
        handle.write(f"\n===== start {self.starts + 1}: {' '.join(self.argv)}\n".encode())
        handle.flush()
        self.process = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._handle = handle
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tree(self) -> list[psutil.Process]:
        """The service's processes: the leader and all its descendants."""
        if self.process is None:
            return []
        try:
            leader = psutil.Process(self.pid)
            return [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def signal(self, sig: int) -> None:
        """Send `sig` to the process group and to every descendant (also those in other groups)."""
        members = self.tree()
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass
        for proc in members:
            try:
                proc.send_signal(sig)
            except psutil.NoSuchProcess:
                pass

    def kill(self) -> None:
        """SIGKILL everything, as when the host of the service dies."""
        members = self.tree()
        self.signal(signal.SIGKILL)
        psutil.wait_procs(members, timeout=10)
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (Airflow's warm shutdown), then SIGKILL whatever is left after `grace` seconds."""
        if self.process is None:
            return
        members = self.tree()
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self.signal(signal.SIGKILL)
        psutil.wait_procs(members, timeout=10)
        self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, lines: int = 80) -> str:
        if not self.log.exists():
            return ""
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])


def marked_processes(run_id: str) -> list[psutil.Process]:
    """Processes still alive that the stack of `run_id` started."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get(MARKER) == run_id and proc.pid != os.getpid():
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_for(what: str, check, timeout: float, interval: float = 1.0):  # type: ignore[no-untyped-def]
    """Call `check` until it returns something truthy; its last value, or TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - a service still starting answers with errors
            last_error = error
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}" + (f": {last_error}" if last_error else ""))
