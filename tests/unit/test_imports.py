"""The package's import rules (.importlinter), checked with import-linter as CI runs it,
and the promises they stand for, checked directly."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    assert lint.exists(), "import-linter is a pinned requirement (requirements.txt): run `make venv`"
    result = subprocess.run([str(lint), "--config", str(ROOT / ".importlinter")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "broken" in result.stdout and "0 broken" in result.stdout


def test_the_client_and_its_cli_load_without_torch():
    code = ("import sys, lizaalert_tagger.client.tagctl, lizaalert_tagger.client.http, lizaalert_tagger.common.scoring, lizaalert_tagger.common.labels_csv; "
            "heavy = sorted(m for m in ('torch', 'torchvision', 'PIL', 'ts') if m in sys.modules); "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_nothing_edits_sys_path():
    """One installable package: no module reaches another through sys.path edits."""
    offenders = []
    for folder in ("src", "scripts", "tests", "handler", "deploy"):
        for path in (ROOT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"sys\.path\s*(\.(insert|append|extend)|\[|\+?=)", line) and path.name != "test_imports.py":
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders
