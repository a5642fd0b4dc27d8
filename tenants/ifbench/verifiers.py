"""Load IFBench's official verifiers (verifiers/ifbench/, unmodified) offline, and score with them.

The upstream modules reach for the network at import and check time: `instructions.py` runs
`spacy.cli.download('en_core_web_sm')` (and never uses spaCy otherwise), `instructions_util.py`
and several checkers call `nltk.download(...)`. Here `spacy.cli.download` is a stub module that
does nothing, and `nltk.download` only *looks up* the resource locally: it never downloads. A
checker that really needs a missing NLTK resource then fails with `ResourceMissing`, naming it.

Which instruction types need NLTK data at all is computed from the checkers' source by
`resource_needs()`; without that data they are `excluded()` from the tenant (see README.md).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: What a checker's source calls -> the NLTK resource that call loads.
NLTK_CALLS = {
    "word_tokenize": "tokenizers/punkt_tab",
    "sent_tokenize": "tokenizers/punkt_tab",
    "pos_tag": "taggers/averaged_perceptron_tagger_eng",
    "count_stopwords": "corpora/stopwords",
    "stopwords.words": "corpora/stopwords",
}
_DOWNLOAD_NAMES = {
    "punkt": "tokenizers/punkt",
    "punkt_tab": "tokenizers/punkt_tab",
    "stopwords": "corpora/stopwords",
    "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng",
}


class ResourceMissing(RuntimeError):
    """A verifier needs NLTK data that is not installed (fapo never downloads it)."""


def _offline_download(name: str = "", *args: Any, **kwargs: Any) -> bool:
    """Stand-in for `nltk.download`: True when the resource is installed locally, else False.

    The upstream code calls it unconditionally in constructors of checkers that never use the
    resource, so a missing resource cannot fail here; it fails at the real use (LookupError,
    turned into ResourceMissing by `check`)."""
    import nltk

    try:
        nltk.data.find(_DOWNLOAD_NAMES.get(name, name))
        return True
    except LookupError:
        return False


@cache
def modules() -> types.SimpleNamespace:
    """The upstream `instructions`, `instructions_registry`, `instructions_util`,
    `evaluation_lib` modules, imported without spaCy and without any download."""
    import nltk

    nltk.download = _offline_download  # type: ignore[assignment]
    if "spacy.cli" not in sys.modules:
        spacy = sys.modules.setdefault("spacy", types.ModuleType("spacy"))
        cli = types.ModuleType("spacy.cli")
        cli.download = lambda *a, **k: None  # type: ignore[attr-defined]
        spacy.cli = cli  # type: ignore[attr-defined]
        sys.modules["spacy.cli"] = cli
    root = str(HERE / "verifiers")
    if root not in sys.path:
        sys.path.insert(0, root)
    loaded = {
        n: importlib.import_module(f"ifbench.{n}")
        for n in ("instructions_util", "instructions", "instructions_registry", "evaluation_lib")
    }
    origin = Path(loaded["instructions"].__file__ or "").resolve()
    if origin.parent != HERE / "verifiers" / "ifbench":
        raise ImportError(f"another 'ifbench' package shadows the vendored verifiers: {origin}")
    return types.SimpleNamespace(**loaded)


def registry() -> dict[str, Any]:
    """Instruction id -> checker class, as the upstream registry declares it."""
    return dict(modules().instructions_registry.INSTRUCTION_DICT)


@cache
def resource_needs() -> dict[str, tuple[str, ...]]:
    """Instruction id -> NLTK resources its checker's source uses (empty: none needed)."""
    needs = {}
    for iid, cls in registry().items():
        src = inspect.getsource(cls)
        needs[iid] = tuple(sorted({res for call, res in NLTK_CALLS.items() if call in src}))
    return needs


def installed(resource: str) -> bool:
    import nltk

    try:
        nltk.data.find(resource)
        return True
    except LookupError:
        return False


def excluded(assume_missing: bool = True) -> dict[str, tuple[str, ...]]:
    """Instruction id -> missing resources, for the ids that cannot be scored offline.
    `assume_missing` (the default, used to build the data) ignores any locally installed NLTK
    data so the dataset is the same on every machine."""
    return {
        iid: res
        for iid, res in resource_needs().items()
        if res and (assume_missing or not all(installed(r) for r in res))
    }


def _input(example_id: str, prompt: str, label: dict[str, Any]) -> Any:
    lib = modules().evaluation_lib
    return lib.InputExample(
        key=example_id,
        instruction_id_list=list(label["instruction_id_list"]),
        prompt=prompt,
        kwargs=[dict(k) for k in label["kwargs"]],
    )


def check(example_id: str, prompt: str, label: dict[str, Any], response: str) -> dict[str, Any]:
    """Strict and loose verdicts per instruction, by the upstream evaluation functions.

    Returns {"strict": [bool…], "loose": [bool…], "ids": [instruction ids]}."""
    lib = modules().evaluation_lib
    lookup = {prompt: response}
    try:
        # One input for both, strict first, as upstream run_eval.py does: the strict test drops
        # None-valued kwargs in place and the loose test relies on that.
        inp = _input(example_id, prompt, label)
        strict = lib.test_instruction_following_strict(inp, lookup)
        loose = lib.test_instruction_following_loose(inp, lookup)
    except LookupError as exc:
        missing = [r for r in _DOWNLOAD_NAMES.values() if r.split("/")[-1] in str(exc)]
        raise ResourceMissing(
            f"example {example_id}: a verifier needs NLTK data {missing or '(unknown)'} that is "
            "not installed; fapo never downloads it (see tenants/ifbench/README.md)"
        ) from None
    return {
        "ids": list(label["instruction_id_list"]),
        "strict": [bool(x) for x in strict.follow_instruction_list],
        "loose": [bool(x) for x in loose.follow_instruction_list],
    }
