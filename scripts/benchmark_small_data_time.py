"""How long the default config trains on 500 sentences, alone on the machine:
`spacy train configs/config.cfg` on the learning curve's 500-sentence sample
of CoNLL-2003 train, with the small-data schedule the README gives, and a dev
set of the size such a user has (a quarter of the training sentences, whole
CoNLL-2003 dev documents in one seeded order). Wall time of the whole command
(start-up, initialization, training, evaluations, the calibration at each
save), then test F1 on gold tokens and raw text.

    python scripts/benchmark_small_data_time.py --data ../shared/data/conll2003 [--seeds 0 1 2] [--threads 2]

Run it with nothing else on the machine: the result is a time.
"""
import argparse
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_accuracy import convert_corpus, score, train  # noqa: E402
from benchmark_learning_curve import sample_documents  # noqa: E402
from benchmark_report import machine_description, replace_section  # noqa: E402

from spacy_rnn_ner.data.conll import read_conll  # noqa: E402

DEV_SEED = 2004


def dev_sample(data: Path, n_sentences: int) -> List[int]:
    """Whole dev documents, in one seeded order, until n_sentences are reached."""
    docs, _ = read_conll(data / "dev.iob")
    order = list(range(len(docs)))
    random.Random(DEV_SEED).shuffle(order)
    chosen, total = [], 0
    for i in order:
        if total >= n_sentences:
            break
        chosen.append(i)
        total += len(list(docs[i].sents))
    return sorted(chosen)


def _last_step(log: Path) -> int:
    """The step of the last evaluation row that spacy train printed."""
    steps = [int(line.split()[1]) for line in log.read_text().splitlines() if re.match(r"\s*\d+\s+\d+\s", line)]
    return steps[-1] if steps else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-frequency", type=int, default=50, help="the README's small-data schedule")
    parser.add_argument("--patience", type=int, default=150)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "config.cfg")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus" / "conll03")
    parser.add_argument("--workdir", type=Path, default=ROOT / "training" / "small_data_time")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    from spacy.tokens import DocBin

    convert_corpus(args.data, args.corpus)
    sample = sample_documents(args.data, [args.size])[args.size]
    folder = args.workdir / "corpus"
    folder.mkdir(parents=True, exist_ok=True)
    train_docs, _ = read_conll(args.data / "train.iob")
    DocBin(docs=[train_docs[i] for i in sample["docs"]]).to_disk(folder / "train.spacy")
    dev_docs, _ = read_conll(args.data / "dev.iob")
    dev_ids = dev_sample(args.data, sample["sentences"] // 4)
    dev = [dev_docs[i] for i in dev_ids]
    DocBin(docs=dev).to_disk(folder / "dev.spacy")
    n_dev = sum(len(list(d.sents)) for d in dev)

    schedule = ["--training.eval_frequency", str(args.eval_frequency), "--training.patience", str(args.patience)]
    runs: List[Dict] = []
    for seed in args.seeds:
        out = args.workdir / f"seed_{seed}"
        info = train(f"ours-{args.size}", args.config, out, folder, seed, 0, args.threads, 0, schedule)
        runs.append({"seed": seed, "train": info, "scores": score(out, args.corpus)})
    (args.workdir / "runs.json").write_text(json.dumps(runs, indent=2))

    minutes = [r["train"]["wall_s"] / 60 for r in runs]
    steps = [_last_step(args.workdir / f"seed_{r['seed']}" / "train.log") for r in runs]
    gold = [100 * r["scores"]["test"]["ents_f"] for r in runs]
    raw = [100 * r["scores"]["raw_test"]["ents_f"] for r in runs]
    section = "\n".join([
        f"## Training on {args.size} sentences: time",
        "",
        f"Written by `python scripts/benchmark_small_data_time.py` on {time.strftime('%Y-%m-%d')}. Machine: {machine_description()}. "
        f"Nothing else ran on the machine; {args.threads} torch/BLAS thread(s). `spacy train configs/config.cfg` on the learning "
        f"curve's {sample['sentences']}-sentence sample ({sample['words']:,} words) with "
        f"`{' '.join(schedule)}` (README, \"small data\"), and a dev set of {n_dev} sentences "
        f"({len(dev_ids)} whole CoNLL-2003 dev documents, seeded order {DEV_SEED}), the size a user with this much data "
        "holds out. Time: the whole command, start-up and the calibration at each save included. F1: CoNLL-2003 test, "
        "gold tokens and raw text.",
        "",
        "| seed | wall time (min) | steps | test F1, gold tokens | raw-text test F1 |",
        "|---|---|---|---|---|",
        *[f"| {r['seed']} | {m:.2f} | {n} | {g:.2f} | {w:.2f} |" for r, m, n, g, w in zip(runs, minutes, steps, gold, raw)],
        f"| mean | {statistics.mean(minutes):.2f} (longest {max(minutes):.2f}) | | {statistics.mean(gold):.2f} | {statistics.mean(raw):.2f} |",
        "",
    ])
    replace_section(args.output, "small-data-time", section)
    print(section)


if __name__ == "__main__":
    main()
