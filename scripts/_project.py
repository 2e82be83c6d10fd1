"""Make the archive's modules (handler/) importable by bare name, as in the worker."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HANDLER_DIR = ROOT / "handler"
if str(HANDLER_DIR) not in sys.path:
    sys.path.insert(0, str(HANDLER_DIR))
