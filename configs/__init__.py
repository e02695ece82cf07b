"""Typed configuration for every job, loaded from the YAML files in this folder.

A config file has one section per concern (``clip``, ``augment``, ``backbone``,
``features``, ``extract``, ``train`` with a section per registered head, ``finetune``,
``demo``). The schema holds every default (``default.yaml`` is it with comments, kept
equal by a test); a job's ``--config`` file and then its ``--set key=value`` overrides
are merged on top, and the result is validated: an unknown
key or a bad value is a :class:`ConfigError` whose one-line message names the key.
"""

from vidstore.configs.schema import (
    AugmentConfig,
    BackboneConfig,
    ClipConfig,
    Config,
    ConfigError,
    ConfigSection,
    DemoConfig,
    ExtractConfig,
    FeaturesConfig,
    FinetuneConfig,
    TrainConfig,
    config_hash,
    config_model,
    default_config,
    find_config,
    load_config,
    packaged_configs,
)

__all__ = [
    "AugmentConfig",
    "BackboneConfig",
    "ClipConfig",
    "Config",
    "ConfigError",
    "ConfigSection",
    "DemoConfig",
    "ExtractConfig",
    "FeaturesConfig",
    "FinetuneConfig",
    "TrainConfig",
    "config_hash",
    "config_model",
    "default_config",
    "find_config",
    "load_config",
    "packaged_configs",
]
