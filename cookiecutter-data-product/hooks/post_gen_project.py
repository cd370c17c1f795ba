"""Turn the cookiecutter answers into a new data product: the generator's own code does it all.

Cookiecutter renders hook scripts with Jinja before running them, so this file holds no template
syntax and never sees an answer as code: cookiecutter writes the answers as data (answers.json,
rendered with `cookiecutter | jsonify`) into the staging folder it generated, and this hook runs in
that folder. `generator.cli.new.from_cookiecutter` checks them (spec rules, the mesh, the domain
registry, blocking policies), writes dbt/<domain>/<name>/ and renders it, exactly as `datamesh new`
does, and removes the staging folder; on failure the repo is left as it was.

Exit codes (the generator's): 2 bad answers, 1 a step failed. Cookiecutter then prints its own
`Hook script failed` traceback, which no hook can prevent: `datamesh new` checks each answer as it
is typed instead.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    try:
        from generator.cli.new import from_cookiecutter
    except ImportError as exc:
        print(
            f"Error: this template needs the datamesh generator, which {sys.executable} cannot import ({exc}). "
            "Run the repo's own .venv/bin/cookiecutter (`make test` or `make demo` sets it up), "
            "or use `datamesh new`.",
            file=sys.stderr,
        )
        sys.exit(2)
    sys.exit(from_cookiecutter(Path.cwd()))
