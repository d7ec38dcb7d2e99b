"""domains.yml: the schema, and a loader that reads it safely and locates every problem."""

from atl_pipeline.config.loader import LoadedConfig, dotted, load_config, load_source
from atl_pipeline.config.model import Config, Domain, Service
from atl_pipeline.config.yaml_reader import Source, decode_source, read_source

__all__ = [
    "Config", "Domain", "LoadedConfig", "Service", "Source",
    "decode_source", "dotted", "load_config", "load_source", "read_source",
]
