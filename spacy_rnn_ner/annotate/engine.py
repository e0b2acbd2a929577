"""Run a trained pipeline over a corpus: one output record per input document,
in input order, with resume after a crash and optional Dask workers.

The command line is in `spacy_rnn_ner.cli`; this module is the engine, usable
from Python as `annotate(model, input_path, output_path, ...)`.
"""
import sys
import time
from collections import deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Deque, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from .io import (
    INPUT_FORMATS,
    OUTPUT_FORMATS,
    AnnotateError,
    Output,
    Record,
    detect_format,
    open_writer,
    read_records,
)

WRITE_EVERY = 256  # records per write: a crash loses at most this many


@dataclass
class AnnotateStats:
    """Counts for the run (this invocation only; `skipped` were done by an earlier run)."""

    docs: int = 0
    errors: int = 0
    words: int = 0
    skipped: int = 0
    seconds: float = 0.0

    @property
    def words_per_second(self) -> float:
        return self.words / self.seconds if self.seconds else 0.0


def entity_scores(doc: Doc) -> Dict[Tuple[int, int, str], float]:
    """Confidence per (start_char, end_char, label) from any span group that carries scores
    (rnn_tagger keeps them in doc.spans[spans_key].attrs["scores"])."""
    found: Dict[Tuple[int, int, str], float] = {}
    for group in doc.spans.values():
        scores = group.attrs.get("scores")
        if scores is None or len(scores) != len(group):
            continue
        for span, score in zip(group, scores):
            found.setdefault((span.start_char, span.end_char, span.label_), float(score))
    return found


def doc_record(doc: Doc, record: Record, include_text: bool = False) -> Dict[str, Any]:
    """The JSON record for an annotated document: its index, line, id, meta and entities."""
    out = _record_head(record)
    if include_text:
        out["text"] = doc.text
    scores = entity_scores(doc)
    ents = []
    for ent in doc.ents:
        item: Dict[str, Any] = {"start": ent.start_char, "end": ent.end_char, "label": ent.label_, "text": ent.text}
        score = scores.get((ent.start_char, ent.end_char, ent.label_))
        if score is not None:
            item["score"] = round(score, 6)
        ents.append(item)
    out["ents"] = ents
    return out


def _record_head(record: Record) -> Dict[str, Any]:
    out: Dict[str, Any] = {"index": record.index}
    if record.line is not None:
        out["line"] = record.line
    if record.id is not None:
        out["id"] = record.id
    if record.meta is not None:
        out["meta"] = record.meta
    return out


def error_output(record: Record, vocab: Vocab) -> Output:
    """An error record in place of a document that could not be read or processed."""
    out = _record_head(record)
    out["error"] = record.error
    doc = Doc(vocab)
    doc.user_data.update({"index": record.index, "line": record.line, "error": record.error})
    return Output(record=out, doc=doc, error=error_text(out))


def error_text(record: Dict[str, Any]) -> Optional[str]:
    """"line 7: invalid JSON ..." for an error record, None for a good one."""
    if "error" not in record:
        return None
    where = f"line {record['line']}" if "line" in record else f"document {record['index']}"
    return f"{where}: {record['error']}"


def annotate_records(
    nlp: Language,
    records: Iterable[Record],
    batch_size: int = 256,
    n_process: int = 1,
    include_text: bool = False,
    want_docs: bool = False,
) -> Iterator[Output]:
    """Run nlp.pipe over the readable records; yield one Output per record, in input order.

    Error records bypass the pipeline and are put back in their place: the
    records nlp.pipe has read ahead wait in `pending` until their doc comes back.
    """
    pending: Deque[Record] = deque()
    max_length = nlp.max_length

    def inputs() -> Iterator[Tuple[Union[str, Doc], int]]:
        for record in records:
            if record.error is None and record.text is not None and len(record.text) > max_length:
                record.error = (
                    f"text of {len(record.text):,} characters is longer than the pipeline's "
                    f"max_length ({max_length:,}): split it, or raise nlp.max_length"
                )
            pending.append(record)
            if record.error is None:
                yield (record.doc if record.doc is not None else record.text), record.index  # type: ignore[misc]

    for doc, index in nlp.pipe(inputs(), as_tuples=True, batch_size=batch_size, n_process=n_process):
        while pending[0].index != index:
            yield error_output(pending.popleft(), nlp.vocab)
        record = pending.popleft()
        if want_docs:
            doc.user_data.update({"index": record.index, "line": record.line, "id": record.id, "meta": record.meta})
        yield Output(record=doc_record(doc, record, include_text), doc=doc if want_docs else None, n_words=len(doc))
    while pending:
        yield error_output(pending.popleft(), nlp.vocab)


def load_pipeline(model: Union[str, Path]) -> Language:
    """spacy.load, with a message that says what to check when it fails."""
    try:
        return spacy.load(model)
    except OSError as err:
        raise AnnotateError(
            f"Cannot load the pipeline {str(model)!r}: give a directory that `spacy train` or "
            f"`nlp.to_disk` wrote, or the name of an installed pipeline package. ({err})"
        ) from None


def _progress(enabled: Optional[bool]):
    from tqdm import tqdm

    on = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(unit="doc", disable=not on, file=sys.stderr, dynamic_ncols=True)


def annotate(
    model: Union[str, Path],
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    *,
    input_format: Optional[str] = None,
    output_format: Optional[str] = None,
    text_key: str = "text",
    batch_size: int = 256,
    n_process: int = 1,
    resume: bool = False,
    strict: bool = False,
    include_text: bool = False,
    dask_address: Optional[str] = None,
    partition_size: int = 500,
    progress: Optional[bool] = None,
    log=None,
) -> AnnotateStats:
    """Annotate every document of `input_path` with the pipeline `model` into `output_path`.

    resume: continue an interrupted run after its last complete record.
    strict: stop at the first bad input line instead of writing an error record.
    dask_address: a Dask scheduler address ("tcp://host:8786"), or "local:N"
        for a local cluster of N worker processes; each worker loads the
        pipeline once and annotates partitions of `partition_size` documents
        (rounded up to a whole number of batches).
    progress: show a progress bar (default: only when stderr is a terminal).
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise AnnotateError(f"Input file not found: {input_path}")
    in_fmt = detect_format(input_path, input_format, INPUT_FORMATS)
    out_fmt = detect_format(output_path, output_format, OUTPUT_FORMATS)
    if input_path.resolve() == output_path.resolve():
        raise AnnotateError("The output file must differ from the input file.")
    writer = open_writer(output_path, out_fmt, resume)
    stats = AnnotateStats(skipped=writer.n_done)
    bar = _progress(progress)
    buffer: List[Output] = []

    def flush() -> None:
        writer.write(buffer)
        for out in buffer:
            if out.error is not None:
                stats.errors += 1
                if log is not None:
                    log(out.error)
        stats.docs += len(buffer)
        stats.words += sum(o.n_words for o in buffer)
        stats.seconds = time.perf_counter() - start
        bar.update(len(buffer))
        bar.set_postfix_str(f"{stats.words_per_second:,.0f} words/s", refresh=False)
        buffer.clear()

    start = time.perf_counter()
    try:
        if dask_address:
            checked = _Checked(islice(read_records(input_path, in_fmt, text_key, Vocab()), writer.n_done, None), strict)
            outputs = _dask_outputs(
                dask_address, str(model), iter(checked), batch_size, include_text,
                out_fmt == "spacy", partition_size,
            )
        else:
            nlp = load_pipeline(model)
            checked = _Checked(islice(read_records(input_path, in_fmt, text_key, nlp.vocab), writer.n_done, None), strict)
            outputs = annotate_records(
                nlp, iter(checked), batch_size, n_process, include_text, want_docs=out_fmt == "spacy"
            )
            start = time.perf_counter()  # throughput without the loading time
        for out in outputs:
            buffer.append(out)
            if len(buffer) >= WRITE_EVERY:
                flush()
    finally:
        # Whatever was annotated before a stop (--strict, Ctrl-C) is written whole.
        flush()
        bar.close()
        writer.close()
    checked.raise_if_failed()
    return stats


class _Checked:
    """Passes records through; under --strict, ends the stream at the first bad one
    (so everything before it is still annotated and written) and remembers it."""

    def __init__(self, records: Iterable[Record], strict: bool) -> None:
        self.records = records
        self.strict = strict
        self.failed: Optional[Record] = None

    def __iter__(self) -> Iterator[Record]:
        for record in self.records:
            if self.strict and record.error is not None:
                self.failed = record
                return
            yield record

    def raise_if_failed(self) -> None:
        if self.failed is not None:
            raise AnnotateError(
                f"Bad input at {self.failed.where()}: {self.failed.error}. --strict stopped the run there; "
                "the documents before it are written. Fix the line and rerun with --resume."
            )


# --- Dask ------------------------------------------------------------------

_WORKER_PIPELINES: Dict[str, Language] = {}


def _worker_pipeline(model: str) -> Language:
    """Load the pipeline once per worker process and keep it for later partitions."""
    if model not in _WORKER_PIPELINES:
        import torch

        torch.set_num_threads(1)  # one task per worker thread; avoid oversubscribing the cores
        _WORKER_PIPELINES[model] = spacy.load(model)
    return _WORKER_PIPELINES[model]


def annotate_partition(
    model: str, records: List[Record], docs: Optional[bytes], batch_size: int, include_text: bool, want_docs: bool
) -> Tuple[List[Dict[str, Any]], List[int], Optional[bytes]]:
    """Run on a Dask worker: annotate one partition. Docs travel as DocBin bytes."""
    nlp = _worker_pipeline(model)
    if docs is not None:
        given = iter(DocBin().from_bytes(docs).get_docs(nlp.vocab))
        for record in records:
            if record.error is None and record.text is not None and record.doc is None:
                record.doc = next(given)
    outputs = list(annotate_records(nlp, records, batch_size, 1, include_text, want_docs))
    out_docs = DocBin(docs=[o.doc for o in outputs], store_user_data=True).to_bytes() if want_docs else None
    return [o.record for o in outputs], [o.n_words for o in outputs], out_docs


def _partitions(records: Iterable[Record], size: int) -> Iterator[Tuple[List[Record], Optional[bytes]]]:
    """Cut the records into partitions of `size` readable records (error records ride along).

    With `size` a multiple of the batch size, each worker's nlp.pipe batches
    hold exactly the docs of the single-process run's batches, so even the
    last digits of the confidences match (they depend slightly on which docs
    share a batch).
    """
    part: List[Record] = []
    n_good = 0
    for record in records:
        part.append(record)
        n_good += record.error is None
        if n_good == size:
            yield _payload(part)
            part, n_good = [], 0
    if part:
        yield _payload(part)


def _payload(part: List[Record]) -> Tuple[List[Record], Optional[bytes]]:
    docs = [r.doc for r in part if r.doc is not None and r.error is None]
    payload = DocBin(docs=docs, store_user_data=True).to_bytes() if docs else None
    for r in part:
        r.doc = None  # Docs do not pickle cheaply; they travel in the DocBin
    return part, payload


def _dask_outputs(
    address: str, model: str, records: Iterable[Record], batch_size: int, include_text: bool,
    want_docs: bool, partition_size: int,
) -> Iterator[Output]:
    """Submit partitions to Dask workers, a few ahead, and yield their outputs in input order."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise AnnotateError(
            "--dask needs Dask distributed: pip install 'spacy-rnn-ner[dask]' (on the client and every worker)."
        ) from None
    cluster = None
    if address.startswith("local"):
        n_workers = int(address.split(":", 1)[1]) if ":" in address else 2
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(address)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        in_flight: Deque = deque()
        vocab = Vocab()

        def drain_one() -> Iterator[Output]:
            dicts, n_words, docs = in_flight.popleft().result()
            doc_list = list(DocBin().from_bytes(docs).get_docs(vocab)) if docs is not None else [None] * len(dicts)
            for record, words, doc in zip(dicts, n_words, doc_list):
                yield Output(record=record, doc=doc, n_words=words, error=error_text(record))

        size = max(1, -(-partition_size // batch_size)) * batch_size  # a whole number of batches
        for part, payload in _partitions(records, size):
            in_flight.append(
                client.submit(annotate_partition, model, part, payload, batch_size, include_text, want_docs, pure=False)
            )
            while len(in_flight) > 2 * n_workers:
                yield from drain_one()
        while in_flight:
            yield from drain_one()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
