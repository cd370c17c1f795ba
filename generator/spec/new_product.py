"""A new product's answers: the questions, their defaults, the spec they become, and each answer
checked by the spec's own rules. Shared by `datamesh new` and the cookiecutter template's hook
(cookiecutter-data-product/cookiecutter.json asks the same questions: tests/test_new.py holds them
together), so there is one implementation of "answers -> spec".

Nothing here reads policies or renders (those live above the spec layer: generator/cli/new.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from generator.layout import DBT_DIR, DOMAINS_DIR, PLATFORM_PACKAGE_DIR, SPEC_FILENAME
from generator.spec.model import SPEC_VERSION, Classification, DataProduct

FIRST_VERSION = "0.1.0"
SCHEMA_LINE = "# yaml-language-server: $schema=../../../generator/schemas/data_product.schema.json\n"
# The gate's completeness threshold of a new product: the skeleton's columns are all not null, and
# 99.9 meets every domain's floor (finance's is the highest), so the new product warns of nothing.
DEFAULT_COMPLETENESS = 99.9


@dataclass(frozen=True)
class Question:
    key: str
    prompt: str
    default: Callable[[dict[str, str]], str]  # from the answers given before it
    field: str  # where the answer lands in the spec, as policies name it (`product.<field>`)
    choices: tuple[str, ...] = ()


QUESTIONS: tuple[Question, ...] = (
    Question("name", "Product name (lower_snake_case; the DAG is <domain>__<name>)", lambda a: "my_product", "name"),
    Question("domain", "Domain that owns it (one registered in domains/)", lambda a: "my_domain", "domain"),
    Question(
        "owner_team",
        "Owning team (lower_snake_case; becomes the DAG owner)",
        lambda a: f"{a['domain']}_team",
        "owner.team",
    ),
    Question(
        "owner_email",
        "Contact email of the owning team",
        lambda a: f"{a['owner_team'].replace('_', '-')}@company.com",
        "owner.email",
    ),
    Question(
        "description",
        "One sentence: what one row means and who should use it",
        lambda a: f"What one row of {a['name']} means, and who should use it.",
        "description",
    ),
    Question(
        "classification",
        "Classification (confidential or restricted if it will hold personal data)",
        lambda a: "internal",
        "classification",
        tuple(c.value for c in (Classification.internal, Classification.public, Classification.confidential,
                                Classification.restricted)),
    ),
    Question("schedule", "Schedule (cron, UTC)", lambda a: "0 3 * * *", "schedule"),
    Question(
        "freshness_hours", "SLA: maximum age of the published data, in hours", lambda a: "26", "sla.freshness_hours"
    ),
    Question("retention_days", "Retention, in days", lambda a: "365", "retention_days"),
    Question("output_name", "Name of the first output table (lower_snake_case)", lambda a: a["name"], "outputs"),
)
KEYS = tuple(q.key for q in QUESTIONS)

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
# Rules across fields (no single location): shown at these questions.
ACROSS_FIELDS = {"name", "domain", "schedule"}


def with_defaults(given: dict[str, str], root: Path | None = None) -> dict[str, str]:
    """Every answer: those given, and the defaults (computed from earlier answers) for the rest. With
    `root`, a registered domain's owner team is the default team."""
    answers: dict[str, str] = {}
    for question in QUESTIONS:
        if question.key in given:
            answers[question.key] = given[question.key]
            continue
        registered = domain_teams(root, answers["domain"]) if root and question.key == "owner_team" else None
        answers[question.key] = registered[0] if registered else question.default(answers)
    return answers


def build_spec(answers: dict[str, Any]) -> dict[str, Any]:
    """The spec as data. Answers are carried as values only; YAML quoting is the writer's job."""
    return {
        "spec_version": SPEC_VERSION,
        "name": answers["name"],
        "domain": answers["domain"],
        "version": FIRST_VERSION,
        "description": answers["description"],
        "owner": {"team": answers["owner_team"], "email": answers["owner_email"]},
        "classification": answers["classification"],
        "retention_days": answers["retention_days"],
        "schedule": str(answers["schedule"]).strip() or None,
        "sla": {"freshness_hours": answers["freshness_hours"], "completeness": DEFAULT_COMPLETENESS},
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
        # A first changelog entry: the audit-trail policies (finance's) ask for one per version.
        "changelog": [{"version": FIRST_VERSION, "changes": ["Created with datamesh new."]}],
    }


def validated(answers: dict[str, Any]) -> tuple[dict[str, Any], DataProduct | None, dict[str, list[str]]]:
    """(spec dict with numbers as the model read them, the product or None, problems per answer).
    Problems across fields are keyed "" ."""
    spec = build_spec(answers)
    try:
        product = DataProduct.model_validate(spec)
    except ValidationError as exc:
        problems: dict[str, list[str]] = {}
        for err in exc.errors():
            answer = ANSWER_OF_FIELD.get(tuple(err["loc"]), "")
            problems.setdefault(answer, []).append(_answer_problem(err, answer, answers))
        return spec, None, problems
    # Numbers as the spec model read them (answers are text).
    spec["retention_days"] = product.retention_days
    spec["sla"]["freshness_hours"] = _plain_number(product.sla.freshness_hours)
    return spec, product, {}


def _answer_problem(err: Any, answer: str, answers: dict[str, Any]) -> str:
    message = err["msg"].removeprefix("Value error, ")
    if not answer:  # a rule across fields (e.g. domain and name too long together)
        return message
    value = answers[answer]
    # The spec's messages usually open with the value: "name 'Orders-X' is not a safe identifier".
    if message.startswith(repr(value)):
        return f"{answer} {message}"
    return f"{answer} {value!r}: {message}"


def _plain_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def known_domains(root: Path) -> list[str]:
    """The domains a new product may choose from: the domain registry's (domains/<domain>.yaml)
    when the repo has one, else the domains that have products. The one place that decides."""
    registry = root / DOMAINS_DIR
    if registry.is_dir():
        return sorted(p.stem for p in registry.glob("*.yaml"))
    base = root / DBT_DIR
    if not base.is_dir():
        return []
    return sorted(
        d.name
        for d in base.iterdir()
        if d.is_dir() and d.name != PLATFORM_PACKAGE_DIR and any(d.glob(f"*/{SPEC_FILENAME}"))
    )


def domain_teams(root: Path, domain: str) -> list[str] | None:
    """The teams that may own the domain's products, owner team first, when domains/<domain>.yaml
    exists; None for a domain the registry does not have (yet)."""
    from generator.spec.domain import load_domain

    path = root / DOMAINS_DIR / f"{domain}.yaml"
    if not path.is_file():
        return None
    registered = load_domain(path, f"{DOMAINS_DIR}/{domain}.yaml")
    return [registered.owner_team, *(t for t in registered.team_names if t != registered.owner_team)]


def unknown_domain(root: Path, domain: str) -> str | None:
    """Why `domain` cannot own a new product: once the repo has a domain registry, a product's domain
    must be registered first (its owner, teams and on-call are the registry's). None when it may."""
    registry = root / DOMAINS_DIR
    if not registry.is_dir() or (registry / f"{domain}.yaml").is_file():
        return None
    known = ", ".join(known_domains(root)) or "none yet"
    return (
        f"domain {domain!r} is not in the domain registry ({DOMAINS_DIR}/); known domains: {known}. "
        f"To add it, register it first: `datamesh domains new {domain} --owner-team TEAM --email EMAIL` "
        f"writes {DOMAINS_DIR}/{domain}.yaml (or write that file yourself; `datamesh schema --domain` "
        "gives its fields)"
    )


def name_taken(root: Path, name: str) -> str | None:
    """Where a product of this name lives already (`domain/name`), if one does: product names are
    unique in the mesh, so `datamesh show <name>` means one product."""
    for spec in sorted((root / DBT_DIR).glob(f"*/{name}/{SPEC_FILENAME}")):
        return f"{spec.parent.parent.name}/{name}"
    return None
