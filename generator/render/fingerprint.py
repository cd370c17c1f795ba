"""What a product's generated files depend on, as one hash, kept in the files' own headers.

A product's files are a function of: its spec file's bytes, its domain registry file's bytes
(domains/<domain>.yaml), the spec bytes of the products it reads
(their descriptions and columns reach its sources and quality tests), the generator's own source
(renderers, templates, the spec model; its version too), the versions of the libraries that write
them (PyYAML, Jinja2, pydantic) and the settings that reach the output (the card-link variables).
A renderer that starts importing a generator module outside SOURCE_PARTS must add it there
(tests/test_incremental.py checks this). `inputs_hash` is a hash of all of them. Each generated file carries, on
its header's meta line:

    # datamesh: inputs=<hash> reads=<domain/product,...> files=<n> spec=<hash> gen=<hash> env=<hash>
    #           body=<hash>   (one line)

`reads` lists the products the hash covered besides the file's own (named on the first line), so the
hash can be recomputed from spec bytes alone, without parsing YAML; `files` is how many generated
files the product has (a deleted one is noticed); `body` is a hash of the file's path and the rest of
its text (a hand edit is noticed). `spec`, `gen` and `env` are the parts of `inputs` that an upgrade
plan names as the reason a file changes (render/plan.py): the product's own spec bytes, the
generator (source, version, libraries) and the settings; what is left is the inputs' specs.
A file of several products (a domain's DAG file) carries instead

    # datamesh: inputs=<hash> products=<domain/product,...> reads=<domain/product,...> gen=<hash>
    #           env=<hash> body=<hash>   (one line)

where the hash covers every product named in `products` and `reads` (in that order), and the
products' own files count it in their `files`. Imports nothing heavy: `datamesh check` runs this on
every file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import generator
from generator.file_bytes import read_bytes
from generator.layout import DBT_DIR, DOMAINS_DIR, SPEC_FILENAME
from generator.render.rendered import add_meta, drop_meta

# The parts of the generator whose source reaches a generated file (the JSON Schema's included).
SOURCE_PARTS = ("render", "spec", "layout.py", "errors.py", "parallel.py", "file_bytes.py", "__init__.py")
# The libraries whose output is written as is: YAML dumping, templating, the JSON Schema.
LIBRARIES = ("PyYAML", "Jinja2", "pydantic")
# Environment settings written into generated files (see render/airflow_dag.py, card_links, and
# spec/dataset_names.py, the warehouse's names in the Assets).
SETTINGS = (
    "DATAMESH_DBT_DOCS_URL",
    "DATAMESH_REPORT_URL",
    "DATAMESH_WAREHOUSE_NAMESPACE",
    "DATAMESH_WAREHOUSE_DATABASE",
)
# The meta keys this module writes, in this order.
KEYS = ("inputs", "products", "reads", "files", "spec", "gen", "env", "body")
HASH_CHARS = 16  # 64 bits: ample to tell versions of one file apart


@cache
def generator_fingerprint() -> str:
    """A hash of the generator's version, of the source of every module that shapes its output
    and of the versions of the libraries that write it."""
    from importlib.metadata import PackageNotFoundError, version

    package = Path(generator.__file__).parent
    digest = hashlib.sha256(generator.__version__.encode())
    for library in LIBRARIES:
        try:
            digest.update(f"\0{library}=={version(library)}".encode())
        except PackageNotFoundError:
            digest.update(f"\0{library} missing".encode())
    for part in SOURCE_PARTS:
        base = package / part
        files = sorted(base.rglob("*")) if base.is_dir() else [base]
        for path in files:
            if path.is_file() and path.suffix not in {".pyc", ".tmp"} and "__pycache__" not in path.parts:
                digest.update(path.relative_to(package).as_posix().encode() + b"\0")
                digest.update(read_bytes(path) + b"\0")
    return digest.hexdigest()


def part_hash(text: str) -> str:
    """A short hash of one part of the inputs, for the header (see `SpecDigests.parts`)."""
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def settings_fingerprint(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return "\0".join(env.get(name, "").strip() for name in SETTINGS)


def spec_file(root: Path, product: str) -> Path:
    """The spec of `domain/product`."""
    return root / DBT_DIR / product / SPEC_FILENAME


class SpecDigests:
    """The sha256 of each spec file's bytes, read once per command ('missing' when there is none)."""

    def __init__(self, root: Path):
        self.root = root
        self._known: dict[str, str] = {}
        self._hashes: dict[tuple[str, ...], str] = {}
        self.base = hashlib.sha256(
            (generator_fingerprint() + "\0" + settings_fingerprint()).encode()
        ).hexdigest()

    def of(self, product: str) -> str:
        if product not in self._known:
            try:
                data = read_bytes(spec_file(self.root, product))
                self._known[product] = hashlib.sha256(data).hexdigest()
            except FileNotFoundError:
                self._known[product] = "missing"
        return self._known[product]

    def parts(self, product: str) -> dict[str, str]:
        """The hashes of the parts of `product`'s inputs hash that an upgrade plan tells apart."""
        return {
            "spec": self.of(product)[:HASH_CHARS],
            "gen": part_hash(generator_fingerprint()),
            "env": part_hash(settings_fingerprint()),
        }

    def of_domain(self, domain: str) -> str:
        """The sha256 of the domain's registry file (domains/<domain>.yaml), 'missing' without one."""
        key = f"{DOMAINS_DIR}/{domain}"
        if key not in self._known:
            try:
                self._known[key] = hashlib.sha256(read_bytes(self.root / f"{key}.yaml")).hexdigest()
            except FileNotFoundError:
                self._known[key] = "missing"
        return self._known[key]

    def inputs_hash(self, product: str, reads: Iterable[str]) -> str:
        """The hash of everything the files of `product` depend on, given the products it reads:
        their specs, and the registry file of the product's domain (its DAG's owner links and card)."""
        names = (product, *reads)
        if names not in self._hashes:  # a product's files all ask the same
            digest = hashlib.sha256(self.base.encode())
            for name in names:
                digest.update(f"\0{name}\0{self.of(name)}".encode())
            digest.update(f"\0domain\0{self.of_domain(product.split('/')[0])}".encode())
            self._hashes[names] = digest.hexdigest()[:HASH_CHARS]
        return self._hashes[names]


def body_hash(path: str, text: str) -> str:
    """A hash of a generated file as its renderer returned it (before `stamp`), and of where it is."""
    return hashlib.sha256(f"{path}\0{text}".encode()).hexdigest()[:HASH_CHARS]


def stamp(
    path: str, text: str, inputs: str, reads: list[str], files: int, parts: dict[str, str] | None = None
) -> str:
    return add_meta(
        text, inputs=inputs, reads=",".join(reads), files=str(files), **(parts or {}), body=body_hash(path, text)
    )


def stamp_shared(
    path: str, text: str, inputs: str, products: list[str], reads: list[str], parts: dict[str, str] | None = None
) -> str:
    """`stamp` for a file of several products (a domain's DAG file); `parts` without `spec` (the
    file has several)."""
    return add_meta(
        text,
        inputs=inputs,
        products=",".join(products),
        reads=",".join(reads),
        **(parts or {}),
        body=body_hash(path, text),
    )


def unstamped(text: str) -> str:
    return drop_meta(text, *KEYS)
