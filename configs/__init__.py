"""Typed configuration for every job, loaded from the YAML files in this folder.

A config file has one section per concern (``clip``, ``augment``, ``backbone``,
``features``, ``extract``, ``train``, ``finetune``, ``demo``). ``default.yaml`` holds every default; a job's ``--config`` file and then its
``--set key=value`` overrides are merged on top, and the result is validated: an unknown
key or a bad value is a :class:`ConfigError` whose one-line message names the key.
"""

from configs.schema import (
    AugmentConfig,
    BackboneConfig,
    ClipConfig,
    Config,
    ConfigError,
    DemoConfig,
    ExtractConfig,
    FeaturesConfig,
    FinetuneConfig,
    GbmParams,
    InceptionParams,
    LogregParams,
    TrainConfig,
    config_hash,
    load_config,
)

__all__ = [
    "AugmentConfig",
    "BackboneConfig",
    "ClipConfig",
    "Config",
    "ConfigError",
    "DemoConfig",
    "ExtractConfig",
    "FeaturesConfig",
    "FinetuneConfig",
    "GbmParams",
    "InceptionParams",
    "LogregParams",
    "TrainConfig",
    "config_hash",
    "load_config",
]
