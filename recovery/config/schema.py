"""JSON Schema of the config files, so editors (taplo, VS Code) validate them as you type.

The playbook schema is as strict as the planner: one step schema per step
kind, chosen by ``kind``, with that kind's own parameters; an unknown kind
or a misspelt parameter is flagged in the editor as it is at `recover plan`.
The caller passes the step kinds (name -> params model), so this config
layer does not depend on the steps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, create_model

from recovery.config.inventory import Inventory
from recovery.config.playbook import Playbook, Step


def write_schemas(directory: Path, step_params: Mapping[str, type[BaseModel]]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in (("inventory", Inventory), ("playbook", playbook_model(step_params))):
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = f"recovery {name}"
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2) + "\n")
        written.append(path)
    return written


def playbook_model(step_params: Mapping[str, type[BaseModel]]) -> type[Playbook]:
    """The playbook with ``steps`` as a union of one step model per kind, told apart by ``kind``."""
    variants = [_step_model(kind, params) for kind, params in sorted(step_params.items())]
    steps: Any = Annotated[Union[tuple(variants)], Field(discriminator="kind")]  # noqa: UP007 - built at run time
    return create_model("Playbook", __base__=Playbook, steps=(list[steps], Field(min_length=1)))


def _step_model(kind: str, params: type[BaseModel]) -> type[Step]:
    required = any(field.is_required() for field in params.model_fields.values())
    default: Any = ... if required else Field(default_factory=dict)
    name = "".join(part.title() for part in kind.split("_")) + "Step"  # one per kind, even when params are shared
    return create_model(name, __base__=Step,
                        kind=(Literal[kind], ...), params=(params, default))
