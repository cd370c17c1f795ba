"""How fast the mesh loads: every spec file read, parsed, validated and cross-checked.

Every command that looks at specs (`validate`, `render`, `check`, `policy check`, the DAG tasks)
starts with `load_mesh`. This writes N spec files into a scratch repo — copies of the example specs
under new domain names, so inputs still resolve within each copy — and times
`load_mesh` on it. Prints the median of a few rounds, in total and per spec.

    .venv/bin/python benchmarks/mesh_load_bench.py [--products 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from generator.spec.mesh import load_mesh, spec_paths  # noqa: E402


def write_mesh(root: Path, products: int) -> int:
    """Whole copies of the example mesh, copy k moving every domain `d` to `d_k` (its inputs and
    column references follow), until at least `products` specs exist."""
    examples = len(spec_paths(REPO_ROOT))
    copies = -(-products // examples)
    for k in range(1, copies + 1):
        # parsed afresh per copy: the references are edited in place
        for spec in (yaml.safe_load(p.read_text()) for p in spec_paths(REPO_ROOT)):
            moved = dict(spec, domain=f"{spec['domain']}_{k}")
            inputs = dict(moved.get("inputs") or {})
            inputs["products"] = [dict(i, domain=f"{i['domain']}_{k}") for i in inputs.get("products", [])]
            moved["inputs"] = inputs
            for output in moved.get("outputs", []):
                for column in output.get("columns", []):
                    ref = (column.get("constraints") or {}).get("references") or {}
                    if "domain" in ref:
                        ref["domain"] = f"{ref['domain']}_{k}"
            folder = root / "dbt" / moved["domain"] / moved["name"]
            folder.mkdir(parents=True)
            (folder / "data_product.yaml").write_text(yaml.safe_dump(moved, sort_keys=False))
    return copies * examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        count = write_mesh(root, args.products)
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            mesh = load_mesh(root)
            times.append(time.perf_counter() - start)
        assert len(mesh.products) == count
    median = statistics.median(times)
    print(
        f"load_mesh on {count} specs (read, parse, validate, cross-check inputs), median of "
        f"{args.rounds}: {median:.2f} s, {median / count * 1000:.1f} ms per spec"
    )


if __name__ == "__main__":
    main()
