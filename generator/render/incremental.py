"""What a render of the whole mesh must redo, told from spec bytes and generated files' headers alone.

`plan` reads every spec file's bytes and every generated file, recomputes each file's inputs hash
(render/fingerprint.py) and sorts the products into:

- clean: every generated file of the product carries the current inputs hash and an intact body, and
  none is missing. Its spec is not even parsed: the files are what a render would write, byte for
  byte, and the spec was valid when they were written (its inputs' too: their bytes are in the hash).
- dirty: its spec, an input's spec, the generator or a setting changed; or a file was edited by
  hand, deleted or moved; or it is new. These are parsed, cross-checked and rendered again.

Files that may be stale are collected too: the files of dirty products (a render may no longer
produce one), of deleted specs, and generated files whose header names no product. Imports nothing
heavy (no YAML, pydantic or Jinja): on a mesh where nothing changed this is all `check` does.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from generator.file_bytes import read_bytes
from generator.layout import DAGS_DIR, DBT_DIR, DBT_WORK_DIRS, PLATFORM_DAG, PLATFORM_PACKAGE_DIR, SPEC_FILENAME
from generator.render.fingerprint import SpecDigests, body_hash, unstamped
from generator.render.rendered import GENERATED_MARK, read_meta

_OWNER = re.compile(rf" from {DBT_DIR}/([^/\s]+/[^/\s]+)/{re.escape(SPEC_FILENAME)}\. ")


@dataclass
class Plan:
    products: list[str]  # every product with a spec, `domain/product`, sorted
    dirty: list[str] = field(default_factory=list)  # to parse and render again
    reads: dict[str, list[str]] = field(default_factory=dict)  # clean product -> the products it reads
    hashes: dict[str, str] = field(default_factory=dict)  # clean product -> its inputs hash
    maybe_stale: list[str] = field(default_factory=list)  # generated files a render may not produce
    current: int = 0  # generated files found current

    @property
    def clean(self) -> list[str]:
        dirty = set(self.dirty)
        return [p for p in self.products if p not in dirty]


def plan(root: Path) -> Plan:
    digests = SpecDigests(root)
    result = Plan(products=product_names(root))
    with_spec = set(result.products)
    dirty: set[str] = set()
    files_of: dict[str, list[str]] = {}
    counted: Counter[str] = Counter()  # current files per product
    expected: dict[str, int] = {}
    for rel, text in generated_files(root):
        if rel == PLATFORM_DAG:  # the mesh's own, from no spec: render/mesh.py's memo covers it
            continue
        meta = read_meta(text)
        shared = "products" in meta  # a domain's DAG file: several products
        owners = [p for p in meta["products"].split(",") if p] if shared else [_owner(text)]
        known = [o for o in owners if o in with_spec]
        if not known:
            result.maybe_stale.append(rel)  # no spec produces it: a render removes it
            continue
        for owner in known:
            files_of.setdefault(owner, []).append(rel)
        reads = [r for r in meta.get("reads", "").split(",") if r]
        named = [*owners[1:], *reads]
        current = (
            len(known) == len(owners)
            and "body" in meta
            and meta.get("inputs") == digests.inputs_hash(owners[0], named)
            and meta["body"] == body_hash(rel, unstamped(text))
            and (shared or meta.get("files", "").isdigit())
        )
        if not current:
            dirty.update(known)
            continue
        for owner in known:
            counted[owner] += 1
        if not shared:
            owner = owners[0]
            expected.setdefault(owner, int(meta["files"]))
            result.reads.setdefault(owner, reads)
            result.hashes.setdefault(owner, meta["inputs"])
    for product in result.products:
        if counted[product] == 0 or counted[product] != expected.get(product):
            dirty.add(product)
    # A domain's DAG file is rendered from all of its products: one dirty product makes its whole
    # domain dirty (render/mesh.py render_products).
    touched = {product.split("/")[0] for product in dirty}
    dirty.update(p for p in result.products if p.split("/")[0] in touched)
    for product in result.products:
        if product in dirty:
            result.maybe_stale += files_of.get(product, [])
            result.reads.pop(product, None)
            result.hashes.pop(product, None)
        else:
            result.current += counted[product]
    # a domain's DAG file counts once, not once per product
    result.current -= sum(
        len(shared) - 1 for shared in _shared_files(files_of, dirty)
    )
    result.dirty = sorted(dirty)
    result.maybe_stale = sorted(set(result.maybe_stale))
    return result


def _shared_files(files_of: dict[str, list[str]], dirty: set[str]) -> list[list[str]]:
    """For each file that several clean products count, the products that count it."""
    counters: dict[str, list[str]] = {}
    for product, files in files_of.items():
        if product not in dirty:
            for rel in files:
                counters.setdefault(rel, []).append(product)
    return [products for products in counters.values() if len(products) > 1]


def product_names(root: Path) -> list[str]:
    """`domain/product` of every spec file (dbt/<domain>/<product>/data_product.yaml)."""
    base = root / DBT_DIR
    found = []
    for domain in _subdirs(base):
        if domain == PLATFORM_PACKAGE_DIR:
            continue
        for product in _subdirs(base / domain):
            if os.path.isfile(base / domain / product / SPEC_FILENAME):
                found.append(f"{domain}/{product}")
    return sorted(found)


def generated_files(root: Path) -> list[tuple[str, str]]:
    """(repo-relative path, text) of every file under dbt/ and dags/ whose first line is the
    generated-file note. Plain strings and os.scandir: this runs on every file of the mesh."""
    found: list[tuple[str, str]] = []
    mark = GENERATED_MARK.encode()
    for top in (DBT_DIR, DAGS_DIR):
        for rel in files_under(str(root), top):
            try:
                data = read_bytes(os.path.join(root, rel))
            except OSError:
                continue
            end = data.find(b"\n")
            if mark not in (data if end < 0 else data[:end]):
                continue
            try:
                found.append((rel, data.decode("utf-8")))
            except UnicodeDecodeError:
                continue
    return found


def files_under(root: str, folder: str) -> list[str]:
    """Every file under `folder` (repo-relative, POSIX), sorted as paths sort, without going into
    DBT_WORK_DIRS (thousands of files once dbt has run) or following links to folders."""
    try:
        entries = sorted(os.scandir(os.path.join(root, folder)), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    files: list[str] = []
    for entry in entries:
        rel = f"{folder}/{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in DBT_WORK_DIRS:
                files += files_under(root, rel)
        elif entry.is_file():
            files.append(rel)
    return files


def _owner(text: str) -> str | None:
    """The product whose spec the note on the first line names."""
    found = _OWNER.search(text[: text.find("\n")])
    return found.group(1) if found else None


def _subdirs(folder: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    except FileNotFoundError:
        return []
