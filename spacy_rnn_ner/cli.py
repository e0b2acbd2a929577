"""The `spacy_rnn_ner` command line (typer, like spaCy's own CLI)."""
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from .annotate import AnnotateError, annotate

app = typer.Typer(name="spacy_rnn_ner", add_completion=False, no_args_is_help=True)


@app.callback()
def main() -> None:
    """spacy-rnn-ner: a BiLSTM entity tagger for spaCy. Run a command with --help for its options."""


@app.command("annotate")
def annotate_cli(
    model: str = typer.Argument(..., help="Trained pipeline: a directory or an installed package name"),
    input_path: Path = typer.Argument(..., help="Input: .txt (one document per line), .jsonl or .spacy", dir_okay=False),
    output_path: Path = typer.Argument(..., help="Output: .jsonl (one record per document) or .spacy", dir_okay=False),
    input_format: Optional[str] = typer.Option(None, "--input-format", "-if", help="text, jsonl or spacy (default: from the suffix)"),
    output_format: Optional[str] = typer.Option(None, "--output-format", "-of", help="jsonl or spacy (default: from the suffix)"),
    text_key: str = typer.Option("text", "--text-key", "-k", help="JSONL key that holds the text"),
    batch_size: int = typer.Option(256, "--batch-size", "-b", help="Documents per nlp.pipe batch"),
    n_process: int = typer.Option(1, "--n-process", "-n", help="Processes for nlp.pipe"),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run after its last complete record"),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first bad input line instead of writing an error record"),
    include_text: bool = typer.Option(False, "--include-text", help="Copy each document's text into its JSONL record"),
    dask: Optional[str] = typer.Option(None, "--dask", help="Dask scheduler address (tcp://host:8786), or local:N for N local workers"),
    partition_size: int = typer.Option(500, "--partition-size", help="Documents per Dask partition"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: when stderr is a terminal)"),
) -> None:
    """Annotate a corpus with a trained pipeline: one output record per input document, in order.

    A bad input line (invalid JSON, no text, bytes that are not UTF-8) gives
    an error record naming its line, or stops the run with --strict. Entities
    carry character offsets, label and, where the pipeline provides one, a
    confidence score.
    """
    try:
        stats = annotate(
            model, input_path, output_path, input_format=input_format, output_format=output_format,
            text_key=text_key, batch_size=batch_size, n_process=n_process, resume=resume, strict=strict,
            include_text=include_text, dask_address=dask, partition_size=partition_size, progress=progress,
            log=lambda text: msg.warn(text),
        )
    except AnnotateError as err:
        msg.fail(str(err), exits=1)
    if stats.skipped:
        msg.info(f"Resumed after {stats.skipped:,} documents already in {output_path}")
    msg.good(
        f"Annotated {stats.docs:,} documents ({stats.errors:,} errors), {stats.words:,} words in "
        f"{stats.seconds:.1f} s: {stats.words_per_second:,.0f} words/s -> {output_path}"
    )


if __name__ == "__main__":
    app()
