"""`validate`'s verdicts on the products its cache does not hold: their specs loaded and
cross-checked, then judged by the static policies.

On a large mesh with a cold cache this is most of `validate` (1,000 products on one core: 0.5 s
loading specs, 0.15 s judging them), and each product's verdict depends only on its own spec and
the specs it reads. So from a few hundred products on, the products are shared out among forked
processes (parallel.py): each loads its share with the specs that share reads, checks and
judges them, and sends back only the verdicts (small text: the parsed specs would cost about a
third of their parsing to send back, spec/mesh.py). The one check that spans shares, a cycle
through products of different shares, is made here on the products' reads.

Errors are reported exactly as by one process: when a share finds any problem in the specs, or a
policy file does not load, or the shares' reads form a cycle, everything is done again here, in
one process, in the usual order (spec problems first, all of them in one error). Only a mesh
with a broken spec pays twice, and only for the error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import TYPE_CHECKING

from generator.cli.validation_cache import Verdict, verdict_of
from generator.errors import UserError

if TYPE_CHECKING:
    from generator.governance.model import Finding
    from generator.governance.policies import MeshPolicies
    from generator.spec.mesh import ProductEntry


@dataclass(frozen=True)
class Fresh:
    """One product's verdict, with the products it reads (the cache's key needs them)."""

    name: str  # domain/product
    reads: list[str]
    verdict: Verdict


def fresh_verdicts(
    root: Path, stale: list[str], known_reads: Mapping[str, Iterable[str]], domains: list[str]
) -> tuple[list[str], list[Fresh]]:
    """The policy files' warnings and the verdict of each product of `stale` (`domain/product`).
    `known_reads`: what each product not loaded reads (a cycle through them is still found)."""
    from generator.parallel import processes_for

    processes = processes_for(len(stale))
    if processes > 1:
        found = _in_processes(root, stale, known_reads, domains, processes)
        if found is not None:
            return found
    return _in_one_process(root, stale, known_reads, domains)


def _in_one_process(
    root: Path, stale: list[str], known_reads: Mapping[str, Iterable[str]], domains: list[str]
) -> tuple[list[str], list[Fresh]]:
    from generator.governance.policies import load_all_policies
    from generator.spec.mesh import load_products

    _, entries = load_products(root, stale, known_reads)  # raises every spec problem at once
    policies = load_all_policies(root, domains)
    return list(policies.warnings), [_judged(policies, entry) for entry in entries]


def _in_processes(
    root: Path, stale: list[str], known_reads: Mapping[str, Iterable[str]], domains: list[str], processes: int
) -> tuple[list[str], list[Fresh]] | None:
    """As `_in_one_process`, the products shared out among `processes` forked processes; None
    when something is wrong, for `_in_one_process` to report as it always has."""
    from generator.governance.policies import load_all_policies
    from generator.parallel import map_in_order

    try:
        policies = load_all_policies(root, domains)  # before forking: every process judges with them
    except UserError:
        return None
    names = sorted(stale)
    size = -(-len(names) // processes)  # contiguous shares: a product and the one it reads are often in one
    shares = [names[start:start + size] for start in range(0, len(names), size)]
    found = map_in_order(lambda share: _judged_share(root, share, known_reads, policies), shares, len(shares))
    if any(share is None for share in found):
        return None
    fresh = [verdict for share in found if share is not None for verdict in share]
    graph = {name: set(reads) for name, reads in known_reads.items()} | {f.name: set(f.reads) for f in fresh}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError:
        return None
    return list(policies.warnings), fresh


def _judged_share(
    root: Path, share: list[str], known_reads: Mapping[str, Iterable[str]], policies: MeshPolicies
) -> list[Fresh] | None:
    """In a forked process: the verdicts of one share, or None when one of its specs has a problem."""
    from generator.errors import SpecError
    from generator.spec.mesh import load_products

    try:
        _, entries = load_products(root, share, known_reads)
    except SpecError:
        return None
    return [_judged(policies, entry) for entry in entries]


def _judged(policies: MeshPolicies, entry: ProductEntry) -> Fresh:
    from generator.render.mesh import product_reads

    name = f"{entry.spec.domain}/{entry.spec.name}"
    return Fresh(name, product_reads(entry), verdict_of(entry, failed_findings(policies, entry)))


def failed_findings(policies: MeshPolicies, entry: ProductEntry) -> list[Finding]:
    """The static policies (global and its domain's) a product's spec fails."""
    from generator.governance.policies import evaluate_spec

    return [f for f in evaluate_spec(policies.for_domain(entry.spec.domain), entry.spec) if not f.passed]
