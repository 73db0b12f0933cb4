"""Import every module of Tally's runtime packages (api, worker, ledger, config, tally).

CI runs it with the interpreter of a virtual environment that has the project installed
without its test extras (`pip install -e .`, as README.md's install command does): a module
that needs a test-only package fails here instead of in front of a user. Importing connects
to nothing; the environment only has to name a database and a broker.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback

PACKAGES = ("config", "ledger", "worker", "api", "tally")


def main() -> int:
    failures: list[str] = []
    imported = 0
    for name in PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            try:
                importlib.import_module(module.name)
            except Exception:
                failures.append(f"{module.name}:\n{traceback.format_exc(limit=3)}")
            else:
                imported += 1
    for failure in failures:
        print(f"cannot import {failure}", file=sys.stderr)
    print(f"imported {imported} modules, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
