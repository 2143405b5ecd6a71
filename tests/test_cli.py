"""The CLI's synth verb and its error handling."""

import subprocess
import sys

import cv2
import pandas as pd


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fer_bench.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_synth_writes_a_data_set_and_reports_the_rate(tmp_path):
    out = _cli("synth", "--out", str(tmp_path / "faces"), "subjects=5", "per_subject=1", "size=32",
               "classes=basic6+compound")
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(tmp_path / "faces" / "labels.csv", dtype=str, keep_default_na=False)
    assert len(table) == 5 * 21 and f"{len(table)} images" in out.stdout and "images/s" in out.stdout
    assert all((tmp_path / "faces" / p).is_file() for p in table["path"])


def test_synth_contact_sheet_has_a_row_per_class(tmp_path):
    out = _cli("synth", "--sheet", str(tmp_path / "sheet.png"))
    assert out.returncode == 0, out.stderr
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet.shape[0] > sheet.shape[1] * 2  # 23 class rows, 5 domain columns


def test_synth_rejects_unknown_fields_and_values(tmp_path):
    typo = _cli("synth", "--out", str(tmp_path), "subject=5")
    assert typo.returncode == 2 and "did you mean 'subjects'" in typo.stderr and "Traceback" not in typo.stderr
    bad = _cli("synth", "--out", str(tmp_path), "difficulty=extreme")
    assert bad.returncode == 2 and "difficulty" in bad.stderr and "Traceback" not in bad.stderr
