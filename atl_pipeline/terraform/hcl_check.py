"""Parse rendered Terraform with python-hcl2 and require exactly what the config implies.

A file that parses to any other block, resource, output, backend or value (say, because
a value broke out of its string) is an error, and is never planned.
"""

from __future__ import annotations

import hcl2
from lark.exceptions import LarkError

from atl_pipeline.terraform.render import Rendered, RenderError, hcl

_OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)

# What each target's templates declare, besides the data in `locals`.
TARGET_SHAPES = {
    "local": {
        "resources": {("terraform_data", "service"), ("terraform_data", "domain")},
        "outputs": {"services", "domains"},
    },
}


def check_rendered(rendered: Rendered, target: str) -> None:
    """Raises RenderError unless the files declare exactly the target's shape and inputs."""
    shape = TARGET_SHAPES[target]
    blocks: dict[str, list] = {}
    for name, text in rendered.files.items():
        for block_type, entries in _parse(f"rendered {name}", text).items():
            blocks.setdefault(block_type, []).extend(entries)

    _require(set(blocks) == {"terraform", "locals", "resource", "output"},
             f"block types {sorted(blocks)}, expected terraform, locals, resource and output")
    resources = [(kind, name) for entry in blocks["resource"] for kind, named in entry.items() for name in named]
    _require(sorted(resources) == sorted(shape["resources"]), f"resources {resources}")
    outputs = [name for entry in blocks["output"] for name in entry]
    _require(sorted(outputs) == sorted(shape["outputs"]), f"outputs {outputs}")
    _require(blocks["terraform"][0].get("backend") == [_backend(rendered.inputs["backend"])],
             f"backend {blocks['terraform'][0].get('backend')}")
    locals_ = {key: value for entry in blocks["locals"] for key, value in entry.items()}
    _require(locals_ == _expected_locals(rendered.inputs), "locals that differ from the configuration's values")


def _backend(backend: dict) -> dict:
    if backend["kind"] == "pg":
        return {"pg": {"schema_name": backend["schema_name"]}}
    return {"local": {"path": "terraform.tfstate"}}


def _expected_locals(inputs: dict) -> dict:
    """The inputs as python-hcl2 reads them back from literals written by `hcl`, not by the templates.

    Comparing two readings by the same parser makes the check independent of how
    python-hcl2 represents escapes, while any value the templates printed unescaped
    (an interpolation, a broken-out string) reads back differently.
    """
    text = "locals {\n" + "".join(f"  {key} = {hcl(inputs[key])}\n" for key in ("services", "domains")) + "}\n"
    return _parse("expected values", text)["locals"][0]


def _parse(name: str, text: str) -> dict:
    try:
        return hcl2.loads(text, serialization_options=_OPTIONS)
    except (LarkError, ValueError) as error:
        raise RenderError(f"{name} could not be read back as HCL ({str(error).splitlines()[0]}); nothing was "
                          "planned. python-hcl2 cannot read a value holding `${` or `%{` without a closing `}`: "
                          "check terraform_templates/ and such values") from None


def _require(condition: bool, found: str) -> None:
    if not condition:
        raise RenderError(f"the rendered Terraform declares {found}: not what domains.yml implies; "
                          "nothing was planned (check terraform_templates/)")
