"""A thousand products: what the everyday commands cost on a large mesh (issue 12).

Builds a mesh of N products in a scratch repo (copies of the example product customers/customer_profiles
in 40 domains; every third one also reads the product before it) and times the real `datamesh` CLI on
it, each command a subprocess as a user or CI runs it (wall time, and CPU time: on a busy machine
the CPU time is the steadier figure):

- `datamesh render`, everything changed: the first render of a fresh clone, beside a bare loop
  writing the same files (the disk's floor), and a render right after the files were deleted
- `datamesh render`, nothing changed
- `datamesh check` (the CI drift gate), from a cold start: no .datamesh/cache
- `datamesh validate`, cold (no cache) and warm (its per-product cache from the run before)
- the peak memory (RSS) of a full render

Prints a table "what | figure | goal". Each figure is a function of `Bench` returning rows, so other
figures (a dag-processor pass, a task locating its product, a run's overhead, cookiecutter) can be
added to FIGURES later.

    .venv/bin/python benchmarks/scale.py [--products 1000] [--rounds 3] [--code PATH]

`--code` runs the CLI of another checkout (e.g. a worktree of main) on the same mesh: before/after.
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "dbt" / "customers" / "customer_profiles" / "data_product.yaml"
DOMAINS = 40


@dataclass(frozen=True)
class Row:
    what: str
    figure: str
    goal: str


def write_mesh(root: Path, products: int) -> None:
    """A scratch repo: the platform package, the policies and N copies of the example product."""
    shutil.copytree(REPO_ROOT / "dbt" / "_platform", root / "dbt" / "_platform")
    shutil.copytree(REPO_ROOT / "policies", root / "policies")
    (root / "dags").mkdir()
    (root / "generator" / "schemas").mkdir(parents=True)
    base = yaml.safe_load(EXAMPLE.read_text())
    output = base["outputs"][0]["name"]
    previous: tuple[str, str] | None = None
    for i in range(products):
        domain, name = f"domain{i % DOMAINS:02d}", f"product{i:04d}"
        spec = copy.deepcopy(base)
        spec.update(domain=domain, name=name)
        if i % 3 == 2 and previous:
            spec["inputs"]["products"] = [
                {"domain": previous[0], "product": previous[1], "output": output, "major": 1}
            ]
        folder = root / "dbt" / domain / name
        folder.mkdir(parents=True)
        (folder / "data_product.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        previous = (domain, name)


@dataclass(frozen=True)
class Took:
    wall: float
    cpu: float  # user + system: what the command costs, however busy the machine is

    def __str__(self) -> str:
        return f"{self.wall:.2f} s (CPU {self.cpu:.2f} s)"


@dataclass
class Bench:
    root: Path
    code: Path
    rounds: int
    pristine: Path  # a copy of the mesh as write_mesh left it: specs only, never rendered
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {**os.environ, "PYTHONPATH": str(self.code)}
        for variable in ("DATAMESH_DBT_DOCS_URL", "DATAMESH_REPORT_URL", "DATAMESH_ROOT"):
            self.env.pop(variable, None)

    def cli(self, root: Path | None = None) -> list[str]:
        """The `datamesh` command of the checkout under test: -P so that the current folder's
        `generator` never shadows the one on PYTHONPATH."""
        main = "from generator.cli.main import main; main()"
        return [sys.executable, "-P", "-c", main, "--root", str(root or self.root)]

    def run(self, *args: str, ok: tuple[int, ...] = (0,), root: Path | None = None) -> Took:
        """One CLI call's wall time and CPU time (user + system) in seconds (on `root`: the mesh)."""
        command = self.cli(root)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run([*command, *args], env=self.env, cwd=root or self.root, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        took = Took(time.perf_counter() - start, cpu)
        if done.returncode not in ok:
            shown = f"{done.stdout[-2000:]}{done.stderr[-3000:]}"
            raise SystemExit(f"datamesh {' '.join(args)} failed ({done.returncode}):\n{shown}")
        return took

    def median(self, *args: str, before: Callable[[], None] | None = None) -> Took:
        times = []
        for _ in range(self.rounds):
            if before:
                before()
            times.append(self.run(*args))
        return Took(statistics.median(t.wall for t in times), statistics.median(t.cpu for t in times))

    def forget_render(self) -> None:
        """Back to a mesh of specs only: every generated file and cache gone."""
        shutil.rmtree(self.root / "dags")
        (self.root / "dags").mkdir()
        for path in (self.root / "dbt").glob("*/*/*"):
            if path.name != "data_product.yaml" and path.parent.parent.name != "_platform":
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.forget_cache()

    def forget_cache(self) -> None:
        shutil.rmtree(self.root / ".datamesh" / "cache", ignore_errors=True)


def render_figures(bench: Bench) -> list[Row]:
    """A first render (a fresh clone of the specs: every file new), beside the same files written
    by a bare loop into a new folder (the disk's floor); a render right after the previous one's
    files were deleted; a render with nothing changed."""
    firsts, floors = [], []
    for number in range(bench.rounds):
        clone = bench.root.parent / f"clone-{number}"
        shutil.copytree(bench.pristine, clone)
        firsts.append(bench.run("render", root=clone))
        floors.append(bare_write(clone, bench.pristine, bench.root.parent / f"bare-{number}"))
    files = floors[0][1]
    first = Took(statistics.median(t.wall for t in firsts), statistics.median(t.cpu for t in firsts))
    floor = statistics.median(seconds for seconds, _ in floors)
    for number in range(bench.rounds):
        shutil.rmtree(bench.root.parent / f"clone-{number}")
        shutil.rmtree(bench.root.parent / f"bare-{number}")
    again = bench.median("render", before=bench.forget_render)
    peak = peak_rss_of(bench, "render", before=bench.forget_render)
    nothing = bench.median("render")
    return [
        Row("`datamesh render`, everything changed (a fresh clone: its first render)", str(first), "≤ 2 s"),
        Row(f"  the same {files} files written by a bare loop into a new folder (the disk's floor)",
            f"{floor:.2f} s", ""),
        Row("`datamesh render`, everything changed, right after the last render's files were deleted "
            "(deleting thousands of files slows the next thousands created on this disk)", str(again), ""),
        Row("`datamesh render`, nothing changed", str(nothing), "≤ 0.5 s"),
        Row("peak memory of `datamesh render` (everything)", f"{peak:.0f} MB", ""),
    ]


def bare_write(rendered: Path, pristine: Path, target: Path) -> tuple[float, int]:
    """Seconds to write the files a render added to `rendered` (those not in `pristine`) into the
    new folder `target` with plain open/write, folders made as needed; and how many files."""
    files = {}
    for path in rendered.rglob("*"):
        rel = path.relative_to(rendered)
        if path.is_file() and not (pristine / rel).exists() and rel.parts[0] != ".datamesh":
            files[rel] = path.read_bytes()
    start = time.perf_counter()
    for rel, data in files.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(data)
    return time.perf_counter() - start, len(files)


def check_figures(bench: Bench) -> list[Row]:
    cold = bench.median("check", "--quiet", before=bench.forget_cache)
    return [Row("`datamesh check` (cold: no cache)", str(cold), "≤ 1 s")]


def validate_figures(bench: Bench) -> list[Row]:
    cold = bench.median("validate", before=bench.forget_cache)
    warm = bench.median("validate")
    return [
        Row("`datamesh validate` (cold: no cache)", str(cold), "≤ 1 s"),
        Row("`datamesh validate` (warm: nothing changed)", str(warm), "≤ 1 s"),
    ]


def import_figures(bench: Bench) -> list[Row]:
    """The floor under every command: starting Python and importing the CLI."""
    took = bench.median("--help")
    return [Row("`datamesh --help` (start-up and CLI imports)", str(took), "")]


def peak_rss_of(bench: Bench, *args: str, before: Callable[[], None] | None = None) -> float:
    """The peak RSS (MB) of one CLI call, measured in a fresh child so earlier calls do not count."""
    if before:
        before()
    probe = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    command = bench.cli()
    done = subprocess.run(
        [sys.executable, "-P", "-c", probe, *command, *args],
        env=bench.env,
        cwd=bench.root,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KB on Linux


# A task's start: finding its own product (spec and inputs) among all of them, in a fresh process.
LOCATE_PROBE = """
import sys, time
root, domain, product = sys.argv[1:4]
from pathlib import Path
start = time.perf_counter()
from generator.spec.locate import locate, locate_inputs
imported = time.perf_counter()
entry = locate(Path(root), domain, product)
locate_inputs(Path(root), entry)
print(imported - start, time.perf_counter() - imported)
"""


def locate_figures(bench: Bench) -> list[Row]:
    """What each task of a run pays to find its product among N (generator.spec.locate), and,
    apart, the import of the locating code (the spec model: once per task process, whatever N)."""
    specs = sorted((bench.root / "dbt").glob("domain*/*/data_product.yaml"))
    domain, product = specs[-1].parent.parent.name, specs[-1].parent.name  # reads the one before
    imports, times = [], []
    for _ in range(bench.rounds):
        done = subprocess.run([sys.executable, "-P", "-c", LOCATE_PROBE, str(bench.root), domain, product],
                              env=bench.env, cwd=bench.root, capture_output=True, text=True, check=True)
        imported, located = done.stdout.split()[-2:]
        imports.append(float(imported))
        times.append(float(located))
    return [Row(f"a task locating its product (and its inputs) among {len(specs)}",
                f"{statistics.median(times) * 1000:.1f} ms (plus {statistics.median(imports) * 1000:.0f} ms "
                "importing the spec model, once per task process)", "≤ 50 ms")]


def new_product_figures(bench: Bench) -> list[Row]:
    """One new product, as `datamesh new --no-input` (what the cookiecutter hook runs) creates it."""
    if not any((bench.root / "dags").glob("*.py")):
        bench.run("render")
    times = []
    for i in range(bench.rounds):
        times.append(bench.run("new", "--no-input", f"name=bench_new_{i}", "domain=domain00"))
        shutil.rmtree(bench.root / "dbt" / "domain00" / f"bench_new_{i}")
    bench.run("render")  # the domain's DAG file without them again
    took = Took(statistics.median(t.wall for t in times), statistics.median(t.cpu for t in times))
    return [Row("one new product (`datamesh new --no-input`, as the cookiecutter hook)", str(took), "≤ 2 s")]


# What a data engineer writes by hand for a pipeline of the same shape as a generated DAG: five
# chained TaskFlow tasks, a doc, tags, an Asset emitted. One file per DAG, as hand-written DAGs are.
HAND_WRITTEN_DAG = '''import datetime

from airflow.sdk import DAG, Asset, task

with DAG(
    dag_id="hand_{i:04d}",
    schedule="0 2 * * *",
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    default_args={{"owner": "me", "retries": 2}},
    tags=["domain:hand"],
    doc_md="# A hand-written DAG\\n",
):

    @task
    def run():
        return 1

    @task
    def test(x):
        return x

    @task
    def gate(x):
        return x

    @task(outlets=[Asset(name="hand.{i:04d}", uri="hand://{i:04d}")])
    def publish(x):
        return x

    @task
    def register(x):
        return x

    register(publish(gate(test(run()))))
'''


def dag_processor_figures(bench: Bench) -> list[Row]:
    """One real pass of Airflow's dag processor (`airflow dag-processor -n 1`, default settings,
    SQLite) over the rendered mesh's dags/, and over as many hand-written one-file DAGs."""
    if not any((bench.root / "dags").glob("*.py")):
        bench.run("render")
    hand = bench.root / "hand_dags"
    hand.mkdir(exist_ok=True)
    for i in range(len(list((bench.root / "dbt").glob("*/*/data_product.yaml")))):
        (hand / f"hand_{i:04d}.py").write_text(HAND_WRITTEN_DAG.format(i=i), encoding="utf-8")
    generated = dag_processor_pass(bench, bench.root / "dags")
    written = dag_processor_pass(bench, hand)
    files = len(list((bench.root / "dags").glob("*.py")))
    return [
        Row(f"one dag-processor pass, generated DAGs ({generated.dags} DAGs in {files} files)",
            f"{generated.took}; peak RSS {generated.peak_mb:.0f} MB (first pass: {generated.first})", "≤ 30 s"),
        Row(f"one dag-processor pass, hand-written one-file DAGs ({written.dags} files)",
            f"{written.took}; peak RSS {written.peak_mb:.0f} MB (first pass: {written.first})", ""),
    ]


@dataclass(frozen=True)
class Pass:
    took: Took
    dags: int  # DAGs serialized into the metadata database by the pass
    peak_mb: float  # the largest RSS of any process of the pass (the processor or a file's child)
    first: Took  # the first pass, which also writes every DAG into the metadata database


def dag_processor_pass(bench: Bench, folder: Path) -> Pass:
    """`airflow dag-processor -n 1` over `folder` in a fresh AIRFLOW_HOME (SQLite, migrated
    beforehand, outside the timing), Airflow's default settings otherwise."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    with tempfile.TemporaryDirectory(prefix="datamesh-airflow-") as home:
        env = {
            **bench.env,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__DAGS_FOLDER": str(folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "DATAMESH_ROOT": str(bench.root),
        }
        subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, check=True)
        probe = (
            "import resource, subprocess, sys, time\n"
            "t = time.perf_counter()\n"
            "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "wall = time.perf_counter() - t\n"
            "use = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
            "if done.returncode: sys.exit(done.stdout[-3000:] + done.stderr[-3000:])\n"
            "print(wall, use.ru_utime + use.ru_stime, use.ru_maxrss)\n"
        )
        # The first pass also writes every DAG into the metadata database (the same cost in either
        # layout, once); the second one is what every later pass costs: parse, compare, write nothing.
        passes = []
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, "-P", "-c", probe, airflow, "dag-processor", "-n", "1"],
                env=env, capture_output=True, text=True, check=True,
            )
            passes.append(done.stdout.split()[-3:])
        (first_wall, first_cpu, _), (wall, cpu, peak) = passes
        count = subprocess.run(
            [sys.executable, "-c", "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("
             "'select count(*) from serialized_dag').fetchone()[0])", f"{home}/airflow.db"],
            capture_output=True, text=True, check=True,
        )
        return Pass(Took(float(wall), float(cpu)), int(count.stdout), int(peak) / 1024,
                    Took(float(first_wall), float(first_cpu)))


# Runs in a child with the code under test on its path, in a copy of the example repo: one product's
# run under `airflow dags test`, warm (a first run, untimed, seeded the warehouse and set up the
# platform), beside a plain `dbt build` of the same project. Prints JSON.
RUN_PROBE = r"""
import datetime, json, os, resource, sqlite3, subprocess, sys, time
from pathlib import Path
from generator.dev import airflow_local
from generator.dev.demo import run_demo
from generator.warehouse.connection import from_environment

root, product, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
key = product.replace("/", "__")
quiet = lambda *a, **k: None
assert run_demo(root, only=product, echo=quiet), "the warm-up run failed: see .datamesh/logs"
warehouse = from_environment(root)
env = airflow_local.airflow_env(root, warehouse)
cli = [sys.executable, "-P", "-c", "from generator.cli.main import main; main()", "--root", str(root)]
prepared = subprocess.run([*cli, "platform", "prepare", product], env=env, capture_output=True, text=True)
project = root / "dbt" / product

def timed(command, **kw):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, **kw)
    took = time.perf_counter() - start
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return took

def tasks_of_last_run():
    db = sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")
    [run_id] = db.execute("select run_id from dag_run where dag_id=? order by id desc limit 1", (key,)).fetchone()
    rows = db.execute("select task_id, start_date, end_date from task_instance where dag_id=? and run_id=?",
                      (key, run_id)).fetchall()
    seconds = lambda a, b: (datetime.datetime.fromisoformat(b) - datetime.datetime.fromisoformat(a)).total_seconds()
    order = ["dbt_run", "dbt_test", "governance_gate", "publish", "catalog_register"]
    per_task = {t: round(seconds(a, b), 2) for t, a, b in sorted(rows, key=lambda r: order.index(r[0])) if a and b}
    started, ended = db.execute("select start_date, end_date from dag_run where dag_id=? and run_id=?",
                                (key, run_id)).fetchone()
    return per_task, round(seconds(started, ended), 2)

# Each task's own work, from Airflow's `Task started` (the execution API has the task) to
# `[DAG TEST] end task`: without the start-up `dags test` pays before its first task.
def task_work(log_text):
    import re
    stamp = lambda line: datetime.datetime.fromisoformat(line[:26])
    work, current, started = {}, None, None
    for line in log_text.splitlines():
        begun = re.search(r"\[DAG TEST\] starting task_id=(\w+)", line)
        if begun:
            current, started = begun.group(1), None
        elif current and started is None and "Task started" in line:
            started = stamp(line)
        elif current and started and f"[DAG TEST] end task task_id={current}" in line:
            work[current] = round((stamp(line) - started).total_seconds(), 2)
            current = None
    return work

dbt = str(Path(sys.executable).with_name("dbt"))
build_env = {**env, **warehouse.env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
builds, runs, breakdowns, works, spans = [], [], [], [], []
for _ in range(rounds):
    builds.append(timed([dbt, "build", "--project-dir", str(project), "--profiles-dir", str(project)],
                        cwd=project, env=build_env))
    result = airflow_local.dags_test(env, key, root / ".datamesh" / "bench-dags-test.log")
    assert result.ok, result.log.read_text()[-3000:]
    runs.append(result.seconds)
    per_task, span = tasks_of_last_run()
    breakdowns.append(per_task)
    spans.append(span)
    works.append(task_work(result.log.read_text(errors="replace")))
    parses = [line.split("dbt parse: ", 1)[1].strip() for line in result.log.read_text(errors="replace").splitlines()
              if "dbt parse: " in line]
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"build": builds, "run": runs, "tasks": breakdowns, "work": works, "span": spans, "peak_mb": peak,
                  "parses": parses,
                  "prepared": prepared.returncode == 0}))
"""


def run_figures(bench: Bench) -> list[Row]:
    """One product's run (`airflow dags test`, warm, tasks in one process as `dags test` runs them)
    against a plain `dbt build` of the same project, and the breakdown per task."""
    import json

    product = "customers/customer_profiles"  # one model, no product inputs
    with tempfile.TemporaryDirectory(prefix="datamesh-run-") as scratch:
        root = Path(scratch)
        for folder in ("dbt", "dags", "policies", "generator/schemas"):
            shutil.copytree(REPO_ROOT / folder, root / folder, ignore=shutil.ignore_patterns(
                "target", "dbt_packages", "logs", "__pycache__"))
        env = {k: v for k, v in bench.env.items() if not k.startswith("PG")}  # the embedded warehouse
        done = subprocess.run(
            [sys.executable, "-P", "-c", RUN_PROBE, str(root), product, str(bench.rounds)],
            env=env, cwd=root, capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"run figures failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        subprocess.run([sys.executable, "-c", "import pgserver, sys; pgserver.get_server(sys.argv[1]).cleanup()",
                        str(root / ".datamesh" / "pg")], capture_output=True)
        found = json.loads(done.stdout.strip().splitlines()[-1])
    build = statistics.median(found["build"])
    run = statistics.median(found["run"])
    per_task = {t: statistics.median(b[t] for b in found["tasks"]) for t in found["tasks"][0]}
    work = {t: statistics.median(w[t] for w in found["work"]) for t in found["work"][0]}
    total_work = sum(work.values())
    rows = [
        Row("plain `dbt build` of a one-model product", f"{build:.2f} s", ""),
        Row("its run under `airflow dags test` (warm" + (", prepared)" if found["prepared"] else ")"),
            f"{run:.2f} s ({run / build:.1f}× the `dbt build`)", "≤ 2× the `dbt build`"),
        Row("  the run from its start to its end (the DagRun's start and end in Airflow's database: "
            "without the CLI's start-up)", f"{statistics.median(found['span']):.2f} s "
            f"({statistics.median(found['span']) / build:.1f}× the `dbt build`)", ""),
        Row("  of which the five tasks' own work (each from Airflow's `Task started` to its end)",
            f"{total_work:.2f} s ({total_work / build:.1f}× the `dbt build`)", ""),
        Row("  of which `airflow dags test`'s own start-up (the CLI's imports, its in-process "
            "execution API before the first task)", f"{run - total_work:.2f} s", ""),
    ]
    rows += [Row(f"  task `{task}` (Airflow's duration; its own work)", f"{seconds:.2f} s; {work.get(task, 0):.2f} s",
                 "≤ 1 s" if task in ("governance_gate", "publish", "catalog_register") else "")
             for task, seconds in per_task.items()]
    rows.append(Row("how the run's dbt commands parsed the project (their `dbt parse:` log lines)",
                    "; ".join(found["parses"]) or "no `dbt parse:` line in the log", "reused, prepared at deploy time"))
    rows.append(Row("peak RSS of a run (`airflow dags test`: every task in one process, dbt included)",
                    f"{found['peak_mb']:.0f} MB", ""))
    return rows


STACK_PRODUCT = "customers/customer_profiles"


def stack_figures(bench: Bench) -> list[Row]:
    """One product's runs on the deployed stack: docker-compose.yml's services started as processes
    by the stack suite's harness (tests/stack/harness.py: PostgreSQL, Redis, airflow-init, the
    api-server, scheduler, dag-processor, triggerer and two Celery workers, DAGs from the git
    bundle), against a plain `dbt build` of the same project on the same warehouse, with the
    stack running. The stack runs this checkout's code (not --code's). A first run, untimed, warms
    the workers; then `rounds` runs, one after another."""
    if shutil.which("redis-server") is None:
        skipped = "skipped: no redis-server (apt-get install redis-server)"
        return [Row("one product's run on the Celery stack", skipped, "")]
    sys.path.insert(0, str(REPO_ROOT))
    from tests.stack.harness import Stack

    dag_id = STACK_PRODUCT.replace("/", "__")
    root = Path(tempfile.mkdtemp(prefix="datamesh-bench-stack-"))
    stack = Stack(root)
    runs, builds = [], []
    try:
        stack.start()
        stack.wait_for_dags({dag_id})
        stack.api.set_paused(dag_id, False)
        for _ in range(bench.rounds + 1):
            run_id = stack.api.trigger(dag_id)
            run = stack.api.wait_for_run(dag_id, run_id, timeout=300)
            if run["state"] != "success":
                raise SystemExit(f"stack run {run_id} ended {run['state']}:\n{stack.logs_tail()}")
            runs.append((run, stack.api.task_instances(dag_id, run_id)))
        project = stack.checkouts["main"] / "dbt" / STACK_PRODUCT
        dbt = str(Path(sys.executable).with_name("dbt"))
        env = {**os.environ, **stack.warehouse_env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
               "PYTHONPATH": str(REPO_ROOT)}
        where = ["--project-dir", str(project), "--profiles-dir", str(project)]
        subprocess.run([dbt, "deps", *where], cwd=project, env=env, capture_output=True, check=True)
        for _ in range(bench.rounds + 1):
            start = time.perf_counter()
            done = subprocess.run([dbt, "build", *where], cwd=project, env=env, capture_output=True, text=True)
            builds.append(time.perf_counter() - start)
            if done.returncode != 0:
                raise SystemExit(f"dbt build failed:\n{done.stdout[-3000:]}")
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    runs, build = runs[1:], statistics.median(builds[1:])  # the first of each warmed up
    walls = [_seconds(run["start_date"], run["end_date"]) for run, _ in runs]
    tasks = {task: statistics.median(float(tis[task]["duration"]) for _, tis in runs) for task in runs[0][1]}
    total = sum(tasks.values())
    wall = statistics.median(walls)
    rows = [
        Row("plain `dbt build` of a one-model product (same warehouse, the stack running)", f"{build:.2f} s", ""),
        Row("its run on the Celery stack: the five tasks' durations on the workers, added up",
            f"{total:.2f} s ({total / build:.1f}× the `dbt build`)", "≤ 2× the `dbt build`"),
        Row("  the run from start to end (also the scheduler's hand-offs between tasks)",
            f"{wall:.2f} s ({wall / build:.1f}× the `dbt build`)", ""),
    ]
    order = ["dbt_run", "dbt_test", "governance_gate", "publish", "catalog_register"]
    rows += [Row(f"  task `{task}` on a worker (Airflow's duration)", f"{tasks[task]:.2f} s",
                 "≤ 1 s" if task in ("governance_gate", "publish", "catalog_register") else "")
             for task in sorted(tasks, key=lambda name: order.index(name) if name in order else len(order))]
    return rows


def _seconds(start: str, end: str) -> float:
    import datetime

    return (datetime.datetime.fromisoformat(end) - datetime.datetime.fromisoformat(start)).total_seconds()


# Each figure a function of the bench, run in this order.
FIGURES: dict[str, Callable[[Bench], list[Row]]] = {
    "import": import_figures,
    "render": render_figures,
    "check": check_figures,
    "validate": validate_figures,
    "locate": locate_figures,
    "new": new_product_figures,
    "dag-processor": dag_processor_figures,
    "run": run_figures,
    "stack": stack_figures,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code", type=Path, default=REPO_ROOT, help="the checkout whose CLI is timed")
    parser.add_argument("--only", action="append", choices=list(FIGURES), help="these figures only (repeatable)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="datamesh-scale-") as scratch:
        root = Path(scratch) / "mesh"
        write_mesh(root, args.products)
        shutil.copytree(root, Path(scratch) / "pristine")
        bench = Bench(root, args.code.resolve(), args.rounds, Path(scratch) / "pristine")
        where = subprocess.run(
            [sys.executable, "-P", "-c", "import generator; print(generator.__file__)"],
            env=bench.env, cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
        rows = [row for name, figure in FIGURES.items() if not args.only or name in args.only for row in figure(bench)]
    print(f"{args.products} products in {DOMAINS} domains (a third read another), code: {where}, "
          f"median of {args.rounds}\n")
    print("| what | figure | goal |\n|---|---|---|")
    for row in rows:
        print(f"| {row.what} | {row.figure} | {row.goal} |")


if __name__ == "__main__":
    main()
