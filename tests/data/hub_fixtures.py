"""Small local copies of the Hugging Face datasets of the paper's Table 8, each in its hub repository's own layout
and file format (what ``huggingface-cli download <id> --repo-type dataset --local-dir DIR`` leaves), with real
English text (the builtin corpus's docstrings): read by the same streaming code as the hub, offline.

    allenai/c4/{en,en.noclean,realnewslike}/c4-{train,validation}.NNNNN-of-NNNNN.json.gz   text, timestamp, url
    Skylion007/openwebtext/plain_text/train-NNNNN-of-NNNNN.parquet                         text
    wikimedia/wikipedia/20231101.en/train-NNNNN-of-NNNNN.parquet                           id, url, title, text
    bookcorpus/bookcorpus/plain_text/train/NNNN.parquet (the hub's parquet export)         text (one sentence)
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

C4_CONFIGS = ("en", "en.noclean", "realnewslike")


def texts(n: int, offset: int = 0) -> list[str]:
    """``n`` real English documents (builtin corpus docstrings), from ``offset`` on."""
    from t5lit.data.sources import builtin_records

    records = builtin_records("train")
    return [records[(offset + i) % len(records)]["text"] for i in range(n)]


def _parquet(path: Path, columns: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def _c4_file(path: Path, docs: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i, doc in enumerate(docs):
            f.write(json.dumps({"text": doc, "timestamp": "2019-04-25T12:57:54Z",
                                "url": f"https://example.com/{i}"}) + "\n")


def write_hub_copies(root: Path, docs_per_file: int = 60, files: int = 2) -> Path:
    """Write the local copies under ``root`` (a folder of copies by hub id, like ``$T5LIT_DATASETS_DIR``)."""
    root = Path(root)
    offset = 0
    for config in C4_CONFIGS:
        for i in range(files):
            _c4_file(root / "allenai/c4" / config / f"c4-train.{i:05d}-of-{files:05d}.json.gz",
                     texts(docs_per_file, offset))
            offset += docs_per_file
        _c4_file(root / "allenai/c4" / config / "c4-validation.00000-of-00001.json.gz", texts(docs_per_file, offset))
        offset += docs_per_file
    for i in range(files):
        _parquet(root / "Skylion007/openwebtext/plain_text" / f"train-{i:05d}-of-{files:05d}.parquet",
                 {"text": texts(docs_per_file, offset)})
        offset += docs_per_file
        docs = texts(docs_per_file, offset)
        _parquet(root / "wikimedia/wikipedia/20231101.en" / f"train-{i:05d}-of-{files:05d}.parquet",
                 {"id": [str(k) for k in range(len(docs))], "url": [f"https://en.wikipedia.org/wiki?curid={k}"
                                                                    for k in range(len(docs))],
                  "title": [d.splitlines()[0][:40] for d in docs], "text": docs})
        offset += docs_per_file
    sentences = [s.strip() for doc in texts(docs_per_file, offset) for s in re.split(r"(?<=[.!?])\s+", doc)
                 if s.strip()]
    _parquet(root / "bookcorpus/bookcorpus/plain_text/train/0000.parquet", {"text": [s.lower() for s in sentences]})
    return root
