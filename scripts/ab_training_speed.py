"""Training words/s of two commits side by side (an A/B of a code change).

    python scripts/ab_training_speed.py --base bf185aa [--head HEAD] [--rounds 2] [--windows 3] [--seconds 12]

Each commit is checked out into a temporary git worktree and trained by the
speed benchmark's training worker (`benchmark_speed.TrainingWorker` of that
commit: `nlp.update` on CoNLL-2003 train as `spacy train` would, with the
annotating sentencizer) in its own process, importing the package from that
worktree. The two run one after the other, `--rounds` times each, and each
run times `--windows` windows of `--seconds` after a warm-up. Alternating
keeps slow phases of a shared machine from favouring one side. Run it alone
on the machine: a second busy process halves torch's speed.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from worktrees import run_python, short_rev, worktree  # noqa: E402

WORKER = """
import json, sys
from pathlib import Path
sys.path.insert(0, "scripts")
from benchmark_speed import TrainingWorker
worker = TrainingWorker("configs/config.cfg", Path(sys.argv[1]))
worker.train(float(sys.argv[2]))
rates = []
for _ in range(int(sys.argv[3])):
    words, seconds = worker.train(float(sys.argv[4]))
    rates.append(words / seconds)
print("RESULT " + json.dumps(rates), flush=True)
"""


def run_windows(tree: Path, train: Path, warmup: float, windows: int, seconds: float) -> List[float]:
    return json.loads(run_python(tree, WORKER, str(train), str(warmup), str(windows), str(seconds)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the commit before the change")
    parser.add_argument("--head", default="HEAD", help="the commit with the change")
    parser.add_argument("--train", type=Path, default=ROOT / "corpus/conll03/train.spacy")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    train = args.train.resolve()
    if not train.exists():
        sys.exit(f"No training corpus at {train}: convert CoNLL-2003 first (scripts/convert.py) or pass --train.")
    revs = {"base": short_rev(args.base), "head": short_rev(args.head)}
    rates: Dict[str, List[float]] = {"base": [], "head": []}
    with worktree(revs["base"]) as base_tree, worktree(revs["head"]) as head_tree:
        trees = {"base": base_tree, "head": head_tree}
        for round_ in range(args.rounds):
            for name in ("base", "head"):
                got = run_windows(trees[name], train, args.warmup, args.windows, args.seconds)
                rates[name].extend(got)
                shown = ", ".join(f"{rate:,.0f}" for rate in got)
                print(f"round {round_ + 1}, {name} ({revs[name]}): {shown}", flush=True)
    base, head = statistics.median(rates["base"]), statistics.median(rates["head"])
    print(
        f"training words/s, median of {len(rates['base'])} windows: {revs['base']} {base:,.0f}, "
        f"{revs['head']} {head:,.0f} ({head / base:.2f}x); ranges {min(rates['base']):,.0f}-{max(rates['base']):,.0f} "
        f"and {min(rates['head']):,.0f}-{max(rates['head']):,.0f}"
    )


if __name__ == "__main__":
    main()
