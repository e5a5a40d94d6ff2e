"""WMT translation from English (paper Section 2.3): En-De (WMT 2014), En-Fr (WMT 2014), En-Ro (WMT 2016).

    translate English to German: That is good.  ->  Das ist gut.                        (BLEU, sacrebleu "intl")

Sources: the hub's ``wmt/wmt14`` (``de-en``, ``fr-en``) and ``wmt/wmt16`` (``ro-en``), whose validation and test
splits are newstest2013 / newstest2014 (En-De, En-Fr) and newsdev2016 / newstest2016 (En-Ro); or with
``data_dir`` sentence-aligned plain text, one sentence per line: ``<data_dir>/{train,validation,test}.en``
beside ``<data_dir>/{train,validation,test}.<de|fr|ro>``. Examples are ``{"en": ..., "<lang>": ..., "idx"}``.
"""

from __future__ import annotations

from pathlib import Path

from t5lit import metrics as M
from t5lit.data.tasks.base import Example, Source, Task, load_hub, register_task, text_lines, text_postprocessor
from t5lit.registry import ConfigError

LANGUAGES = {"de": "German", "fr": "French", "ro": "Romanian"}


def read_parallel(data_dir: Path, split: str, target: str) -> list[Example]:
    """Line-aligned ``<split>.en`` / ``<split>.<target>`` -> ``[{"en", target}]``; different lengths are an error."""
    en, tgt = text_lines(data_dir / f"{split}.en"), text_lines(data_dir / f"{split}.{target}")
    if len(en) != len(tgt):
        raise ConfigError(f"{data_dir}/{split}.en has {len(en)} lines but {split}.{target} has {len(tgt)}; "
                          f"they must be sentence-aligned")
    if not en:
        raise ConfigError(f"{data_dir}/{split}.en and {split}.{target} are empty; expected one sentence per line")
    return [{"en": e, target: t} for e, t in zip(en, tgt)]


def translate_formatter(target: str):
    def formatter(example: Example) -> dict[str, str]:
        return {"inputs": f"translate English to {LANGUAGES[target]}: {example['en']}", "targets": example[target]}

    return formatter


COLUMNS = {"de": "EnDe", "fr": "EnFr", "ro": "EnRo"}  # the paper's Table 1 columns


def _register(name: str, hub_path: str, target: str) -> Task:
    def default(split: str) -> list[Example]:
        return [dict(row["translation"]) for row in load_hub(hub_path, f"{target}-en", split)]

    def local(data_dir: Path, split: str) -> list[Example]:
        return read_parallel(data_dir, split, target)

    return register_task(Task(
        name=name, source=Source(default=default, local=local,
                                 layout=f"<data_dir>/{{train,validation,test}}.{{en,{target}}}",
                                 files=lambda d, split: [d / f"{split}.en", d / f"{split}.{target}"]),
        formatter=translate_formatter(target), postprocessor=text_postprocessor, metrics=(M.bleu,), num_beams=4,
        target=lambda ex: ex[target], is_labelled=lambda ex: bool(ex.get(target)),
        description=f"WMT English to {LANGUAGES[target]}", headline=("bleu",), column=COLUMNS[target]))


_register("wmt14_ende", "wmt/wmt14", "de")
_register("wmt14_enfr", "wmt/wmt14", "fr")
_register("wmt16_enro", "wmt/wmt16", "ro")
