"""The DAG renderer: golden files, escaping of hostile spec text, and the two kinds of schedule.

Fast: nothing here imports Airflow; the generated source is inspected with `ast`.
(tests/test_dagbag.py loads the same files with Airflow's DagBag.)
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator import __version__
from generator.errors import UserError
from generator.layout import DOCS_DIR, PLATFORM_DAG, REPORT_FILE, docs_page
from generator.render.airflow_dag import (
    DBT_DOCS_URL_VARIABLE,
    REPORT_URL_VARIABLE,
    dag_path,
    render_dag,
)
from generator.render.fingerprint import unstamped  # the header's hashes: `datamesh check` tests them
from generator.spec.load import parse_spec
from generator.spec.mesh import Mesh, ProductEntry, load_mesh

REPO_ROOT = Path(__file__).resolve().parents[1]

HOSTILE = (
    "It's a \"quoted\" text with '''triple''' and \"\"\"triple\"\"\" quotes,\n"
    "a backslash \\ and \\n (not a newline), {{ jinja }} and {% if x %}, \t a tab,\n"
    "'); import os; os.system('rm -rf /') #\n"
    "<script>alert(1)</script> and a last line ending in .md"
)

BASE_SPEC: dict[str, Any] = {
    "spec_version": 1,
    "name": "widgets",
    "domain": "factory",
    "version": "3.0.1",
    "description": "Widgets made per day.",
    "owner": {"team": "widget_team", "email": "widgets@example.com"},
    "tags": ["widgets"],
    "classification": "internal",
    "schedule": "0 3 * * *",
    "sla": {"freshness_hours": 24},
    "inputs": {"sources": [{"schema": "factory_ops", "table": "widgets"}]},
    "outputs": [
        {
            "name": "widgets_daily",
            "description": "One row per day.",
            "columns": [
                {"name": "day", "type": "date", "description": "The day."},
                {"name": "maker_email", "type": "text", "pii": "email"},
            ],
        }
    ],
}


def entry_from(data: dict[str, Any], root: Path) -> ProductEntry:
    """A ProductEntry from a spec given inline, going through the real YAML loader."""
    shown = f"dbt/{data['domain']}/{data['name']}/data_product.yaml"
    spec = parse_spec(yaml.safe_dump(data, sort_keys=False), shown)
    return ProductEntry(spec, root / shown, shown)


def render_source(data: dict[str, Any], root: Path) -> str:
    entry = entry_from(data, root)
    rendered = render_dag(entry, Mesh(root, [entry]))
    assert list(rendered.generated) == [f"dags/{entry.spec.domain}.py"]  # one file per domain
    assert rendered.owned == {}
    return rendered.generated[f"dags/{entry.spec.domain}.py"]


def assigned(tree: ast.Module, name: str) -> ast.expr | None:
    """The expression the first `name = ...` assigns (in a product's function), or None."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [name]:
            return node.value
    return None


def module_constant(tree: ast.Module, name: str) -> Any:
    value = assigned(tree, name)
    assert value is not None, f"no {name}"
    return ast.literal_eval(value)


def call_keywords(call: ast.expr) -> dict[str, Any]:
    """The literal keyword arguments of a call such as Asset(name=..., uri=...)."""
    assert isinstance(call, ast.Call)
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords}


def dag_keywords(tree: ast.Module) -> dict[str, ast.expr]:
    """The keyword arguments of the first `with DAG(...)` call (the first product's)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            call = node.items[0].context_expr
            assert isinstance(call, ast.Call) and getattr(call.func, "id", None) == "DAG"
            return {k.arg: k.value for k in call.keywords if k.arg}
    raise AssertionError("no `with DAG(...)` block")


def shape(tree: ast.Module) -> list[str]:
    """Every node type in the module, in order: injected code would change it."""
    return [type(n).__name__ for n in ast.walk(tree)]


@pytest.fixture(scope="module")
def mesh() -> Mesh:
    return load_mesh(REPO_ROOT)


@pytest.fixture(autouse=True)
def default_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """The card's links as an unconfigured machine renders them (the committed DAGs' settings)."""
    monkeypatch.delenv(DBT_DOCS_URL_VARIABLE, raising=False)
    monkeypatch.delenv(REPORT_URL_VARIABLE, raising=False)


def card(entry: ProductEntry, mesh: Mesh) -> str:
    return module_constant(ast.parse(render_dag(entry, mesh).generated[dag_path(entry.spec)]), "DOC_MD")


def test_committed_dags_match_the_render_of_the_example_specs(mesh: Mesh) -> None:
    mismatched = []
    for entry in mesh.products:
        for rel, text in render_dag(entry, mesh).generated.items():
            committed = REPO_ROOT / rel
            actual = committed.with_name(committed.name + ".actual")
            if not committed.exists() or unstamped(committed.read_text(encoding="utf-8")) != text:
                actual.write_text(text, encoding="utf-8")
                mismatched.append(rel)
            else:
                actual.unlink(missing_ok=True)
    assert not mismatched, f"stale DAG files (new render written beside them as .actual): {mismatched}"
    on_disk = {f"dags/{p.name}" for p in (REPO_ROOT / "dags").glob("*.py")}
    assert on_disk == {dag_path(e.spec) for e in mesh.products} | {PLATFORM_DAG}  # and the platform's own


def test_render_is_deterministic(mesh: Mesh) -> None:
    for entry in mesh.products:
        assert render_dag(entry, mesh).generated == render_dag(entry, mesh).generated


def test_dag_file_starts_with_the_generated_header(mesh: Mesh) -> None:
    entry = mesh.find("commerce", "orders")
    assert entry is not None
    source = render_dag(entry, mesh).generated["dags/commerce.py"]
    first = source.splitlines()[0]
    # the generator version that wrote it, then the spec it came from
    assert first.startswith(f"# Generated by datamesh {__version__} from dbt/commerce/*/data_product.yaml.")
    assert ast.get_docstring(ast.parse(source))


def test_hostile_text_stays_data(tmp_path: Path) -> None:
    hostile = copy.deepcopy(BASE_SPEC)
    hostile["description"] = HOSTILE
    hostile["owner"]["slack"] = HOSTILE
    hostile["outputs"][0]["description"] = HOSTILE
    hostile["outputs"][0]["columns"][0]["description"] = HOSTILE
    hostile["inputs"]["sources"][0]["description"] = HOSTILE

    source = render_source(hostile, tmp_path)
    tree = ast.parse(source)  # valid Python
    doc = module_constant(tree, "DOC_MD")
    assert doc.count(HOSTILE) == 5
    assert not doc.endswith(".md")  # Airflow would read such a doc_md as a file path
    description = ast.literal_eval(dag_keywords(tree)["description"])
    assert description == " ".join(HOSTILE.split())
    # Nothing was injected: the hostile render has exactly the code of a benign one.
    assert shape(tree) == shape(ast.parse(render_source(BASE_SPEC, tmp_path)))


def test_card_lists_owner_sla_outputs_pii_and_where_to_read(mesh: Mesh) -> None:
    entry = mesh.find("customers", "customer_profiles")
    assert entry is not None
    tree = ast.parse(render_dag(entry, mesh).generated["dags/customers.py"])
    doc = module_constant(tree, "DOC_MD")
    for expected in [
        entry.spec.description,
        "`customer_data` (customer-data@company.com, #customer-data)",
        "**Version:** 1.0.0",
        "**Classification:** confidential (contains PII)",
        "fresh within 24 h; availability 99.9 %; completeness 99.5 %",
        "- `customer_email` (text) **PII: email** — Contact email address.",
        "- `country` (char(2)) — ISO 3166-1 alpha-2 country code.",
        "source table `customers_ops.customers` — CRM customer table, replicated nightly.",
        "Schema `customers__customer_profiles__v1`",
        "`customers__customer_profiles__v1.customers_dim`",
    ]:
        assert expected in doc


def test_card_links_the_dbt_docs_and_the_catalog_card(mesh: Mesh) -> None:
    entry = mesh.find("customers", "customer_profiles")
    assert entry is not None
    doc = card(entry, mesh)
    # Where `datamesh docs --serve` serves the page `datamesh docs` writes, and how to start it.
    served = docs_page(REPO_ROOT, entry.spec.key).relative_to(REPO_ROOT / DOCS_DIR).as_posix()
    assert served == "customers__customer_profiles/index.html"
    assert (
        "- **dbt docs** (models, columns, tests, lineage): [`customers__customer_profiles`]"
        f"(http://localhost:8081/{served}) — generate and serve them with "
        "`datamesh docs customers/customer_profiles --serve`\n"
    ) in doc
    assert (
        "- **Catalog card** (runs, quality, consumers, incidents): `datamesh show customers/customer_profiles`\n"
    ) in doc
    # The report's file and the anchor of the product's card in it (report.html.j2: id="<domain>__<product>").
    assert REPORT_FILE == REPORT_FILE
    assert (
        "- **Mesh report:** `.datamesh/report/index.html#customers__customer_profiles` (written by `datamesh report`)"
    ) in doc


def test_card_links_follow_the_platforms_settings_at_render_time(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = mesh.find("finance", "revenue_metrics")
    assert entry is not None
    monkeypatch.setenv(DBT_DOCS_URL_VARIABLE, "https://docs.example.com/dbt/")
    monkeypatch.setenv(REPORT_URL_VARIABLE, "https://mesh.example.com/report")
    doc = card(entry, mesh)
    assert (
        "[`finance__revenue_metrics`](https://docs.example.com/dbt/finance__revenue_metrics/index.html)\n" in doc
    )  # no `datamesh docs --serve` hint: someone else serves them
    assert "- **Mesh report:** [`finance__revenue_metrics`]" in doc
    assert "(https://mesh.example.com/report/index.html#finance__revenue_metrics)\n" in doc
    assert "`datamesh show finance/revenue_metrics`" in doc


def test_a_url_cannot_break_out_of_its_markdown_link(mesh: Mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = mesh.find("finance", "revenue_metrics")
    assert entry is not None
    monkeypatch.setenv(DBT_DOCS_URL_VARIABLE, "http://docs.example.com/a b)<script>[x](javascript:1)")
    doc = card(entry, mesh)
    assert (
        "(http://docs.example.com/a%20b%29%3Cscript%3E[x]%28javascript:1%29/finance__revenue_metrics/index.html)"
    ) in doc


@pytest.mark.parametrize(
    "variable, value",
    [
        (DBT_DOCS_URL_VARIABLE, "localhost:8081"),
        (DBT_DOCS_URL_VARIABLE, "file:///srv/docs"),
        (REPORT_URL_VARIABLE, "https://mesh.example.com/report?page=1"),
        (REPORT_URL_VARIABLE, "https://"),
    ],
)
def test_a_setting_that_is_not_a_base_url_is_refused_by_name(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    expected = f"${variable}={value!r} is not a base URL: give the http:// or https:// URL the folder is served at"
    with pytest.raises(UserError, match="^" + re.escape(expected)):
        render_dag(mesh.products[0], mesh)


def test_cron_schedule_is_the_specs_cron(tmp_path: Path) -> None:
    tree = ast.parse(render_source(BASE_SPEC, tmp_path))
    assert ast.literal_eval(dag_keywords(tree)["schedule"]) == "0 3 * * *"
    assert assigned(tree, "INPUTS") is None


def test_without_schedule_the_dag_waits_for_the_assets_of_the_outputs_it_reads(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE_SPEC)
    del data["schedule"]
    data["inputs"]["products"] = [
        {"domain": "sales", "product": "orders", "output": "orders", "major": 2},
        {"domain": "sales", "product": "orders", "output": "order_lines", "major": 2},  # same product
        {"domain": "people", "product": "staff", "output": "staff_dim", "major": 1},
    ]
    tree = ast.parse(render_source(data, tmp_path))
    schedule = dag_keywords(tree)["schedule"]
    assert isinstance(schedule, ast.Name) and schedule.id == "INPUTS"
    inputs = assigned(tree, "INPUTS")
    assert isinstance(inputs, ast.List)
    assets = [call_keywords(call) for call in inputs.elts]
    # One Asset per output read, named as OpenLineage names the published view (the default
    # namespace: the embedded server, localhost:5432, database postgres)
    assert assets == [
        {
            "name": "postgres://localhost:5432/postgres.sales__orders__v2.orders",
            "uri": "postgres://localhost:5432/postgres/sales__orders__v2/orders",
        },
        {
            "name": "postgres://localhost:5432/postgres.sales__orders__v2.order_lines",
            "uri": "postgres://localhost:5432/postgres/sales__orders__v2/order_lines",
        },
        {
            "name": "postgres://localhost:5432/postgres.people__staff__v1.staff_dim",
            "uri": "postgres://localhost:5432/postgres/people__staff__v1/staff_dim",
        },
    ]
    published = [call_keywords(call) for call in assigned(tree, "PUBLISHED").elts]
    outputs = [o["name"] for o in data["outputs"]]
    assert published == [
        {
            "name": f"postgres://localhost:5432/postgres.factory__widgets__v3.{o}",
            "uri": f"postgres://localhost:5432/postgres/factory__widgets__v3/{o}",
        }
        for o in outputs
    ] + [{"name": "factory.widgets.v3", "uri": "datamesh://factory/widgets/v3"}]  # the former one, for a release


def test_the_warehouse_namespace_and_database_settings_name_the_assets(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DATAMESH_WAREHOUSE_NAMESPACE", "Warehouse.Internal:6432")
    monkeypatch.setenv("DATAMESH_WAREHOUSE_DATABASE", "mesh")
    tree = ast.parse(render_source(BASE_SPEC, tmp_path))
    first = call_keywords(assigned(tree, "PUBLISHED").elts[0])
    output = BASE_SPEC["outputs"][0]["name"]
    assert first == {
        "name": f"postgres://warehouse.internal:6432/mesh.factory__widgets__v3.{output}",
        "uri": f"postgres://warehouse.internal:6432/mesh/factory__widgets__v3/{output}",
    }
    monkeypatch.setenv("DATAMESH_WAREHOUSE_NAMESPACE", "mesh-warehouse")  # a logical name: port 5432
    first = call_keywords(assigned(ast.parse(render_source(BASE_SPEC, tmp_path)), "PUBLISHED").elts[0])
    assert first["name"].startswith("postgres://mesh-warehouse:5432/mesh.")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATAMESH_WAREHOUSE_NAMESPACE", "postgres://db:5432"),
        ("DATAMESH_WAREHOUSE_NAMESPACE", "db:port"),
        ("DATAMESH_WAREHOUSE_NAMESPACE", "db:70000"),
        ("DATAMESH_WAREHOUSE_DATABASE", "my db"),
    ],
)
def test_a_bad_warehouse_naming_setting_is_refused(tmp_path: Path, monkeypatch, variable, value) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(UserError, match="^" + re.escape(f"${variable}={value!r} is not a")):
        render_source(BASE_SPEC, tmp_path)


def test_tags_owner_and_retries_come_from_the_spec(tmp_path: Path) -> None:
    tree = ast.parse(render_source(BASE_SPEC, tmp_path))
    keywords = dag_keywords(tree)
    assert ast.literal_eval(keywords["tags"]) == ["domain:factory", "classification:internal", "widgets"]
    assert ast.literal_eval(keywords["owner_links"]) == {"widget_team": "mailto:widgets@example.com"}
    default_args = assigned(tree, "default_args")
    assert isinstance(default_args, ast.Dict)
    args = {ast.literal_eval(k): v for k, v in zip(default_args.keys, default_args.values, strict=True) if k}
    assert ast.literal_eval(args["owner"]) == "widget_team"


def test_every_task_is_retried_and_results_travel_as_arguments(tmp_path: Path) -> None:
    """Retries are for transient failures, on every task (the test and the gate too): deterministic
    failures end a task without using them (tasks.fail_fast). No task reads another's files: the
    gate gets the test task's results, the register task the results of all four before it."""
    tree = ast.parse(render_source(BASE_SPEC, tmp_path))
    default_args = assigned(tree, "default_args")
    assert isinstance(default_args, ast.Dict)
    args = {ast.literal_eval(k): v for k, v in zip(default_args.keys, default_args.values, strict=True) if k}
    assert ast.literal_eval(args["retries"]) >= 1
    assert ast.literal_eval(args["retry_exponential_backoff"]) > 1
    decorators = {
        node.name: node.decorator_list
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.decorator_list
    }
    # failed_to_load: the one task of the stand-in DAG a product gets when its block fails
    assert set(decorators) == {"dbt_run", "dbt_test", "governance_gate", "publish", "catalog_register",
                               "failed_to_load"}
    for name, decorator_list in decorators.items():
        for decorator in decorator_list:
            keywords = {k.arg for k in decorator.keywords} if isinstance(decorator, ast.Call) else set()
            assert "retries" not in keywords, f"{name} overrides the DAG's retries"
    calls = {
        ast.unparse(node.value.func): [ast.unparse(a) for a in node.value.args]
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
        and ast.unparse(node.value.func) in ("dbt_run", "dbt_test", "governance_gate", "publish")
    }
    assert calls == {"dbt_run": [], "dbt_test": [], "governance_gate": ["tests"], "publish": []}
    source = ast.unparse(tree)
    assert "catalog_register(run, tests, gate, published)" in source


@pytest.mark.parametrize(
    "hours,interval", [(24, "datetime.timedelta(hours=24)"), (0.5, "datetime.timedelta(hours=0.5)")]
)
def test_freshness_sla_becomes_a_deadline_counted_from_the_queued_time(
    tmp_path: Path, hours: float, interval: str
) -> None:
    data = copy.deepcopy(BASE_SPEC)
    data["sla"] = {"freshness_hours": hours}
    tree = ast.parse(render_source(data, tmp_path))
    deadline = assigned(tree, "FRESHNESS_DEADLINE")
    assert isinstance(deadline, ast.Call) and getattr(deadline.func, "id", None) == "DeadlineAlert"
    keywords = {k.arg: k.value for k in deadline.keywords}
    assert ast.unparse(keywords["reference"]) == "DeadlineReference.DAGRUN_QUEUED_AT"
    assert ast.unparse(keywords["interval"]) == interval
    assert ast.literal_eval(keywords["name"]) == "freshness_sla"
    callback = keywords["callback"]
    assert isinstance(callback, ast.Call) and getattr(callback.func, "id", None) == "SyncCallback"
    assert ast.unparse(callback.args[0]) == "record_sla_miss"
    [callback_kwargs] = [k.value for k in callback.keywords if k.arg == "kwargs"]
    assert ast.unparse(callback_kwargs) == (
        f"{{'dag_file': __file__, 'domain': DOMAIN, 'product': PRODUCT, 'freshness_hours': {hours!r}}}"
    )
    assert ast.unparse(dag_keywords(tree)["deadline"]) == "FRESHNESS_DEADLINE"
    imported = {alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert {"DeadlineAlert", "DeadlineReference", "SyncCallback", "record_sla_miss"} <= imported
