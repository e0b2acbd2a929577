"""Train our default config and spaCy's built-in `ner` on CoNLL-2003, select on
dev, score on test, and write the accuracy tables into BENCHMARKS.md.

    python scripts/benchmark_accuracy.py --data ../shared/data/conll2003 \
        [--seeds 0 1 2] [--time-budget 25] [--jobs 2] [--ablations]

Every F1 is entity-level, scored on the gold CoNLL tokens with whole documents
in (spacy_rnn_ner.scoring.evaluate_gold_tokens), for ours and spaCy's alike.
Runs go to --workdir; a run whose model-best already exists with a results
file is not trained again (delete the folder to rerun it).
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Sequence

from thinc.api import Config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_report import machine_description, replace_section  # noqa: E402

from spacy_rnn_ner.data.conll import read_conll  # noqa: E402

TYPES = ["PER", "LOC", "ORG", "MISC"]
MODEL = "components.rnn_tagger.model"
EMBED = f"{MODEL}.embed"
# Settings of the v2 architectures that build on doc_memory, with their "off" values.
MEMORY_EXTRAS = {"memory_lstm_width": 0, "memory_conv_width": 0}
MEMORY_EXTRA_ROWS = {
    "memory_lstm_width": "no memory LSTM (document memory at the output only)",
    "memory_conv_width": "no memory window (document memory at the output only)",
}


def ablations_for(config: Config) -> Dict[str, Dict]:
    """One ablation per feature the config switches on, each removing just that feature."""
    model = config["components"]["rnn_tagger"]["model"]
    embed = model["embed"]
    rows: Dict[str, Dict] = {}
    if embed.get("char_cnn_filters", 0) > 0:
        rows["no character CNN"] = {f"{EMBED}.char_cnn_filters": 0}
    if embed.get("char_width", 0) > 0:
        rows["no character embedding (CharacterEmbed)"] = {f"{EMBED}.char_width": 0}
    if embed.get("use_clusters", False):
        rows["no Brown clusters"] = {f"{EMBED}.use_clusters": False}
    if embed.get("min_word_count", 0) > 0:
        rows["no unknown-word vector (min_word_count 0, word_dropout 0)"] = {
            f"{EMBED}.min_word_count": 0,
            f"{EMBED}.word_dropout": 0.0,
        }
    if embed.get("cluster_case_fallback", False) and embed.get("use_clusters", False):
        rows["no cluster case fallback"] = {f"{EMBED}.cluster_case_fallback": False}
    if model.get("context", "doc") == "doc":
        rows["sentence context only"] = {"components.rnn_tagger.model.context": "sentence"}
    else:
        rows["whole-doc context instead of sentences"] = {"components.rnn_tagger.model.context": "doc"}
    architecture = model["@architectures"]
    if architecture.endswith(".v2") and model.get("doc_memory", True):
        # The memory LSTM or window reads the memory: it goes with it.
        no_memory = {f"{MODEL}.doc_memory": False}
        no_memory.update({f"{MODEL}.{key}": off for key, off in MEMORY_EXTRAS.items() if model.get(key)})
        rows["no document memory"] = no_memory
        for key, off in MEMORY_EXTRAS.items():
            if model.get(key):
                rows[MEMORY_EXTRA_ROWS[key]] = {f"{MODEL}.{key}": off}
    if architecture.startswith("spacy_rnn_ner.BiLSTMCRFTagger."):
        softmax = architecture.replace("BiLSTMCRFTagger", "BiLSTMTagger")
        rows["softmax instead of CRF"] = {"components.rnn_tagger.model.@architectures": softmax}
    if config["components"]["rnn_tagger"].get("threshold", 0.0) > 0:
        rows["no confidence threshold"] = {"components.rnn_tagger.threshold": 0.0}
    reader = config.get("corpora", {}).get("train", {})
    if reader.get("raw_text", 0.0) > 0:
        rows["gold tokens only (raw_text 0)"] = {"corpora.train.raw_text": 0.0}
    callback = config.get("training", {}).get("before_to_disk") or {}
    if isinstance(callback, dict) and callback.get("@callbacks", "").startswith("spacy_rnn_ner.calibrate_temperature."):
        rows["no calibration (temperature 1)"] = {"training.before_to_disk": None}
    return rows


# Each sweep row changes one training setting of the default config.
EXTRA_SWEEP = {
    "dropout 0.5 (default 0.25)": {"components.rnn_tagger.model.dropout": 0.5},
    "learn rate 0.001 (default 0.002)": {"training.optimizer.learn_rate": 0.001},
}
SWEEP = {
    "batch size 500 words (default 1000)": {"training.batcher.size": 500},
    "batch size 2000 words (default 1000)": {"training.batcher.size": 2000},
}


def convert_corpus(data: Path, corpus: Path) -> None:
    """Convert train/dev/test .iob files to .spacy once."""
    from spacy.tokens import DocBin

    corpus.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        out = corpus / f"{split}.spacy"
        if not out.exists():
            docs, stats = read_conll(data / f"{split}.iob")
            DocBin(docs=docs).to_disk(out)
            print(stats.format(split), flush=True)


def write_config(base: Path, overrides: Dict, out: Path) -> Path:
    config = Config().from_disk(base, interpolate=False)
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[leaf] = value
    out.parent.mkdir(parents=True, exist_ok=True)
    config.to_disk(out)
    return out


def spacy_ner_config(out: Path, component: str = "ner") -> Path:
    """The config `spacy init config -l en -p COMPONENT -o efficiency` writes (no vectors)."""
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "spacy", "init", "config", str(out), "-l", "en", "-p", component, "-o", "efficiency", "--force"],
            check=True,
        )
    return out


def train(
    name: str, config: Path, out: Path, corpus: Path, seed: int, budget_min: float, threads: int, max_steps: int,
    overrides: Sequence[str] = (),
) -> Dict:
    """Run `spacy train` in a subprocess, stopping it at the time budget; return timing.
    `overrides` are extra command-line config settings ("--training.patience", "300", ...)."""
    result_file = out / "train_run.json"
    if (out / "model-best").exists() and result_file.exists():
        return json.loads(result_file.read_text())
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "spacy", "train", str(config), "-o", str(out),
        "--paths.train", str(corpus / "train.spacy"), "--paths.dev", str(corpus / "dev.spacy"),
        "--system.seed", str(seed),
    ]
    if max_steps:
        cmd += ["--training.max_steps", str(max_steps)]
    cmd += list(overrides)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.time()
    with open(out / "train.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            proc.wait(timeout=budget_min * 60 if budget_min else None)
            stopped = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            stopped = True
    wall = time.time() - start
    if not (out / "model-best").exists():
        raise RuntimeError(f"{name}: training wrote no model-best; see {out / 'train.log'}")
    info = {"name": name, "seed": seed, "wall_s": wall, "stopped_at_budget": stopped, "threads": threads, "returncode": proc.returncode}
    result_file.write_text(json.dumps(info, indent=2))
    print(f"trained {name} seed {seed} in {wall / 60:.1f} min{' (time budget)' if stopped else ''}", flush=True)
    return info


def score(out: Path, corpus: Path) -> Dict:
    scores_file = out / "scores.json"
    if scores_file.exists():
        return json.loads(scores_file.read_text())
    # In a fresh process: it loads model-best with the package as installed now,
    # not as it was when this (long-running) script started.
    code = (
        "import json, sys, spacy\n"
        "from spacy_rnn_ner.scoring import evaluate_gold_tokens, evaluate_raw_text\n"
        "nlp = spacy.load(sys.argv[1])\n"
        "scores = {s: evaluate_gold_tokens(nlp, sys.argv[2] + f'/{s}.spacy') for s in ('dev', 'test')}\n"
        "scores['raw_test'] = evaluate_raw_text(nlp, sys.argv[2] + '/test.spacy')\n"
        "print(json.dumps(scores))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(out / "model-best"), str(corpus)], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    scores_file.write_text(json.dumps(result, indent=2))
    return result


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def budget_mark(stopped) -> str:
    return "*" if stopped else ""


def render(runs: List[Dict], args: argparse.Namespace) -> str:
    ours = [r for r in runs if r["kind"] == "ours"]
    theirs = [r for r in runs if r["kind"] == "spacy"]
    ablations = [r for r in runs if r["kind"] == "ablation"]
    sweep = [r for r in runs if r["kind"] == "sweep"]
    lines = [
        "## Accuracy on CoNLL-2003 English",
        "",
        f"Written by `python scripts/benchmark_accuracy.py` on {time.strftime('%Y-%m-%d')}. Machine: {machine_description()}.",
        f"Each run had {runs[0]['threads']} torch/BLAS thread(s), with another training run beside it on the 2 cores; "
        f"time budget per run: {f'{args.time_budget:g} min' if args.time_budget else 'none'}. Model selection on dev (spaCy's model-best), "
        "scores on test. Entity-level P/R/F1, exact span and type, scored on the gold CoNLL tokens with whole "
        "documents in (`spacy_rnn_ner.scoring.evaluate_gold_tokens`), the same way for both systems. "
        "Raw text: the test documents' text read by the pipeline's own tokenizer and sentence boundaries, "
        "as `spacy evaluate` does (`spacy_rnn_ner.scoring.evaluate_raw_text`); gap: gold-token minus raw-text test F1.",
        "",
        "| system | runs | dev F1 | test P | test R | test F1 | raw-text test F1 | gap | "
        + " | ".join(f"test {t} F1" for t in TYPES) + " | train time (min) |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(TYPES) + "---|",
    ]

    def row(label: str, group: List[Dict]) -> str:
        def agg(get) -> str:
            values = [100 * get(r) for r in group]
            if len(values) == 1:
                return f"{values[0]:.2f}"
            return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"

        per_type = [agg(lambda r, t=t: r["scores"]["test"]["ents_per_type"].get(t, {}).get("f", 0.0)) for t in TYPES]
        minutes = statistics.mean(r["train"]["wall_s"] for r in group) / 60
        stopped = sum(bool(r["train"].get("stopped_at_budget")) for r in group)
        has_raw = all("raw_test" in r["scores"] for r in group)
        raw = f"**{agg(lambda r: r['scores']['raw_test']['ents_f'])}**" if has_raw else "not measured"
        gap = agg(lambda r: r["scores"]["test"]["ents_f"] - r["scores"]["raw_test"]["ents_f"]) if has_raw else ""
        return (
            f"| {label} | {len(group)} | {agg(lambda r: r['scores']['dev']['ents_f'])} | "
            f"{agg(lambda r: r['scores']['test']['ents_p'])} | {agg(lambda r: r['scores']['test']['ents_r'])} | "
            f"**{agg(lambda r: r['scores']['test']['ents_f'])}** | {raw} | {gap} | "
            + " | ".join(per_type) + f" | {minutes:.1f}{budget_mark(stopped)} |"
        )

    if ours:
        lines.append(row(f"rnn_tagger, `{args.config}` (seeds {', '.join(str(r['seed']) for r in ours)})", ours))
    if theirs:
        lines.append(row(f"spaCy `ner`, efficiency config, no vectors (seeds {', '.join(str(r['seed']) for r in theirs)})", theirs))
    lines.append("")
    lines.append(
        "Mean ± standard deviation over seeds where there is more than one run. "
        "A train time marked * was cut by the time budget (model-best is the best dev score reached by then); "
        "the others stopped by their config's patience or max_steps."
    )
    if ours and theirs:
        gap = statistics.mean(r["scores"]["test"]["ents_f"] for r in ours) - statistics.mean(
            r["scores"]["test"]["ents_f"] for r in theirs
        )
        lines.append(f"Test F1 difference, ours minus spaCy's `ner`: {100 * gap:+.2f} points.")
    if ablations:
        base = ours[0] if ours else None
        lines += [
            "",
            "### Ablations (one seed each, each removes one feature from the default config)",
            "",
            "| config | dev F1 | test F1 | train time (min) |",
            "|---|---|---|---|",
        ]
        if base:
            lines.append(
                f"| default, seed {base['seed']} | {pct(base['scores']['dev']['ents_f'])} | "
                f"{pct(base['scores']['test']['ents_f'])} | {base['train']['wall_s'] / 60:.1f}"
                f"{budget_mark(base['train'].get('stopped_at_budget'))} |"
            )
        for r in ablations:
            lines.append(
                f"| {r['name']} | {pct(r['scores']['dev']['ents_f'])} | {pct(r['scores']['test']['ents_f'])} | "
                f"{r['train']['wall_s'] / 60:.1f}{budget_mark(r['train'].get('stopped_at_budget'))} |"
            )
    if sweep:
        lines += [
            "",
            "### Training settings (one seed each, each changes one setting of the default config)",
            "",
            "| setting | dev F1 | test F1 | train time (min) |",
            "|---|---|---|---|",
        ]
        for r in sweep:
            lines.append(
                f"| {r['name']} | {pct(r['scores']['dev']['ents_f'])} | {pct(r['scores']['test']['ents_f'])} | "
                f"{r['train']['wall_s'] / 60:.1f}{budget_mark(r['train'].get('stopped_at_budget'))} |"
            )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with train.iob, dev.iob, test.iob")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus" / "conll03")
    parser.add_argument("--config", type=Path, default=Path("configs/config.cfg"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--time-budget", type=float, default=0, help="minutes per training run (0: no limit)")
    parser.add_argument("--max-steps", type=int, default=0, help="override [training] max_steps (0: the config's)")
    parser.add_argument("--jobs", type=int, default=1, help="training runs side by side")
    parser.add_argument("--threads", type=int, default=0, help="torch/BLAS threads per run (0: cores / jobs)")
    parser.add_argument("--ablations", action="store_true", help="also train one seed with each feature removed")
    parser.add_argument("--sweep", action="store_true", help="also train one seed with each SWEEP setting changed")
    parser.add_argument("--extra-sweep", action="store_true", help="with --sweep, also the dropout and learn-rate rows")
    parser.add_argument("--no-spacy", action="store_true", help="skip spaCy's ner")
    parser.add_argument("--spacy-seeds", type=int, nargs="+", default=None, help="seeds for spaCy's ner (default: the first of --seeds)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "training" / "benchmark")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()

    convert_corpus(args.data, args.corpus)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    config = ROOT / args.config if not args.config.is_absolute() else args.config
    plan = [("ours", f"seed {s}", config, s) for s in args.seeds]
    if not args.no_spacy:
        spacy_cfg = spacy_ner_config(args.workdir / "spacy_ner.cfg")
        spacy_seeds = args.spacy_seeds or args.seeds[:1]
        # The first seed's run folder is spacy-spaCy_ner, which the speed benchmark reads.
        for i, s in enumerate(spacy_seeds):
            plan.append(("spacy", "spaCy ner" if i == 0 else f"spaCy ner seed {s}", spacy_cfg, s))
    if args.ablations:
        for name, overrides in ablations_for(Config().from_disk(config, interpolate=False)).items():
            cfg = write_config(config, overrides, args.workdir / "configs" / (name.split(" (")[0].replace(" ", "_") + ".cfg"))
            plan.append(("ablation", name, cfg, args.seeds[0]))

    if args.sweep:
        for name, overrides in {**SWEEP, **(EXTRA_SWEEP if args.extra_sweep else {})}.items():
            cfg = write_config(config, overrides, args.workdir / "configs" / (name.split(" (")[0].replace(" ", "_") + ".cfg"))
            plan.append(("sweep", name, cfg, args.seeds[0]))

    def run(item) -> Dict:
        kind, name, cfg, seed = item
        out = args.workdir / f"{kind}-{name.split(' (')[0].replace(' ', '_')}"
        steps = args.max_steps if kind != "spacy" else 0
        info = train(name, cfg, out, args.corpus, seed, args.time_budget, threads, steps)
        return {"kind": kind, "name": name, "seed": seed, "threads": threads, "train": info, "scores": score(out, args.corpus)}

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(run, plan))
    (args.workdir / "accuracy.json").write_text(json.dumps(runs, indent=2))
    section = render(runs, args)
    replace_section(args.output, "accuracy", section)
    print(section)


if __name__ == "__main__":
    main()
