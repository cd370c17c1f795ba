"""The domain registry: domains/<domain>.yaml says who answers for a domain, and which teams may own
its products. Loaded and validated like a spec: every problem at once, with file, line and field.

A product's `owner.team` must be one of its domain's teams (checked by the mesh, spec/mesh.py).
Once a repo has a domains/ folder, every domain with products needs its file there; a repo
without the folder (an old checkout, a test's bare mesh) has no registry and nothing is checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, Field, ValidationError

from generator.errors import Problem, SpecError
from generator.layout import DOMAINS_DIR
from generator.spec.model import _EMAIL, MeshName, Text, _Model
from generator.spec.problems import (
    YAML_LOADER,
    Loc,
    error_loc,
    error_message,
    line_index,
    load_yaml,
    nearest_line,
    readable_path,
    yaml_problem,
)

_WORDING = {
    "extra_forbidden": "unknown field (check its spelling; see `datamesh schema --domain` for the fields allowed)",
    "missing": "required field is missing",
}


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


Email = Annotated[str, AfterValidator(_email)]


class Team(_Model):
    name: MeshName = Field(description="The team, as products name it in `owner.team`.")
    email: Email = Field(description="The team's address.")
    chat: str | None = Field(default=None, description="The team's chat channel, free text.")


class Member(_Model):
    name: Text = Field(description="The person's name.")
    email: Email = Field(description="The person's address; also who they are when they approve.")
    login: str | None = Field(
        default=None,
        description="Their database or operating-system user (what `datamesh access approve` sees), "
        "when it is not their email address.",
    )
    team: MeshName = Field(description="One of the domain's teams.")
    roles: list[Text] = Field(default_factory=list, description="What they do: lead, engineer, analyst, ...")


class OnCall(_Model):
    name: Text | None = Field(default=None, description="Who (or which rotation) is on call.")
    email: Email = Field(description="Where incidents go.")
    phone: str | None = Field(default=None, description="A pager or phone number, free text.")


class Domain(_Model):
    """One domain of the mesh, as domains/<domain>.yaml says."""

    name: MeshName = Field(description="The domain; the file is domains/<name>.yaml.")
    description: Text = Field(description="What the domain is about.")
    bounded_context: Text = Field(description="The part of the business whose language its products speak.")
    owner_team: MeshName = Field(description="The team that owns the domain: one of `teams`.")
    teams: list[Team] = Field(min_length=1, description="Teams that may own the domain's products.")
    members: list[Member] = Field(default_factory=list, description="People of the domain's teams.")
    on_call: OnCall = Field(description="Who is told about incidents.")
    chat_channel: str | None = Field(default=None, description="The domain's chat channel, free text.")

    @property
    def team_names(self) -> list[str]:
        return [t.name for t in self.teams]

    def team(self, name: str) -> Team | None:
        return next((t for t in self.teams if t.name == name), None)

    def owner(self) -> Team:
        found = self.team(self.owner_team)
        assert found is not None  # checked by `load_domain`
        return found

    def member(self, who: str) -> Member | None:
        """The member whose email or login is `who` (case-insensitive for emails)."""
        who = who.strip()
        return next(
            (m for m in self.members if m.email.lower() == who.lower() or (m.login and m.login == who)),
            None,
        )


@dataclass(frozen=True)
class DomainEntry:
    domain: Domain
    path: Path  # absolute
    shown: str  # repo-relative, for messages


def domain_file(domain: str) -> str:
    """Where a domain's registry file lives, repo-relative."""
    return f"{DOMAINS_DIR}/{domain}.yaml"


def load_domain(path: Path, shown: str | None = None) -> Domain:
    """Parse and validate one domain file; SpecError with every problem."""
    shown = shown or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([Problem(shown, "", f"cannot read the file: {exc.strerror}")]) from exc
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise SpecError([yaml_problem(shown, exc)]) from exc
    if not isinstance(data, dict):
        raise SpecError([Problem(shown, "", "a domain file must be a YAML mapping of fields", 1)])
    try:
        domain = Domain.model_validate(data)
    except ValidationError as exc:
        lines = line_index(yaml.compose(text, Loader=YAML_LOADER))
        raise SpecError([_problem(shown, err, data, lines) for err in exc.errors()]) from exc
    problems = _cross_checks(domain, path.stem)
    if problems:
        lines = line_index(yaml.compose(text, Loader=YAML_LOADER))
        raise SpecError(
            [Problem(shown, readable_path(loc, data), message, nearest_line(loc, lines)) for loc, message in problems]
        )
    return domain


def _problem(shown: str, err: Any, data: Any, lines: dict[Loc, int]) -> Problem:
    loc = error_loc(err)
    return Problem(shown, readable_path(loc, data), error_message(err, _WORDING), nearest_line(loc, lines))


def _cross_checks(domain: Domain, stem: str) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    if domain.name != stem:
        problems.append((("name",), f"the domain {domain.name!r} must live in {domain_file(domain.name)}"))
    teams = domain.team_names
    for i, name in enumerate(teams):
        if name in teams[:i]:
            problems.append((("teams", i), f"team {name!r} is listed twice"))
    allowed = ", ".join(teams)
    if domain.owner_team not in teams:
        problems.append((("owner_team",), f"{domain.owner_team!r} is not one of `teams`; allowed: {allowed}"))
    emails: list[str] = []
    for i, member in enumerate(domain.members):
        if member.team not in teams:
            problems.append((("members", i, "team"), f"{member.team!r} is not one of `teams`; allowed: {allowed}"))
        if member.email.lower() in emails:
            problems.append((("members", i, "email"), f"{member.email!r} is listed twice"))
        emails.append(member.email.lower())
    return problems


def registry_paths(root: Path) -> list[Path]:
    return sorted((root / DOMAINS_DIR).glob("*.yaml"))


def load_registry(root: Path, only: set[str] | None = None) -> tuple[dict[str, DomainEntry], list[Problem]]:
    """Every domain file (or those of the domains `only`) that loads, by domain, and the problems
    of those that do not."""
    found: dict[str, DomainEntry] = {}
    problems: list[Problem] = []
    for path in registry_paths(root):
        if only is not None and path.stem not in only:
            continue
        shown = str(path.relative_to(root))
        try:
            domain = load_domain(path, shown)
        except SpecError as exc:
            problems += exc.problems
            continue
        found[domain.name] = DomainEntry(domain, path, shown)
    return found, problems


def has_registry(root: Path) -> bool:
    return (root / DOMAINS_DIR).is_dir()


def minimal_domain(domain: str, team: str, email: str) -> dict[str, Any]:
    """The smallest valid domain file for a new domain whose first product `team` owns (what the
    new-product template writes; the team fills in the rest)."""
    return {
        "name": domain,
        "description": f"The {domain} domain: describe what it is about.",
        "bounded_context": f"{domain}: name the part of the business whose language its products speak.",
        "owner_team": team,
        "teams": [{"name": team, "email": email}],
        "members": [],
        "on_call": {"email": email},
    }
