"""mner core: configuration, data formats, metrics, artifact store and CLI (no Prefect imports)."""

__version__ = "0.1.0"

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
