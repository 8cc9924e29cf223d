import copy
import json
from pathlib import Path

EXAMPLE_PATH = Path(__file__).resolve().parents[3] / "docs" / "legacy-example.json"
_EXAMPLE = json.loads(EXAMPLE_PATH.read_text())

IMPORTABLE = frozenset({"openai", "runware"})


def example() -> dict:
    """A fresh copy of docs/legacy-example.json: the tests and the documentation share one file."""
    return copy.deepcopy(_EXAMPLE)


def image_entry(data: dict, model_name: str) -> dict:
    return next(m for m in data["constants"]["image_models"] if m["model_name"] == model_name)


def all_keys(data: dict) -> list[str]:
    return [v for k, v in data["global_integration_settings"].items() if k.endswith("_api_key") and v]
