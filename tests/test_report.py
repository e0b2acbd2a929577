"""The evaluation report: calibration and threshold measures, and the report script."""
import json
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from spacy_rnn_ner.report import calibration, confusion, threshold_curve

ROOT = Path(__file__).resolve().parent.parent


def test_calibration_of_perfect_and_overconfident_scores():
    correct = numpy.array([True] * 8 + [False] * 2)
    assert calibration(numpy.full(10, 0.8), correct)["ece"] == pytest.approx(0.0)
    assert calibration(numpy.full(10, 1.0), correct)["ece"] == pytest.approx(0.2)


def test_threshold_curve_counts():
    scores = numpy.array([0.95, 0.85, 0.4, 0.2])
    correct = numpy.array([True, True, False, True])
    rows = {r["threshold"]: r for r in threshold_curve(scores, correct, n_gold=4, thresholds=[0.0, 0.5, 0.9])}
    assert rows[0.0]["precision"] == pytest.approx(0.75) and rows[0.0]["recall"] == pytest.approx(0.75)
    assert rows[0.5]["precision"] == 1.0 and rows[0.5]["recall"] == 0.5 and rows[0.5]["kept"] == 2
    assert rows[0.9]["kept"] == 1


def test_confusion_counts_missed_spurious_and_wrong_type(trained_nlp):
    gold = trained_nlp.make_doc("Ann Lee met Bob in Oslo .")
    gold.ents = [gold.char_span(0, 7, "PER"), gold.char_span(12, 15, "PER")]
    predicted = trained_nlp.make_doc("Ann Lee met Bob in Oslo .")
    predicted.ents = [predicted.char_span(0, 7, "PER"), predicted.char_span(12, 15, "ORG"), predicted.char_span(19, 23, "LOC")]
    counts = confusion([(predicted, gold)])
    assert counts[("PER", "PER")] == 1 and counts[("PER", "ORG")] == 1 and counts[("(spurious)", "LOC")] == 1
    predicted.ents = []
    assert confusion([(predicted, gold)])[("PER", "(missed)")] == 2


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
    for section in ("per type", "Confusion", "Calibration", "threshold", "most errors", "data:image/png;base64"):
        assert section in page
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert 0.0 <= summary["calibration"]["ece"] <= 1.0
    assert 0.0 < summary["scores"]["ents_f"] <= 1.0
    assert len(summary["threshold_curve"]) == 10
    assert "Entity confidence on" in (tmp_path / "B.md").read_text()
