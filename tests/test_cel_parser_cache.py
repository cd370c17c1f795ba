"""cel-python's parser, loaded from lark's cache in the user's cache folder, gives the answers the
parser cel-python builds itself gives; a cache folder that cannot be written only costs the build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

EXPRESSIONS = [
    "product.rows > 10 && true",  # `true`: the lexer callback turns the identifier into a literal
    "false || product.tags.exists(t, t == 'pii')",
    "size(product.name) > 3 ? 'long' : 'short'",
    "product.owner == null",
    "product.retention_days != null && product.retention_days <= 2555",
    "'a' + product.name + \"b\"",
    "product.rows / 0 > 1",  # an evaluation error
]
SUBJECT = {"rows": 12, "tags": ["pii", "sales"], "name": "orders", "owner": None, "retention_days": 400}

PROBE = """
import json, sys
import celpy
from generator.governance import cel
answers = []
for text in json.loads(sys.argv[1]):
    try:
        answers.append(repr(cel.evaluate(cel.program(text), {"product": celpy.json_to_cel(json.loads(sys.argv[2]))})))
    except Exception as exc:
        answers.append(type(exc).__name__)
print(json.dumps(answers))
"""

CEL_PYTHONS_OWN = PROBE.replace(
    "from generator.governance import cel\n",
    "from generator.governance import cel\ncel._load_cel_parser = lambda: None  # cel-python builds its own\n",
)


def answers(cache_home: Path, probe: str = PROBE) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(EXPRESSIONS), json.dumps(SUBJECT)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "XDG_CACHE_HOME": str(cache_home)},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_cached_parser_answers_as_cel_pythons_own(tmp_path: Path) -> None:
    own = answers(tmp_path / "unused", CEL_PYTHONS_OWN)
    assert own[0] == "BoolType(True)" and own[-1] == "CELEvalError"  # the probe evaluates for real

    built = answers(tmp_path / "cache")  # builds the parser and writes the cache
    [cached_file] = (tmp_path / "cache" / "datamesh").glob("cel-parser-*.lark")
    from_cache = answers(tmp_path / "cache")  # loads it

    assert built == own and from_cache == own
    assert cached_file.stat().st_size > 0


def test_a_cache_folder_that_cannot_be_made_only_costs_the_build(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert answers(blocked) == answers(tmp_path / "unused", CEL_PYTHONS_OWN)
