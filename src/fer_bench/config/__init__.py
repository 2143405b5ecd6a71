"""Configuration in one place: the run schema, merging (defaults ← data card ← experiment ← command line) and
validation. Importing it loads no torch."""

from fer_bench.config.core import (
    TRAINER_PRESETS,
    ConfigError,
    EvalConfig,
    build_config,
    data_card,
    dataclass_overrides,
    load_run_config,
    project_root,
    read_yaml_mapping,
    resume_config,
    split_selectors,
    to_yaml,
)

__all__ = ["TRAINER_PRESETS", "ConfigError", "EvalConfig", "build_config", "data_card", "dataclass_overrides",
           "load_run_config", "project_root", "read_yaml_mapping", "resume_config", "split_selectors", "to_yaml"]
