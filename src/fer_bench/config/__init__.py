"""Configuration in one place, importing no torch, OpenCV or pandas:

- :mod:`~fer_bench.config.schema`: the run schema (dataclasses; choice-valued keys carry their choices,
  :mod:`~fer_bench.config.choices`), :mod:`~fer_bench.config.synth_spec`: the synthetic data set's keys;
- :mod:`~fer_bench.config.files`: where the YAML lives; :mod:`~fer_bench.config.merge`: strict merging;
- :mod:`~fer_bench.config.build`: the merge order (defaults ← data card ← experiment ← faithful block ← profile ←
  preset ← command line); :mod:`~fer_bench.config.presets`: trainer presets; :mod:`~fer_bench.config.validate`:
  the checks; :mod:`~fer_bench.config.faithful`: faithful blocks; :mod:`~fer_bench.config.init_sources`.
"""

from fer_bench.config.build import build_config, data_card, load_run_config, resume_config, to_yaml
from fer_bench.config.errors import ConfigError
from fer_bench.config.files import project_root, read_yaml_mapping
from fer_bench.config.merge import dataclass_overrides, split_selectors
from fer_bench.config.presets import TRAINER_PRESETS
from fer_bench.config.schema import EvalConfig

__all__ = ["TRAINER_PRESETS", "ConfigError", "EvalConfig", "build_config", "data_card", "dataclass_overrides",
           "load_run_config", "project_root", "read_yaml_mapping", "resume_config", "split_selectors", "to_yaml"]
