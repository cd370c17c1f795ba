"""`datamesh diff --against <git ref>`: the gate's compatibility verdict, before merge.

The gate compares a spec with the contract the catalog registered at the last publish
(compatibility.py) and judges each difference with the `change` policies
(`breaking_change_needs_major_bump` in policies/global.yaml). Here the previous contract is the spec
as committed at a git ref (`git show <ref>:<path>`), so CI sees a breaking change in the pull request
that makes it, not at the first run after deploy. Same diff, same policies, same messages.

Each change names the consumers it hits: the mesh's products whose inputs read the changed output
at the major version the ref published and, when asked (`--subscribers`, a reachable warehouse), the
catalog's subscribers of that output and major, as `subscriber:<name>`. A product that is new since
the ref is reported as added; one that is gone as removed (every published major it served goes
with it, so that is breaking).
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from generator.errors import UserError
from generator.governance import compatibility
from generator.governance.policies import evaluate_changes, load_all_policies
from generator.layout import CATALOG_SCHEMA, DBT_DIR, PLATFORM_PACKAGE_DIR, SPEC_FILENAME
from generator.spec.mesh import Mesh

Verdict = Literal["blocking", "allowed", "compatible"]
# (domain, product, output, major) -> the names of the catalog's subscribers reading it
Subscribers = dict[tuple[str, str, str, int], list[str]]


@dataclass(frozen=True)
class JudgedChange:
    kind: str
    output: str | None
    column: str | None
    detail: str
    breaking: bool
    verdict: Verdict  # blocking: breaks consumers without a major bump; allowed: breaking, but bumped
    consumers: list[str]  # <domain>/<product> of the mesh's products reading the changed output
    messages: list[str]  # the policies' messages: blocking ones first, then warnings

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "output": self.output,
            "column": self.column,
            "detail": self.detail,
            "breaking": self.breaking,
            "verdict": self.verdict,
            "consumers": self.consumers,
            "messages": self.messages,
        }


@dataclass(frozen=True)
class ProductDiff:
    product: str  # <domain>/<product>
    spec: str  # repo-relative path of its spec
    status: Literal["added", "removed", "changed"]
    old_version: str | None
    new_version: str | None
    changes: list[JudgedChange] = field(default_factory=list)

    @property
    def blocking(self) -> list[JudgedChange]:
        return [c for c in self.changes if c.verdict == "blocking"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "product": self.product,
            "spec": self.spec,
            "status": self.status,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "changes": [c.as_dict() for c in self.changes],
        }


@dataclass(frozen=True)
class DiffReport:
    ref: str
    commit: str
    products: list[ProductDiff]

    @property
    def blocking(self) -> int:
        return sum(len(p.blocking) for p in self.products)

    def as_dict(self) -> dict[str, Any]:
        changes = [c for p in self.products for c in p.changes]
        return {
            "against": self.ref,
            "commit": self.commit,
            "summary": {
                "products": len(self.products),
                "changes": len(changes),
                "blocking": sum(c.verdict == "blocking" for c in changes),
                "allowed": sum(c.verdict == "allowed" for c in changes),
                "compatible": sum(c.verdict == "compatible" for c in changes),
            },
            "products": [p.as_dict() for p in self.products],
        }


# --- reading the ref ---------------------------------------------------------------------------------


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60)
    except FileNotFoundError as exc:
        raise UserError("git is not installed: `datamesh diff` reads the specs of a git ref") from exc
    if done.returncode != 0:
        raise UserError(f"git {' '.join(args)}: {done.stderr.strip() or 'failed'}")
    return done.stdout


def specs_at(root: Path, ref: str) -> tuple[str, dict[str, str]]:
    """The commit `ref` names, and the text of each product spec in it, keyed by repo-relative path
    (relative to `root`, which may be a folder inside the git repository)."""
    probe = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        raise UserError(
            f"{ref!r} is not a commit of the git repository at {root}: give a branch, tag or commit "
            "(in CI, fetch it first, e.g. `git fetch origin main` for origin/main)"
        )
    commit = probe.stdout.strip()
    listed = _git(root, "ls-tree", "-r", "--name-only", commit, "--", f"{DBT_DIR}/")
    specs = {}
    for path in listed.splitlines():
        parts = Path(path).parts
        if len(parts) == 4 and parts[3] == SPEC_FILENAME and parts[1] != PLATFORM_PACKAGE_DIR:
            specs[path] = _git(root, "show", f"{commit}:./{path}")
    return commit, specs


# --- judging -----------------------------------------------------------------------------------------


def catalog_subscribers(conn: Any) -> Subscribers:
    """The catalog's subscriptions (consumers outside the mesh); none before the catalog exists."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f"{CATALOG_SCHEMA}.subscriptions",))
        if cur.fetchone()[0] is None:
            return {}
        cur.execute(
            f"SELECT domain, product, output, major, consumer FROM {CATALOG_SCHEMA}.subscriptions "
            "ORDER BY consumer"
        )
        found: Subscribers = {}
        for domain, product, output, major, consumer in cur.fetchall():
            found.setdefault((domain, product, output, major), []).append(consumer)
    conn.rollback()
    return found


def diff_against(root: Path, mesh: Mesh, ref: str, subscribers: Subscribers | None = None) -> DiffReport:
    """Every product spec changed since `ref`, each difference judged by the change policies."""
    commit, old_texts = specs_at(root, ref)
    loaded = load_all_policies(root, {e.spec.domain for e in mesh.products})
    products: list[ProductDiff] = []
    current = {Path(e.shown).as_posix(): e for e in mesh.products}
    for shown, entry in current.items():
        spec = entry.spec
        label = f"{spec.domain}/{spec.name}"
        old_text = old_texts.get(shown)
        if old_text is None:
            added = JudgedChange("product_added", None, None, f"product {label}: added", False, "compatible", [], [])
            products.append(ProductDiff(label, shown, "added", None, spec.version, [added]))
            continue
        if old_text == entry.spec_path.read_text(encoding="utf-8"):
            continue
        previous = _old_contract(old_text, shown, ref)
        changes = compatibility.diff(previous, compatibility.contract(spec))
        if not changes:
            continue
        policies = loaded.for_domain(spec.domain)
        judged = []
        for change in changes:
            findings = [f for f in evaluate_changes(policies, spec, [change.as_dict()]) if not f.passed]
            blocking = [f.message for f in findings if f.enforcement == "blocking"]
            warnings = [f.message for f in findings if f.enforcement != "blocking"]
            verdict: Verdict = "blocking" if blocking else "allowed" if change.breaking else "compatible"
            readers = _readers(mesh, spec.domain, spec.name, change.output, change.previous_major)
            readers += _subscribed(subscribers, spec.domain, spec.name, change.output, change.previous_major)
            judged.append(
                JudgedChange(
                    change.kind, change.output, change.column, change.detail, change.breaking, verdict,
                    readers, blocking + warnings,
                )
            )
        products.append(ProductDiff(label, shown, "changed", previous["version"], spec.version, judged))
    for shown, old_text in old_texts.items():
        if shown in current:
            continue
        domain, name = Path(shown).parts[1:3]
        label = f"{domain}/{name}"
        previous = _old_contract(old_text, shown, ref)
        detail = (
            f"product {label}: removed; every major version it published is no longer built or served"
        )
        subscribed = _subscribed(subscribers, domain, name, None, int(previous["version"].split(".")[0]))
        removed = JudgedChange("product_removed", None, None, detail, True, "blocking", subscribed, [
            f"{label} {previous['version']} is removed: readers of its published schemas outside the mesh "
            "(catalog subscriptions, dashboards) lose them; check `datamesh impact` for each output first"
        ])
        products.append(ProductDiff(label, shown, "removed", previous["version"], None, [removed]))
    products.sort(key=lambda p: p.product)
    return DiffReport(ref, commit, products)


def _old_contract(text: str, shown: str, ref: str) -> dict[str, Any]:
    """The contract of a spec as committed at the ref. Read as plain YAML, as the gate reads the
    catalog's stored spec: a spec an older generator accepted still has a contract."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{ref}:{shown}: not YAML ({exc}); nothing to compare with") from exc
    if not isinstance(document, dict) or not isinstance(document.get("outputs"), list):
        raise UserError(f"{ref}:{shown}: not a data product spec (no `outputs` list); nothing to compare with")
    return compatibility.contract(document)


def _readers(mesh: Mesh, domain: str, product: str, output: str | None, major: int) -> list[str]:
    """The mesh's products reading `output` (any output, when None) of the product at `major`."""
    return sorted(
        f"{e.spec.domain}/{e.spec.name}"
        for e in mesh.products
        if any(
            (i.domain, i.product, i.major) == (domain, product, major) and output in (None, i.output)
            for i in e.spec.inputs.products
        )
    )


def _subscribed(
    subscribers: Subscribers | None, domain: str, product: str, output: str | None, major: int
) -> list[str]:
    """`subscriber:<name>` for each catalog subscriber of `output` (any, when None) at `major`."""
    names = {
        name
        for (d, p, o, m), found in (subscribers or {}).items()
        if (d, p, m) == (domain, product, major) and output in (None, o)
        for name in found
    }
    return [f"subscriber:{name}" for name in sorted(names)]


# --- formats -----------------------------------------------------------------------------------------


def as_text(report: DiffReport) -> str:
    lines = [f"against {report.ref} ({report.commit[:12]}):"]
    if not report.products:
        lines.append("  no product spec changed its contract")
    for product in report.products:
        versions = f"{product.old_version or '-'} -> {product.new_version or '-'}"
        lines.append(f"{product.product} ({product.status}, {versions})  {product.spec}")
        for change in product.changes:
            lines.append(f"  {change.verdict:10} {change.detail}")
            if change.consumers and change.breaking:
                lines.append(f"             hits: {', '.join(change.consumers)}")
            for message in change.messages:
                lines.append(f"             {message}")
    blocking = report.blocking
    lines.append(
        f"{blocking} breaking change(s) without a major version bump"
        if blocking
        else "no breaking change without a major version bump"
    )
    return "\n".join(lines) + "\n"


def as_junit(report: DiffReport) -> str:
    """One test suite per product, one test case per change; a blocking change is a <failure>."""
    total = sum(len(p.changes) for p in report.products)
    root = ET.Element(
        "testsuites", name=f"datamesh diff --against {report.ref}", tests=str(total), failures=str(report.blocking)
    )
    for product in report.products:
        suite = ET.SubElement(
            root,
            "testsuite",
            name=product.product,
            tests=str(len(product.changes)),
            failures=str(len(product.blocking)),
            errors="0",
            skipped="0",
        )
        for change in product.changes:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=product.product.replace("/", "."),
                name=f"{change.kind}: {change.detail}",
                file=product.spec,
            )
            hits = f" Hits: {', '.join(change.consumers)}." if change.consumers else ""
            if change.verdict == "blocking":
                text = " ".join(change.messages) or change.detail
                failure = ET.SubElement(case, "failure", message=text + hits, type="breaking")
                failure.text = text + hits
            else:
                out = ET.SubElement(case, "system-out")
                out.text = f"{change.verdict}: {change.detail}.{hits}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
