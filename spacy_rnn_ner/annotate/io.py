"""Input records and output files for `spacy_rnn_ner annotate`.

Inputs: plain text (one document per line), JSONL (one object per line, text
under a configurable key) and spaCy's `.spacy` DocBin files. Outputs: JSONL
(one record per document) and `.spacy`. Both writers can resume an
interrupted run: they count the complete records already written, drop a
half-written tail, and the annotator skips that many input documents.
"""
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

INPUT_FORMATS = ("text", "jsonl", "spacy")
OUTPUT_FORMATS = ("jsonl", "spacy")


class AnnotateError(ValueError):
    """A problem with the input or output of `annotate`, worded for the user."""


@dataclass
class Record:
    """One input document, or the reason it could not be read."""

    index: int  # position among the input documents, from 0
    line: Optional[int] = None  # line number in the input file, from 1 (None for .spacy)
    text: Optional[str] = None
    doc: Optional[Doc] = None
    meta: Optional[Dict[str, Any]] = None
    id: Any = None
    error: Optional[str] = None

    def where(self) -> str:
        return f"line {self.line}" if self.line is not None else f"document {self.index}"


@dataclass
class Output:
    """What annotating one record produced: the JSON record, and the Doc for .spacy output."""

    record: Dict[str, Any]
    doc: Optional[Doc] = None
    n_words: int = 0
    error: Optional[str] = field(default=None)


def detect_format(path: Path, given: Optional[str], allowed: tuple) -> str:
    """The file format: `given` if set, else from the suffix (.jsonl/.json, .spacy, anything else text)."""
    if given:
        if given not in allowed:
            raise AnnotateError(f"Unknown format {given!r} for {path}: choose one of {', '.join(allowed)}.")
        return given
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix == ".spacy":
        return "spacy"
    if "text" not in allowed:
        raise AnnotateError(
            f"Cannot tell the output format of {path} from its suffix: name it .jsonl or .spacy, "
            "or pass --output-format."
        )
    return "text"


def _lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes, without line endings; no phantom line after a final newline."""
    with open(path, "rb") as f:
        for raw in f:
            yield raw.rstrip(b"\r\n") if raw.endswith(b"\n") else raw


def read_records(path: Path, fmt: str, text_key: str = "text", vocab: Optional[Vocab] = None) -> Iterator[Record]:
    """Yield one Record per input document, in order; unreadable lines become error records."""
    if fmt == "spacy":
        doc_bin = DocBin().from_disk(path)
        for i, doc in enumerate(doc_bin.get_docs(vocab if vocab is not None else Vocab())):
            meta = doc.user_data.get("meta") if doc.user_data else None
            yield Record(index=i, text=doc.text, doc=doc, meta=meta)
        return
    index = 0
    for line_no, raw in enumerate(_lines(path), start=1):
        try:
            line = raw.decode("utf8")
        except UnicodeDecodeError as err:
            yield Record(index=index, line=line_no, error=f"bytes that are not UTF-8 at column {err.start + 1}")
            index += 1
            continue
        if fmt == "text":
            yield Record(index=index, line=line_no, text=line)
            index += 1
            continue
        if not line.strip():
            continue  # a blank line in JSONL is not a document
        yield _jsonl_record(line, index, line_no, text_key)
        index += 1


def _jsonl_record(line: str, index: int, line_no: int, text_key: str) -> Record:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        return Record(index=index, line=line_no, error=f"invalid JSON ({err.msg} at column {err.colno})")
    if not isinstance(obj, dict):
        return Record(index=index, line=line_no, error=f"expected a JSON object, got {type(obj).__name__}")
    if text_key not in obj:
        return Record(index=index, line=line_no, error=f"no {text_key!r} key (set the text key with --text-key)")
    text = obj[text_key]
    if not isinstance(text, str):
        return Record(index=index, line=line_no, error=f"the {text_key!r} value is {type(text).__name__}, not a string")
    return Record(index=index, line=line_no, text=text, meta=obj.get("meta"), id=obj.get("id"))


class JsonlWriter:
    """Appends one JSON line per record; each batch is one write, flushed at once."""

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = Path(path)
        self.n_done = recover_jsonl(self.path) if resume else 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a" if resume else "w", encoding="utf8")

    def write(self, outputs: List[Output]) -> None:
        if outputs:
            self.file.write("".join(json.dumps(o.record, ensure_ascii=False) + "\n" for o in outputs))
            self.file.flush()

    def close(self) -> None:
        self.file.close()


def recover_jsonl(path: Path) -> int:
    """Count the complete records of a JSONL output and cut off a half-written last line."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1  # 0 when there is no complete line
        if end < len(data):
            f.truncate(end)
    lines = data[:end].splitlines()
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AnnotateError(
                f"Cannot resume: line {i + 1} of {path} is not a JSON record. "
                "Start again without --resume, or remove the damaged lines."
            ) from None
        if record.get("index") != i:
            raise AnnotateError(
                f"Cannot resume: record {i + 1} of {path} has index {record.get('index')}, expected {i}. "
                "Was it written from another input? Start again without --resume."
            )
    return len(lines)


class DocBinWriter:
    """Writes `.spacy` output as numbered parts, each renamed into place when complete,
    then merges them into one DocBin at the end. A crash leaves only whole parts,
    which --resume counts."""

    def __init__(self, path: Path, resume: bool, part_size: int = 1000) -> None:
        self.path = Path(path)
        self.parts = self.path.with_name(self.path.name + ".parts")
        self.part_size = part_size
        self.buffer: List[Doc] = []
        if not resume:
            shutil.rmtree(self.parts, ignore_errors=True)
        elif self.path.exists() and not self.parts.exists():
            # A finished run: continue from its file as the first part.
            self.parts.mkdir(parents=True)
            shutil.move(str(self.path), str(self.parts / "part-000000.spacy"))
        self.parts.mkdir(parents=True, exist_ok=True)
        for tmp in self.parts.glob("*.tmp"):
            tmp.unlink()
        self.n_done = sum(len(DocBin().from_disk(p)) for p in self._part_files())

    def _part_files(self) -> List[Path]:
        return sorted(self.parts.glob("part-*.spacy"))

    def write(self, outputs: List[Output]) -> None:
        self.buffer.extend(o.doc for o in outputs if o.doc is not None)
        while len(self.buffer) >= self.part_size:
            self._flush(self.buffer[: self.part_size])
            self.buffer = self.buffer[self.part_size :]

    def _flush(self, docs: List[Doc]) -> None:
        if not docs:
            return
        target = self.parts / f"part-{len(self._part_files()):06d}.spacy"
        tmp = target.with_suffix(".tmp")
        DocBin(docs=docs, store_user_data=True).to_disk(tmp)
        os.replace(tmp, target)

    def close(self) -> None:
        self._flush(self.buffer)
        self.buffer = []
        merged = DocBin(store_user_data=True)
        for part in self._part_files():
            merged.merge(DocBin(store_user_data=True).from_disk(part))
        tmp = self.path.with_name(self.path.name + ".tmp")
        merged.to_disk(tmp)
        os.replace(tmp, self.path)
        shutil.rmtree(self.parts, ignore_errors=True)


def open_writer(path: Path, fmt: str, resume: bool):
    """The writer for `fmt` ("jsonl" or "spacy")."""
    return JsonlWriter(path, resume) if fmt == "jsonl" else DocBinWriter(path, resume)
