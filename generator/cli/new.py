"""`datamesh new`: create a data product, each answer checked as it is typed.

The one implementation of "answers -> checked spec -> written and rendered product": the cookiecutter
template's hook calls `from_cookiecutter` here, `datamesh new` calls `check_all` and `create`. Each
answer is checked at its question by the spec's own rules (generator/spec/new_product.py: the
model's validators on a candidate spec), the mesh (a name already taken), the domain registry and
the blocking static policies of the candidate's domain that read that answer's field (a retention
below finance's seven years is refused at the retention question).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from generator.cli.context import Context, pass_ctx
from generator.errors import CheckFailed, SpecError, UserError
from generator.layout import DAGS_DIR, DBT_DIR, DOMAINS_DIR, SPEC_FILENAME

if TYPE_CHECKING:
    from generator.spec.mesh import Mesh

# generator.spec.new_product (pydantic) is imported inside the functions: `datamesh check` imports
# this module through main.py and must stay light.
REPLAY_FILE = ".cookiecutter.json"


class Refused(UserError):
    """The answers cannot become a product; the message says which answer and why."""


class Checker:
    """Checks answers against the spec, the mesh, the registry and the domain's policies."""

    def __init__(self, root: Path):
        self.root = root
        self._policies: dict[str, Any] = {}

    def problems(self, key: str, given: dict[str, str]) -> list[str]:
        """What is wrong with answer `key` (the answers before it given, the rest defaulted)."""
        from generator.spec import new_product as np

        answers = np.with_defaults(given, self.root)
        value = answers[key]
        _, product, problems = np.validated(answers)
        found = list(problems.get(key, []))
        if key in np.ACROSS_FIELDS:
            found += problems.get("", [])
        if key == "name" and not found:
            where = np.name_taken(self.root, value)
            if where:
                found.append(f"name {value!r} is taken in the mesh by {where}: choose another name")
        if key == "domain" and not found:
            unknown = np.unknown_domain(self.root, value)
            if unknown:
                found.append(unknown)
        if key == "owner_team" and not found:
            teams = np.domain_teams(self.root, answers["domain"])
            if teams is not None and value not in teams:
                found.append(
                    f"owner_team {value!r} is not a team of domain {answers['domain']!r} "
                    f"({DOMAINS_DIR}/{answers['domain']}.yaml); allowed: {', '.join(teams)}"
                )
        if found or product is None:
            return found
        field = next(q.field for q in np.QUESTIONS if q.key == key)
        return [f"{key} {value!r}: {line}" for line in self.blocking(product, field)]

    def blocking(self, product: Any, field: str | None = None) -> list[str]:
        """The blocking static policies the candidate fails: all, or those reading `field`."""
        from generator.governance.policies import evaluate_spec

        policies = self.policies(product.domain)
        reading = {
            p.name
            for p in policies.policies
            if field is None or f"product.{field}" in f"{p.model.when} {p.model.assert_}"
        }
        return [
            f"[{f.policy}] {f.message}"
            for f in evaluate_spec(policies, product)
            if not f.passed and f.enforcement == "blocking" and f.policy in reading
        ]

    def warnings(self, product: Any) -> list[str]:
        from generator.governance.policies import evaluate_spec

        return [
            f"[{f.policy}] {f.message}"
            for f in evaluate_spec(self.policies(product.domain), product)
            if not f.passed and f.enforcement != "blocking"
        ]

    def policies(self, domain: str) -> Any:
        if domain not in self._policies:
            from generator.governance.policies import load_policies

            try:
                self._policies[domain] = load_policies(self.root, domain)
            except UserError as exc:
                raise Refused(f"the repo's policies have problems; fix them first.\n{exc}") from None
        return self._policies[domain]


def check_all(
    root: Path,
    given: dict[str, str],
    echo=click.echo,
    run_from: str = "run datamesh new from the repo root (or pass --root)",
) -> tuple[dict[str, Any], dict[str, str], Mesh]:
    """Every answer checked at once (the cookiecutter hook, `--no-input`): the spec to write, the
    answers and the mesh as loaded to check them (`create` renders from it), or Refused listing
    every problem. Nothing is written."""
    from generator.spec import new_product as np

    if not (root / DBT_DIR).is_dir():
        raise Refused(f"{root} has no dbt/ folder: {run_from}")
    answers = np.with_defaults(given, root)
    spec, product, problems = np.validated(answers)
    if product is None:
        lines = [line for key in ("", *np.KEYS) for line in problems.get(key, [])]
        raise Refused(
            f"{len(lines)} answer(s) break the data product spec's rules; nothing was written:\n"
            + "\n".join(f"  {line}" for line in lines)
        )
    existing = [
        path
        for path in (root / DBT_DIR / product.domain / product.name, root / DAGS_DIR / f"{product.key}.py")
        if path.exists()
    ]
    if existing:
        shown = ", ".join(str(p.relative_to(root)) for p in existing)
        raise Refused(
            f"{product.domain}/{product.name} exists already ({shown}); nothing was written. "
            "Choose another name, or delete that product first to re-create it."
        )
    checker = Checker(root)
    taken = checker.problems("name", answers)
    unknown = np.unknown_domain(root, product.domain)
    if unknown:
        taken.append(unknown)
    if taken:
        raise Refused("\n".join(taken) + ". Nothing was written.")
    try:
        from generator.spec.mesh import load_mesh

        mesh = load_mesh(root)
    except UserError as exc:
        raise Refused(f"the repo's specs have problems; fix them first.\n{exc}") from None
    blocking = checker.blocking(product)
    if blocking:
        raise Refused(
            "the answers break blocking governance policies; nothing was written:\n"
            + "\n".join(f"  {line}" for line in blocking)
        )
    outside = checker.problems("owner_team", answers)
    if outside:
        raise Refused("\n".join(outside) + ". Nothing was written.")
    for line in checker.warnings(product):
        echo(f"warning: {line}")
    return spec, answers, mesh


def check_imported(root: Path, imported: Any) -> Mesh:
    """An imported contract's spec checked as `check_all` checks answers: a free name, its inputs in
    the mesh, its team in the domain registry, the blocking policies. Returns the mesh as loaded to
    check it (`create` renders from it). SpecError lists every problem, each at its place in the
    contract; nothing is written."""
    from generator.spec import new_product as np
    from generator.spec.mesh import ProductEntry, check_inputs, load_mesh

    product = imported.product
    if not (root / DBT_DIR).is_dir():
        raise Refused(f"{root} has no dbt/ folder: run datamesh from the repo root (or pass --root)")
    problems = []
    for path in (root / DBT_DIR / product.domain / product.name, root / DAGS_DIR / f"{product.key}.py"):
        if path.exists():
            problems.append(imported.problem(("name",), f"{product.domain}/{product.name} exists already "
                                                        f"({path.relative_to(root)})"))
    where = np.name_taken(root, product.name)
    if where and not problems:
        problems.append(imported.problem(("name",), f"name {product.name!r} is taken in the mesh by {where}"))
    try:
        mesh = load_mesh(root)
    except UserError as exc:
        raise Refused(f"the repo's specs have problems; fix them first.\n{exc}") from None
    entry = ProductEntry(product, root / DBT_DIR / product.domain / product.name / SPEC_FILENAME, "")
    for found in check_inputs([entry], mesh.products):
        index = int(found.path.removeprefix("inputs.products[").rstrip("]"))
        problems.append(imported.problem(("inputs", "products", index), found.message))
    teams = np.domain_teams(root, product.domain)
    if teams is not None and product.owner.team not in teams:
        problems.append(
            imported.problem(("owner", "team"), f"team {product.owner.team!r} is not a team of domain "
                                                f"{product.domain!r} ({DOMAINS_DIR}/{product.domain}.yaml); "
                                                f"allowed: {', '.join(teams)}")
        )
    problems += [imported.problem((), line) for line in Checker(root).blocking(product)]
    if problems:
        raise SpecError(problems)
    return mesh


def create(root: Path, spec: dict[str, Any], answers: dict[str, str] | None, mesh: Mesh, comment: str = "") -> None:
    """Write the spec and the answers (none for an imported contract), render the product (its skeleton
    models with it) from `mesh` (the specs checked before) and the new spec; on any failure remove
    what was written. `comment`: lines for the spec's top."""
    domain, name = spec["domain"], spec["name"]
    domain_dir = root / DBT_DIR / domain
    product_dir = domain_dir / name
    dag_file = root / DAGS_DIR / f"{domain}.py"  # the domain's DAGs, this product's among them
    dag_before = dag_file.read_text(encoding="utf-8") if dag_file.is_file() else None
    new_domain = not domain_dir.exists()
    new_dags_dir = not dag_file.parent.exists()
    try:
        product_dir.mkdir(parents=True)
        (product_dir / SPEC_FILENAME).write_text(spec_yaml(spec, comment), encoding="utf-8")
        if answers is not None:
            replay = {"cookiecutter": {k: v for k, v in answers.items() if not k.startswith("_")}}
            replay_text = json.dumps(replay, indent=2, ensure_ascii=False) + "\n"
            (product_dir / REPLAY_FILE).write_text(replay_text, encoding="utf-8")
        try:
            _render_new(root, mesh, f"{domain}/{name}")
        except Exception as exc:
            raise RuntimeError(f"rendering {domain}/{name} failed: {exc}") from exc
    except BaseException:
        # None of these existed before (checked): remove them whole, without hiding the error.
        shutil.rmtree(domain_dir if new_domain else product_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            if new_dags_dir:
                shutil.rmtree(dag_file.parent)
            elif dag_before is None:
                dag_file.unlink(missing_ok=True)
            else:  # the domain's other DAGs stay as they were
                dag_file.write_text(dag_before, encoding="utf-8")
        raise


def _render_new(root: Path, mesh: Mesh, name: str) -> None:
    """What `datamesh render <name>` writes for a new product: its files, its domain's DAG file and
    those of the products it reads (their exposures list it), rendered here from the specs already
    loaded and the new one: not a second process loading every spec again (half of a `new` at 1,000
    products). The files are the same bytes: a render's output does not depend on which specs,
    beyond those it is made of, are loaded (tests/test_incremental.py)."""
    from generator.render.mesh import render_products, stale_scope, with_producers
    from generator.render.write import apply
    from generator.spec.mesh import load_products

    grown, new = load_products(root, [name], {}, loaded_before=mesh.products)
    entries = with_producers(grown, new)
    apply(root, render_products(grown, entries), stale_scope(grown, entries))


def spec_yaml(spec: dict[str, Any], comment: str = "") -> str:
    from generator.spec import new_product as np
    from generator.spec.yaml_text import to_yaml

    return np.SCHEMA_LINE + comment + to_yaml(spec)


def summary(spec: dict[str, Any], replay_hint: str) -> str:
    """The files written and the next three steps (the skeleton's empty output is the first)."""
    domain, name, output = spec["domain"], spec["name"], spec["outputs"][0]["name"]
    base = f"{DBT_DIR}/{domain}/{name}"
    files = [
        (f"{base}/{SPEC_FILENAME}", "the spec: yours to edit (columns, inputs, access, ...)"),
        (f"{base}/models/{output}.sql", "the model: replace the skeleton query"),
        (f"{base}/{REPLAY_FILE}", f"your answers: {replay_hint}"),
        (f"{DAGS_DIR}/{domain}.py", "the DAGs of the domain, this one's among them (generated)"),
    ]
    width = max(len(path) for path, _ in files)
    lines = [f"\nCreated data product {domain}/{name}:"]
    lines += [f"  {path.ljust(width)}  {what}" for path, what in files]
    lines += [
        "Next:",
        f"  1. Write your query in {base}/models/{output}.sql. The skeleton returns no rows, and the gate's",
        "     output_not_empty policy blocks the first publish until the model returns rows.",
        f"  2. Describe the real columns, inputs and access in {base}/{SPEC_FILENAME}, then",
        f"     `datamesh render {domain}/{name}` and `datamesh validate {domain}/{name}`.",
        f"  3. Run it once end to end with `datamesh demo --product {domain}/{name}`, then commit the spec,",
        "     the model and the rendered files together (CI runs `datamesh check`).",
    ]
    return "\n".join(lines)


def from_cookiecutter(staging: Path) -> int:
    """The cookiecutter hook: the answers cookiecutter wrote as JSON into its staging folder."""
    from generator.spec import new_product as np

    answers: dict[str, Any] = json.loads((staging / "answers.json").read_text(encoding="utf-8"))
    root = Path(answers["_output_dir"]).resolve()
    given = {k: str(v) for k, v in answers.items() if k in np.KEYS}
    try:
        spec, _, mesh = check_all(root, given, run_from="run cookiecutter from the repo root (or pass -o <repo root>)")
    except Refused as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    try:
        create(root, spec, {**given, **{k: v for k, v in answers.items() if k not in np.KEYS}}, mesh)
    except Exception as exc:  # noqa: BLE001 - any failure rolls back; the message says what failed
        print(f"Error: {exc}\nNothing was kept: the repo is as it was.", file=sys.stderr)
        return 1
    shutil.rmtree(staging)
    print(summary(spec, "`cookiecutter --replay-file` re-creates the product"))
    return 0


# --- the command ----------------------------------------------------------------------------------


def _parse_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    from generator.spec import new_product as np

    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in np.KEYS:
            raise Refused(f"{pair!r}: give answers as key=value, with key one of {', '.join(np.KEYS)}")
        given[key] = value
    return given


@click.command("new")
@click.option("--no-input", "no_input", is_flag=True, help="Ask nothing: the ANSWERS given, defaults for the rest.")
@click.argument("answers", nargs=-1)
@pass_ctx
def new(ctx: Context, no_input: bool, answers: tuple[str, ...]) -> None:
    """Create a data product: ten questions, each answer checked as it is typed.

    ANSWERS are key=value pairs (name=orders_daily domain=sales ...); with --no-input the rest take
    their defaults and every answer is checked at once. Nothing is written until all pass."""
    ctx.require_repo()
    given = _parse_pairs(answers)
    if not no_input:
        given = _ask(ctx.root, given)
    spec, answers_all, mesh = check_all(ctx.root, given)
    try:
        create(ctx.root, spec, answers_all, mesh)
    except Exception as exc:  # noqa: BLE001 - rolled back; say what failed
        raise CheckFailed(f"{exc}\nNothing was kept: the repo is as it was.") from None
    click.echo(summary(spec, "`cookiecutter --replay-file` re-creates the product"))


def _ask(root: Path, given: dict[str, str]) -> dict[str, str]:
    from generator.spec import new_product as np

    checker = Checker(root)
    answered: dict[str, str] = {}
    for question in np.QUESTIONS:
        if question.key in given:
            answered[question.key] = given[question.key]
            continue
        prompt = question.prompt
        default: str | None = np.with_defaults(answered, root)[question.key]
        shown = question.choices
        if question.key == "domain":
            # The registry's domains are the choices; the checker refuses others, saying how to add one.
            shown = tuple(np.known_domains(root))
            if np.unknown_domain(root, default):
                default = None

        def accept(text: str, key: str = question.key, choices: tuple[str, ...] = question.choices) -> str:
            value = text.strip() if key != "description" else text
            if choices and value not in choices:
                raise click.UsageError(f"{key} {value!r} is not one of {', '.join(choices)}")
            problems = checker.problems(key, {**answered, key: value})
            if problems:
                raise click.UsageError("; ".join(problems))
            return value

        if shown:
            prompt += f" ({', '.join(shown)})"
        answered[question.key] = click.prompt(prompt, default=default, value_proc=accept)
    return answered
