"""JSON Schema of the config files, so editors (taplo, VS Code) validate them as you type."""

from __future__ import annotations

import json
from pathlib import Path

from recovery.config.inventory import Inventory
from recovery.config.playbook import Playbook


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in (("inventory", Inventory), ("playbook", Playbook)):
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = f"recovery {name}"
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2) + "\n")
        written.append(path)
    return written
