"""Turn the cookiecutter answers into a new data product: validate, write the spec, render.

Cookiecutter renders hook scripts with Jinja before running them, so this file holds no template
syntax and never sees an answer as code: cookiecutter writes the answers as data (answers.json,
rendered with `cookiecutter | jsonify`) into the staging folder it generated, and this hook runs in
that folder and json-loads them.

Cookiecutter wants to generate one top-level folder; the product belongs under dbt/<domain>/<name>
and dags/. So cookiecutter generates only the staging folder <repo>/.datamesh-new-product, and this
hook:
  1. validates the answers with the generator's own spec model (generator.spec.model.DataProduct) and
     static policies, and checks the product does not exist yet; nothing is written before that;
  2. writes dbt/<domain>/<name>/data_product.yaml (built as a dict, written with yaml.safe_dump)
     and .cookiecutter.json (the answers, usable with `cookiecutter --replay-file`);
  3. renders the product's dbt project and DAG with `datamesh --root <repo> render <domain>/<name>`;
  4. removes the staging folder.
If 2 or 3 fails, what was written is removed again; cookiecutter removes the staging folder of any
failed hook. The repo is left as it was.

Exit codes (the generator's): 2 bad answers, 1 a step failed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ANSWERS_FILE = "answers.json"
REPLAY_FILE = ".cookiecutter.json"
SCHEMA_LINE = "# yaml-language-server: $schema=../../../generator/schemas/data_product.schema.json\n"
DOMAIN_SCHEMA_LINE = "# yaml-language-server: $schema=../generator/schemas/domain.schema.json\n"
FIRST_VERSION = "0.1.0"
RUN_DATAMESH = "import sys; from generator.cli.main import main; sys.argv[0] = 'datamesh'; sys.exit(main())"

# Where each answer lands in the spec: how a pydantic error location is named back to the user.
ANSWER_OF_FIELD: dict[tuple[Any, ...], str] = {
    ("name",): "name",
    ("domain",): "domain",
    ("owner", "team"): "owner_team",
    ("owner", "email"): "owner_email",
    ("description",): "description",
    ("classification",): "classification",
    ("schedule",): "schedule",
    ("retention_days",): "retention_days",
    ("sla", "freshness_hours"): "freshness_hours",
    ("outputs", 0, "name"): "output_name",
}


class Refused(Exception):
    """The answers cannot become a product; the message says which answer and why."""


def main() -> int:
    staging = Path.cwd()
    answers: dict[str, Any] = json.loads((staging / ANSWERS_FILE).read_text(encoding="utf-8"))
    root = Path(answers["_output_dir"]).resolve()
    try:
        spec = checked_spec(answers, root)
    except Refused as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    try:
        create_product(root, spec, answers)
    except Exception as exc:  # noqa: BLE001 - any failure rolls back; the message says what failed
        print(f"Error: {exc}\nNothing was kept: the repo is as it was.", file=sys.stderr)
        return 1
    shutil.rmtree(staging)
    print_next_steps(spec)
    return 0


# --- 1. validate ----------------------------------------------------------------------------------


def build_spec(answers: dict[str, Any]) -> dict[str, Any]:
    """The spec as data. Answers are carried as values only; YAML quoting is yaml.safe_dump's job."""
    return {
        "spec_version": 1,
        "name": answers["name"],
        "domain": answers["domain"],
        "version": FIRST_VERSION,
        "description": answers["description"],
        "owner": {"team": answers["owner_team"], "email": answers["owner_email"]},
        "classification": answers["classification"],
        "retention_days": answers["retention_days"],
        "schedule": answers["schedule"].strip() or None,
        "sla": {"freshness_hours": answers["freshness_hours"]},
        "outputs": [
            {
                "name": answers["output_name"],
                "description": f"The first output of {answers['name']}: describe what one row is.",
                "primary_key": ["id"],
                "columns": [
                    {
                        "name": "id",
                        "type": "text",
                        "description": "Identifies a row.",
                        "constraints": {"not_null": True, "unique": True},
                    },
                    {
                        "name": "loaded_at",
                        "type": "timestamp",
                        "description": "When the row was loaded.",
                        "constraints": {"not_null": True},
                    },
                ],
            }
        ],
    }


def checked_spec(answers: dict[str, Any], root: Path) -> dict[str, Any]:
    """The spec dict, once the generator's own rules accept it; else Refused naming each answer."""
    rules = _import_generator()
    if not (root / "dbt").is_dir():
        raise Refused(
            f"{root} has no dbt/ folder: run cookiecutter from the repo root (or pass -o <repo root>)"
        )
    spec = build_spec(answers)
    try:
        product = rules.DataProduct.model_validate(spec)
    except rules.ValidationError as exc:
        lines = [_answer_problem(err, answers) for err in exc.errors()]
        raise Refused(
            f"{len(lines)} answer(s) break the data product spec's rules; nothing was written:\n"
            + "\n".join(f"  {line}" for line in lines)
        ) from None
    # Numbers as the spec model read them (cookiecutter answers are text).
    spec["retention_days"] = product.retention_days
    spec["sla"]["freshness_hours"] = _plain_number(product.sla.freshness_hours)

    existing = [
        path
        for path in (root / "dbt" / product.domain / product.name, root / "dags" / f"{product.key}.py")
        if path.exists()
    ]
    if existing:
        shown = ", ".join(str(p.relative_to(root)) for p in existing)
        raise Refused(
            f"{product.domain}/{product.name} exists already ({shown}); nothing was written. "
            "Choose another name, or delete that product first to re-create it."
        )
    try:
        rules.load_mesh(root)
        policies = rules.load_policies(root, product.domain)
    except rules.UserError as exc:
        raise Refused(f"the repo's specs or policies have problems; fix them first.\n{exc}") from None
    findings = [f for f in rules.evaluate_spec(policies, product) if not f.passed]
    blocking = [f for f in findings if f.enforcement == "blocking"]
    if blocking:
        raise Refused(
            "the answers break blocking governance policies; nothing was written:\n"
            + "\n".join(f"  [{f.policy}] {f.message}" for f in blocking)
        )
    for finding in findings:
        print(f"warning: [{finding.policy}] {finding.message}")
    registered = root / "domains" / f"{product.domain}.yaml"
    if registered.is_file():
        teams = rules.load_domain(registered, f"domains/{product.domain}.yaml").team_names
        if product.owner.team not in teams:
            raise Refused(
                f"owner_team {product.owner.team!r} is not a team of domain {product.domain!r} "
                f"(domains/{product.domain}.yaml); allowed: {', '.join(teams)}. Nothing was written."
            )
    return spec


def _answer_problem(err: dict[str, Any], answers: dict[str, Any]) -> str:
    message = err["msg"].removeprefix("Value error, ")
    answer = ANSWER_OF_FIELD.get(tuple(err["loc"]))
    if answer is None:  # a rule across fields (e.g. domain and name too long together)
        return message
    value = answers[answer]
    # The spec's messages usually open with the value: "name 'Orders-X' is not a safe identifier".
    if message.startswith(repr(value)):
        return f"{answer} {message}"
    return f"{answer} {value!r}: {message}"


def _plain_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _import_generator() -> SimpleNamespace:
    """The generator's own rules. Imported here so a missing install becomes a clear message."""
    try:
        from pydantic import ValidationError

        from generator.errors import UserError
        from generator.governance.policies import evaluate_spec, load_policies
        from generator.spec.domain import load_domain, minimal_domain
        from generator.spec.mesh import load_mesh
        from generator.spec.model import DataProduct
    except ImportError as exc:
        raise Refused(
            f"this template needs the datamesh generator, which {sys.executable} cannot import ({exc}). "
            "Run the repo's own .venv/bin/cookiecutter (`make test` or `make demo` sets it up)."
        ) from None
    return SimpleNamespace(
        DataProduct=DataProduct,
        ValidationError=ValidationError,
        UserError=UserError,
        load_mesh=load_mesh,
        load_domain=load_domain,
        minimal_domain=minimal_domain,
        load_policies=load_policies,
        evaluate_spec=evaluate_spec,
    )


# --- 2-3. write and render ------------------------------------------------------------------------


def create_product(root: Path, spec: dict[str, Any], answers: dict[str, Any]) -> None:
    domain, name = spec["domain"], spec["name"]
    domain_dir = root / "dbt" / domain
    product_dir = domain_dir / name
    dag_file = root / "dags" / f"{domain}.py"  # the domain's DAGs, this product's among them
    dag_before = dag_file.read_text(encoding="utf-8") if dag_file.is_file() else None
    new_domain = not domain_dir.exists()
    new_dags_dir = not dag_file.parent.exists()
    # A repo with a domain registry needs the new domain's file: the smallest valid one, owned by
    # the product's team (the team completes it: members, on-call, description).
    domain_file = root / "domains" / f"{domain}.yaml"
    new_domain_file = (root / "domains").is_dir() and not domain_file.exists()
    try:
        if new_domain_file:
            owner = spec["owner"]
            data = _import_generator().minimal_domain(domain, owner["team"], owner["email"])
            domain_file.write_text(DOMAIN_SCHEMA_LINE + _dump(data), encoding="utf-8")
        product_dir.mkdir(parents=True)
        (product_dir / "data_product.yaml").write_text(spec_yaml(spec), encoding="utf-8")
        replay = {"cookiecutter": {k: v for k, v in answers.items() if not k.startswith("_")}}
        (product_dir / REPLAY_FILE).write_text(
            json.dumps(replay, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        # The `datamesh` command, run as its console script does, by the Python running this hook.
        # -P: import the installed generator, not a `generator/` folder in the working directory.
        render = subprocess.run(
            [sys.executable, "-P", "-c", RUN_DATAMESH, "--root", str(root), "render", f"{domain}/{name}"],
            cwd=root,
        )
        if render.returncode != 0:
            raise RuntimeError(f"`datamesh render {domain}/{name}` failed (exit {render.returncode})")
    except BaseException:
        # None of these existed before (checked above): remove them whole. Cleaning up must not
        # hide the error that made it necessary.
        shutil.rmtree(domain_dir if new_domain else product_dir, ignore_errors=True)
        if new_domain_file:
            domain_file.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            if new_dags_dir:
                shutil.rmtree(dag_file.parent)
            elif dag_before is None:
                dag_file.unlink(missing_ok=True)
            else:  # the domain's other DAGs stay as they were
                dag_file.write_text(dag_before, encoding="utf-8")
        raise


def spec_yaml(spec: dict[str, Any]) -> str:
    return SCHEMA_LINE + _dump(spec)


def _dump(data: dict[str, Any]) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        """safe_dump, with multi-line text as a readable `|` block (PyYAML quotes it when it must)."""

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)


def print_next_steps(spec: dict[str, Any]) -> None:
    domain, name, output = spec["domain"], spec["name"], spec["outputs"][0]["name"]
    base = f"dbt/{domain}/{name}"
    files = [
        (f"{base}/data_product.yaml", "the spec: yours to edit (columns, inputs, access, ...)"),
        (f"{base}/models/{output}.sql", "the model: replace the skeleton query"),
        (f"{base}/{REPLAY_FILE}", "your answers: `cookiecutter --replay-file` re-creates the product"),
        (f"dags/{domain}.py", "the DAGs of the domain, this one's among them (generated)"),
    ]
    width = max(len(path) for path, _ in files)
    print(f"\nCreated data product {domain}/{name}:")
    for path, what in files:
        print(f"  {path.ljust(width)}  {what}")
    print(f"Next: edit the spec, then `datamesh validate {domain}/{name}` and `datamesh render {domain}/{name}`.")


if __name__ == "__main__":
    sys.exit(main())
