"""Size on disk against accuracy for each weight storage (float32, float16,
int8; see spacy_rnn_ner/ml/storage.py), on trained pipelines: each is loaded
with the storage set by a config override, saved, loaded back from disk and
scored on CoNLL-2003 test, with gold tokens and as raw text.

    python scripts/benchmark_storage.py --models training/benchmark/ours-seed_{0,1,2}/model-best \
        --corpus corpus/conll03

Storage changes only how the weights are saved, so no retraining is needed:
the float32 row is the trained pipeline itself.
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import spacy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_report import machine_description, replace_section  # noqa: E402

from spacy_rnn_ner.ml.storage import STORAGES  # noqa: E402
from spacy_rnn_ner.scoring import evaluate_gold_tokens, evaluate_raw_text  # noqa: E402


def measure(model: Path, storage: str, corpus: Path, component: str) -> Dict:
    nlp = spacy.load(model, config={"components": {component: {"storage": storage}}})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pipeline"
        nlp.to_disk(out)
        pipeline_bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        component_bytes = sum(f.stat().st_size for f in (out / component).rglob("*") if f.is_file())
        start = time.perf_counter()
        loaded = spacy.load(out)
        load_s = time.perf_counter() - start
    gold = evaluate_gold_tokens(loaded, corpus / "test.spacy")["ents_f"]
    raw = evaluate_raw_text(loaded, corpus / "test.spacy")["ents_f"]
    return {"model": str(model), "storage": storage, "pipeline_mb": pipeline_bytes / 1e6,
            "component_mb": component_bytes / 1e6, "load_s": load_s, "gold_f": gold, "raw_f": raw}


def render(rows: List[Dict], n_models: int) -> str:
    def mean(values: List[float]) -> str:
        return f"{statistics.mean(values):.2f}" if len(values) == 1 else f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"

    base = {r["model"]: r for r in rows if r["storage"] == "float32"}
    lines = [
        "## Model size: weight storage against accuracy",
        "",
        f"Written by `python scripts/benchmark_storage.py` on {time.strftime('%Y-%m-%d')}. Machine: {machine_description()}. "
        f"The {n_models} trained default pipelines of the accuracy table (one per seed), each saved with the "
        "`storage` setting shown, loaded back from disk and scored on CoNLL-2003 test (entity F1, gold tokens "
        "and raw text, as in the accuracy table). Size: the whole pipeline directory. The model still computes "
        "in float32; only the saved weights are rounded (`spacy_rnn_ner/ml/storage.py`).",
        "",
        "| storage | pipeline on disk (MB) | component (MB) | test F1, gold tokens | raw-text test F1 | "
        "change in gold F1 | change in raw F1 | load time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for storage in STORAGES:
        group = [r for r in rows if r["storage"] == storage]
        if not group:
            continue
        lines.append(
            f"| `{storage}` | {statistics.mean(r['pipeline_mb'] for r in group):.2f} | "
            f"{statistics.mean(r['component_mb'] for r in group):.2f} | "
            f"{mean([100 * r['gold_f'] for r in group])} | {mean([100 * r['raw_f'] for r in group])} | "
            f"{mean([100 * (r['gold_f'] - base[r['model']]['gold_f']) for r in group])} | "
            f"{mean([100 * (r['raw_f'] - base[r['model']]['raw_f']) for r in group])} | "
            f"{statistics.median(r['load_s'] for r in group):.2f} |"
        )
    lines.append("")
    lines.append("Per pipeline (gold / raw test F1): " + "; ".join(
        f"{Path(r['model']).parent.name} {r['storage']} {100 * r['gold_f']:.2f} / {100 * r['raw_f']:.2f}" for r in rows
    ) + ".")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, nargs="+", required=True)
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus" / "conll03")
    parser.add_argument("--component", default="rnn_tagger")
    parser.add_argument("--results", type=Path, default=ROOT / "training" / "storage.json")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    rows = [measure(m, s, args.corpus, args.component) for m in args.models for s in STORAGES]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(rows, indent=2))
    section = render(rows, len(args.models))
    replace_section(args.output, "storage", section)
    print(section)


if __name__ == "__main__":
    main()
