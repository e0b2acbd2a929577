"""Whether two commits train the default config to the same weights, bit for bit.

    python scripts/check_same_training.py --base bf185aa [--head HEAD] [--updates 60]

Each commit is checked out into a temporary git worktree; from the same seed,
the speed benchmark's training worker of that commit (`nlp.update` on
CoNLL-2003 train with the annotating sentencizer, as `spacy train` would)
runs --updates updates, and a SHA-1 over every thinc parameter and torch
weight of the component is printed with the losses. Equal hashes mean a
change kept the arithmetic exactly, so accuracy figures measured before it
still hold.
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from worktrees import run_python, worktree  # noqa: E402

WORKER = """
import hashlib, sys
from pathlib import Path
from thinc.api import fix_random_seed
sys.path.insert(0, "scripts")
fix_random_seed(0)
from benchmark_speed import TrainingWorker
worker = TrainingWorker("configs/config.cfg", Path(sys.argv[1]))
losses = []
for _ in range(int(sys.argv[2])):
    step = {}
    batch = next(worker.batches)
    worker.nlp.update(batch, sgd=worker.optimizer, drop=worker.dropout, annotates=worker.annotates, losses=step)
    losses.append(step["rnn_tagger"])
digest = hashlib.sha1()
for node in worker.nlp.get_pipe("rnn_tagger").model.walk():
    for name in node.param_names:
        if node.has_param(name):
            digest.update(node.get_param(name).tobytes())
    for shim in node.shims:
        for value in shim._model.state_dict().values():
            digest.update(value.numpy().tobytes())
print("RESULT", digest.hexdigest(), " ".join(f"{loss:.6f}" for loss in losses[-3:]), flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True)
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--train", type=Path, default=ROOT / "corpus/conll03/train.spacy")
    parser.add_argument("--updates", type=int, default=60)
    args = parser.parse_args()
    train = args.train.resolve()
    if not train.exists():
        sys.exit(f"No training corpus at {train}: convert CoNLL-2003 first (scripts/convert.py) or pass --train.")
    results = {}
    for rev in (args.base, args.head):
        with worktree(rev) as tree:
            results[rev] = run_python(tree, WORKER, str(train), str(args.updates))
        print(f"{rev}: sha1 and last three losses after {args.updates} updates: {results[rev]}", flush=True)
    same = results[args.base].split()[0] == results[args.head].split()[0]
    print("same weights, bit for bit" if same else "the weights differ")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
