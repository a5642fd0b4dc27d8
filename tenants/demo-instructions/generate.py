"""Generate the demo-instructions splits deterministically (not read by the engine).

    .venv/bin/python tenants/demo-instructions/generate.py      # rewrites data/

Each row asks for a short text about a fictional topic under 1-3 verifiable constraints. Rows come
in four kinds (the kind is not stored; it only fixes the mix):

- easy      only "include the word ..." constraints (even a prompt that does not insist passes)
- listed    2-3 constraints a model obeys only when told to follow every constraint (prompt level)
- long      "at least N words" (N >= 100): obeyed texts exceed the baseline max_tokens (parameter)
- counted   "exactly N words" / "exactly N bullet points": the writer never hits an exact count;
            only deterministic enforcement after writing does (structure level)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 4417
PER_SPLIT = {"easy": 4, "listed": 14, "long": 11, "counted": 11}
SPLITS = ("train", "val", "test")

PLACES = (
    "night market",
    "salt harbor",
    "glass orchard",
    "lantern bridge",
    "copper library",
    "floating garden",
    "clock tower",
    "moss theater",
    "amber canal",
    "paper lighthouse",
)
OWNERS = (
    "Velmora",
    "Tessel Island",
    "Quarn",
    "Old Brisk",
    "Maelin",
    "Dunhallow",
    "Ostrava Minor",
    "Kelloway",
    "Sarn",
    "Veyle",
    "Harrowgate Fen",
    "Lisk",
)
KEYWORDS = (
    "lantern",
    "harbor",
    "compass",
    "ribbon",
    "thunder",
    "velvet",
    "pebble",
    "orchard",
    "whistle",
    "meadow",
    "anchor",
    "feather",
    "marble",
    "saffron",
    "cinder",
    "willow",
)
START_WORDS = ("tonight", "imagine", "listen", "first", "somewhere", "today")
END_PHRASES = (
    "Is there anything else I can help with?",
    "That is the whole story.",
    "See you at dawn.",
    "Nothing more needs to be said.",
)
EXCLUDED = ("very", "really")


def c_include(rng: random.Random) -> dict:
    w = rng.choice(KEYWORDS)
    return {"kind": "include", "word": w, "text": f"Include the word '{w}'."}


def c_exclude(rng: random.Random) -> dict:
    w = rng.choice(EXCLUDED)
    return {"kind": "exclude", "word": w, "text": f"Do not use the word '{w}'."}


def c_start(rng: random.Random) -> dict:
    w = rng.choice(START_WORDS)
    return {"kind": "start", "word": w, "text": f"Start the text with the word '{w}'."}


def c_end(rng: random.Random) -> dict:
    p = rng.choice(END_PHRASES)
    return {"kind": "end", "phrase": p, "text": f"End the text with the exact phrase '{p}'"}


def c_lowercase(rng: random.Random) -> dict:
    return {"kind": "lowercase", "text": "Use only lowercase letters, no capital letters at all."}


def c_title(rng: random.Random) -> dict:
    return {
        "kind": "title",
        "text": "Give the text a title wrapped in double angular brackets, such as <<my title>>.",
    }


def c_no_commas(rng: random.Random) -> dict:
    return {"kind": "no_commas", "text": "Do not use any commas."}


def c_min_words(rng: random.Random) -> dict:
    n = rng.choice((100, 110, 120, 130, 140, 150, 160))
    return {"kind": "min_words", "n": n, "text": f"Write at least {n} words."}


def c_exact_words(rng: random.Random) -> dict:
    n = rng.randint(18, 45)
    return {"kind": "exact_words", "n": n, "text": f"Write exactly {n} words."}


def c_exact_bullets(rng: random.Random) -> dict:
    n = rng.randint(2, 4)
    return {
        "kind": "exact_bullets",
        "n": n,
        "text": f"Use exactly {n} bullet points (lines starting with '- ') and nothing else.",
    }


HARD = (c_exclude, c_start, c_end, c_lowercase, c_title, c_no_commas)


def constraints(kind: str, rng: random.Random) -> list[dict]:
    if kind == "easy":
        return [c_include(rng)]
    if kind == "listed":
        picks = rng.sample(HARD, rng.randint(1, 2))
        if c_start in picks and c_title in picks:  # a title line would come before the word
            picks.remove(c_title)
        extra = [c_include(rng)] if rng.random() < 0.6 else []
        return extra + [f(rng) for f in picks]
    if kind == "long":
        return [
            c_min_words(rng),
            rng.choice((c_include, c_exclude, c_lowercase, c_no_commas, c_end))(rng),
        ]
    if rng.random() < 0.55:
        return [c_exact_words(rng), rng.choice((c_include, c_lowercase, c_no_commas, c_end))(rng)]
    return [c_exact_bullets(rng), rng.choice((c_include, c_lowercase, c_no_commas))(rng)]


def main() -> None:
    rng = random.Random(SEED)
    topics = [f"the {p} of {o}" for p in PLACES for o in OWNERS]
    rng.shuffle(topics)
    data = Path(__file__).parent / "data"
    data.mkdir(exist_ok=True)
    for split in SPLITS:
        kinds = [k for k, n in PER_SPLIT.items() for _ in range(n)]
        rng.shuffle(kinds)
        with (data / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for i, kind in enumerate(kinds):
                cons = constraints(kind, rng)
                row = {
                    "id": f"{split}-{i:03d}",
                    "inputs": {"topic": topics.pop(), "constraints": cons},
                    "label": {"constraints": cons},
                }
                fh.write(json.dumps(row) + "\n")
    print(f"wrote {len(SPLITS)} splits of {sum(PER_SPLIT.values())} rows")


if __name__ == "__main__":
    main()
