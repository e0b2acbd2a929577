"""scripts/report.py on a pipeline trained on the demo data."""
import json
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow
ROOT = REPO


def test_report_script_writes_its_files_on_the_demo_data(trained_nlp, tmp_path):
    trained_nlp.to_disk(tmp_path / "model")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "convert.py"), str(ROOT / "assets" / "demo" / "dev.iob"), str(tmp_path / "dev.spacy")],
        check=True, capture_output=True,
    )
    result = subprocess.run(
        [
            sys.executable, str(ROOT / "scripts" / "report.py"), str(tmp_path / "model"), str(tmp_path / "dev.spacy"),
            "--output-dir", str(tmp_path / "report"), "--fit-temperature", "--benchmarks", str(tmp_path / "B.md"),
        ],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "report" / "report.html").read_text()
    for section in ("per type", "Confusion", "Calibration", "threshold", "most errors", "data:image/png;base64", "Model summary"):
        assert section in page
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert 0.0 <= summary["calibration"]["ece"] <= 1.0
    assert 0.0 < summary["scores"]["ents_f"] <= 1.0
    assert len(summary["threshold_curve"]) == 10
    assert "Entity confidence on" in (tmp_path / "B.md").read_text()

