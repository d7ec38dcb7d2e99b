"""domains.yml: the schema, and a loader that reads it safely and locates every problem."""

from atl_pipeline.config.loader import LoadedConfig, load_config
from atl_pipeline.config.model import Config, Domain

__all__ = ["Config", "Domain", "LoadedConfig", "load_config"]
