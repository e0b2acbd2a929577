"""scripts/benchmark_calibration.py: the per-group temperature diagnosis, and a run on a small pipeline."""
import subprocess
import sys

import numpy
import pytest
from spacy.tokens import DocBin

from tests.helpers import REPO, blank_with_tagger, load_script, make_examples, train_tagger


def test_group_temperatures_fit_each_group_on_dev_and_score_test_with_it():
    script = load_script("benchmark_calibration")
    grid = script.GROUP_GRID
    rng = numpy.random.default_rng(0)
    # Seen entities are right 95% of the time, unseen ones 60%; at temperature t a group's
    # confidence is 1 - (1 - base) * t (higher t: less confident), so the temperature at
    # which it equals the group's accuracy fits it best: 1.5 for seen, 2.5 for unseen.
    def split(n_seen, n_unseen):
        seen = numpy.arange(n_seen + n_unseen) < n_seen
        ok = numpy.where(seen, rng.random(len(seen)) < 0.95, rng.random(len(seen)) < 0.6)
        base = numpy.where(seen, 1 - 0.05 / 1.5, 1 - 0.4 / 2.5)
        by_t = {t: 1 - (1 - base) * t for t in grid}
        return by_t, ok, seen

    dev, test = split(4000, 2000), split(2000, 4000)
    out = script.group_temperatures(dev, test)
    assert abs(out["seen_t"] - 1.5) <= 0.15 and abs(out["unseen_t"] - 2.5) <= 0.25
    assert out["test_ece"] < 0.03
    # Every entity at the unseen group's temperature: the seen ones become under-confident (0.92 at
    # accuracy 0.95), which costs most where they are most (dev: two thirds).
    assert out["unseen_t_test_ece"] > out["test_ece"] and out["unseen_t_dev_ece"] > 0.015
    # A group whose dev entities are all right gets the grid's lowest temperature.
    dev_ok_seen = (dev[0], dev[1] | dev[2], dev[2])
    assert script.group_temperatures(dev_ok_seen, test)["seen_t"] == min(grid)


@pytest.mark.slow
def test_script_writes_every_table_for_a_trained_pipeline(tmp_path):
    nlp = blank_with_tagger()
    examples = make_examples(nlp)
    train_tagger(nlp, examples, n_iter=40)
    nlp.to_disk(tmp_path / "model")
    refs = [eg.reference for eg in examples]
    for name in ("train", "dev", "test"):
        DocBin(docs=refs).to_disk(tmp_path / f"{name}.spacy")
    output = tmp_path / "BENCHMARKS.md"
    result = subprocess.run(
        [
            sys.executable, str(REPO / "scripts" / "benchmark_calibration.py"), str(tmp_path / "model"), str(tmp_path / "model"),
            "--dev", str(tmp_path / "dev.spacy"), "--test", str(tmp_path / "test.spacy"),
            "--train", str(tmp_path / "train.spacy"), "--output", str(output),
        ],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    text = output.read_text()
    assert "<!-- calibration-default:start -->" in text and "<!-- calibration-default:end -->" in text
    for header in ("| pipeline | fitted temperature |", "| pipeline | best on dev |", "| pipeline | split | seen: share |",
                   "| pipeline | seen: temperature | unseen: temperature |"):
        assert header in text
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| pipeline | seen: temperature |"))
    group_rows = [line for line in lines[at + 2 : at + 5] if line.startswith("| `")]
    assert len(group_rows) == 2 and lines[at + 4].startswith("| mean of 2 |")
    seen_t, unseen_t, one, per_group, dev_unseen_t, test_unseen_t = (cell.strip() for cell in group_rows[0].split("|")[2:8])
    assert float(seen_t) in load_script("benchmark_calibration").GROUP_GRID
    for value in (one, per_group, dev_unseen_t, test_unseen_t):
        assert 0.0 <= float(value) <= 1.0
