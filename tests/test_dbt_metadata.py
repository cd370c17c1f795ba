"""dbt-native metadata in the generated projects, read back from the manifest dbt itself parses.

Groups, access, model versions, exposures and source freshness are what dbt docs and every catalog
that ingests dbt artifacts show of the mesh; `dbt source freshness` answers from the catalog's runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.catalog import store
from generator.render.dbt_metadata import freshness_threshold
from generator.spec.mesh import load_mesh
from generator.warehouse.connection import Warehouse
from tests.test_cli import REPO, datamesh
from tests.test_dbt_projects import copy_mesh, dbt_ok, run_dbt, write_render

pytestmark = pytest.mark.integration

SALES = "sales__sales_orders_analytical"
COMMERCE = "commerce__orders"


@pytest.fixture(scope="module")
def mesh_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_mesh(tmp_path_factory.mktemp("meta"))


def parsed(root: Path, key: str) -> dict[str, Any]:
    project = load_mesh(root).select(key)[0].project_dir
    if not (project / "dbt_packages").exists():
        dbt_ok(project, "deps")
    dbt_ok(project, "parse")
    return json.loads((project / "target" / "manifest.json").read_text())


def test_each_output_is_a_public_versioned_model_of_its_domain_group(mesh_copy: Path) -> None:
    manifest = parsed(mesh_copy, SALES)
    spec = load_mesh(mesh_copy).select(SALES)[0].spec
    group = manifest["groups"][f"group.{SALES}.sales"]
    owner = load_mesh(REPO).domain("sales").owner()  # type: ignore[union-attr]  # domains/sales.yaml
    assert group["owner"] == {"name": owner.name, "email": owner.email}
    for output in spec.outputs:
        node = manifest["nodes"][f"model.{SALES}.{output.name}.v{spec.major}"]
        assert node["group"] == "sales"
        assert node["access"] == "public"
        assert (node["version"], node["latest_version"]) == (spec.major, spec.major)
        # The relation keeps the output's name: consumers read <schema>.<output>, not <output>_v2.
        assert node["alias"] == output.name
        assert node["deprecation_date"] is None  # the current major is never deprecated


def test_the_products_reading_an_output_are_its_exposures(mesh_copy: Path) -> None:
    manifest = parsed(mesh_copy, COMMERCE)
    mesh = load_mesh(mesh_copy)
    producer = mesh.select(COMMERCE)[0]
    consumers = mesh.consumers_of(producer)
    assert consumers, "the example mesh has products reading commerce/orders"
    exposures = manifest["exposures"]
    assert {e["name"] for e in exposures.values()} == {c.spec.key for c in consumers}
    sales = exposures[f"exposure.{COMMERCE}.{SALES}"]
    assert sales["owner"]["email"] == mesh.select(SALES)[0].spec.owner.email
    assert sales["depends_on"]["nodes"] == [f"model.{COMMERCE}.orders_fact.v1"]


def test_input_products_have_freshness_from_the_producers_sla_and_the_catalog_clock(mesh_copy: Path) -> None:
    manifest = parsed(mesh_copy, SALES)
    mesh = load_mesh(mesh_copy)
    for i in mesh.select(SALES)[0].spec.inputs.products:
        source = manifest["sources"][f"source.{SALES}.{i.key}.{i.output}"]
        sla = mesh.find(i.domain, i.product).spec.sla.freshness_hours  # type: ignore[union-attr]
        assert source["freshness"]["error_after"] == freshness_threshold(sla)
        assert "datamesh_catalog.runs" in source["loaded_at_query"]
        assert f"product = '{i.product}'" in source["loaded_at_query"]


def test_a_deprecated_major_is_dated_on_the_model_and_on_the_consumers_source(tmp_path: Path) -> None:
    root = copy_mesh(tmp_path)
    spec_path = root / "dbt/customers/customer_profiles/data_product.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["version"] = "2.0.0"
    spec["deprecations"] = [{"major": 1, "serve_until": "2030-06-30", "note": "read v2"}]
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    mesh = load_mesh(root)
    for key in ("customers__customer_profiles", SALES):  # sales still reads customers v1
        write_render(root, mesh.select(key)[0])
    producer = parsed(root, "customers__customer_profiles")
    node = producer["nodes"]["model.customers__customer_profiles.customers_dim.v2"]
    assert node["meta"]["deprecated_versions"] == [{"v": 1, "deprecation_date": "2030-06-30", "note": "read v2"}]
    assert node["alias"] == "customers_dim"
    consumer = parsed(root, SALES)
    source = consumer["sources"][f"source.{SALES}.customers__customer_profiles.customers_dim"]
    assert source["meta"] == {"deprecation_date": "2030-06-30", "latest_version": 2}


def test_dbt_source_freshness_answers_from_the_catalogs_last_publish(
    mesh_copy: Path, warehouse: Warehouse
) -> None:
    conn = warehouse.connect()
    try:
        store.migrate(conn)
        with conn, conn.cursor() as cur:
            cur.execute("delete from datamesh_catalog.runs where run_id like 'meta-test-%'")
            cur.execute(
                "insert into datamesh_catalog.runs (domain, product, run_id, version, ended_at, outcome) values "
                "('commerce', 'orders', 'meta-test-1', '1.0.0', now() - interval '5 minutes', 'success'), "
                "('customers', 'customer_profiles', 'meta-test-2', '1.4.0', now() - interval '30 hours', "
                "'success')"
            )
    finally:
        conn.close()
    project = load_mesh(mesh_copy).select(SALES)[0].project_dir
    if not (project / "dbt_packages").exists():
        dbt_ok(project, "deps")
    try:
        result = run_dbt(project, "source", "freshness", env=warehouse.env())
    finally:
        conn = warehouse.connect()
        try:
            with conn, conn.cursor() as cur:  # other tests of the session share this catalog
                cur.execute("delete from datamesh_catalog.runs where run_id like 'meta-test-%'")
        finally:
            conn.close()
    assert result.returncode == 1, result.stdout  # one source is past its SLA
    outcome = json.loads((project / "target" / "sources.json").read_text())["results"]
    status = {r["unique_id"].split(".")[2]: r["status"] for r in outcome}
    assert status == {"commerce__orders": "pass", "customers__customer_profiles": "error"}


def test_an_incremental_render_updates_the_producers_exposures(tmp_path: Path) -> None:
    """A consumer's change (or a new consumer) renders its producers again: their exposures list it."""
    root = tmp_path / "repo"
    for folder in ("dbt", "dags", "policies"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("target", "dbt_packages", "logs"))
    sales = root / "dbt/sales/sales_orders_analytical/data_product.yaml"
    sales.write_text(sales.read_text().replace("Analytical view of sales orders", "Analytical orders"))
    copy = root / "dbt/sales/returns"
    shutil.copytree(root / "dbt/sales/sales_orders_analytical", copy)
    (copy / "data_product.yaml").write_text(
        (copy / "data_product.yaml").read_text().replace("name: sales_orders_analytical", "name: returns")
    )
    done = datamesh("render", root=root)
    assert done.returncode == 0, done.stdout + done.stderr
    exposures = yaml.safe_load((root / "dbt/commerce/orders/models/_models.yml").read_text())["exposures"]
    by_name = {e["name"]: e for e in exposures}
    assert by_name["sales__sales_orders_analytical"]["description"].startswith("Analytical orders")
    assert "sales__returns" in by_name
    full = datamesh("render", "--full", root=root)
    assert full.returncode == 0 and " 0 written" in full.stdout, full.stdout  # incremental was complete
    assert datamesh("check", "--quiet", root=root).returncode == 0


def test_an_upgrade_updates_the_producers_exposures_and_names_why(tmp_path: Path) -> None:
    """`datamesh upgrade` writes what `render` would: a changed consumer's producers too, with the
    reason; afterwards a full render changes nothing."""
    root = tmp_path / "repo"
    for folder in ("dbt", "dags", "policies", "domains"):  # the registry names the groups' owners
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("target", "dbt_packages", "logs"))
    sales = root / "dbt/sales/sales_orders_analytical/data_product.yaml"
    sales.write_text(sales.read_text().replace("Analytical view of sales orders", "Analytical orders"))
    planned = datamesh("upgrade", "--plan", root=root)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "commerce/orders: a product reading it changed (its dbt exposures)" in planned.stdout
    done = datamesh("upgrade", root=root)
    assert done.returncode == 0, done.stdout + done.stderr
    exposures = yaml.safe_load((root / "dbt/commerce/orders/models/_models.yml").read_text())["exposures"]
    by_name = {e["name"]: e for e in exposures}
    assert by_name["sales__sales_orders_analytical"]["description"].startswith("Analytical orders")
    full = datamesh("render", "--full", root=root)
    assert full.returncode == 0 and " 0 written" in full.stdout, full.stdout  # the upgrade was complete


def test_rendering_one_new_consumer_lists_it_in_its_producers_exposures(tmp_path: Path) -> None:
    """`datamesh render <product>` (what `datamesh new` and the cookiecutter hook run) renders the
    products it reads too: nothing is left for a full render."""
    root = tmp_path / "repo"
    for folder in ("dbt", "dags", "policies", "domains"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("target", "dbt_packages", "logs"))
    copy = root / "dbt/sales/returns"
    shutil.copytree(root / "dbt/sales/sales_orders_analytical", copy)
    (copy / "data_product.yaml").write_text(
        (copy / "data_product.yaml").read_text().replace("name: sales_orders_analytical", "name: returns")
    )
    done = datamesh("render", "sales/returns", root=root)
    assert done.returncode == 0, done.stdout + done.stderr
    exposures = yaml.safe_load((root / "dbt/commerce/orders/models/_models.yml").read_text())["exposures"]
    assert "sales__returns" in {e["name"] for e in exposures}
    full = datamesh("render", "--full", root=root)  # writes the JSON Schemas, not in the copy
    assert full.returncode == 0 and "wrote    d" not in full.stdout, full.stdout
