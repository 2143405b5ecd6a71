"""The spec of a synthetic data set (the ``data.synth.*`` keys): plain data, no renderer, so that the config can
hold it without importing OpenCV (the renderer is :mod:`fer_bench.data.synthetic`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from fer_bench.config.choices import choice

RENDER_VERSION = 1  # bump when drawings change: it is part of the cache key
DOMAINS: tuple[str, ...] = ("lab", "wild", "gray48", "film", "occluded")
CLASS_SETS: tuple[str, ...] = ("basic7", "basic8", "basic6", "compound", "basic6+compound", "basic7+compound")


@dataclass(frozen=True)
class Difficulty:
    """Expression intensity range, leak AUs and how strongly the domain perturbs the picture."""

    intensity: tuple[float, float]
    leaks: int
    leak_max: float
    perturb: float


DIFFICULTIES: dict[str, Difficulty] = {
    "easy": Difficulty((0.7, 1.0), 0, 0.0, 0.35),
    "medium": Difficulty((0.45, 1.0), 2, 0.3, 1.0),
    "hard": Difficulty((0.25, 0.8), 3, 0.4, 1.4),
}


@dataclass
class SynthSpec:
    """Everything that defines a synthetic data set; every field is a ``data.synth.*`` config key."""

    classes: str = choice(*CLASS_SETS)
    domains: list[str] = field(default_factory=lambda: ["lab"])
    difficulty: str = choice(*DIFFICULTIES, default="medium")
    size: int = 112
    subjects: int = 60
    per_subject: int = 2
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0

    def key(self) -> str:
        """Short stable hash of all fields and the renderer version (the cache folder name)."""
        fields = {**asdict(self), "domains": list(self.domains), "render_version": RENDER_VERSION}
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    def validate(self) -> None:
        """Raise ValueError naming the bad field and its allowed values."""
        _check(self.classes in CLASS_SETS, "classes", self.classes, f"one of {', '.join(CLASS_SETS)}")
        domains = list(self.domains)
        ok = bool(domains) and set(domains) <= set(DOMAINS) and len(set(domains)) == len(domains)
        _check(ok, "domains", domains, f"a non-empty list without repeats of {', '.join(DOMAINS)}")
        _check(self.difficulty in DIFFICULTIES, "difficulty", self.difficulty,
               f"one of {', '.join(DIFFICULTIES)}")
        _check(isinstance(self.size, int) and self.size >= 16, "size", self.size, "an integer >= 16")
        _check(isinstance(self.per_subject, int) and self.per_subject >= 1, "per_subject", self.per_subject,
               "an integer >= 1")
        _check(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed, "an integer >= 0")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            _check(0.0 <= value < 1.0, name, value, "a fraction in [0, 1)")
        _check(self.val_fraction + self.test_fraction < 1.0, "val_fraction", self.val_fraction,
               f"a fraction with val_fraction + test_fraction < 1 (test_fraction={self.test_fraction})")
        needed = 1 + (self.val_fraction > 0) + (self.test_fraction > 0)
        _check(isinstance(self.subjects, int) and self.subjects >= needed, "subjects", self.subjects,
               f"an integer >= {needed} (one subject per non-empty split)")


def _check(ok: bool, name: str, value, allowed: str) -> None:
    if not ok:
        raise ValueError(f"data.synth.{name}={value!r} is invalid: must be {allowed}")
