"""render_dbt: spec -> dbt project files. Fast: nothing runs dbt here (see test_dbt_projects.py)."""

from __future__ import annotations

import ast
import random
import re
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from generator.errors import SpecError
from generator.render import generated_yaml
from generator.render.dbt_project import dev_schema_expression, jinja_literal, render_dbt_project
from generator.render.fingerprint import unstamped  # the header's hashes: `datamesh check` tests them
from generator.render.rendered import GENERATED_MARK, generated_note
from generator.spec.mesh import Mesh, ProductEntry, load_mesh

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_MESH = load_mesh(REPO_ROOT)
EXAMPLES = [entry.spec.key for entry in EXAMPLE_MESH.products]

TRICKY = (
    "It's \"quoted\": {{ 1 + 1 }}, {% if true %}run{% endif %}, {# hidden #} and {{{ braces }}}\n"
    "- key: &anchor *alias # not a comment\n  ! % @ ` | > ---\n..."
)


def base_spec(**changes: Any) -> dict[str, Any]:
    spec = {
        "spec_version": 1,
        "name": "widgets",
        "domain": "shop",
        "version": "1.0.0",
        "description": "Widgets.",
        "owner": {"team": "widget_team", "email": "widgets@example.com"},
        "classification": "internal",
        "schedule": "0 1 * * *",
        "sla": {"freshness_hours": 24},
        "inputs": {"sources": [{"schema": "shop_ops", "table": "widgets"}]},
        "outputs": [
            {
                "name": "widgets",
                "description": "One row per widget.",
                "primary_key": ["widget_id"],
                "columns": [{"name": "widget_id", "type": "text", "constraints": {"not_null": True}}],
            }
        ],
    }
    spec.update(changes)
    return spec


def make_mesh(root: Path, *specs: dict[str, Any]) -> Mesh:
    """A mesh of the given specs, each written to dbt/<domain>/<name>/data_product.yaml."""
    for spec in specs:
        folder = root / "dbt" / spec["domain"] / spec["name"]
        folder.mkdir(parents=True)
        (folder / "data_product.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_mesh(root)


def render(mesh: Mesh, key: str) -> dict[str, str]:
    """The generated files of one product, keyed by their path inside the product's folder."""
    entry = mesh.select(key)[0]
    prefix = f"dbt/{entry.spec.domain}/{entry.spec.name}/"
    return {p.removeprefix(prefix): text for p, text in render_dbt_project(entry, mesh).generated.items()}


def models_of(files: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in yaml.safe_load(files["models/_models.yml"])["models"]}


def dbt_tests_of(node: dict[str, Any]) -> dict[str, Any]:
    """A model's or column's dbt tests as {test name: its arguments}."""
    found: dict[str, Any] = {}
    for test in node.get("data_tests", []):
        if isinstance(test, str):
            found[test] = None
        else:
            (name, body), = test.items()
            found[name] = body["arguments"]
    return found


def as_dbt_shows(text: str) -> str:
    """What dbt makes of a YAML string: it renders it as a Jinja template (undefined names fail)."""
    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(text).render()


def config_of(sql: str) -> dict[str, Any]:
    call = re.search(r"\{\{ (config\(.*\)) \}\}", sql)
    assert call, sql
    parsed = ast.parse(call.group(1), mode="eval").body
    assert isinstance(parsed, ast.Call)
    return {kw.arg: ast.literal_eval(kw.value) for kw in parsed.keywords}


# --- the examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", EXAMPLES)
def test_rendering_is_deterministic(key: str) -> None:
    entry = EXAMPLE_MESH.select(key)[0]
    first = render_dbt_project(entry, EXAMPLE_MESH)
    again = render_dbt_project(load_mesh(REPO_ROOT).select(key)[0], load_mesh(REPO_ROOT))
    assert (first.generated, first.owned) == (again.generated, again.owned)


@pytest.mark.parametrize("key", EXAMPLES)
def test_committed_example_projects_match_the_render(key: str) -> None:
    """Golden files: the committed projects are what the generator makes of the committed specs.

    On a mismatch the render is written beside the file as <file>.actual: `diff` the two.
    """
    entry = EXAMPLE_MESH.select(key)[0]
    rendered = render_dbt_project(entry, EXAMPLE_MESH)
    stale = []
    for path, text in rendered.generated.items():
        committed = REPO_ROOT / path
        actual = committed.with_name(committed.name + ".actual")
        if not committed.exists() or unstamped(committed.read_text(encoding="utf-8")) != text:
            actual.write_text(text, encoding="utf-8")
            stale.append(f"diff {path} {path}.actual")
        elif actual.exists():
            actual.unlink()
    assert not stale, "committed files differ from the render (run `datamesh render`):\n" + "\n".join(stale)
    missing = [path for path in rendered.owned if not (REPO_ROOT / path).exists()]
    assert not missing, f"model files missing: {missing}"


@pytest.mark.parametrize("key", EXAMPLES)
def test_generated_files_carry_the_header(key: str) -> None:
    entry = EXAMPLE_MESH.select(key)[0]
    rendered = render_dbt_project(entry, EXAMPLE_MESH)
    note = generated_note(f"dbt/{entry.spec.domain}/{entry.spec.name}/data_product.yaml")
    for path, text in rendered.generated.items():
        comment = "--" if path.endswith(".sql") else "#"
        assert text.startswith(f"{comment} {note}\n"), path
    # The team's model files are theirs: no "do not edit" header.
    assert all(GENERATED_MARK not in text for text in rendered.owned.values())


@pytest.mark.parametrize("key", EXAMPLES)
def test_every_constraint_of_the_examples_yields_its_dbt_test(key: str) -> None:
    entry = EXAMPLE_MESH.select(key)[0]
    models = models_of(render(EXAMPLE_MESH, key))
    assert list(models) == [o.name for o in entry.spec.outputs]
    for output in entry.spec.outputs:
        model = models[output.name]
        assert model["config"]["contract"] == {"enforced": True}
        columns = {c["name"]: c for c in model["columns"]}
        assert list(columns) == [c.name for c in output.columns]
        for column in output.columns:
            rendered = columns[column.name]
            tests = dbt_tests_of(rendered)
            c = column.constraints
            assert rendered["data_type"] == column.type
            assert ("not_null" in tests) == (c.not_null or column.name in output.primary_key)
            assert ("unique" in tests) == (c.unique or output.primary_key == [column.name])
            if c.accepted_values:
                assert tests["accepted_values"] == {"values": c.accepted_values}
            if c.min is not None:
                assert tests["datamesh_platform.in_range"]["min_value"] == c.min
                check = {"type": "check", "expression": f'"{column.name}" >= {c.min:g}'}
                assert check in rendered["constraints"]
            if c.references:
                to = tests["relationships"]["to"]
                assert tests["relationships"]["field"] == c.references.column
                assert to.startswith("ref(" if c.references.product is None else "source(")
                assert f"'{c.references.output}'" in to
            if column.pii:
                assert rendered["config"]["meta"]["pii"] == column.pii.value
        assert model["constraints"] == [{"type": "primary_key", "columns": output.primary_key}]


def test_relationships_point_at_the_input_products_source() -> None:
    orders_fact = models_of(render(EXAMPLE_MESH, "commerce__orders"))["orders_fact"]
    columns = {c["name"]: c for c in orders_fact["columns"]}
    assert dbt_tests_of(columns["customer_id"])["relationships"] == {
        "to": "source('customers__customer_profiles', 'customers_dim')",
        "field": "customer_id",
    }


def test_sources_name_the_published_schemas_of_inputs_and_the_operational_tables() -> None:
    sources = yaml.safe_load(render(EXAMPLE_MESH, "commerce__orders")["models/_sources.yml"])["sources"]
    by_name = {s["name"]: s for s in sources}
    assert by_name["customers__customer_profiles"]["schema"] == "customers__customer_profiles__v1"
    assert [t["name"] for t in by_name["customers__customer_profiles"]["tables"]] == ["customers_dim"]
    customers_dim = by_name["customers__customer_profiles"]["tables"][0]
    assert customers_dim["description"] == "Current state of every customer."
    assert by_name["commerce_ops"]["schema"] == "commerce_ops"
    assert [t["name"] for t in by_name["commerce_ops"]["tables"]] == ["orders", "order_items", "order_events"]


CONNECTION = {
    "type": "postgres",
    "host": '{{ env_var("PGHOST") }}',
    "port": '{{ env_var("PGPORT", "5432") | as_number }}',
    "user": '{{ env_var("PGUSER", "postgres") }}',
    "password": '{{ env_var("PGPASSWORD", "") }}',
    "dbname": '{{ env_var("PGDATABASE", "postgres") }}',
}


def test_the_profile_has_a_dev_default_and_a_pipeline_target_on_the_build_schema() -> None:
    """dbt by hand writes to a personal schema; only the runtime (--target pipeline) to the build."""
    key = "sales__sales_orders_analytical"
    profile = yaml.safe_load(render(EXAMPLE_MESH, key)["profiles.yml"])
    assert profile == {
        key: {
            "target": "dev",
            "outputs": {
                "dev": {**CONNECTION, "schema": dev_schema_expression(key), "threads": 4},
                "pipeline": {
                    **CONNECTION,
                    "schema": f"{key}__build",
                    "role": '{{ "domain_sales" if env_var("DATAMESH_DBT_AS_DOMAIN", "") == "1" else "" }}',
                    "threads": 4,
                },
                "docs": {**CONNECTION, "schema": f"{key}__v2", "threads": 4},  # datamesh docs reads it
            },
        }
    }


def render_dev_schema(key: str, environ: dict[str, str]) -> str:
    """The dev schema as dbt renders it (dbt's profile context offers env_var and modules.re)."""

    def env_var(name: str, default: str | None = None) -> str:
        if name in environ:
            return environ[name]
        assert default is not None, name
        return default

    return jinja2.Environment().from_string(dev_schema_expression(key)).render(
        env_var=env_var, modules={"re": re}
    )


@pytest.mark.parametrize(
    ("environ", "schema"),
    [
        ({"USER": "ada"}, "shop__widgets__dev_ada"),
        ({"USER": "Ada.Lovelace-Byron"}, "shop__widgets__dev_ada_lovelace_byron"),
        ({"USER": "zoë o'neil"}, "shop__widgets__dev_zo__o_neil"),
        ({"USER": "ada", "DATAMESH_DEV_SCHEMA": "CI-42"}, "shop__widgets__dev_ci_42"),
        ({}, "shop__widgets__dev_dev"),
        ({"USER": "x" * 80}, ("shop__widgets__dev_" + "x" * 80)[:63]),
    ],
)
def test_the_dev_schema_is_a_safe_identifier_from_the_user_name(environ: dict[str, str], schema: str) -> None:
    rendered = render_dev_schema("shop__widgets", environ)
    assert rendered == schema
    assert re.fullmatch(r"[a-z][a-z0-9_]*", rendered) and len(rendered.encode()) <= 63


def test_the_longest_key_keeps_its_dev_marker_within_63_bytes() -> None:
    key = "d" * 20 + "__" + "p" * 26  # 48 bytes, the most a spec allows
    rendered = render_dev_schema(key, {"USER": "a_rather_long_user_name"})
    assert rendered.startswith(f"{key}__dev_") and len(rendered) == 63


# --- inline specs ------------------------------------------------------------------------------------


def test_free_text_round_trips_through_yaml_unchanged_and_unexecuted(tmp_path: Path) -> None:
    widgets = base_spec(description=TRICKY)
    output = widgets["outputs"][0]
    output["description"] = TRICKY
    output["columns"].append(
        {
            "name": "colour",
            "type": "text",
            "description": TRICKY,
            "constraints": {"accepted_values": ["it's", "{{ x }}", 3]},
        }
    )
    output["quality_rules"] = [{"name": "has_id", "description": TRICKY, "condition": "widget_id <> ''"}]
    files = render(make_mesh(tmp_path, widgets), "shop__widgets")

    model = models_of(files)["widgets"]
    colour = model["columns"][1]
    assert as_dbt_shows(model["description"]) == TRICKY
    assert as_dbt_shows(colour["description"]) == TRICKY
    values = dbt_tests_of(colour)["accepted_values"]["values"]
    assert [as_dbt_shows(v) if isinstance(v, str) else v for v in values] == ["it's", "{{ x }}", 3]
    rule = yaml.safe_load(files["tests/quality/_quality.yml"])["data_tests"][0]
    assert as_dbt_shows(rule["description"]) == TRICKY


@pytest.mark.parametrize("text", ["plain", "", "a { b } c", "100% {x}", "}} %} #}", "{", "{{", "{{{%{#"])
def test_jinja_literal_renders_back_to_the_text(text: str) -> None:
    assert as_dbt_shows(jinja_literal(text)) == text
    if "{" not in text:
        assert jinja_literal(text) == text


def test_a_composite_primary_key_is_a_constraint_and_a_unique_combination_test(tmp_path: Path) -> None:
    widgets = base_spec()
    output = widgets["outputs"][0]
    output["primary_key"] = ["widget_id", "version"]
    output["columns"].append({"name": "version", "type": "int"})
    model = models_of(render(make_mesh(tmp_path, widgets), "shop__widgets"))["widgets"]

    assert model["constraints"] == [{"type": "primary_key", "columns": ["widget_id", "version"]}]
    key_test = {"datamesh_platform.unique_combination": {"columns": ["widget_id", "version"]}}
    assert dbt_tests_of(model) == key_test
    for column in model["columns"]:  # each key column is tested not null; neither alone unique
        assert dbt_tests_of(column).keys() >= {"not_null"}
        assert "unique" not in dbt_tests_of(column)


def test_min_and_max_become_a_range_test_and_check_constraints(tmp_path: Path) -> None:
    widgets = base_spec()
    widgets["outputs"][0]["columns"].append(
        {"name": "user", "type": "numeric(5,2)", "constraints": {"min": 0.5, "max": 10}}
    )
    column = models_of(render(make_mesh(tmp_path, widgets), "shop__widgets"))["widgets"]["columns"][1]
    assert dbt_tests_of(column) == {"datamesh_platform.in_range": {"min_value": 0.5, "max_value": 10}}
    # The name is quoted: `user` unquoted would be PostgreSQL's current_user.
    assert column["constraints"] == [
        {"type": "check", "expression": '"user" >= 0.5'},
        {"type": "check", "expression": '"user" <= 10'},
    ]


def test_a_bound_that_is_not_a_finite_number_is_refused_naming_the_field(tmp_path: Path) -> None:
    widgets = base_spec()
    size = {"name": "size", "type": "int", "constraints": {"max": float("inf")}}
    widgets["outputs"][0]["columns"].append(size)
    mesh = make_mesh(tmp_path, widgets)
    where = r"dbt/shop/widgets/data_product.yaml: outputs.widgets.columns.size.constraints.max"
    with pytest.raises(SpecError, match=rf"{where}: inf is not allowed; use a finite number"):
        render_dbt_project(mesh.products[0], mesh)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({}, {"severity": "error", "error_if": ">0", "warn_if": ">0"}),
        ({"threshold": 3, "severity": "warn"}, {"severity": "warn", "error_if": ">3", "warn_if": ">3"}),
        ({"threshold": 5, "severity": "error"}, {"severity": "error", "error_if": ">5", "warn_if": ">5"}),
    ],
)
def test_quality_rule_threshold_and_severity_land_in_the_test_config(
    tmp_path: Path, rule: dict[str, Any], expected: dict[str, Any]
) -> None:
    widgets = base_spec()
    widgets["outputs"][0]["quality_rules"] = [{"name": "has_id", "condition": "widget_id <> ''", **rule}]
    sql = render(make_mesh(tmp_path, widgets), "shop__widgets")["tests/quality/widgets__has_id.sql"]
    assert config_of(sql).items() >= expected.items()
    # The failing rows are those for which the condition is false or null.
    assert "from {{ ref('widgets') }}\nwhere (\nwidget_id <> ''\n) is not true" in sql


def test_a_query_rule_reads_outputs_and_inputs_by_bare_name(tmp_path: Path) -> None:
    upstream = base_spec(name="stock", domain="depot")
    upstream["outputs"][0]["name"] = "levels"
    levels = {"domain": "depot", "product": "stock", "output": "levels", "major": 1}
    widgets = base_spec(inputs={"products": [levels]})
    widgets["outputs"][0]["quality_rules"] = [
        {
            "name": "all_stocked",
            "query": "SELECT COUNT(*) FROM widgets w LEFT JOIN levels l USING (widget_id) "
            "WHERE l.widget_id IS NULL",
            "threshold": 2,
        }
    ]
    files = render(make_mesh(tmp_path, upstream, widgets), "shop__widgets")
    sql = files["tests/quality/widgets__all_stocked.sql"]
    assert "widgets as (\n    select * from {{ ref('widgets') }}\n)" in sql
    assert "levels as (\n    select * from {{ source('depot__stock', 'levels') }}\n)" in sql
    # The rule's count, whatever its column is called, is what dbt compares with the threshold.
    assert config_of(sql)["fail_calc"] == "coalesce(sum(failing_rows), 0)"
    assert ") as rule_result (failing_rows)" in sql


def test_a_query_rule_naming_an_ambiguous_output_is_refused(tmp_path: Path) -> None:
    upstream = base_spec(name="stock", domain="depot")  # also has an output called `widgets`
    same_name = {"domain": "depot", "product": "stock", "output": "widgets", "major": 1}
    widgets = base_spec(inputs={"products": [same_name]})
    widgets["outputs"][0]["quality_rules"] = [{"name": "some", "query": "select count(*) from widgets"}]
    mesh = make_mesh(tmp_path, upstream, widgets)
    with pytest.raises(SpecError, match=r"quality_rules.some.query: 'widgets' is ambiguous"):
        render_dbt_project(mesh.select("shop__widgets")[0], mesh)


def test_the_model_skeleton_lists_the_contract_and_the_inputs(tmp_path: Path) -> None:
    widgets = base_spec()
    widgets["outputs"][0]["columns"].append({"name": "price", "type": "decimal(8, 2)"})
    mesh = make_mesh(tmp_path, widgets)
    entry: ProductEntry = mesh.products[0]
    skeleton = render_dbt_project(entry, mesh).owned["dbt/shop/widgets/models/widgets.sql"]
    assert "{{ source('shop_ops', 'widgets') }}" in skeleton
    assert skeleton.endswith(
        "select\n    cast(null as text) as widget_id,\n"
        "    cast(null as numeric(8,2)) as price\nwhere false\n"
    )
    # The explanation is a Jinja comment: the source() in it is text for the team, not a dependency.
    comment = skeleton[skeleton.index("{#") : skeleton.index("#}") + 2]
    assert as_dbt_shows(comment) == ""


TRICKY_TEXTS = [
    "plain words, 'quotes', \"double\", #hash, a: b, - dash, {braces}, yes, null, 0777, 2024-01-01, ~",
    "ünïcödé — ✓ 日本語 \u00a0nbsp " * 8,  # long: folded at the width
    "line one\nline two\n",
    "a\ttab " * 30,
    "emoji 😀 beyond the BMP",
    "next line \x85 and line separator \u2028",
    "x" * 250,
]


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_generated_yaml_is_byte_identical_to_pyyaml(text: str) -> None:
    data = {"models": [{"name": "m", "description": text, "meta": {text: [text, 1, 2.5, True, None]}}]}
    expected = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False)
    assert generated_yaml.dump_yaml(data) == expected


# Pieces of text that change how a YAML emitter writes a scalar: quotes, indicators, line breaks,
# tabs and spaces next to them, lengths that fold at the width, non-ASCII, beyond the BMP, controls,
# texts that read back as something else.
YAML_PIECES = [
    "alpha", "be", " ", "\n", "\n\n", "x" * 30, "é", ": ", "- ", "#", "'", '"', " \n", "\n ", "\t", "  ",
    "a" * 95, "日本", "{", "yes", "0777", "ü" * 40, "*", "&", "!", "%", "@", "`", "😀", "\x85", "\u2028", "\\",
    "true", "1.5", "~", "null", "2024-01-01", "<<", "?", "[", "|", ">", "-", ":", "\ufeff", "\x00", "\r", "\xa0",
]


def test_generated_yaml_is_byte_identical_to_pyyaml_on_generated_texts() -> None:
    """Texts as descriptions, list items and mapping keys (long ones too), 4,000 of them from a
    fixed seed: dump_yaml gives PyYAML's bytes, whether it writes them itself or not."""
    randomly = random.Random(20261130)
    written_here = 0
    for _ in range(4000):
        text = "".join(randomly.choice(YAML_PIECES) for _ in range(randomly.randint(1, 30)))
        key = "".join(randomly.choice(YAML_PIECES) for _ in range(randomly.randint(1, 4)))
        data = {"models": [{"name": "m", "description": text, "columns": [{"name": "c", "description": key + text}],
                            "meta": {key: [text, 1, True, None], "k": {text[:20]: key}}}]}
        expected = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False)
        assert generated_yaml.dump_yaml(data) == expected, (text, key)
        written_here += generated_yaml.written_here(data)
    # the comparison is not vacuous: a third were written here (the others have a key PyYAML
    # writes as `? key`, one of these pieces' line breaks in it)
    assert written_here > 1000


def _random_data(randomly: random.Random, depth: int = 0) -> object:
    """Mappings, lists (in lists too), empty ones, and scalars of every type the renderers write."""
    choice = randomly.random()
    if depth > 4 or choice < 0.5:
        if randomly.random() < 0.7:
            return "".join(randomly.choice(YAML_PIECES) for _ in range(randomly.randint(0, 12)))
        return randomly.choice([0, 1, -3, 10**30, 2.5, 1e20, -0.0, float("inf"), float("nan"), True, False, None])
    if choice < 0.75:
        keys = ["name", "k" * 122, "k" * 123, 1, True, None, 2.5, "yes", "a: b", "é"]
        return {randomly.choice(keys): _random_data(randomly, depth + 1) for _ in range(randomly.randint(0, 4))}
    return [_random_data(randomly, depth + 1) for _ in range(randomly.randint(0, 4))]


def test_generated_yaml_is_byte_identical_to_pyyaml_on_any_layout() -> None:
    """Nested at every depth, lists in lists, empty collections, numbers, booleans and None as
    values and keys, keys on either side of the length PyYAML writes as `? key`: 3,000 documents."""
    randomly = random.Random(1130)
    written_here = 0
    for _ in range(3000):
        data = {"top": _random_data(randomly), "second": _random_data(randomly)}
        expected = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False)
        assert generated_yaml.dump_yaml(data) == expected, data
        written_here += generated_yaml.written_here(data)
    assert written_here > 1500


def test_a_dict_written_twice_is_left_to_pyyaml_and_its_anchors() -> None:
    shared = {"severity": "error"}
    data = {"tests": [{"config": shared}, {"config": shared}]}
    assert not generated_yaml.written_here(data)
    assert "&id001" in generated_yaml.dump_yaml(data)


def test_a_multi_line_description_is_written_here() -> None:
    data = {"models": [{"name": "m", "description": "Orders, one row each.\n\nRefunds are rows of their own.\n"}]}
    assert generated_yaml.written_here(data)


def test_the_example_projects_render_as_pyyaml_writes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = load_mesh(REPO_ROOT)
    fast = [render_dbt_project(entry, mesh).generated for entry in mesh.products]
    monkeypatch.setattr(generated_yaml, "dump_yaml", lambda data: yaml.safe_dump(data, **generated_yaml.OPTIONS))
    assert [render_dbt_project(entry, mesh).generated for entry in mesh.products] == fast
