"""The garbage collector around imports (runtime/gc_tuning.py): off while they run, back as it was after.

Each case runs in a Python of its own: freezing objects is for the rest of a process."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_imports_run_without_collection_and_what_they_made_is_kept_out_of_its_reach() -> None:
    found = run("""
        import gc
        from generator.runtime.gc_tuning import importing
        before = gc.get_freeze_count()
        with importing():
            during = gc.isenabled()
            import json.decoder, email.parser  # noqa: F401
        print(during, gc.isenabled(), gc.get_freeze_count() > before)
    """)
    assert found == "False True True"


def test_the_collector_is_left_as_it_was_even_when_an_import_fails() -> None:
    found = run("""
        import gc
        from generator.runtime.gc_tuning import importing
        try:
            with importing():
                import no_such_module_here  # noqa: F401
        except ImportError:
            pass
        enabled = gc.isenabled()
        gc.disable()  # a caller that switched it off keeps it off
        with importing():
            import json  # noqa: F401
        print(enabled, gc.isenabled())
    """)
    assert found == "True False"
