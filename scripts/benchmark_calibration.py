"""Calibration of trained pipelines out of sample: expected calibration error
(ECE) of the entity confidences on test, at temperature 1 and at the
temperature the pipeline's config holds (fitted on dev by the default config's
before_to_disk callback, or by `python -m spacy_rnn_ner calibrate`).

    python scripts/benchmark_calibration.py training/benchmark/ours-seed_*/model-best \
        --dev corpus/conll03/dev.spacy --test corpus/conll03/test.spacy

Writes a table (one row per pipeline, then the mean) into BENCHMARKS.md.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Dict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_report import machine_description, replace_section  # noqa: E402


def novelty(by_t, correct, seen, temperature) -> Dict[str, Dict[str, float]]:
    """Accuracy and mean confidence, at `temperature`, of the predicted entities
    whose text was an entity in the training data, and of the others: the split
    by novelty shows whether a split is harder at the same confidence."""
    out = {}
    for name, mask in (("seen", seen), ("unseen", ~seen)):
        n = int(mask.sum())
        out[name] = {"n": n, "confidence": float(by_t[temperature][mask].mean()) if n else 0.0,
                     "accuracy": float(correct[mask].mean()) if n else 0.0}
    return out


def group_temperatures(dev, test) -> Dict:
    """A temperature for the entities whose text was seen in training and one
    for the others, each with the lowest log loss on its dev entities; the
    test ECE when each test entity is scored at its group's temperature, and
    the dev and test ECE when every entity gets the unseen group's (one
    temperature fitted on the new entities of dev only)."""
    import numpy

    from spacy_rnn_ner.calibration import log_loss
    from spacy_rnn_ner.scoring import calibration

    (dev_p, dev_ok, dev_seen), (test_p, test_ok, test_seen) = dev, test
    fitted = {}
    for name, mask in (("seen", dev_seen), ("unseen", ~dev_seen)):
        fitted[name] = min(GROUP_GRID, key=lambda t: log_loss(dev_p[t][mask], dev_ok[mask]))
    scored = numpy.where(test_seen, test_p[fitted["seen"]], test_p[fitted["unseen"]])
    return {
        "seen_t": fitted["seen"],
        "unseen_t": fitted["unseen"],
        "test_ece": calibration(scored, test_ok)["ece"],
        "unseen_t_dev_ece": calibration(dev_p[fitted["unseen"]], dev_ok)["ece"],
        "unseen_t_test_ece": calibration(test_p[fitted["unseen"]], test_ok)["ece"],
    }


def measure(model: Path, dev: Path, test: Path, train: Path) -> Dict:
    """One model run per split gives every table's numbers: the confidences at every
    temperature of all grids, whether each entity is correct, and whether it is seen."""
    import numpy
    import spacy

    from spacy_rnn_ner.calibration import entity_confidences, entity_texts, log_loss
    from spacy_rnn_ner.scoring import calibration, gold_token_examples

    nlp = spacy.load(model)
    saved = float(nlp.config["components"]["rnn_tagger"]["temperature"])
    row: Dict = {"model": str(model), "temperature": saved}
    train_entities = entity_texts(nlp, train)
    fine = sorted({1.0, saved, *FINE_GRID})
    entities = {}
    for split, path in (("dev", dev), ("test", test)):
        examples = gold_token_examples(nlp, path)
        by_t, ok, spans = entity_confidences(nlp, "rnn_tagger", examples, sorted({*fine, *GROUP_GRID}))
        seen = numpy.asarray([span.text in train_entities for span in spans], dtype=bool)
        row[f"{split}_novelty"] = novelty(by_t, ok, seen, saved)
        row[f"{split}_ece_1"] = calibration(by_t[1.0], ok)["ece"]
        row[f"{split}_ece"] = calibration(by_t[saved], ok)["ece"]
        row[f"{split}_n"] = int(len(ok))
        row[f"{split}_best_t"] = min(fine, key=lambda t: log_loss(by_t[t], ok))
        row[f"{split}_by_t"] = {t: calibration(by_t[t], ok)["ece"] for t in fine}
        entities[split] = (by_t, ok, seen)
    row["groups"] = group_temperatures(entities["dev"], entities["test"])
    return row


# A finer grid, to see how far the temperature that fits dev best is from the one that fits test best.
FINE_GRID = (1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.4)
# The grid of the per-group temperatures (a diagnosis: no setting of the component takes them).
GROUP_GRID = tuple(round(1.0 + 0.1 * i, 1) for i in range(31))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--dev", type=Path, default=ROOT / "corpus" / "conll03" / "dev.spacy")
    parser.add_argument("--test", type=Path, default=ROOT / "corpus" / "conll03" / "test.spacy")
    parser.add_argument("--train", type=Path, default=ROOT / "corpus" / "conll03" / "train.spacy")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()

    rows = [measure(m, args.dev, args.test, args.train) for m in args.models]
    lines = [
        "## Calibration by default: ECE out of sample",
        "",
        f"Written by `python scripts/benchmark_calibration.py` on {time.strftime('%Y-%m-%d')}. Machine: {machine_description()}. "
        "ECE over 10 equal-width bins of the confidences of all predicted entities (doc.spans, threshold not applied); an "
        "entity is correct when span and label are exactly a gold entity. Gold tokens, whole documents. The temperature is "
        "the one each pipeline's config holds, fitted during training by its `[training.before_to_disk]` callback (the "
        "default config: `spacy_rnn_ner.calibrate_temperature.v2`, lowest log loss on the dev entities whose text is not "
        "an entity in the training data, grid 1 to 4).",
        "",
        "| pipeline | fitted temperature | dev ECE at 1 | dev ECE, fitted | test ECE at 1 | **test ECE, fitted** | test entities |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{Path(r['model']).parent.name}/{Path(r['model']).name}` | {r['temperature']:g} | {r['dev_ece_1']:.4f} | "
            f"{r['dev_ece']:.4f} | {r['test_ece_1']:.4f} | **{r['test_ece']:.4f}** | {r['test_n']:,} |"
        )
    if len(rows) > 1:
        def m(key: str) -> str:
            return f"{statistics.mean(r[key] for r in rows):.4f}"

        lines.append(
            f"| mean of {len(rows)} | {statistics.mean(r['temperature'] for r in rows):.2f} | {m('dev_ece_1')} | {m('dev_ece')} | "
            f"{m('test_ece_1')} | **{m('test_ece')}** | |"
        )
    lines += [
        "",
        "Dev against test, on a finer grid of temperatures (" + ", ".join(f"{t:g}" for t in FINE_GRID) + "): the "
        "temperature with the lowest log loss on each split, and test ECE at each. The test column is a diagnosis, "
        "not a setting: choosing on test would not be out of sample.",
        "",
        "| pipeline | best on dev | test ECE there | best on test | test ECE there |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{Path(r['model']).parent.name}/{Path(r['model']).name}` | {r['dev_best_t']:g} | "
            f"{r['test_by_t'][r['dev_best_t']]:.4f} | {r['test_best_t']:g} | {r['test_by_t'][r['test_best_t']]:.4f} |"
        )
    lines += [
        "",
        "By novelty, at each pipeline's fitted temperature: predicted entities whose text was an entity in the "
        "training data (seen) and the others (unseen); accuracy is the share that are exactly a gold entity.",
        "",
        "| pipeline | split | seen: share | seen: accuracy | seen: confidence | unseen: accuracy | unseen: confidence |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for split in ("dev", "test"):
            nv = r[f"{split}_novelty"]
            share = nv["seen"]["n"] / max(1, nv["seen"]["n"] + nv["unseen"]["n"])
            lines.append(
                f"| `{Path(r['model']).parent.name}/{Path(r['model']).name}` | {split} | {share:.2f} | "
                f"{nv['seen']['accuracy']:.3f} | {nv['seen']['confidence']:.3f} | "
                f"{nv['unseen']['accuracy']:.3f} | {nv['unseen']['confidence']:.3f} |"
            )
    lines += [
        "",
        "A temperature per novelty group, each the lowest log loss on that group's dev entities (grid 1 to 4 in "
        "steps of 0.1), and the test ECE when every test entity gets its group's temperature: whether a calibrator "
        "that knew which entities are new would transfer from dev to test. The last two columns give every entity "
        "the unseen group's temperature: one temperature, fitted on the entities of dev that training never showed "
        "(what the v2 callback fits, on this finer grid).",
        "",
        "| pipeline | seen: temperature | unseen: temperature | test ECE, one temperature | test ECE, per group "
        "| dev ECE, unseen temperature for all | test ECE, unseen temperature for all |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g = r["groups"]
        lines.append(
            f"| `{Path(r['model']).parent.name}/{Path(r['model']).name}` | {g['seen_t']:g} | {g['unseen_t']:g} | "
            f"{r['test_ece']:.4f} | {g['test_ece']:.4f} | {g['unseen_t_dev_ece']:.4f} | {g['unseen_t_test_ece']:.4f} |"
        )
    if len(rows) > 1:
        def g_mean(key: str) -> str:
            return f"{statistics.mean(r['groups'][key] for r in rows):.4f}"

        lines.append(
            f"| mean of {len(rows)} | | | {statistics.mean(r['test_ece'] for r in rows):.4f} | {g_mean('test_ece')} | "
            f"{g_mean('unseen_t_dev_ece')} | {g_mean('unseen_t_test_ece')} |"
        )
    lines.append("")
    section = "\n".join(lines)
    replace_section(args.output, "calibration-default", section)
    print(section)


if __name__ == "__main__":
    main()
