"""The domain registry (domains/<domain>.yaml): validated like specs, the truth for which teams may
own a domain's products, and followed by the DAGs, the catalog, the card and `datamesh domains`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from catalog_helpers import register_run

from generator.catalog import store
from generator.catalog.card import format_card, load_card
from generator.errors import SpecError
from generator.spec.domain import load_domain, load_registry
from generator.spec.mesh import load_mesh
from generator.warehouse.connection import Warehouse

REPO = Path(__file__).resolve().parents[1]
DATAMESH = str(Path(sys.executable).with_name("datamesh"))


def datamesh(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DATAMESH, "--root", str(root), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    ignore = shutil.ignore_patterns("target", "dbt_packages", "logs", "__pycache__")
    for folder in ("dbt", "dags", "domains", "policies", "generator/schemas"):
        shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_example_product_is_owned_by_a_team_of_its_domain() -> None:
    mesh = load_mesh(REPO)
    assert sorted(mesh.domains) == ["commerce", "customers", "finance", "marketing", "products", "sales"]
    for entry in mesh.products:
        assert entry.spec.owner.team in mesh.domains[entry.spec.domain].domain.team_names


def test_a_broken_domain_file_reports_every_problem_with_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "domains" / "sales.yaml"
    path.parent.mkdir()
    path.write_text(
        "name: sales\n"
        "description: Sales.\n"
        "bounded_context: Selling.\n"
        "owner_team: nobody\n"
        "teams:\n"
        "  - name: sales_analytics\n"
        "    email: not-an-address\n"
        "members:\n"
        "  - name: Ana\n"
        "    email: ana@example.com\n"
        "    team: sales_analytics\n"
        "    favourite_colour: blue\n"
        "on_call: {email: oncall@example.com}\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as caught:
        load_domain(path, "domains/sales.yaml")
    shown = [str(p) for p in caught.value.problems]
    assert "domains/sales.yaml:7: teams.sales_analytics.email: 'not-an-address' is not an email address" in shown
    assert any(s.startswith("domains/sales.yaml:12: members.Ana.favourite_colour: unknown field") for s in shown)
    # pydantic problems come all at once; cross-field ones once the fields themselves are valid
    fixed = path.read_text().replace("not-an-address", "s@example.com").replace("    favourite_colour: blue\n", "")
    path.write_text(fixed.replace("    team: sales_analytics\n", "    team: sales_ops\n"))
    with pytest.raises(SpecError) as caught:
        load_domain(path, "domains/sales.yaml")
    shown = [str(p) for p in caught.value.problems]
    assert shown == [
        "domains/sales.yaml:4: owner_team: 'nobody' is not one of `teams`; allowed: sales_analytics",
        "domains/sales.yaml:11: members.Ana.team: 'sales_ops' is not one of `teams`; allowed: sales_analytics",
    ]


def test_a_product_owned_by_a_team_outside_its_domain_is_refused_by_validate_and_render(repo: Path) -> None:
    spec = repo / "dbt/sales/sales_orders_analytical/data_product.yaml"
    spec.write_text(spec.read_text().replace("team: sales_analytics", "team: growth_hackers"))
    before = snapshot(repo)
    for command in ("validate", "render"):
        done = datamesh(repo, command)
        assert done.returncode == 2, done.stdout
        assert (
            "dbt/sales/sales_orders_analytical/data_product.yaml:"
        ) in done.stderr and "owner.team: team 'growth_hackers' is not a team of domain 'sales' " \
            "(domains/sales.yaml); allowed: sales_analytics" in done.stderr
    assert snapshot(repo) == before


def test_a_domain_with_products_needs_its_registry_file(repo: Path) -> None:
    (repo / "domains" / "finance.yaml").unlink()
    done = datamesh(repo, "validate")
    assert done.returncode == 2
    assert "dbt/finance/revenue_metrics/data_product.yaml:" in done.stderr
    assert "domain 'finance' has no registry file: create domains/finance.yaml" in done.stderr


def test_the_editor_schema_accepts_the_example_domains_and_is_what_render_writes(repo: Path) -> None:
    done = datamesh(repo, "schema", "--domain")
    assert done.returncode == 0
    schema = json.loads(done.stdout)
    assert done.stdout == (REPO / "generator/schemas/domain.schema.json").read_text(encoding="utf-8")
    for path in sorted((REPO / "domains").glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**yaml.safe_load((REPO / "domains/sales.yaml").read_text()), "owner": "x"}, schema)


def test_dags_follow_the_registry_when_it_changes(repo: Path) -> None:
    registry = repo / "domains" / "sales.yaml"
    registry.write_text(
        registry.read_text()
        .replace("email: sales-analytics@company.com", "email: sales-data-team@company.com")
        .replace("sales-oncall@company.com", "sales-pager@company.com")
    )
    done = datamesh(repo, "check", "--quiet")
    assert done.returncode == 1 and "dags/sales.py" in done.stdout
    assert "dags/commerce.py" not in done.stdout  # another domain's DAG is untouched
    assert datamesh(repo, "render").returncode == 0
    dag = (repo / "dags/sales.py").read_text()
    assert "'sales_analytics': 'mailto:sales-data-team@company.com'" in dag
    assert "'owner': 'sales_analytics'" in dag
    assert "sales-pager@company.com" in dag
    assert datamesh(repo, "check", "--quiet").returncode == 0


@pytest.mark.integration
def test_catalog_card_and_domains_command_follow_the_registry(repo: Path, warehouse: Warehouse) -> None:
    conn = warehouse.connect()
    try:
        store.migrate(conn)
        mesh = load_mesh(repo)
        entry = mesh.find("products", "product_catalog")
        register_run(conn, entry.spec, "run-domains-1")
        registry, _ = load_registry(repo)
        store.sync_domains(conn, [registry["products"].domain])
        card = load_card(conn, "products", "product_catalog")
        assert card.domain_owner == "catalog" and card.on_call == {"name": "Catalog on-call",
                                                                   "email": "catalog-oncall@company.com"}
        assert "domain products: owned by catalog; on call: catalog-oncall@company.com, #product-catalog" in (
            format_card(card))

        # The registry changes hands: the catalog row follows on the next sync, and it is audited.
        path = repo / "domains" / "products.yaml"
        path.write_text(path.read_text().replace("catalog-oncall@company.com", "merch-oncall@company.com"))
        changed = load_domain(path)
        assert store.sync_domains(conn, [changed]) == ["products"]
        assert store.sync_domains(conn, [changed]) == []  # unchanged: no row written, no audit entry
        assert load_card(conn, "products", "product_catalog").on_call["email"] == "merch-oncall@company.com"
    finally:
        conn.close()

    done = datamesh(repo, "domains", "--format", "json")
    assert done.returncode == 0, done.stderr
    listed = {d["domain"]: d for d in json.loads(done.stdout)}
    assert set(listed) == {"commerce", "customers", "finance", "marketing", "products", "sales"}
    catalog = listed["products"]["products"][0]
    assert (catalog["product"], catalog["health"], catalog["run"]["last_outcome"]) == (
        "product_catalog", "ok", "success")
    assert listed["products"]["owner_team"] == "catalog"
    text = datamesh(repo, "domains")
    assert "products  owner catalog" in text.stdout and "product_catalog" in text.stdout


def test_a_domain_file_that_contradicts_a_spec_is_caught_even_by_a_warm_validate(repo: Path) -> None:
    assert datamesh(repo, "validate").returncode == 0  # warms the validation cache
    registry = repo / "domains" / "sales.yaml"
    registry.write_text(registry.read_text().replace("sales_analytics", "sales_insights"))
    before = snapshot(repo)
    for command in ("validate", "check"):
        done = datamesh(repo, command)
        assert done.returncode == 2, (command, done.stdout)
        assert "owner.team: team 'sales_analytics' is not a team of domain 'sales' (domains/sales.yaml); " \
            "allowed: sales_insights" in done.stderr
        assert "dbt/sales/sales_orders_analytical/data_product.yaml:" in done.stderr  # the spec, its line
    assert {k: v for k, v in snapshot(repo).items() if not k.startswith(".datamesh")} == {
        k: v for k, v in before.items() if not k.startswith(".datamesh")}
