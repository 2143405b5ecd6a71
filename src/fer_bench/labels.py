"""Canonical label spaces and the native → canonical tables of every supported dataset (docs/datasets.md).

Canonical expression ids follow AffectNet's order; compound ids follow CFEE's order. A *space* is an ordered
subset of canonical ids: a model's output index is the position inside its space.
"""

from __future__ import annotations

from dataclasses import dataclass

EXPRESSIONS: tuple[str, ...] = (
    "neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt", "other",
)
COMPOUNDS: tuple[str, ...] = (
    "happily surprised", "happily disgusted", "sadly fearful", "sadly angry", "sadly surprised",
    "sadly disgusted", "fearfully angry", "fearfully surprised", "fearfully disgusted", "angrily surprised",
    "angrily disgusted", "disgustedly surprised", "appalled", "hatred", "awed",
)
# Parent basic ids of each compound ("X-ly Y" → X, Y); appalled, hatred and awed have none confirmed.
COMPOUND_PARENTS: dict[int, tuple[int, int]] = {
    0: (1, 3), 1: (1, 5), 2: (2, 4), 3: (2, 6), 4: (2, 3), 5: (2, 5), 6: (4, 6), 7: (4, 3), 8: (4, 5),
    9: (6, 3), 10: (6, 5), 11: (5, 3),
}

SPACES: dict[str, tuple[int, ...]] = {
    "basic7": (0, 1, 2, 3, 4, 5, 6),
    "basic8": (0, 1, 2, 3, 4, 5, 6, 7),
    "basic6": (1, 2, 3, 4, 5, 6),
    "abaw8": (0, 1, 2, 3, 4, 5, 6, 8),
    "compound": tuple(range(len(COMPOUNDS))),
    "rafdb_compound": (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11),
}
COMPOUND_SPACES = frozenset({"compound", "rafdb_compound"})

# Names people and datasets use for the canonical expressions (folder names, CSV cells, model outputs).
EXPRESSION_ALIASES: dict[str, int] = {
    "neutral": 0, "neu": 0, "ne": 0,
    "happy": 1, "happiness": 1, "happily": 1, "hap": 1, "ha": 1, "joy": 1,
    "sad": 2, "sadness": 2, "sadly": 2, "sa": 2,
    "surprise": 3, "surprised": 3, "sur": 3, "su": 3,
    "fear": 4, "fearful": 4, "fearfully": 4, "scared": 4, "fea": 4, "fe": 4,
    "disgust": 5, "disgusted": 5, "disgustedly": 5, "dis": 5, "di": 5,
    "anger": 6, "angry": 6, "angrily": 6, "ang": 6, "an": 6,
    "contempt": 7, "con": 7, "co": 7,
    "other": 8,
}


def _norm(name: str) -> str:
    return " ".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())


def expression_id(name: str) -> int:
    """Canonical expression id of a name such as 'Angry', 'happiness' or 'surprised'."""
    key = _norm(name)
    if key not in EXPRESSION_ALIASES:
        raise KeyError(f"unknown expression name {name!r}; known: {', '.join(EXPRESSIONS)} (and common aliases)")
    return EXPRESSION_ALIASES[key]


def compound_id(name: str) -> int:
    """Canonical compound id of a name such as 'Happily_Surprised' or 'sadly-angry'."""
    key = _norm(name)
    if key in COMPOUNDS:
        return COMPOUNDS.index(key)
    raise KeyError(f"unknown compound name {name!r}; known: {', '.join(COMPOUNDS)}")


def space(name: str) -> tuple[int, ...]:
    """Canonical ids of a label space, in head order."""
    if name not in SPACES:
        raise KeyError(f"unknown label space {name!r}; known: {', '.join(SPACES)}")
    return SPACES[name]


def class_names(space_name: str) -> list[str]:
    """Human-readable class names of a space, in head order."""
    table = COMPOUNDS if space_name in COMPOUND_SPACES else EXPRESSIONS
    return [table[i] for i in space(space_name)]


@dataclass(frozen=True)
class NativeTable:
    """Native label order of a dataset and its mapping to canonical ids (0-based native index)."""

    name: str
    native_names: tuple[str, ...]
    to_canonical: tuple[int, ...]
    compound: bool = False

    def __post_init__(self) -> None:
        if len(self.native_names) != len(self.to_canonical):
            raise ValueError(f"{self.name}: {len(self.native_names)} names but {len(self.to_canonical)} ids")
        if len(set(self.to_canonical)) != len(self.to_canonical):
            raise ValueError(f"{self.name}: to_canonical is not one-to-one: {self.to_canonical}")

    def canonical(self, native: int) -> int:
        if not 0 <= native < len(self.to_canonical):
            raise ValueError(f"label {native} outside {self.name}'s 0..{len(self.to_canonical) - 1}")
        return self.to_canonical[native]


NATIVE_TABLES: dict[str, NativeTable] = {
    t.name: t
    for t in (
        NativeTable("rafdb", ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"),
                    (3, 4, 5, 1, 2, 6, 0)),
        NativeTable("fer2013", ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"),
                    (6, 5, 4, 1, 2, 3, 0)),
        NativeTable("expw", ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"),
                    (6, 5, 4, 1, 2, 3, 0)),
        NativeTable("ferplus", ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                                "contempt"), (0, 1, 3, 2, 6, 5, 4, 7)),
        NativeTable("sfew", ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"),
                    (6, 5, 4, 1, 0, 2, 3)),
        NativeTable("mma", ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"),
                    (6, 5, 4, 1, 0, 2, 3)),
        NativeTable("ckplus", ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"),
                    (0, 6, 7, 5, 4, 1, 2, 3)),
        NativeTable("affwild2_expr", ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise",
                                      "Other"), (0, 6, 5, 4, 1, 2, 3, 8)),
        NativeTable("affectnet", ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"),
                    (0, 1, 2, 3, 4, 5, 6, 7)),
        NativeTable("hsemotion8", ("Anger", "Contempt", "Disgust", "Fear", "Happiness", "Neutral", "Sadness",
                                   "Surprise"), (6, 7, 5, 4, 1, 0, 2, 3)),
        NativeTable("hsemotion7", ("Anger", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise"),
                    (6, 5, 4, 1, 0, 2, 3)),
        NativeTable("pyfeat", ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"),
                    (6, 5, 4, 1, 2, 3, 0)),
        NativeTable("rafdb_compound", ("Happily Surprised", "Happily Disgusted", "Sadly Fearful", "Sadly Angry",
                                       "Sadly Surprised", "Sadly Disgusted", "Fearfully Angry",
                                       "Fearfully Surprised", "Angrily Surprised", "Angrily Disgusted",
                                       "Disgustedly Surprised"), (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11), True),
        NativeTable("cexprdb", ("Fearfully_Surprised", "Happily_Surprised", "Sadly_Surprised",
                                "Disgustedly_Surprised", "Angrily_Surprised", "Sadly_Fearful", "Sadly_Angry"),
                    (7, 0, 4, 11, 9, 2, 3), True),
    )
}

# Action units rendered by the synthetic faces and read from AU-annotated datasets.
AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26)
ABAW12_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26)
AU_COLUMNS: tuple[str, ...] = tuple(f"au{a}" for a in AUS)
