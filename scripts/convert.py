"""Convert a CoNLL-style column file (token first, NER tag last) into a .spacy DocBin.

Usage:
    python scripts/convert.py INPUT OUTPUT [--lang en] [--scheme auto|iob1|iob2|biluo]
                              [--n-sents-per-doc N]

Prints one statistics line; on broken input prints the located error and exits 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence


def _import_conll():  # type: ignore[no-untyped-def]
    """Import spacy_rnn_ner.data.conll, adding the repo root to sys.path only if the package is not installed."""
    try:
        from spacy_rnn_ner.data import conll
    except ModuleNotFoundError as err:
        if err.name != "spacy_rnn_ner":
            raise
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from spacy_rnn_ner.data import conll
    return conll


conll = _import_conll()


def _positive_int(value: str) -> int:
    """Argparse type for --n-sents-per-doc: an integer of at least 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Read the command line: input and output paths plus reader options."""
    parser = argparse.ArgumentParser(
        description="Convert a CoNLL column file (token first, NER tag last) to a .spacy DocBin."
    )
    parser.add_argument("input", type=Path, help="column file to read (e.g. assets/demo/train.iob)")
    parser.add_argument("output", type=Path, help=".spacy file to write (parent folders are created)")
    parser.add_argument("--lang", default="en", help="spaCy language code for the vocab (default: en)")
    parser.add_argument(
        "--scheme",
        default="auto",
        choices=conll.SCHEMES,
        help="NER tag scheme of the input; auto detects IOB1, IOB2 or BILUO (default: auto)",
    )
    parser.add_argument(
        "--n-sents-per-doc",
        type=_positive_int,
        default=None,
        metavar="N",
        help="group sentences into docs of N sentences when the file has no -DOCSTART- lines",
    )
    parser.add_argument(
        "--tag-column",
        type=_positive_int,
        default=None,
        metavar="N",
        help="also keep column N (0 is the token) as token.tag_, e.g. 1 for CoNLL-2003's part-of-speech tags",
    )
    return parser.parse_args(argv)


def convert(
    input_path: Path, output_path: Path, lang: str, scheme: str, n_sents_per_doc: Optional[int], tag_column: Optional[int] = None
) -> str:
    """Read ``input_path``, save its Docs to ``output_path`` and return the stats line."""
    from spacy.tokens import DocBin

    docs, stats = conll.read_conll(input_path, lang, scheme=scheme, n_sents_per_doc=n_sents_per_doc, tag_column=tag_column)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=False).to_disk(output_path)
    return stats.format(input_path.stem)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the conversion; return 0 on success and 1 with a message on bad input."""
    args = parse_args(argv)
    try:
        line = convert(args.input, args.output, args.lang, args.scheme, args.n_sents_per_doc, args.tag_column)
    except (ValueError, OSError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{line} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
