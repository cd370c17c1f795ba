"""The guard of the CEL fast path: an expression takes it only where it was seen to give
cel-python's answers.

Why: cel_fast_path.py reads cel-python's parse tree (its private rule names) and re-implements a
few of its operators. A cel-python release that renames a rule or changes an operator's rules must
not silently change a policy's verdict. So when a policy file is loaded, every expression the fast
path takes (`when`, `assert`, the message's `{{ expressions }}`) is evaluated both ways on the
example subjects and deterministic variations of them (examples.py); where the two differ (value,
or error against value) the expression falls back to cel-python, with a warning naming it and why.

The verdicts are a function of the file's bytes and the generator's version (and of cel-python's
version and the fast path's code, see `_salt`), so they are kept by that hash: in this process, and on disk under
.datamesh/cache/ when the repo is writable, so a 1,000-product validate and each gate task pay the
cross-check once per file, not per load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections import Counter
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import celpy

from generator import __version__
from generator.governance import cel_fast_path, examples
from generator.governance.activation import Activation, Converter, pruned
from generator.governance.analysis import Reads
from generator.governance.cel import eval_error, evaluate
from generator.governance.cel_fast_path import Fast, Unsupported
from generator.governance.examples import variations
from generator.governance.model import SubjectKind
from generator.layout import CACHE_DIR

log = logging.getLogger(__name__)

Role = Literal["when", "assert", "message"]

# Expressions cross-checked in this process (the cache hits are not): what tests observe.
counts: Counter[str] = Counter()

_verdicts_in_memory: dict[str, dict[str, str | None]] = {}
_CACHE_FOLDER = "fast_path"


@cache
def _salt() -> bytes:
    """What a verdict depends on besides the file: the generator's version, cel-python's, and the
    fast path's and the variations' own code (edited between version bumps while developing)."""
    try:
        celpy_version = metadata.version("cel-python")
    except metadata.PackageNotFoundError:
        celpy_version = "unknown"
    code = hashlib.sha256()
    for module in (cel_fast_path, examples):
        code.update(Path(module.__file__ or "").read_bytes())
    return f"\0generator {__version__}\0cel-python {celpy_version}\0code {code.hexdigest()}".encode()


class FastPathGuard:
    """The verdicts on one policy file's expressions: fast path allowed, or the reason it is not."""

    def __init__(self, root: Path, shown: str, content: bytes) -> None:
        self._shown = shown
        self._hash = hashlib.sha256(content + _salt()).hexdigest()
        self._file = root / CACHE_DIR / _CACHE_FOLDER / f"{self._hash}.json"
        cached = _verdicts_in_memory.get(self._hash)
        self._report = cached is None  # warnings once per process, not per load
        self._verdicts = cached if cached is not None else _read(self._file)
        self._changed = False

    def checked(self, role: Role, kind: SubjectKind, text: str, program: celpy.Runner,
                reads: Reads | None, fast: Fast | None) -> Fast | None:
        """`fast` if it gives cel-python's answers on every variation of the example, else None."""
        if fast is None:
            return None
        key = f"{kind}\0{role}\0{text}"
        if key in self._verdicts:
            reason = self._verdicts[key]
        else:
            counts["cross_checked"] += 1
            reason = _divergence(role, kind, program, reads, fast)
            self._verdicts[key] = reason
            self._changed = self._report = True
        if reason is None:
            return fast
        if self._report:
            log.warning(
                "%s: the CEL fast path is not used for %s `%s` of a %s policy, cel-python evaluates it: %s",
                self._shown, role, text, kind, reason,
            )
        return None

    def save(self) -> None:
        """Keep the verdicts for the next load: in this process, and on disk when writable."""
        _verdicts_in_memory[self._hash] = self._verdicts
        if self._changed:
            _write(self._file, self._verdicts)
            self._changed = False


def clear_memory_cache() -> None:
    """Forget the verdicts kept in this process (the disk cache stays)."""
    _verdicts_in_memory.clear()


def _divergence(role: Role, kind: SubjectKind, program: celpy.Runner, reads: Reads | None, fast: Fast) -> str | None:
    """Why the fast path cannot be trusted with this expression, or None when it agreed everywhere."""
    convert = Converter()  # unchanged variables are shared by the variations: converted once
    wanted = str if role == "message" else bool
    for changed, plain in variations(kind, reads):
        where = f"on the example {kind}" + ("" if changed == "the example" else f" with {changed}")
        try:
            answer = fast(plain)
        except Unsupported:
            continue  # left to cel-python at run time anyway
        except Exception as exc:  # noqa: BLE001 - any other failure of the fast path is a divergence
            return f"{where} the fast path failed ({type(exc).__name__}: {exc})"
        if type(answer) is not wanted:
            continue  # not used at run time: cel-python answers then
        # As CelExpression.holds runs it: on only the values read when they all resolve, else on all.
        key = None if reads is None else Activation(plain, convert).key(reads)
        context = (
            celpy.json_to_cel(pruned(plain, reads)) if key is not None and reads is not None
            else {name: convert(value) for name, value in plain.items()}
        )
        try:
            expected = evaluate(program, context)
        except Exception as exc:  # noqa: BLE001 - an error cel-python reports must not become a value
            return f"{where} the fast path gave {answer!r}, cel-python an error ({eval_error(exc)})"
        if not _same(answer, expected):
            return f"{where} the fast path gave {answer!r}, cel-python {_plain(expected)!r}"
    return None


def _same(answer: Any, expected: Any) -> bool:
    if type(answer) is bool:
        return isinstance(expected, celpy.celtypes.BoolType) and bool(expected) == answer
    return isinstance(expected, str) and str(expected) == answer


def _plain(value: Any) -> Any:
    if isinstance(value, celpy.celtypes.BoolType):
        return bool(value)
    return str(value) if isinstance(value, str) else value


def _read(path: Path) -> dict[str, str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    verdicts = data.get("verdicts") if isinstance(data, dict) else None
    if not isinstance(verdicts, dict):
        return {}
    return {k: v for k, v in verdicts.items() if isinstance(k, str) and (v is None or isinstance(v, str))}


def _write(path: Path, verdicts: dict[str, str | None]) -> None:
    # Written whole to a temporary file and renamed: gate tasks running side by side never read half
    # a file. Not writable (a read-only checkout, a container): no disk cache, silently.
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"verdicts": verdicts}, handle, sort_keys=True)
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
