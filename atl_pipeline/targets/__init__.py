"""Where the declared infrastructure lives: one module per kind of target, each a `Target`.

The stages ask the configuration's Target; nothing outside this package branches on the
kind (tests/test_targets.py checks it). A third kind is a third module here, its templates
in terraform_templates/<kind>/, and its model in atl_pipeline/config/model.py.
"""

from __future__ import annotations

from atl_pipeline.config import Config
from atl_pipeline.targets.base import Target
from atl_pipeline.targets.hcloud import Hcloud
from atl_pipeline.targets.local import Local
from atl_pipeline.timings import DEFAULT_TIMINGS, Timings

KINDS: dict[str, type[Target]] = {kind.kind: kind for kind in (Local, Hcloud)}


def target_of(config: Config, timings: Timings = DEFAULT_TIMINGS) -> Target:
    """The Target of the configuration's `target:`, waiting as long as `timings` say."""
    return KINDS[config.target.kind](config, timings)


__all__ = ["KINDS", "Target", "target_of"]
