"""Synthetic faces written in the on-disk layouts of real data sets (``data/synthetic.py``), so every reader is
tested end to end on real image and annotation files.

Each writer takes labels as the data set's own files spell them (native codes, folder names, vote counts) and
draws a face of the matching class for each image; a code outside the data set's table gets a neutral face, so
tests can write bad labels too. Layouts follow docs/datasets.md.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from fer_bench.data.synthetic import BASIC_AUS, FaceClass, make_subject, picture, write_png
from fer_bench.labels import ABAW12_AUS, COMPOUNDS, EXPRESSION_ALIASES, EXPRESSIONS, NATIVE_TABLES, NativeTable


def face(expression: int | None = None, compound: int | None = None, index: int = 0, size: int = 48,
         domain: str = "lab") -> np.ndarray:
    """An RGB face showing a canonical expression or compound id (neutral when neither has a drawing)."""
    if compound is not None:
        cls = FaceClass(COMPOUNDS[compound], compound=True)
    else:
        name = EXPRESSIONS[expression] if expression is not None else "neutral"
        cls = FaceClass(name if name in BASIC_AUS else "neutral")
    return picture(0, make_subject(0, index), index, cls, 0, domain, "easy", size).image


def native_face(table: NativeTable, code: float, index: int, size: int = 48, base: int = 0) -> np.ndarray:
    """The face of a native label code of ``table`` (``base`` = 1 for 1-based files)."""
    position = int(code) - base
    canonical = table.to_canonical[position] if 0 <= position < len(table.to_canonical) else None
    if table.compound:
        return face(compound=canonical, index=index, size=size)
    return face(canonical, index=index, size=size)


def write_jpg(path: Path, rgb: np.ndarray, quality: int = 95) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"cannot write {path}")


def _png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, rgb)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _scene(height: int, width: int, seed: int) -> np.ndarray:
    """A cluttered colour background for full pictures that faces are pasted into."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(height // 8, 1), max(width // 8, 1), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


def _paste(scene: np.ndarray, rgb: np.ndarray, top: int, left: int, bottom: int, right: int) -> None:
    """Draw ``rgb`` into the box; a box that is not wholly inside the scene is left empty."""
    if 0 <= top < bottom <= scene.shape[0] and 0 <= left < right <= scene.shape[1]:
        scene[top:bottom, left:right] = cv2.resize(rgb, (right - left, bottom - top), interpolation=cv2.INTER_AREA)


def write_rafdb(root: Path, labels: list[tuple[str, int]], compound: bool = False, size: int = 48) -> list[str]:
    """``<subset>/EmoLabel/list_patition_label.txt`` with aligned and original images; ``labels`` are
    (split, 1-based file label). Returns the image names (train_00001.jpg, test_0001.jpg, ...)."""
    subset, table = ("compound", NATIVE_TABLES["rafdb_compound"]) if compound else ("basic", NATIVE_TABLES["rafdb"])
    counts: dict[str, int] = defaultdict(int)
    names = []
    for i, (split, label) in enumerate(labels):
        counts[split] += 1
        name = f"train_{counts[split]:05d}.jpg" if split == "train" else f"test_{counts[split]:04d}.jpg"
        rgb = native_face(table, label, i, size, base=1)
        write_jpg(root / subset / "Image" / "aligned" / f"{Path(name).stem}_aligned.jpg", rgb)
        write_jpg(root / subset / "Image" / "original" / name, cv2.resize(rgb, (2 * size, 2 * size)))
        names.append(name)
    list_file = root / subset / "EmoLabel" / "list_patition_label.txt"
    list_file.parent.mkdir(parents=True, exist_ok=True)
    list_file.write_text("".join(f"{n} {label}\n" for n, (_, label) in zip(names, labels, strict=True)))
    return names


def fer2013_pixels(emotion: int, index: int) -> str:
    """The ``pixels`` cell of a 48x48 grey face of a FER2013 emotion code."""
    grey = _gray(native_face(NATIVE_TABLES["fer2013"], emotion, index, 48))
    return " ".join(str(v) for v in grey.ravel())


def write_fer2013(file: Path, rows: list[tuple[int, str]]) -> None:
    """``fer2013.csv`` (``emotion,pixels,Usage``); ``rows`` are (emotion code, Usage)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{emotion},{fer2013_pixels(emotion, i)},{usage}\n" for i, (emotion, usage) in enumerate(rows)]
    file.write_text("emotion,pixels,Usage\n" + "".join(lines))


def write_ferplus(root: Path, rows: list[tuple[str, list[int]]], box: bool = False) -> list[str]:
    """``FER2013{Train,Valid,Test}/`` with grey ``ferXXXXXXX.png`` and header-less ``label.csv``; ``rows`` are
    (folder, 10 vote counts); ``box`` adds the repository copies' face-box column. Returns the image names."""
    table, names, by_folder = NATIVE_TABLES["ferplus"], [], defaultdict(list)
    for i, (folder, votes) in enumerate(rows):
        name = f"fer{i:07d}.png"
        _png(root / folder / name, _gray(native_face(table, int(np.argmax(votes[:8])), i, 48)))
        by_folder[folder].append([name, *(["(0, 0, 48, 48)"] if box else []), *votes])
        names.append(name)
    for folder, lines in by_folder.items():
        with open(root / folder / "label.csv", "w", newline="") as f:
            csv.writer(f).writerows(lines)
    return names


FERPLUS_USAGE = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}


def write_ferplus_from_fer2013new(root: Path, text: str) -> list[str]:
    """The FERPlus tree microsoft/FERPlus builds from ``fer2013new.csv`` (header ``Usage,Image name,neutral,...,NF``,
    rows ``Training,fer0000000.png,4,0,0,1,3,2,0,0,0,0``): each row's votes go to ``label.csv`` of the Usage's
    folder with the repository copies' face box, and a grey face of its top vote is drawn; rows with an empty name
    (images FERPlus dropped) get no image and no line. Returns the folder/name of every written image."""
    rows = list(csv.reader(text.splitlines()))[1:]
    table, lines, written = NATIVE_TABLES["ferplus"], defaultdict(list), []
    for i, (usage, name, *votes) in enumerate(rows):
        if not name:
            continue
        folder = FERPLUS_USAGE[usage]
        counts = [int(v) for v in votes]
        _png(root / folder / name, _gray(native_face(table, int(np.argmax(counts[:8])), i, 48)))
        lines[folder].append([name, "(0, 0, 48, 48)", *counts])
        written.append(f"{folder}/{name}")
    for folder, folder_lines in lines.items():
        with open(root / folder / "label.csv", "w", newline="") as f:
            csv.writer(f).writerows(folder_lines)
    return written


AFFECTNET_COLUMNS = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
                     "valence,arousal\n")


def affectnet_name(i: int) -> str:
    """A ``subDirectory_filePath`` shaped like the release's (``689/737db248...84363ca.jpg``: a folder number and
    a 56-hex-digit name)."""
    return f"{100 + 37 * i % 900}/{hashlib.sha224(str(i).encode()).hexdigest()}.jpg"


def write_affectnet(root: Path, rows: list[dict], scene: tuple[int, int] = (80, 96)) -> list[str]:
    """Release A: ``Manually_Annotated_file_lists/{training,validation}.csv`` over full pictures
    ``Manually_Annotated_Images/<subDirectory_filePath>`` with each face pasted at its box. Each row: ``file``
    (training / validation), ``expression``, ``valence``, ``arousal``, ``box`` (x, y, w, h; w < 0 = no face) and
    optionally ``image`` (the picture, to list one picture several times; default: a picture of its own).
    Returns the ``subDirectory_filePath`` of every row."""
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    by_file, paths, pictures = defaultdict(list), [], {}
    for i, row in enumerate(rows):
        path = row.get("image") or affectnet_name(i)
        x, y, w, h = row["box"]
        picture_ = pictures.setdefault(path, _scene(*scene, seed=len(pictures)))
        if w > 0:
            _paste(picture_, native_face(NATIVE_TABLES["affectnet"], row["expression"], i, 48), y, x, y + h, x + w)
        by_file[row["file"]].append(f"{path},{x},{y},{w},{h},\"{_landmarks(x, y, w, h)}\",{row['expression']},"
                                    f"{row['valence']},{row['arousal']}\n")
        paths.append(path)
    for path, picture_ in pictures.items():
        write_jpg(root / "Manually_Annotated_Images" / path, picture_)
    for name in ("training", "validation"):
        (lists / f"{name}.csv").write_text(AFFECTNET_COLUMNS + "".join(by_file[name]))
    return paths


def _landmarks(x: int, y: int, w: int, h: int) -> str:
    """A ``facial_landmarks`` cell: 68 ``x;y`` pairs joined by ``;`` (points on the box's inscribed ellipse)."""
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = [(x + w / 2 + w / 2 * np.cos(a), y + h / 2 + h / 2 * np.sin(a)) for a in angles]
    return ";".join(f"{px:.2f};{py:.2f}" for px, py in points)


def write_affectnet_npy(root: Path, rows: list[tuple[str, int, float, float]], size: int = 48) -> list[str]:
    """Release B: ``{train,val}_set/images/<id>.jpg`` and ``annotations/<id>_{exp,val,aro,lnd}.npy`` (values
    stored as strings, as in the release); ``rows`` are (set folder, expression, valence, arousal). Returns ids."""
    ids = []
    for i, (set_name, expression, valence, arousal) in enumerate(rows):
        ident = str(1000 + i)
        write_jpg(root / set_name / "images" / f"{ident}.jpg",
                  native_face(NATIVE_TABLES["affectnet"], expression, i, size))
        annotations = root / set_name / "annotations"
        annotations.mkdir(parents=True, exist_ok=True)
        for part, value in (("exp", expression), ("val", valence), ("aro", arousal)):
            np.save(annotations / f"{ident}_{part}.npy", np.array(str(value)))
        np.save(annotations / f"{ident}_lnd.npy", np.zeros((68, 2), np.float32))
        ids.append(ident)
    return ids


def write_ckplus(root: Path, sequences: list[tuple[str, str, int, int | None]], size: int = 48) -> None:
    """``cohn-kanade-images/<S>/<seq>/<S>_<seq>_<frame:08d>.png`` (frame 1 neutral, the others the emotion) and,
    when the code is not None, ``Emotion/<S>/<seq>/<S>_<seq>_<last frame:08d>_emotion.txt``; ``sequences`` are
    (subject, sequence, number of frames, emotion code or None)."""
    table = NATIVE_TABLES["ckplus"]
    for i, (subject, sequence, frames, code) in enumerate(sequences):
        for frame in range(1, frames + 1):
            rgb = face(0, index=i, size=size) if frame == 1 or code is None else native_face(table, code, i, size)
            _png(root / "cohn-kanade-images" / subject / sequence / f"{subject}_{sequence}_{frame:08d}.png", rgb)
        if code is not None:
            label = root / "Emotion" / subject / sequence / f"{subject}_{sequence}_{frames:08d}_emotion.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(f"   {float(code):.7e}\n")


SFEW_MOVIES = ("Airheads", "Hangover", "HarryPotter_Deathly_Hallows", "Sixteen_Candles", "TheTerminal", "21")


def sfew_name(i: int) -> str:
    """An SFEW frame name as in the release, ``<movie>_<frame:09d>.png`` (e.g. ``Airheads_000519240.png``)."""
    return f"{SFEW_MOVIES[i % len(SFEW_MOVIES)]}_{519240 + 1371 * i:09d}.png"


def write_sfew(root: Path, items: list[tuple[str, str | None]], size: int = 48, aligned: bool = False) -> list[str]:
    """SFEW 2.0: ``Train/<Class>/``, ``Val/<Class>/`` and unlabelled ``Test/`` frames, or with ``aligned`` the
    aligned-face release ``<Split>/<Split>_Aligned_Faces/<Class>/``; ``items`` are (split folder, class folder or
    None). Returns the image paths relative to ``root``."""
    names = {n.lower(): i for i, n in enumerate(NATIVE_TABLES["sfew"].native_names)}
    paths = []
    for i, (split, cls) in enumerate(items):
        folder = f"{split}/{split}_Aligned_Faces" if aligned else split
        if cls is None:
            rgb = face(index=i, size=size, domain="film")
        else:
            folder = f"{folder}/{cls}"
            rgb = native_face(NATIVE_TABLES["sfew"], names.get(cls.lower(), -1), i, size)
        paths.append(f"{folder}/{sfew_name(i)}")
        _png(root / paths[-1], rgb)
    return paths


def write_expw(root: Path, faces: list[tuple[str, int, tuple[int, int, int, int], float, int]],
               scene: tuple[int, int] = (90, 120), extra_lines: tuple[str, ...] = ()) -> None:
    """``image/origin/<image>`` scenes with faces pasted at their boxes (rows top:bottom, columns left:right) and
    ``label/label.lst``; ``faces`` are (image name, face id, (top, left, right, bottom), confidence, label)."""
    by_image, lines = defaultdict(list), []
    for i, (image, face_id, (top, left, right, bottom), confidence, label) in enumerate(faces):
        by_image[image].append((top, left, right, bottom, native_face(NATIVE_TABLES["expw"], label, i, 48)))
        lines.append(f"{image} {face_id} {top} {left} {right} {bottom} {confidence} {label}\n")
    for k, (image, pasted) in enumerate(by_image.items()):
        picture_ = _scene(*scene, seed=k)
        for top, left, right, bottom, rgb in pasted:
            _paste(picture_, rgb, top, left, bottom, right)
        write_jpg(root / "image" / "origin" / image, picture_)
    (root / "label").mkdir(parents=True, exist_ok=True)
    (root / "label" / "label.lst").write_text("".join(lines) + "".join(extra_lines))


ABAW_HEADERS = {"expr": "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other",
                "va": "valence,arousal", "au": ",".join(f"AU{a}" for a in ABAW12_AUS)}


def write_abaw(root: Path, videos: dict[str, dict], folders: dict[str, str], variant: str = "cropped_aligned",
               annotations: str = "annotations", size: int = 32) -> None:
    """Per-video annotation files ``<annotations>/<task folder>/<set>/<video>.txt`` (header, then one line per
    frame) and ``<variant>/<video>/<i:05d>.jpg``. Each video: ``set`` (Train_Set / Validation_Set), ``lines``
    per task key (``expr``, ``va``, ``au``: the text of each frame's line) and ``missing`` (frames without an
    image). ``folders`` maps task keys to the edition's folder names."""
    for k, (video, spec) in enumerate(videos.items()):
        frames = max(len(v) for key, v in spec.items() if key in ABAW_HEADERS)
        for frame in range(1, frames + 1):
            if frame not in spec.get("missing", ()):
                write_jpg(root / variant / video / f"{frame:05d}.jpg", face(index=k, size=size, domain="wild"))
        for key in ABAW_HEADERS:
            if key in spec:
                file = root / annotations / folders[key] / spec["set"] / f"{video}.txt"
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_text(ABAW_HEADERS[key] + "\n" + "".join(f"{line}\n" for line in spec[key]))


ABAW_MTL_HEADER = "image,valence,arousal,expression," + ",".join(f"AU{a}" for a in ABAW12_AUS)


def write_abaw_mtl(root: Path, sets: dict[str, list[str]], missing: set[str] = frozenset(),
                   variant: str = "cropped_aligned", annotations: str = "annotations", folder: str = "MTL_Challenge",
                   size: int = 32) -> None:
    """The multi-task challenge files ``<annotations>/<folder>/{train_set,validation_set}.txt`` (header
    ``image,valence,arousal,expression,AU1..AU26``) and the face images ``<variant>/<image>``; ``sets`` maps
    the file name to its data lines (``10-60-1280x720/00001.jpg,0.5,0.2,0,1,0,...``); images in ``missing`` are
    not written."""
    for name, rows in sets.items():
        file = root / annotations / folder / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(ABAW_MTL_HEADER + "\n" + "".join(f"{row}\n" for row in rows))
        for k, row in enumerate(rows):
            image = row.split(",")[0]
            if image not in missing:
                write_jpg(root / variant / image, face(index=k, size=size, domain="wild"))


def write_cfee(root: Path, items: list[tuple[str, int, int, int]], classes: list[tuple[int, str]],
               size: int = 48) -> list[str]:
    """The CFEE_Database_230 layout: ``classes.csv`` (id,name, the exported summary sheet) and images
    ``<group folder>/<class id:02d>_<subject:03d>_<index>.jpg`` (e.g. ``01-04/Images1/09_110_2555.jpg``); ``items``
    are (group folder, class id, subject, index). Returns the image paths relative to ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.csv").write_text("id,name\n" + "".join(f"{i},{name}\n" for i, name in classes))
    names, paths = dict(classes), []
    for i, (group, class_id, subject, index) in enumerate(items):
        name = names.get(class_id, "neutral").lower()
        if name in COMPOUNDS:
            rgb = face(compound=COMPOUNDS.index(name), index=i, size=size)
        else:
            rgb = face(EXPRESSION_ALIASES.get(name), index=i, size=size)
        path = f"{group}/{class_id:02d}_{subject:03d}_{index}.jpg"
        write_jpg(root / path, rgb)
        paths.append(path)
    return paths
