"""The ladder's "gold present but badly formatted" rung, for labels and predictions of any shape."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from fapo.errors import FapoError
from fapo.tenant import Tenant


def _norm(text: Any) -> str:
    return " ".join(re.sub(r"[^\w\s-]", " ", str(text).lower()).split())


def gold_strings(label: Any, keys: Sequence[str] = ()) -> list[str]:
    """Strings that count as the gold answer of `label` (alternatives: any one of them counts).

    A string or a number is itself; a list holds alternatives. A dict says where its answer is by
    structure before any name: the first of `keys` it has (the fields the prediction is compared
    to: the tenant's prediction key, the final step's declared output key); else the conventional
    names answer/answers/label/target/gold (the shapes read before `keys` existed); else its only
    scalar field ({"city": "Lyon"}). A lone list field nothing names is not taken: it may be a set
    of requirements ({"constraints": [...]}) rather than alternatives."""
    if isinstance(label, dict):
        field = _answer_field(label, keys)
        return gold_strings(label[field]) if field is not None else []
    if isinstance(label, list | tuple):
        return [str(x) for x in label if _scalar(x)]
    return [str(label)] if _scalar(label) else []


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _answer_field(label: dict[str, Any], keys: Sequence[str]) -> str | None:
    """The field of a dict label holding the answer the prediction is compared to, or None."""
    for key in keys:
        if key in label:
            return key
    for key in ("answer", "answers", "label", "target", "gold"):
        if key in label:
            return key
    scalars = [k for k, v in label.items() if _scalar(v)]
    return scalars[0] if len(scalars) == 1 else None


#: Words any longer text holds by chance. A gold made only of these and of 1-2 character tokens
#: ("yes", "a", "3", "no") inside a long prediction shows nothing: it counts only in a prediction
#: at most _SLACK words longer than itself, where it occurs once ("The answer is 3.").
_COMMON_TEXT = """a an the and or but if not no nor yes of to in on at by for with from as into than then so
    is are was were be been am do does did has have had can could will would should may might must
    it its this that these those there here i me my we our you your he him his she her they them
    their who what which when where why how all any some none one two three true false ok okay
    maybe unknown other others more most less very same"""
_COMMON = frozenset(_COMMON_TEXT.split())
_SLACK = 4


def _distinctive(gold: str) -> bool:
    return any(len(w) > 2 and w not in _COMMON for w in gold.split())


def _as_dict(value: Any) -> Any:
    """A prediction that is a JSON object's text, parsed (field-by-field comparison)."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _pairs(
    prediction: Any, label: Any, keys: Sequence[str], path: tuple[str, ...] = ()
) -> list[tuple[Any, Any, tuple[str, ...]]]:
    """(predicted value, label value, label path) of each part of the prediction that is compared
    to a part of the label: a dict prediction field by field with the label's fields of the same
    names; otherwise the whole prediction with the label's answer (`gold_strings`' choice)."""
    if isinstance(label, dict):
        pred = _as_dict(prediction)
        if isinstance(pred, dict) and any(k in pred for k in label):
            return [
                pair
                for k in label
                if k in pred
                for pair in _pairs(pred[k], label[k], (), (*path, k))
            ]
        field = _answer_field(label, keys)
        return [] if field is None else _pairs(prediction, label[field], (), (*path, field))
    return [(prediction, label, path)]


def _found(gold: str, text: str) -> list[re.Match[str]]:
    return list(re.finditer(rf"(?<!\w){re.escape(gold)}(?!\w)", text))


def _shows_gold(pred: Any, label: Any, categories: frozenset[str]) -> bool:
    """`pred` holds the label's answer inside a longer output: a gold string occurs in it (word
    bounded); a short or common gold only in a short prediction, once; and no other category of
    the label (`categories`: the values a categorical label field takes) occurs besides it —
    "billing or technical? technical" does not show the gold "billing"."""
    text = _norm(pred)
    for gold in {_norm(g) for g in gold_strings(label)}:
        hits = _found(gold, text) if gold and gold != text else []
        if not hits:
            continue
        if not _distinctive(gold) and (
            len(hits) > 1 or len(text.split()) > len(gold.split()) + _SLACK
        ):
            continue
        rest = re.sub(rf"(?<!\w){re.escape(gold)}(?!\w)", " | ", text)
        # a category inside the gold ("info" in "not enough info") is looked for outside it
        if any(_found(c, rest if _found(c, gold) else text) for c in categories - {gold} if c):
            continue
        return True
    return False


def _equal(pred: Any, label: Any) -> bool:
    if pred == label:
        return True
    if isinstance(label, list | tuple):
        if isinstance(pred, list | tuple):  # a list field is a set of items, not alternatives
            return {_norm(x) for x in pred} == {_norm(x) for x in label}
        return _norm(pred) in {_norm(g) for g in gold_strings(label)}
    return not isinstance(label, dict) and _norm(pred) == _norm(label)


def gold_present(
    prediction: Any,
    label: Any,
    keys: Sequence[str] = (),
    categories: Callable[[tuple[str, ...]], frozenset[str]] | None = None,
) -> bool:
    """The ladder's "gold present but badly formatted": every part of the prediction that differs
    from its part of the label holds that part's gold inside a longer output (`_shows_gold`), and
    at least one part differs. A multi-field label with one field plainly wrong is not a format
    problem. `categories(path)`: the values of a categorical label part (for ambiguity)."""
    wrong = [
        (p, lab, path) for p, lab, path in _pairs(prediction, label, keys) if not _equal(p, lab)
    ]
    if not wrong:
        return False
    if any(isinstance(p, list | tuple) and isinstance(lab, list | tuple) for p, lab, _ in wrong):
        return False  # a wrong set of items is wrong content, whatever its format
    return all(
        _shows_gold(p, lab, categories(path) if categories else frozenset())
        for p, lab, path in wrong
    )


_CATEGORIES: dict[tuple[str, int, int, tuple[str, ...]], frozenset[str]] = {}


def label_categories(tenant: Tenant, path: tuple[str, ...]) -> frozenset[str]:
    """The values the label part at `path` takes on the train split when it is categorical (at
    most half as many distinct values as rows that have it), else empty. Train only: val and test
    labels stay sealed."""
    try:
        data = tenant.data_path("train")
        st = data.stat()
    except (OSError, FapoError):
        return frozenset()
    key = (str(data), st.st_mtime_ns, st.st_size, path)
    if key not in _CATEGORIES:
        values: set[str] = set()
        n = 0
        try:
            for ex in tenant.examples("train"):
                v: Any = ex.label
                for k in path:
                    v = v.get(k) if isinstance(v, dict) else None
                if _scalar(v):
                    values.add(_norm(v))
                    n += 1
        except (OSError, FapoError, ValueError):
            values, n = set(), 0
        _CATEGORIES[key] = frozenset(values) if n and 2 * len(values) <= n else frozenset()
    return _CATEGORIES[key]
