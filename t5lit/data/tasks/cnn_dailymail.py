"""CNN / Daily Mail abstractive summarization (Hermann et al., 2015; See et al., 2017), paper Section 2.3.

    summarize: <article>  ->  <highlights>                               (ROUGE-1, ROUGE-2, ROUGE-Lsum)

Sources: the hub's ``abisee/cnn_dailymail`` (version 3.0.0, non-anonymized), or with ``data_dir`` JSON lines
``<data_dir>/{train,validation,test}.jsonl`` with fields ``article`` and ``highlights`` (one highlight
sentence per line, as on the hub).
"""

from __future__ import annotations

from pathlib import Path

from t5lit import metrics as M
from t5lit.data.tasks.base import (
    Example,
    Source,
    Task,
    load_hub,
    read_jsonl_records,
    register_task,
    require_field,
    text_postprocessor,
)


def summarize_formatter(example: Example) -> dict[str, str]:
    return {"inputs": f"summarize: {example['article']}", "targets": example["highlights"]}


def _load(data_dir: Path | None, split: str) -> list[Example]:
    if data_dir is None:
        return load_hub("abisee/cnn_dailymail", "3.0.0", split)
    path = data_dir / f"{split}.jsonl"
    records = read_jsonl_records(path)
    for line, record in records:  # both fields are text: a record without one is an error naming its line
        require_field(record, "article", f"{path}:{line}")
        require_field(record, "highlights", f"{path}:{line}")
    return [record for _, record in records]


register_task(Task(
    name="cnn_dailymail", source=Source(default=lambda split: _load(None, split), local=_load,
                                        layout="<data_dir>/{train,validation,test}.jsonl",
                                        files=lambda d, split: [d / f"{split}.jsonl"]),
    formatter=summarize_formatter, postprocessor=text_postprocessor, metrics=(M.rouge,), num_beams=4,
    target=lambda ex: ex["highlights"], is_labelled=lambda ex: bool(ex.get("highlights")),
    description="CNN/Daily Mail summarization", headline=("rouge2",), column="CNNDM"))
