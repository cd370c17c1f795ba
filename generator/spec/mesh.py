"""The mesh: every spec in the repo, checked against each other, in dependency order.

Specs live beside the dbt project they produce: dbt/<domain>/<product>/data_product.yaml.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import yaml

from generator.errors import Problem, SpecError
from generator.layout import DBT_DIR, PLATFORM_PACKAGE_DIR, SPEC_FILENAME
from generator.parallel import map_in_order, processes_for
from generator.spec.domain import Domain, DomainEntry, domain_file, has_registry, load_registry
from generator.spec.load import load_spec
from generator.spec.model import DataProduct
from generator.spec.problems import YAML_LOADER, line_index, nearest_line

# Below this many specs for each process, a forked one costs more than it saves: measured on 2
# cores, 400 specs took 0.167 s in one process and 0.157 s in two; 1,000 took 0.49 s and 0.38 s.
LOADED_PER_PROCESS = 250


@dataclass(frozen=True)
class ProductEntry:
    spec: DataProduct
    spec_path: Path  # absolute
    shown: str  # repo-relative, for messages

    @property
    def project_dir(self) -> Path:
        return self.spec_path.parent


@dataclass
class Mesh:
    root: Path
    products: list[ProductEntry] = field(default_factory=list)  # in dependency order
    domains: dict[str, DomainEntry] = field(default_factory=dict)  # the registry, by domain
    _readers: dict[tuple[str, str], dict[int, ProductEntry]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _readers_key: tuple[int, int] | None = field(default=None, init=False, repr=False, compare=False)

    def domain(self, name: str) -> Domain | None:
        entry = self.domains.get(name)
        return entry.domain if entry else None

    def find(self, domain: str, name: str) -> ProductEntry | None:
        return next(
            (p for p in self.products if p.spec.domain == domain and p.spec.name == name), None
        )

    def select(self, selector: str | None) -> list[ProductEntry]:
        """`None` is every product; otherwise `<domain>/<product>`, `<domain>__<product>`, `<product>`,
        or the path of a product's spec or project folder (what a shell's tab completion gives)."""
        if not selector:
            return list(self.products)
        norm = selector.replace("/", "__")
        chosen = [p for p in self.products if norm in (p.spec.key, p.spec.name)]
        if not chosen and Path(selector).exists():
            where = Path(selector).resolve()
            chosen = [p for p in self.products if where in (p.spec_path, p.project_dir)]
            if not chosen:
                raise SpecError(
                    [
                        Problem(
                            selector,
                            "",
                            "is not a product of this mesh; a product's spec lives at "
                            f"{DBT_DIR}/<domain>/<product>/{SPEC_FILENAME} under {self.root}",
                        )
                    ]
                )
        if not chosen:
            known = ", ".join(p.spec.key for p in self.products) or "none"
            raise SpecError([Problem(selector, "", f"no such product; known products: {known}")])
        return chosen

    def consumers_of(self, entry: ProductEntry) -> list[ProductEntry]:
        """The products reading `entry`, in mesh order. From an index of the product list, built
        once: rendering asks this of every product (its exposures), and a scan each time was
        quadratic in the size of the mesh."""
        key = (id(self.products), len(self.products))
        if self._readers_key != key:
            readers: dict[tuple[str, str], dict[int, ProductEntry]] = {}
            for product in self.products:
                for wanted in product.spec.inputs.products:
                    readers.setdefault((wanted.domain, wanted.product), {})[id(product)] = product
            self._readers, self._readers_key = readers, key
        return list(self._readers.get((entry.spec.domain, entry.spec.name), {}).values())


def spec_paths(root: Path) -> list[Path]:
    base = root / DBT_DIR
    return sorted(
        p for p in base.glob(f"*/*/{SPEC_FILENAME}") if p.parent.parent.name != PLATFORM_PACKAGE_DIR
    )


def load_mesh(root: Path) -> Mesh:
    """Load and cross-check every spec. Raises one SpecError with the problems of all files."""
    root = root.resolve()
    problems: list[Problem] = []
    entries = [e for e in _load_entries(root, spec_paths(root), problems) if e]
    problems += check_inputs(entries, entries)
    domains = _registry(root, entries, None, problems)
    if problems:
        raise SpecError(problems)
    return Mesh(root, _in_dependency_order(entries), domains)


def load_products(
    root: Path,
    wanted: Iterable[str],
    known_reads: Mapping[str, Iterable[str]],
    loaded_before: Iterable[ProductEntry] = (),
) -> tuple[Mesh, list[ProductEntry]]:
    """Load and cross-check only the products `wanted` (`domain/product`), with the specs of the
    products they read: what an incremental render needs. `known_reads` gives, for the products not
    loaded, the products each reads (from their generated files' headers), so a cycle through them
    is still found. `loaded_before`: entries an earlier call loaded, not read again. Returns a mesh
    of the loaded specs and the wanted entries, in dependency order."""
    root = root.resolve()
    problems: list[Problem] = []
    loaded: dict[str, ProductEntry] = {f"{e.spec.domain}/{e.spec.name}": e for e in loaded_before}

    def load(products: Iterable[str]) -> None:
        paths = [root / DBT_DIR / product / SPEC_FILENAME for product in sorted(set(products) - loaded.keys())]
        for entry in _load_entries(root, [path for path in paths if path.is_file()], problems):
            if entry is not None:
                loaded[f"{entry.spec.domain}/{entry.spec.name}"] = entry

    wanted = sorted(set(wanted))
    load(wanted)
    chosen = [loaded[name] for name in wanted if name in loaded]
    load(f"{i.domain}/{i.product}" for e in chosen for i in e.spec.inputs.products)
    problems += check_inputs(chosen, list(loaded.values()))
    domains = _registry(root, chosen, {e.spec.domain for e in loaded.values()}, problems)
    if problems:
        raise SpecError(problems)
    graph = {key.replace("/", "__"): {r.replace("/", "__") for r in reads} for key, reads in known_reads.items()}
    graph.update({e.spec.key: {f"{i.domain}__{i.product}" for i in e.spec.inputs.products} for e in chosen})
    order = {key: n for n, key in enumerate(_topological(graph))}
    by_order = sorted(loaded.values(), key=lambda e: order.get(e.spec.key, -1))
    wanted_ids = {id(e) for e in chosen}  # by identity: comparing specs field by field is slow
    return Mesh(root, by_order, domains), [e for e in by_order if id(e) in wanted_ids]


def _registry(
    root: Path, checked: list[ProductEntry], only: set[str] | None, problems: list[Problem]
) -> dict[str, DomainEntry]:
    """The domain files (all, or those of the domains `only`), their problems and those of the
    `checked` products' owner teams added to `problems`."""
    domains, broken = load_registry(root, only)
    problems += broken
    if has_registry(root):
        problems += check_owners(checked, domains, {Path(p.file).stem for p in broken})
    return domains


def check_owners(
    entries: list[ProductEntry], domains: dict[str, DomainEntry], broken: frozenset[str] | set[str] = frozenset()
) -> list[Problem]:
    """Each product's `owner.team` is one of its domain's teams, and each domain has its file
    (a domain whose file is broken was reported already)."""
    problems = []
    for entry in entries:
        domain = entry.spec.domain
        registered = domains.get(domain)
        if registered is None:
            if domain not in broken:
                problems.append(
                    Problem(
                        entry.shown,
                        "domain",
                        f"domain {domain!r} has no registry file: create {domain_file(domain)} "
                        f"(its owner team, teams, members and on-call; see `datamesh schema --domain`)",
                        _line_of(entry.spec_path, ("domain",)),
                    )
                )
            continue
        teams = registered.domain.team_names
        if entry.spec.owner.team not in teams:
            problems.append(
                Problem(
                    entry.shown,
                    "owner.team",
                    f"team {entry.spec.owner.team!r} is not a team of domain {domain!r} "
                    f"({registered.shown}); allowed: {', '.join(teams)}. Pick one of them, or add "
                    f"the team to {registered.shown}",
                    _line_of(entry.spec_path, ("owner", "team")),
                )
            )
    return problems


def _line_of(path: Path, loc: tuple[str, ...]) -> int | None:
    """The line of a field in a spec that loaded (read again only to report a problem)."""
    try:
        return nearest_line(loc, line_index(yaml.compose(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)))
    except (OSError, yaml.YAMLError):
        return None


def _load_entries(root: Path, paths: list[Path], problems: list[Problem]) -> list[ProductEntry | None]:
    """The entries of the specs at `paths` (None for a spec with problems, added to `problems`), in
    their order. Many are shared out among this process and forked ones (parallel.py): parsing
    YAML and checking it are Python code under the GIL, and a parsed spec costs less to send back
    than to parse."""

    def load(path: Path) -> tuple[ProductEntry | None, list[Problem]]:
        found: list[Problem] = []
        return _load_entry(root, path, found), found

    loaded = map_in_order(load, paths, processes_for(len(paths), LOADED_PER_PROCESS))
    for _, found in loaded:
        problems += found
    return [entry for entry, _ in loaded]


def _load_entry(root: Path, path: Path, problems: list[Problem]) -> ProductEntry | None:
    shown = str(path.relative_to(root))
    try:
        spec = load_spec(path, shown)
    except SpecError as exc:
        problems += exc.problems
        return None
    expected = path.parent.relative_to(root / DBT_DIR).parts
    if expected != (spec.domain, spec.name):
        problems.append(
            Problem(
                shown,
                "name",
                f"the spec of {spec.domain}/{spec.name} must live in "
                f"{DBT_DIR}/{spec.domain}/{spec.name}/{SPEC_FILENAME}",
            )
        )
        return None
    return ProductEntry(spec, path, shown)


def check_inputs(entries: list[ProductEntry], available: list[ProductEntry]) -> list[Problem]:
    """The problems of `entries`' inputs, looked up among `available`."""
    by_key = {(e.spec.domain, e.spec.name): e for e in available}
    problems = []
    for entry in entries:
        for i, wanted in enumerate(entry.spec.inputs.products):
            path = f"inputs.products[{i}]"
            upstream = by_key.get((wanted.domain, wanted.product))
            if upstream is None:
                problems.append(
                    Problem(entry.shown, path, f"no product {wanted.domain}/{wanted.product} in the mesh")
                )
            elif upstream.spec.output(wanted.output) is None:
                outs = ", ".join(o.name for o in upstream.spec.outputs)
                problems.append(
                    Problem(
                        entry.shown,
                        path,
                        f"{wanted.domain}/{wanted.product} has no output {wanted.output!r}; "
                        f"it has: {outs}",
                    )
                )
            elif wanted.major not in upstream.spec.served_majors:
                # An older major stays readable while the producer lists it under `deprecations`.
                problems.append(
                    Problem(
                        entry.shown,
                        path,
                        f"{wanted.domain}/{wanted.product} publishes major version "
                        f"{upstream.spec.major}, not {wanted.major}"
                        + (f" (it still serves {', '.join(map(str, upstream.spec.served_majors))})"
                           if len(upstream.spec.served_majors) > 1 else ""),
                    )
                )
    return problems


def _in_dependency_order(entries: list[ProductEntry]) -> list[ProductEntry]:
    by_key = {e.spec.key: e for e in entries}
    graph = {e.spec.key: {f"{i.domain}__{i.product}" for i in e.spec.inputs.products} for e in entries}
    return [by_key[k] for k in _topological(graph) if k in by_key]


def _topological(graph: dict[str, set[str]]) -> list[str]:
    """The keys of `graph` (key -> the keys it reads) in dependency order, stable from run to run."""
    sorter = TopologicalSorter(graph)
    try:
        sorter.prepare()
    except CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise SpecError([Problem(DBT_DIR, "inputs", f"products read each other in a cycle: {cycle}")]) from exc
    ordered: list[str] = []
    # Sort each ready batch so the order is stable from run to run.
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        ordered += ready
        sorter.done(*ready)
    return ordered
