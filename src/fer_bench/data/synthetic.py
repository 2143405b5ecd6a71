"""Parametric, FACS action-unit-driven synthetic faces (FACS: Ekman & Friesen, 1978).

A face is a subject (geometry and colours fixed per identity) plus a vector of action-unit intensities. The
renderer draws what each AU does to brows, lids, cheeks, nose and mouth with anti-aliased OpenCV primitives on
a 2x supersampled canvas, shrinks it with area interpolation and applies the look of one of five domains.
Every random choice comes from a generator seeded by (seed, subject, class, repetition[, domain]), so a data
set is byte-identical for the same spec whatever the order or process that renders it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from fer_bench import labels
from fer_bench.config.synth_spec import DIFFICULTIES, DOMAINS, SynthSpec
from fer_bench.data.cache import build_once

AU_INDEX: dict[int, int] = {au: i for i, au in enumerate(labels.AUS)}
JITTER = 0.15  # per-AU multiplicative jitter: intensity * U(1 - JITTER, 1 + JITTER)
LEAK_MIN = 0.05
VA_NOISE = 0.04

BASIC_AUS: dict[str, tuple[int, ...]] = {
    "neutral": (), "happy": (6, 12), "sad": (1, 4, 15), "surprise": (1, 2, 5, 26),
    "fear": (1, 2, 4, 5, 7, 20, 26), "disgust": (9, 10, 15), "anger": (4, 5, 7, 23), "contempt": (12, 14),
}
UNILATERAL: frozenset[str] = frozenset({"contempt"})
COMPOUND_AUS: dict[str, tuple[int, ...]] = {
    "happily surprised": (1, 2, 12, 25), "happily disgusted": (10, 12, 25), "sadly fearful": (1, 4, 20, 25),
    "sadly angry": (4, 15), "sadly surprised": (1, 4, 25, 26), "sadly disgusted": (4, 10),
    "fearfully angry": (4, 20, 25), "fearfully surprised": (1, 2, 5, 20, 25),
    "fearfully disgusted": (1, 4, 10, 20, 25), "angrily surprised": (4, 25, 26),
    "angrily disgusted": (4, 10, 17), "disgustedly surprised": (1, 2, 5, 10), "appalled": (4, 9, 10),
    "hatred": (4, 7, 10), "awed": (1, 2, 5, 25),
}
# Circumplex positions (valence, arousal) at full intensity; compounds with parents average them.
BASIC_VA: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0), "happy": (0.8, 0.5), "sad": (-0.7, -0.4), "surprise": (0.25, 0.85),
    "fear": (-0.6, 0.75), "disgust": (-0.65, 0.35), "anger": (-0.55, 0.7), "contempt": (-0.45, 0.15),
}
EXTRA_COMPOUND_VA: dict[str, tuple[float, float]] = {
    "appalled": (-0.7, 0.5), "hatred": (-0.8, 0.6), "awed": (0.55, 0.6),
}


@dataclass(frozen=True)
class FaceClass:
    """One class of a synthetic data set: a basic expression or a compound, by canonical name."""

    name: str
    compound: bool = False

    @property
    def aus(self) -> tuple[int, ...]:
        return (COMPOUND_AUS if self.compound else BASIC_AUS)[self.name]

    @property
    def code(self) -> int:
        """Stable integer used in seeds: the canonical id, compounds offset by 100."""
        return 100 + labels.compound_id(self.name) if self.compound else labels.expression_id(self.name)

    @property
    def va(self) -> tuple[float, float]:
        if not self.compound:
            return BASIC_VA[self.name]
        parents = labels.COMPOUND_PARENTS.get(labels.compound_id(self.name))
        if parents is None:
            return EXTRA_COMPOUND_VA[self.name]
        a, b = (BASIC_VA[labels.EXPRESSIONS[p]] for p in parents)
        return (a[0] + b[0]) / 2, (a[1] + b[1]) / 2


def class_list(classes: str) -> list[FaceClass]:
    """The classes of a ``SynthSpec.classes`` value, basic first in head order, then compounds."""
    basic, _, compound = classes.partition("+")
    out: list[FaceClass] = []
    if basic != "compound":
        out += [FaceClass(n) for n in labels.class_names(basic)]
    if "compound" in (basic, compound):
        out += [FaceClass(n, True) for n in labels.COMPOUNDS]
    return out


# -------------------------------------------------------------------------------------- sampling

SKIN_TONES = ((250, 222, 198), (240, 200, 170), (226, 178, 140), (200, 146, 106), (165, 112, 78),
              (120, 80, 56), (92, 62, 44), (236, 192, 160))
# Lightness group of each SKIN_TONES entry (by its luminance), the ``skin_tone`` record column.
SKIN_TONE_NAMES = ("light", "light", "medium", "medium", "dark", "dark", "dark", "light")
HAIR_COLOURS = ((28, 22, 20), (62, 42, 30), (110, 72, 42), (190, 150, 95), (150, 148, 145), (120, 48, 28))
IRIS_COLOURS = ((60, 40, 25), (90, 60, 35), (70, 110, 150), (80, 110, 70), (40, 30, 25))


@dataclass(frozen=True)
class Subject:
    """Fixed geometry and colours of one identity (face units: half the face width is about 1)."""

    face_w: float
    face_h: float
    eye_dx: float
    eye_y: float
    eye_w: float
    eye_h: float
    brow_gap: float
    brow_t: float
    brow_tilt: float
    nose_y: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_t: float
    mouth_curve: float
    hair_style: int
    hairline: float
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    lip: tuple[float, float, float]
    iris: tuple[float, float, float]
    cloth: tuple[float, float, float]
    skin_tone: str  # the SKIN_TONE_NAMES group of the palette entry ``skin`` was drawn from


@dataclass
class FaceParams:
    """What one picture shows: a subject and the intensity of every AU (``labels.AUS`` order)."""

    subject: Subject
    aus: np.ndarray
    side: int = 0  # -1 / +1: the image side a unilateral expression acts on; 0: both sides
    gaze: float = 0.0

    def au(self, au: int) -> float:
        return float(self.aus[AU_INDEX[au]])


def _jittered(rng: np.random.Generator, base, spread: float) -> tuple[float, float, float]:
    return tuple(np.clip(np.asarray(base, dtype=float) + rng.uniform(-spread, spread, 3), 0, 255).tolist())


def _colour(rng: np.random.Generator, palette, spread: float) -> tuple[float, float, float]:
    return _jittered(rng, palette[rng.integers(len(palette))], spread)


def make_subject(seed: int, subject_id: int) -> Subject:
    """The identity ``subject_id`` of data sets with this seed."""
    rng = np.random.default_rng([seed, 1, subject_id])
    u = rng.uniform
    tone = int(rng.integers(len(SKIN_TONES)))
    skin = _jittered(rng, SKIN_TONES[tone], 10)
    lip = tuple(np.clip(np.array(skin) * (0.82, 0.55, 0.55) + u(-10, 10, 3), 0, 255).tolist())
    return Subject(
        face_w=u(0.9, 1.02), face_h=u(1.2, 1.34), eye_dx=u(0.36, 0.43), eye_y=u(-0.3, -0.22),
        eye_w=u(0.15, 0.18), eye_h=u(0.07, 0.085), brow_gap=u(0.19, 0.24), brow_t=u(0.075, 0.1),
        brow_tilt=u(-0.03, 0.03), nose_y=u(0.2, 0.28), nose_w=u(0.11, 0.15), mouth_y=u(0.56, 0.63),
        mouth_w=u(0.27, 0.33), lip_t=u(0.06, 0.075), mouth_curve=u(-0.015, 0.015),
        hair_style=int(rng.integers(4)), hairline=u(-0.9, -0.78),
        skin=skin, hair=_colour(rng, HAIR_COLOURS, 12), lip=lip, iris=_colour(rng, IRIS_COLOURS, 15),
        cloth=tuple(u(30, 220, 3).tolist()), skin_tone=SKIN_TONE_NAMES[tone],
    )


def sample_expression(
    cls: FaceClass, difficulty: str, rng: np.random.Generator
) -> tuple[np.ndarray, float, int]:
    """AU intensities, overall intensity and unilateral side of one picture of ``cls``."""
    level = DIFFICULTIES[difficulty]
    intensity = float(rng.uniform(*level.intensity)) if cls.aus else 0.0
    aus = np.zeros(len(labels.AUS))
    for au in cls.aus:
        aus[AU_INDEX[au]] = intensity * rng.uniform(1 - JITTER, 1 + JITTER)
    others = [i for au, i in AU_INDEX.items() if au not in cls.aus]
    n_leaks = int(rng.integers(level.leaks + 1))
    for i in rng.choice(others, size=n_leaks, replace=False):
        aus[i] = rng.uniform(LEAK_MIN, level.leak_max)
    side = int(rng.choice((-1, 1))) if cls.name in UNILATERAL else 0
    return np.round(np.clip(aus, 0.0, 1.0), 4), round(intensity, 4), side


def valence_arousal(cls: FaceClass, intensity: float, rng: np.random.Generator) -> tuple[float, float]:
    """Circumplex position of the class scaled by intensity, plus small noise, in [-1, 1]."""
    va = np.asarray(cls.va) * intensity + rng.normal(0.0, VA_NOISE, 2)
    v, a = np.round(np.clip(va, -1.0, 1.0), 4)
    return float(v), float(a)


# -------------------------------------------------------------------------------------- drawing

_SHIFT = 4
_T = np.linspace(-1.0, 1.0, 17)
_CIRCLE = np.linspace(0.0, 2 * np.pi, 33)[:-1]
_COS, _SIN = np.cos(_CIRCLE), np.sin(_CIRCLE)
DARK = (40, 28, 26)


def _mix(a, b, w: float) -> tuple[float, float, float]:
    """Colour a moved a fraction ``w`` towards b."""
    return tuple(x + (y - x) * w for x, y in zip(a, b, strict=True))


def _shade(c, f: float) -> tuple[float, float, float]:
    return tuple(min(255.0, x * f) for x in c)


def _ellipse(cx: float, cy: float, a: float, b: float) -> np.ndarray:
    return np.stack([cx + a * _COS, cy + b * _SIN], axis=1)


_BEZIER_T = np.linspace(0.0, 1.0, 9)[:, None]
_BEZIER = np.concatenate([(1 - _BEZIER_T) ** 2, 2 * (1 - _BEZIER_T) * _BEZIER_T, _BEZIER_T**2], axis=1)


def _through(p0, mid, p2) -> np.ndarray:
    """Points of the quadratic curve from p0 to p2 that passes through ``mid`` halfway."""
    (x0, y0), (xm, ym), (x2, y2) = p0, mid, p2
    ctrl = np.array([[x0, y0], [2 * xm - (x0 + x2) / 2, 2 * ym - (y0 + y2) / 2], [x2, y2]])
    return _BEZIER @ ctrl


class Painter:
    """Draws shapes given in face units onto an RGB canvas through one similarity transform.

    Every method takes a list of point arrays and draws them in one OpenCV call.
    """

    def __init__(self, img: np.ndarray, centre: tuple[float, float], unit: float, angle_deg: float = 0.0):
        self.img = img
        self.unit = unit
        c, s = np.cos(np.radians(angle_deg)) * unit, np.sin(np.radians(angle_deg)) * unit
        self.linear = np.array([[c, s], [-s, c]]) * (1 << _SHIFT)
        self.offset = np.asarray(centre, dtype=float) * (1 << _SHIFT)

    def _px(self, shapes: list[np.ndarray]) -> list[np.ndarray]:
        """Fixed-point pixel coordinates (``_SHIFT`` fractional bits) of each shape."""
        return [np.rint(pts @ self.linear + self.offset).astype(np.int32) for pts in shapes]

    def fill(self, shapes: list[np.ndarray], colour) -> None:
        cv2.fillPoly(self.img, self._px(shapes), colour, cv2.LINE_AA, _SHIFT)

    def line(self, shapes: list[np.ndarray], colour, width: float, closed: bool = False) -> None:
        thick = max(1, round(width * self.unit))
        cv2.polylines(self.img, self._px(shapes), closed, colour, thick, cv2.LINE_AA, _SHIFT)

    def crease(self, shapes: list[np.ndarray], skin, strength: float, width: float = 0.03) -> None:
        """Wrinkle lines whose darkness and width follow an AU intensity; nothing below a trace."""
        if strength > 0.03 and shapes:
            colour = _mix(skin, DARK, 0.25 + 0.6 * min(strength, 1.0))
            self.line(shapes, colour, width * (0.6 + 0.6 * strength))


def _segment(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y1]])


_HALF = np.linspace(np.pi, 2 * np.pi, 17)
_HALF_COS, _HALF_SIN = np.cos(_HALF), np.sin(_HALF)
_JAW_X = _COS * (1 - 0.22 * np.clip(_SIN, 0, None) ** 2)  # face outline x, narrowing towards the chin


def _draw_head(p: Painter, s: Subject, params: FaceParams) -> None:
    """Hair behind, neck and clothes, ears, face (chin lower with AU26), hair on top."""
    if s.hair_style == 1:
        top = np.stack([1.2 * s.face_w * _HALF_COS, -0.2 + 1.2 * s.face_h * _HALF_SIN], axis=1)
        p.fill([np.concatenate([[[-1.3, 1.9]], top, [[1.3, 1.9]]])], _shade(s.hair, 0.85))
    p.fill([np.array([[-0.42, 0.6], [-0.45, 1.7], [0.45, 1.7], [0.42, 0.6]])], _shade(s.skin, 0.88))
    p.fill([_ellipse(0.0, 2.35, 1.9, 0.9)], s.cloth)
    p.fill([_ellipse(side * s.face_w * 0.98, -0.12, 0.13, 0.24) for side in (-1, 1)], _shade(s.skin, 0.93))
    chin = s.face_h + 0.12 * params.au(26)
    face_y = np.where(_SIN < 0, s.face_h, chin) * _SIN
    p.fill([np.stack([s.face_w * _JAW_X, face_y], axis=1)], s.skin)
    if s.hair_style != 2:
        outer = np.stack([1.07 * s.face_w * _HALF_COS, -0.15 + 1.12 * s.face_h * _HALF_SIN], axis=1)
        inner = np.stack([0.98 * s.face_w * _HALF_COS, -0.3 - (s.hairline + 0.3) * _HALF_SIN], axis=1)
        p.fill([np.concatenate([outer, inner[::-1]])], s.hair)


def _draw_eyes(p: Painter, s: Subject, f: FaceParams) -> None:
    """Almond eyes: AU5 opens the upper lid, AU7 narrows both lids, AU6 lifts the lower lid."""
    a5, a6, a7 = f.au(5), f.au(6), f.au(7)
    up = s.eye_h * (1 + 1.0 * a5 - 0.45 * a7)
    low = s.eye_h * 0.7 * max(0.12, 1 - 0.6 * a7 - 0.5 * a6)
    bulge = 1 - _T**2
    parts = ("white", "iris", "pupil", "cover", "upper", "lower")
    shapes: dict[str, list[np.ndarray]] = {k: [] for k in parts}
    for side in (-1, 1):
        cx, cy = side * s.eye_dx, s.eye_y
        x = cx + s.eye_w * _T
        upper = np.stack([x, cy - up * bulge], axis=1)
        lower = np.stack([x, cy + low * bulge], axis=1)
        ix = cx + f.gaze * s.eye_w * 0.3
        shapes["white"].append(np.concatenate([upper, lower[::-1]]))
        shapes["iris"].append(_ellipse(ix, cy + 0.005, 0.072, 0.072))
        shapes["pupil"].append(_ellipse(ix, cy + 0.005, 0.034, 0.034))
        shapes["cover"] += [np.concatenate([upper, upper[::-1] - (0, 0.12)]),
                            np.concatenate([lower, lower[::-1] + (0, 0.12)])]
        shapes["upper"].append(upper)
        shapes["lower"].append(lower)
    p.fill(shapes["white"], (245, 243, 238))
    p.fill(shapes["iris"], s.iris)
    p.fill(shapes["pupil"], (15, 12, 12))
    p.fill(shapes["cover"], s.skin)
    p.line(shapes["upper"], _shade(s.hair, 0.5), 0.035)
    p.line(shapes["lower"], _shade(s.skin, 0.7), 0.018)
    _draw_cheeks(p, s, s.eye_y + low, a6)


def _draw_cheeks(p: Painter, s: Subject, lid_y: float, a6: float) -> None:
    """AU6: a cheek arc under each eye and crow's feet at the outer corners."""
    y = lid_y + 0.07
    arcs, feet = [], []
    for side in (-1, 1):
        cx = side * s.eye_dx
        arcs.append(_through((cx - 0.15, y), (cx, y + 0.06), (cx + 0.15, y)))
        ox = cx + side * (s.eye_w + 0.05)
        feet += [_segment(ox, s.eye_y + dy, ox + side * 0.07, s.eye_y + 2 * dy) for dy in (-0.03, 0.03)]
    p.crease(arcs, s.skin, a6, 0.035)
    p.crease(feet, s.skin, 0.6 * a6, 0.022)


def _draw_brows(p: Painter, s: Subject, f: FaceParams) -> None:
    """AU1 lifts the inner ends, AU2 the outer ends, AU4 lowers and gathers them with furrows between."""
    a1, a2, a4 = f.au(1), f.au(2), f.au(4)
    base = s.eye_y - s.brow_gap
    brows = []
    for side in (-1, 1):
        inner = (side * (0.13 - 0.06 * a4), base + s.brow_tilt - 0.17 * a1 + 0.12 * a4)
        mid = (side * 0.32, base - 0.06 - 0.05 * a1 - 0.1 * a2 + 0.07 * a4)
        outer = (side * 0.53, base - 0.01 - s.brow_tilt - 0.17 * a2 + 0.04 * a4)
        brows.append(_through(inner, mid, outer))
    p.line(brows, _mix(s.hair, DARK, 0.55), s.brow_t)
    top, bottom = base - 0.03 + 0.1 * a4, base + 0.1 + 0.1 * a4
    p.crease([_segment(x * 1.1, top, x, bottom) for x in (-0.045, 0.045)], s.skin, a4, 0.03)


def _draw_nose(p: Painter, s: Subject, f: FaceParams) -> None:
    """Nose bridge, tip and nostrils; AU9 wrinkles the bridge and lifts the nostrils."""
    a9 = f.au(9)
    y = s.nose_y - 0.04 * a9
    w = s.nose_w * (1 + 0.2 * a9)
    p.line([_segment(0.05, s.eye_y + 0.05, 0.07, y - 0.12)], _shade(s.skin, 0.86), 0.025)
    p.line([_through((-w, y - 0.03), (0.0, y + 0.04), (w, y - 0.03))], _shade(s.skin, 0.72), 0.03)
    p.fill([_ellipse(side * w * 0.5, y, 0.04, 0.022) for side in (-1, 1)], _shade(s.skin, 0.4))
    rows = [(s.eye_y + 0.06 + 0.06 * i, 0.01 * i) for i in range(3)]
    wrinkles = [_through((-0.08, y + 0.015), (0.0, y - bend), (0.08, y + 0.015)) for y, bend in rows]
    p.crease(wrinkles, s.skin, a9, 0.028)


@dataclass
class _Mouth:
    """Sampled lip curves (x shared): inner upper/lower opening edges and outer upper/lower lip edges."""

    x: np.ndarray
    inner_up: np.ndarray
    inner_low: np.ndarray
    outer_up: np.ndarray
    outer_low: np.ndarray
    corners: tuple[tuple[float, float], tuple[float, float]]


def _mouth_shape(s: Subject, f: FaceParams) -> _Mouth:
    """Lip curves from AUs 10, 12, 15, 17, 20, 23, 24, 25, 26 (12 one-sided when ``f.side`` is set)."""
    a10, a15, a17, a20 = f.au(10), f.au(15), f.au(17), f.au(20)
    a23, a24, a25, a26 = f.au(23), f.au(24), f.au(25), f.au(26)
    press = 1 - 0.85 * a24
    drop = (0.08 * a25 + 0.3 * a26) * press
    raise_up = 0.1 * a10 * press
    half = s.mouth_w * (1 + 0.45 * a20 - 0.2 * a23 - 0.12 * a24 - 0.12 * a26)
    corners = []
    for side in (-1, 1):
        a12 = f.au(12) if f.side in (0, side) else 0.0
        cx = side * (half + 0.08 * a12)
        cy = s.mouth_y - s.mouth_curve - 0.18 * a12 + 0.13 * a15 + 0.04 * a20 + 0.45 * drop
        corners.append((cx, cy))
    t = np.abs(_T)
    left = _T < 0
    x = np.where(left, t * corners[0][0], t * corners[1][0])
    cy = np.where(left, corners[0][1], corners[1][1])
    power = 2.0 + 2.0 * a26
    ends = t**power
    top = s.mouth_y - raise_up
    bottom = max(top, s.mouth_y + drop - 0.04 * a17)
    inner_up = top + (cy - top) * ends
    inner_low = bottom + (cy - bottom) * ends
    thin = max(0.1, 1 - 0.7 * a23 - 0.9 * a24 - 0.3 * a20)
    body = np.sqrt(1 - t**2)
    outer_up = inner_up - s.lip_t * thin * body
    outer_low = inner_low + s.lip_t * 1.25 * thin * (1 + 0.3 * a17) * body
    return _Mouth(x, inner_up, inner_low, outer_up, outer_low, (corners[0], corners[1]))


def _draw_mouth(p: Painter, s: Subject, f: FaceParams) -> None:
    """Lips, dark opening, upper teeth band, lip line, dimples (AU14), folds, chin crease (AU17)."""
    m = _mouth_shape(s, f)
    path = lambda y: np.stack([m.x, y], axis=1)  # noqa: E731
    lips = np.concatenate([path(m.outer_up), path(m.outer_low)[::-1]])
    p.fill([lips], s.lip)
    p.line([lips], _shade(s.lip, 0.7), 0.018, closed=True)
    if np.max(m.inner_low - m.inner_up) > 0.005:
        p.fill([np.concatenate([path(m.inner_up), path(m.inner_low)[::-1]])], (62, 22, 26))
        teeth = np.minimum(m.inner_up + 0.07 + 0.05 * f.au(10), m.inner_low)
        p.fill([np.concatenate([path(m.inner_up), path(teeth)[::-1]])], (240, 236, 226))
    p.line([path(m.inner_up)], _shade(s.lip, 0.4), 0.028 + 0.025 * max(f.au(24), f.au(23)))
    dimples = []
    for side, (cx, cy) in zip((-1, 1), m.corners, strict=True):
        acts = f.side in (0, side)
        if acts:
            dimples.append(_through((cx + side * 0.05, cy - 0.07), (cx + side * 0.085, cy),
                                    (cx + side * 0.05, cy + 0.07)))
        nose = (side * (s.nose_w + 0.06), s.nose_y - 0.02)
        fold = _through(nose, (side * (s.nose_w + 0.16), (s.nose_y + cy) / 2), (cx + side * 0.07, cy + 0.04))
        p.crease([fold], s.skin, 0.5 * max(f.au(10), f.au(12) * acts, 0.6 * f.au(9)), 0.025)
    p.crease(dimples, s.skin, f.au(14), 0.035)
    y = float(m.outer_low[len(m.x) // 2]) + 0.06
    p.crease([_through((-0.15, y + 0.02), (0.0, y - 0.02), (0.15, y + 0.02))], s.skin, f.au(17), 0.035)


# -------------------------------------------------------------------------------------- domains

@dataclass(frozen=True)
class Pose:
    """Largest rotation (degrees), relative scale change and shift (fraction of the image) of a domain."""

    rotate: float
    scale: float
    shift: float


POSES: dict[str, Pose] = {
    "lab": Pose(2.0, 0.03, 0.02), "wild": Pose(25.0, 0.15, 0.08), "gray48": Pose(10.0, 0.08, 0.05),
    "film": Pose(15.0, 0.1, 0.06), "occluded": Pose(2.0, 0.03, 0.02),
}
UNIT = 0.34  # face unit as a fraction of the image side


@lru_cache(maxsize=8)
def _texture_bank(canvas: int) -> tuple[np.ndarray, ...]:
    """Cluttered colour textures, twice the canvas side, shared by every wild picture of that size."""
    rng = np.random.default_rng(20240917)
    side = 2 * canvas
    bank = []
    for _ in range(6):
        img = np.zeros((side, side, 3), np.float32)
        for cells, weight in ((4, 1.0), (12, 0.5), (40, 0.25)):
            noise = rng.uniform(0, 1, (cells, cells, 3)).astype(np.float32)
            img += weight * cv2.resize(noise, (side, side), interpolation=cv2.INTER_CUBIC)
        img = (img - img.min()) / (np.ptp(img) + 1e-6)
        lo, hi = rng.uniform(0, 120, 3), rng.uniform(130, 255, 3)
        bank.append(np.clip(lo + img * (hi - lo), 0, 255).astype(np.uint8))
    return tuple(bank)


@lru_cache(maxsize=8)
def _grain(size: int) -> np.ndarray:
    """Monochrome film grain, twice the image side, three identical channels."""
    noise = np.random.default_rng(77).standard_normal((2 * size, 2 * size)).astype(np.float32)
    return cv2.merge([noise, noise, noise])


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel x, y (centred, in [-0.5, 0.5]) and squared radius, as three-channel float32 images."""
    ax = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    gx, gy = np.meshgrid(ax, ax)
    return tuple(cv2.merge([g, g, g]) for g in (gx, gy, gx**2 + gy**2))


def _plain(canvas: int, colour) -> np.ndarray:
    img = np.empty((canvas, canvas, 3), np.uint8)
    cv2.rectangle(img, (0, 0), (canvas, canvas), np.clip(colour, 0, 255).tolist(), -1)
    return img


def _background(domain: str, canvas: int, rng: np.random.Generator, perturb: float) -> np.ndarray:
    """The canvas before the face: plain light (lab, occluded), textured clutter (wild), plain tones."""
    if domain == "wild":
        return _clutter(canvas, rng, perturb)
    if domain in ("lab", "occluded"):
        return _plain(canvas, rng.uniform(215, 245) + rng.uniform(-8, 8, 3))
    return _plain(canvas, rng.uniform(40, 200, 3))


def _clutter(canvas: int, rng: np.random.Generator, perturb: float) -> np.ndarray:
    bank = _texture_bank(canvas)
    tex = bank[rng.integers(len(bank))]
    y0, x0 = rng.integers(0, canvas, 2)
    img = tex[y0:y0 + canvas, x0:x0 + canvas]
    img = cv2.flip(img, 1) if rng.integers(2) else img.copy()
    for _ in range(int(rng.integers(2, 4 + 5 * perturb))):
        colour = rng.uniform(0, 255, 3).tolist()
        (x1, y1), (x2, y2) = rng.integers(0, canvas, (2, 2)).tolist()
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(img, (x1, y1), (x2, y2), colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(img, (x1, y1), int(rng.integers(canvas // 16, canvas // 4)), colour, -1, cv2.LINE_AA)
        else:
            cv2.line(img, (x1, y1), (x2, y2), colour, int(rng.integers(2, canvas // 20 + 3)), cv2.LINE_AA)
    return img


def _painter(img: np.ndarray, domain: str, rng: np.random.Generator, perturb: float) -> Painter:
    """Face placement: centred and upright, jittered by the domain's pose range."""
    canvas = img.shape[0]
    pose = POSES[domain]
    angle = rng.uniform(-1, 1) * pose.rotate * perturb
    scale = 1 + rng.uniform(-1, 0.7) * pose.scale * perturb
    shift = rng.uniform(-1, 1, 2) * pose.shift * perturb * canvas
    return Painter(img, (canvas / 2 + shift[0], canvas / 2 + shift[1]), UNIT * canvas * scale, angle)


def _draw_occluder(p: Painter, s: Subject, rng: np.random.Generator, perturb: float) -> None:
    """Sunglasses, a surgical mask or a hand-like blob over part of the face."""
    kind = rng.integers(3)
    grow = 0.85 + 0.15 * perturb
    if kind == 0:
        tint = rng.uniform(10, 60, 3).tolist()
        rx, ry = (s.eye_w + 0.09) * grow, 0.17 * grow
        lenses = [_ellipse(side * s.eye_dx, s.eye_y, rx, ry) for side in (-1, 1)]
        p.fill(lenses, tint)
        arms = [_segment(side * (s.eye_dx + s.eye_w + 0.06), s.eye_y, side * s.face_w, s.eye_y - 0.04)
                for side in (-1, 1)]
        p.line([*arms, _segment(-s.eye_dx + s.eye_w, s.eye_y, s.eye_dx - s.eye_w, s.eye_y)], tint, 0.04)
    elif kind == 1:
        colour = rng.choice([(200, 225, 240), (235, 235, 235), (60, 60, 70)]).tolist()
        top = s.nose_y - 0.2 * grow
        w, low = s.face_w, s.mouth_y + 0.3
        mask = np.array([[-0.8 * w, top + 0.05], [0.0, top - 0.05], [0.8 * w, top + 0.05], [0.75 * w, low],
                         [0.0, s.face_h + 0.05], [-0.75 * w, low]])
        p.fill([mask], colour)
        straps = [_segment(side * 0.8 * s.face_w, top + 0.08, side * s.face_w, -0.1) for side in (-1, 1)]
        p.line(straps, _shade(colour, 0.8), 0.02)
    else:
        _draw_hand(p, s, rng, grow)


def _draw_hand(p: Painter, s: Subject, rng: np.random.Generator, grow: float) -> None:
    anchors = ((0.0, s.mouth_y), (s.eye_dx, s.eye_y + 0.05), (-s.eye_dx, s.eye_y + 0.05),
               (0.35, s.mouth_y - 0.1))
    cx, cy = anchors[rng.integers(len(anchors))]
    angle = rng.uniform(-0.6, 0.6)
    rot = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    colour = _shade(s.skin, rng.uniform(0.85, 1.05))
    edge = _shade(colour, 0.75)
    parts = [_ellipse(0.0, 0.25, 0.3, 0.26)] + [_ellipse(dx, -0.12 + abs(dx) * 0.5, 0.075, 0.24)
                                                 for dx in (-0.21, -0.07, 0.07, 0.21)]
    shapes = [(part * grow) @ rot + (cx, cy) for part in parts]
    p.fill(shapes, colour)
    p.line(shapes, edge, 0.015, closed=True)


def _finish(img: np.ndarray, domain: str, rng: np.random.Generator, perturb: float) -> np.ndarray:
    """Post-processing at output size: light gradient, blur and JPEG (wild); cast, vignette, grain (film)."""
    if domain == "wild":
        return _wild_finish(img, rng, perturb)
    if domain == "film":
        return _film_finish(img, rng, perturb)
    return img


def _wild_finish(img: np.ndarray, rng: np.random.Generator, perturb: float) -> np.ndarray:
    size = img.shape[0]
    gx, gy, _ = _grid(size)
    phi = rng.uniform(0, 2 * np.pi)
    slope = 2 * rng.uniform(0.25, 0.7) * perturb
    level = rng.uniform(1 - 0.25 * perturb, 1 + 0.15 * perturb)
    light = cv2.addWeighted(gx, slope * np.cos(phi) * level, gy, slope * np.sin(phi) * level, level)
    out = cv2.convertScaleAbs(cv2.multiply(img.astype(np.float32), light))
    sigma = rng.uniform(0.0, 1.1) * perturb * size / 112
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    quality = int(np.clip(95 - rng.uniform(10, 60) * perturb, 10, 95))
    _, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def _film_finish(img: np.ndarray, rng: np.random.Generator, perturb: float) -> np.ndarray:
    size = img.shape[0]
    gains = 1 + rng.uniform(-0.25, 0.25, 3) * perturb
    contrast = 1 + rng.uniform(-0.35, 0.25) * perturb
    bright = rng.uniform(-30, 15) * perturb
    levels = np.arange(256, dtype=np.float64)[:, None]
    lut = np.clip(((levels - 128) * contrast + 128 + bright) * gains, 0, 255).astype(np.uint8)
    out = cv2.LUT(img, lut.reshape(256, 1, 3)).astype(np.float32)
    out = cv2.scaleAdd(cv2.multiply(out, _grid(size)[2]), -rng.uniform(0.4, 0.9) * perturb, out)
    y0, x0 = rng.integers(0, size, 2)
    out = cv2.scaleAdd(_grain(size)[y0:y0 + size, x0:x0 + size], rng.uniform(3, 10) * perturb, out)
    return np.clip(out, 0, 255).astype(np.uint8)


def _gray48(params: FaceParams, size: int, rng: np.random.Generator, perturb: float) -> np.ndarray:
    """FER2013 look: rendered at 48 px in grey, contrast shifted, upsampled to ``size``."""
    small = _draw_face(params, min(48, size), "gray48", rng, perturb)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    contrast, bright = 1 + rng.uniform(-0.3, 0.2) * perturb, rng.uniform(-20, 20) * perturb
    grey = np.clip((grey - 128) * contrast + 128 + bright, 0, 255).astype(np.uint8)
    if grey.shape[0] != size:
        grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


def _draw_face(
    params: FaceParams, size: int, domain: str, rng: np.random.Generator, perturb: float
) -> np.ndarray:
    """Background, head, features and occluder on a 2x canvas, shrunk to ``size`` with area interpolation."""
    canvas = _background(domain, 2 * size, rng, perturb)
    p = _painter(canvas, domain, rng, perturb)
    s = params.subject
    _draw_head(p, s, params)
    _draw_eyes(p, s, params)
    _draw_brows(p, s, params)
    _draw_nose(p, s, params)
    _draw_mouth(p, s, params)
    if domain == "occluded":
        _draw_occluder(p, s, rng, perturb)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)


def render_face(
    params: FaceParams, size: int, domain: str, difficulty: str, rng: np.random.Generator
) -> np.ndarray:
    """One HxWx3 RGB uint8 picture of ``params`` in ``domain``; ``rng`` drives every domain perturbation."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; known: {', '.join(DOMAINS)}")
    perturb = DIFFICULTIES[difficulty].perturb
    if domain == "gray48":
        return _gray48(params, size, rng, perturb)
    return _finish(_draw_face(params, size, domain, rng, perturb), domain, rng, perturb)


# -------------------------------------------------------------------------------------- data sets


def skin_tones(seed: int, subject_ids) -> list[str]:
    """The skin-tone group (light, medium, dark) of each subject of data sets with this seed."""
    return [make_subject(seed, int(sid)).skin_tone for sid in subject_ids]


def split_of_subjects(spec: SynthSpec) -> dict[int, str]:
    """Subject id → split, from a seeded permutation (subject-independent splits)."""
    order = np.random.default_rng([spec.seed, 5]).permutation(spec.subjects)
    n_test = max(int(spec.test_fraction > 0), round(spec.test_fraction * spec.subjects))
    n_val = max(int(spec.val_fraction > 0), round(spec.val_fraction * spec.subjects))
    names = ["test"] * n_test + ["val"] * n_val + ["train"] * (spec.subjects - n_test - n_val)
    return {int(sid): name for sid, name in zip(order, names, strict=True)}


@dataclass
class Picture:
    """One rendered sample with its labels."""

    image: np.ndarray
    params: FaceParams
    cls: FaceClass
    intensity: float
    valence: float
    arousal: float


def picture(seed: int, subject: Subject, subject_id: int, cls: FaceClass, rep: int, domain: str,
            difficulty: str, size: int) -> Picture:
    """Sample and render one picture; the same arguments always give the same bytes."""
    rng = np.random.default_rng([seed, 2, subject_id, cls.code, rep])
    aus, intensity, side = sample_expression(cls, difficulty, rng)
    valence, arousal = valence_arousal(cls, intensity, rng)
    params = FaceParams(subject, aus, side, gaze=float(rng.uniform(-1, 1)))
    render_rng = np.random.default_rng([seed, 3, subject_id, cls.code, rep, DOMAINS.index(domain)])
    image = render_face(params, size, domain, difficulty, render_rng)
    return Picture(image, params, cls, intensity, valence, arousal)


def _row(idx: int, pic: Picture, subject_id: int, domain: str, split: str) -> dict:
    ident = f"{idx:06d}"
    compound = pic.cls.compound
    row = {
        "id": ident, "path": f"images/{split}/{ident}.png",
        "expression": "" if compound else pic.cls.name, "compound": pic.cls.name if compound else "",
    }
    row.update({col: float(v) for col, v in zip(labels.AU_COLUMNS, pic.params.aus, strict=True)})
    row.update(valence=pic.valence, arousal=pic.arousal, intensity=pic.intensity, subject=subject_id,
               domain=domain, split=split)
    return row


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB array as PNG (OpenCV wants BGR); fast RLE deflate, lossless like any PNG."""
    options = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), options):
        raise OSError(f"cannot write {path}")


def generate(spec: SynthSpec, out_dir: Path, progress: bool = True) -> pd.DataFrame:
    """Render the data set of ``spec`` into ``out_dir`` (images/<split>/<id>.png + labels.csv)."""
    spec.validate()
    out_dir = Path(out_dir)
    splits = split_of_subjects(spec)
    for name in set(splits.values()):
        (out_dir / "images" / name).mkdir(parents=True, exist_ok=True)
    classes, domains = class_list(spec.classes), list(spec.domains)
    total = spec.subjects * len(classes) * spec.per_subject * len(domains)
    rows = []
    with tqdm(total=total, desc="synthetic faces", unit="img", disable=not progress) as bar:
        for sid in range(spec.subjects):
            subject = make_subject(spec.seed, sid)
            for cls in classes:
                for rep in range(spec.per_subject):
                    for domain in domains:
                        pic = picture(spec.seed, subject, sid, cls, rep, domain, spec.difficulty, spec.size)
                        row = _row(len(rows), pic, sid, domain, splits[sid])
                        write_png(out_dir / row["path"], pic.image)
                        rows.append(row)
                        bar.update()
    table = pd.DataFrame(rows)
    table.to_csv(out_dir / "labels.csv", index=False)
    return table


def ensure_cached(spec: SynthSpec, cache_root: Path, progress: bool = True) -> Path:
    """The folder of ``spec``'s data set under ``cache_root``, generated atomically on first use."""
    spec.validate()

    def build(tmp: Path) -> None:
        generate(spec, tmp, progress=progress)
        (tmp / "spec.json").write_text(json.dumps({**asdict(spec), "domains": list(spec.domains)}, indent=1))

    return build_once(Path(cache_root) / f"synthetic-{spec.key()}", build)


def contact_sheet(out_png: Path, size: int = 96, seed: int = 0, difficulty: str = "medium") -> Path:
    """A PNG grid: one row per class (8 basic, then 15 compounds), one column per domain."""
    classes = [FaceClass(n) for n in BASIC_AUS] + [FaceClass(n, True) for n in labels.COMPOUNDS]
    label_w, head_h = 200, 24
    sheet = np.full((head_h + size * len(classes), label_w + size * len(DOMAINS), 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for j, domain in enumerate(DOMAINS):
        cv2.putText(sheet, domain, (label_w + j * size + 6, 17), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i, cls in enumerate(classes):
        y = head_h + i * size
        cv2.putText(sheet, cls.name, (6, y + size // 2 + 5), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        subject = make_subject(seed, i)
        for j, domain in enumerate(DOMAINS):
            pic = picture(seed, subject, i, cls, 0, domain, difficulty, size)
            sheet[y:y + size, label_w + j * size:label_w + (j + 1) * size] = pic.image
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    write_png(out_png, sheet)
    return out_png
