"""What `datamesh validate` remembers between runs: each product's failed static policy findings.

A product's findings are a function of its spec, the policy files and the policy code. Its spec is
covered by the product's inputs hash (render/fingerprint.py: its spec bytes, its inputs' and the
generator's source, so the spec's validity and its cross-check are covered too), recomputed from
spec bytes and the products it read, remembered beside it; the policies by `policy_key`. An entry
is used only when both match, so a cached verdict is the one a fresh evaluation would give.

Kept in .datamesh/cache/validate.json (git-ignored): a fresh clone has none, and validates everything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import generator
from generator.layout import CACHE_DIR, POLICIES_DIR
from generator.render.fingerprint import generator_fingerprint

if TYPE_CHECKING:
    from generator.governance.model import Finding
    from generator.spec.mesh import ProductEntry

CACHE_FILE = f"{CACHE_DIR}/validate.json"


@dataclass(frozen=True)
class Judged:
    """A failed finding, as `validate` prints it."""

    policy: str
    enforcement: str
    message: str


@dataclass(frozen=True)
class Verdict:
    version: str
    shown: str
    findings: list[Judged]


def verdict_of(entry: ProductEntry, failed: list[Finding]) -> Verdict:
    """A product's verdict from its failed findings, as `validate` prints and remembers it."""
    judged = [Judged(f.policy, f.enforcement, f.message) for f in failed]
    return Verdict(entry.spec.version, entry.shown, judged)


def policy_key(root: Path) -> str:
    """A hash of the policy files and of the code that loads and evaluates them."""
    digest = hashlib.sha256(generator_fingerprint().encode())
    governance = Path(generator.__file__).parent / "governance"
    for base, folder in ((governance, governance), (root, root / POLICIES_DIR)):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(base).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class ValidationCache:
    def __init__(self, root: Path):
        self.path = root / CACHE_FILE
        self.key = policy_key(root)
        self.products: dict[str, dict] = {}
        self.warnings: dict[str, list[str]] = {}  # sorted domains joined by "," -> the loader's warnings
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("key") == self.key:
            self.products = data.get("products", {})
            self.warnings = data.get("warnings", {})

    def reads(self, product: str) -> list[str] | None:
        """The products `product` read when its verdict was remembered (its inputs hash covers them)."""
        entry = self.products.get(product)
        return list(entry["reads"]) if entry and isinstance(entry.get("reads"), list) else None

    def verdict(self, product: str, inputs: str | None) -> Verdict | None:
        entry = self.products.get(product)
        if inputs is None or not entry or entry.get("inputs") != inputs:
            return None
        findings = [Judged(*f) for f in entry["findings"]]
        return Verdict(entry["version"], entry["shown"], findings)

    def remember(self, product: str, inputs: str, reads: list[str], verdict: Verdict) -> None:
        findings = [[f.policy, f.enforcement, f.message] for f in verdict.findings]
        self.products[product] = {
            "inputs": inputs,
            "reads": reads,
            "version": verdict.version,
            "shown": verdict.shown,
            "findings": findings,
        }

    def save(self, products: list[str]) -> None:
        """Write the cache, keeping only the entries of `products` (the mesh's, now)."""
        kept = {p: self.products[p] for p in products if p in self.products}
        data = {"key": self.key, "products": kept, "warnings": self.warnings}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(self.path)
