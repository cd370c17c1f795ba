"""Policy files read, validated and compiled: `policies/global.yaml` and `policies/domains/<domain>.yaml`.

Every problem of every file is reported at once (file, line, policy, field), before any product is
evaluated; a domain may add policies but not redefine a global one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import ValidationError

from generator.errors import Problem, UserError
from generator.governance.compiling import compile_policy
from generator.governance.fast_path_guard import FastPathGuard
from generator.governance.model import MeshPolicies, Policy, PolicyModel, PolicySet
from generator.layout import POLICIES_DIR
from generator.spec.mesh import spec_paths
from generator.spec.problems import error_message, line_index, nearest_line, parse_yaml, yaml_problem

GLOBAL_FILE = "global.yaml"
DOMAINS_DIR = "domains"
_DOMAIN_FILE = re.compile(r"^[a-z][a-z0-9_]*$")
_KEYS = "name, description, scope, enforcement, applies_to, when, assert, message"
_WORDING = {
    "extra_forbidden": f"unknown key; a policy has {_KEYS}",
    "missing": "required key is missing",
    "model_type": f"a policy is a mapping of {_KEYS}",
}


def load_policies(root: Path, domain: str | None = None) -> PolicySet:
    """The global policies plus `domain`'s (if it has a file), fully validated and compiled.

    Raises UserError listing every problem of every file, before anything is evaluated.
    """
    files: dict[str, Path] = {}
    if domain is not None:
        if not _DOMAIN_FILE.fullmatch(domain):
            raise UserError(f"{domain!r} is not a domain name; policies cannot be loaded for it")
        domain_file = root / POLICIES_DIR / DOMAINS_DIR / f"{domain}.yaml"
        if domain_file.exists():
            files[domain] = domain_file
    global_set, sets = _load_sets(root, files, [])
    return sets.get(domain, global_set) if domain is not None else global_set


def load_all_policies(root: Path, known_domains: Iterable[str] | None = None) -> MeshPolicies:
    """global.yaml and every file in policies/domains/, validated and compiled, before any product
    is evaluated: a broken file fails even when its domain has no product. `known_domains` are the
    domains the mesh's products belong to (default: those of the specs under dbt/); a domain file
    matching none of them is a warning naming the file and the known domains.

    Warning, not error: a domain's policies may rightly land before its first product (or outlive its
    last), and the file is fully checked either way. But a misspelt name (finanse.yaml) silently
    drops every rule of the domain it was meant for, so it must be seen: the warning suggests the
    closest known domain, and `policy check` counts it as a warning (exit 4 unless --warnings-ok).
    Raises UserError listing every problem of every file.
    """
    known = (
        {p.parent.parent.name for p in spec_paths(root)} if known_domains is None else set(known_domains)
    )
    folder = root / POLICIES_DIR / DOMAINS_DIR
    problems: list[Problem] = []
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_file() or path.name.startswith(".") or path.suffix not in (".yaml", ".yml"):
            continue
        if path.suffix == ".yml":
            wrong = f"domain policy files end in .yaml: rename it to {path.stem}.yaml, or it is never read"
        elif not _DOMAIN_FILE.fullmatch(path.stem) or "__" in path.stem or path.stem.endswith("_"):
            wrong = (
                f"{path.name!r} is not named after a domain: a domain's policies live in "
                f"{POLICIES_DIR}/{DOMAINS_DIR}/<domain>.yaml, <domain> in lower-case letters, digits and "
                "single underscores"
            )
        else:
            files[path.stem] = path
            continue
        problems.append(Problem(_shown(root, path), "file name", wrong))
    global_set, sets = _load_sets(root, files, problems)
    warnings = []
    for domain in sorted(set(files) - known):
        close = difflib.get_close_matches(domain, sorted(known), n=1)
        hint = f"; did you mean {close[0]}.yaml?" if close else ""
        warnings.append(
            f"{_shown(root, files[domain])}: no product of the mesh is in domain {domain!r}, so these "
            f"policies apply to nothing (known domains: {', '.join(sorted(known)) or 'none'}){hint}"
        )
    return MeshPolicies(global_set, sets, tuple(warnings))


def _shown(root: Path, path: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _load_sets(
    root: Path, domain_files: dict[str, Path], problems: list[Problem]
) -> tuple[PolicySet, dict[str, PolicySet]]:
    """The global set, and per domain file the global policies plus that file's. Each file is read
    and compiled once. Raises UserError with `problems` and those of every file, if any."""
    global_path = root / POLICIES_DIR / GLOBAL_FILE
    if not global_path.exists():
        raise UserError(
            f"{POLICIES_DIR}/{GLOBAL_FILE} is missing: governance cannot be skipped, restore the file"
        )
    problems = list(problems)
    global_shown = _shown(root, global_path)
    global_policies, declared, file_problems = _load_file(root, global_path, global_shown, "global")
    problems += sorted(file_problems, key=lambda p: p.line or 0)
    global_names = set(declared)
    sets: dict[str, PolicySet] = {}
    for domain, path in domain_files.items():
        shown = _shown(root, path)
        loaded, declared, file_problems = _load_file(root, path, shown, "domain")
        for name, line in declared.items():
            if name in global_names:
                file_problems.append(
                    Problem(
                        shown,
                        f"policy {name!r}",
                        f"redefines the global policy {name!r}; a domain may add policies but not "
                        "change global ones: give it another name",
                        line,
                    )
                )
        loaded = [p for p in loaded if p.name not in global_names]
        problems += sorted(file_problems, key=lambda p: p.line or 0)
        sets[domain] = PolicySet(tuple(global_policies + loaded), (global_shown, shown))
    if problems:
        lines = [f"{len(problems)} problem(s) in the policy files; no product was evaluated:"]
        lines += [f"  {p}" for p in problems]
        raise UserError("\n".join(lines))
    return PolicySet(tuple(global_policies), (global_shown,)), sets


def _load_file(
    root: Path, path: Path, shown: str, scope: str
) -> tuple[list[Policy], dict[str, int | None], list[Problem]]:
    """The file's valid policies, the names (and lines) of all policies it declares, its problems."""
    try:
        content = path.read_bytes()
        node, data = parse_yaml(content.decode("utf-8"))
    except OSError as exc:
        return [], {}, [Problem(shown, "", f"cannot read the file: {exc.strerror}")]
    except yaml.YAMLError as exc:
        return [], {}, [yaml_problem(shown, exc)]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return [], {}, [Problem(shown, "", "a policy file is a mapping with one key, `policies`", 1)]
    lines = line_index(node)  # ("policies", index[, key]) -> line
    extra = sorted(str(k) for k in data if k != "policies")
    if extra or not isinstance(data.get("policies", []), list):
        what = f"unknown key(s) {', '.join(extra)}" if extra else "`policies` is not a list"
        message = f"{what}: a policy file has one key, `policies`, a list"
        return [], {}, [Problem(shown, "policies", message, 1)]

    guard = FastPathGuard(root, shown, content)
    # Each policy on its own, so that one policy's mistake does not hide the next one's.
    models: list[tuple[int, PolicyModel]] = []
    problems: list[Problem] = []
    for index, raw in enumerate(data.get("policies") or []):
        name = raw.get("name") if isinstance(raw, dict) else None
        label = f"policy {name!r}" if isinstance(name, str) else f"policy #{index + 1}"
        try:
            models.append((index, PolicyModel.model_validate(raw)))
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"])
                line = nearest_line(("policies", index, field), lines)
                where = f"{label}: {field}" if field else label
                problems.append(Problem(shown, where, error_message(err, _WORDING), line))

    loaded: list[Policy] = []
    declared: dict[str, int | None] = {}
    for index, model in models:
        label = f"policy {model.name!r}"
        line = lines.get(("policies", index))
        if model.name in declared:
            problems.append(Problem(shown, label, "is defined twice in this file", line))
            continue
        declared[model.name] = line
        if model.scope != scope:
            problems.append(
                Problem(
                    shown,
                    f"{label}: scope",
                    f"is {model.scope!r}, but policies in this file must have scope {scope!r}",
                    lines.get(("policies", index, "scope"), line),
                )
            )
            continue
        policy, policy_problems = compile_policy(model, shown, guard)
        for field, message in policy_problems:
            problems.append(Problem(shown, f"{label}: {field}", message, lines.get(("policies", index, field), line)))
        if policy is not None:
            loaded.append(policy)
    guard.save()
    return loaded, declared, problems
