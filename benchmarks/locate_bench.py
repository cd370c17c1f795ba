"""How long a DAG task takes to find its product among many: before (load_mesh, every spec) and
after (spec/locate.py, its own spec only).

Writes N product specs into a scratch repo — copies of the example customers/customer_profiles
(a product with no product inputs) spread over 40 domains — and times locating one of them,
median of R rounds each way. Goal (issue 11 item 4): at most 50 ms among 1,000 products.

    .venv/bin/python benchmarks/locate_bench.py [--products 1000] [--domains 40] [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from generator.layout import spec_path  # noqa: E402
from generator.spec.locate import locate  # noqa: E402
from generator.spec.mesh import load_mesh  # noqa: E402

EXAMPLE = ("customers", "customer_profiles")


def write_specs(root: Path, products: int, domains: int) -> list[tuple[str, str]]:
    """`products` copies of the example spec, product i named `<example>_<i>` in domain
    `<example domain>_<i % domains>`. Returns their (domain, product) pairs."""
    example = yaml.safe_load(spec_path(REPO_ROOT, *EXAMPLE).read_text())
    written = []
    for i in range(products):
        domain, name = f"{example['domain']}_{i % domains}", f"{example['name']}_{i}"
        path = spec_path(root, domain, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(dict(example, domain=domain, name=name), sort_keys=False))
        written.append((domain, name))
    return written


def median_ms(find: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        found = find()
        times.append(time.perf_counter() - start)
        assert found is not None
    return statistics.median(times) * 1000


# A task starts in a fresh process, where Airflow (and pydantic) are imported already: the
# first locate there also imports the spec model, once, whatever the number of products.
FRESH = """
import sys, time
from pathlib import Path
import airflow.sdk, pydantic, yaml
start = time.perf_counter()
from generator.spec.locate import locate
imported = time.perf_counter()
locate(Path(sys.argv[1]), *sys.argv[2:])
print((imported - start) * 1000, (time.perf_counter() - imported) * 1000)
"""


def fresh_process_ms(root: Path, domain: str, product: str) -> tuple[float, float]:
    """(importing the spec stack, the first locate) in a new Python process, in ms."""
    out = subprocess.run(
        [sys.executable, "-c", FRESH, str(root), domain, product],
        check=True, capture_output=True, text=True, cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT)},
    )
    imports, first = out.stdout.split()
    return float(imports), float(first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--domains", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        written = write_specs(root, args.products, args.domains)
        domain, product = written[len(written) // 2]
        before = median_ms(lambda: load_mesh(root).find(domain, product), args.rounds)
        after = median_ms(lambda: locate(root, domain, product), args.rounds)
        fresh = [fresh_process_ms(root, domain, product) for _ in range(5)]
    print(f"locating {domain}/{product} among {len(written)} products in {args.domains} domains, "
          f"median of {args.rounds}:")
    print(f"  before (load_mesh, every spec):  {before:8.1f} ms")
    print(f"  after  (locate, its own spec):   {after:8.1f} ms   (goal: <= 50 ms)")
    imports, first = (statistics.median(times) for times in zip(*fresh, strict=True))
    print(f"  after, in a fresh task process (median of 5): first locate {first:.1f} ms, "
          f"after importing the spec model once in {imports:.1f} ms (independent of the product count)")


if __name__ == "__main__":
    main()
