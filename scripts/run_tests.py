#!/usr/bin/env python3
"""Run the test suite: unit tests first (fast, no server), then integration tests.

Exit code: non-zero when any test fails. pytest's "no tests collected"
(exit 5) in an optional group counts as success, since a group may be empty
on purpose (e.g. filtered by -k); anything else is passed through.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {
    "unit": ["-m", "not integration"],
    "integration": ["-m", "integration"],
}
NO_TESTS_COLLECTED = 5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("groups", nargs="*", choices=[[], *GROUPS], help="groups to run: unit, integration (default: all)")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments after --")
    args = parser.parse_args(argv)
    extra = [a for a in args.pytest_args if a != "--"]
    failed = []
    for group in args.groups or list(GROUPS):
        print(f"\n=== {group} tests ===", flush=True)
        code = subprocess.call([sys.executable, "-m", "pytest", *GROUPS[group], *extra], cwd=ROOT)
        if code == NO_TESTS_COLLECTED:
            print(f"(no {group} tests selected)")
        elif code != 0:
            failed.append(f"{group} (pytest exit {code})")
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("\nall test groups passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
