"""Generate the demo-qa world, corpus and splits deterministically (not read by the engine).

    .venv/bin/python tenants/demo-qa/generate.py      # rewrites corpus/ and data/

The world is fictional (invented towns, rivers, people and organizations), so no model's world
knowledge can answer a question; every answer is a span of the corpus. Questions are bucketed by
where BM25 ranks their passages for the question itself (same tokenizer and tie-break as chain.py):

- near    single-hop, gold passage ranked 1-2    -> the baseline k=2 retrieves it
- deep    single-hop, gold passage ranked 3-6    -> needs k >= 6 (parameter level)
- bridge  two hops; first passage ranked 1-2, second passage ranked below MAX_K for the question
          (it shares no name with it) -> needs an entity-driven second retrieval hop (structure)
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from rank_bm25 import BM25Okapi

SEED = 20260
MAX_K = 8  # tenant.yaml bound of `k`: a bridge passage must stay out of reach up to here
PER_SPLIT = {"near": 16, "deep": 12, "bridge": 12}
SPLITS = ("train", "val", "test")

# Must match chain.py (tokenize + ranking), or the buckets above stop meaning what they say.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "their",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "with",
    ]
)


def tokenize(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS]


ONSETS = [
    "b",
    "br",
    "c",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "qu",
    "r",
    "s",
    "st",
    "t",
    "tr",
    "v",
    "w",
    "z",
]
VOWELS = ["a", "e", "i", "o", "u", "ae", "ai", "ei", "ou"]
CODAS = ["l", "n", "r", "s", "th", "nd", "rk", "ll", "rn", "st", "x", "m"]
TRADES = [
    "glassmaker",
    "cartographer",
    "weaver",
    "bookbinder",
    "clockmaker",
    "brewer",
    "mason",
    "luthier",
]
GOODS = ["salt", "wool", "amber", "copper", "linen", "honey", "timber", "spice"]
KINDS = ["Guild", "Choir", "Press", "Society", "Company", "Academy", "Orchestra", "Club"]
FILLERS = (
    "Its members kept careful records of every season.",
    "Letters from that time describe long evenings of work and talk.",
    "Several portraits survive in private collections.",
    "Visitors often remarked on the modest rooms and the crowded tables.",
    "Much of the early material was later copied by hand.",
    "Accounts differ on many small details of those decades.",
    "A ledger of expenses shows steady, careful growth.",
)


def word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables)]
    return "".join(parts).capitalize()


def unique_words(rng: random.Random, n: int, syllables: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        w = word(rng, syllables)
        if w not in taken and len(w) <= 12 and not re.search(r"(.)\1\1", w.lower()):
            taken.add(w)
            out.append(w)
    return out


def build_world(rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Passages and candidate questions (with gold answers and supporting passage ids)."""
    taken: set[str] = set()
    towns = unique_words(rng, 24, 2, taken)
    rivers = unique_words(rng, 10, 1, taken)
    firsts = unique_words(rng, 30, 2, taken)
    lasts = unique_words(rng, 40, 2, taken)
    names: list[str] = []
    while len(names) < 110:
        n = f"{rng.choice(firsts)} {rng.choice(lasts)}"
        if n not in names:
            names.append(n)
    people = [
        {
            "name": n,
            "town": rng.choice(towns),
            "year": rng.randint(1700, 1850),
            "trade": rng.choice(TRADES),
            "long": rng.random() < 0.45,
        }
        for n in names
    ]
    orgs: list[dict] = []
    founders = rng.sample(range(len(people)), 60)
    used: set[str] = set()
    for f in founders:
        while True:
            namesake, kind = rng.choice(towns), rng.choice(KINDS)
            if f"{namesake} {kind}" not in used:
                break
        used.add(f"{namesake} {kind}")
        base = rng.choice([t for t in towns if t != namesake])
        orgs.append(
            {
                "name": f"{namesake} {kind}",
                "founder": f,
                "base": base,
                "year": people[f]["year"] + rng.randint(20, 45),
                "long": rng.random() < 0.45,
            }
        )
    river_of = {t: rng.choice(rivers) for t in towns}

    passages: list[dict] = []

    def add(title: str, sentences: list[str], long: bool) -> str:
        if long:
            sentences = sentences + rng.sample(FILLERS, rng.randint(3, 5))
        pid = f"p{len(passages):03d}"
        passages.append({"id": pid, "title": title, "text": " ".join(sentences)})
        return pid

    for t in towns:
        p = add(
            t,
            [
                f"{t} is a town on the {river_of[t]} river.",
                f"{t} is known for its {rng.choice(GOODS)} markets.",
            ],
            False,
        )
        river_of[t + "#pid"] = p  # type: ignore[index]
    for person in people:
        person["pid"] = add(
            person["name"],
            [
                f"{person['name']} was born in {person['town']} in {person['year']}.",
                f"{person['name']} worked as a {person['trade']}.",
            ],
            person["long"],
        )
    for org in orgs:
        founder = people[org["founder"]]["name"]
        org["pid"] = add(
            org["name"],
            [
                f"The {org['name']} was founded by {founder} in {org['year']}.",
                f"The {org['name']} is based in {org['base']}.",
            ],
            org["long"],
        )
    for _ in range(90):  # meetings: short passages that share names with many questions
        org, person, town = rng.choice(orgs), rng.choice(people), rng.choice(towns)
        year = rng.randint(1750, 1900)
        year += year in (person["year"], org["year"])  # no lucky answers from meetings
        add(
            f"{org['name']} meeting",
            [
                f"In {year}, the {org['name']} held a meeting in {town} "
                f"attended by {person['name']}."
            ],
            False,
        )
    rng.shuffle(passages)  # ids stay; the order only matters for BM25 ties

    questions: list[dict] = []
    for person in people:
        questions.append(
            {
                "question": f"Where was {person['name']} born?",
                "answer": person["town"],
                "supporting": [person["pid"]],
            }
        )
        questions.append(
            {
                "question": f"In what year was {person['name']} born?",
                "answer": str(person["year"]),
                "supporting": [person["pid"]],
            }
        )
        questions.append(
            {
                "question": f"Which river flows through the town where {person['name']} was born?",
                "answer": river_of[person["town"]],
                "bridge": person["town"],
                "supporting": [person["pid"], river_of[person["town"] + "#pid"]],  # type: ignore[index]
            }
        )
    for org in orgs:
        founder = people[org["founder"]]
        questions.append(
            {
                "question": f"Who founded the {org['name']}?",
                "answer": founder["name"],
                "supporting": [org["pid"]],
            }
        )
        questions.append(
            {
                "question": f"In what year was the {org['name']} founded?",
                "answer": str(org["year"]),
                "supporting": [org["pid"]],
            }
        )
        questions.append(
            {
                "question": f"Where was the founder of the {org['name']} born?",
                "answer": founder["town"],
                "bridge": founder["name"],
                "supporting": [org["pid"], founder["pid"]],
            }
        )
        questions.append(
            {
                "question": f"In what year was the founder of the {org['name']} born?",
                "answer": str(founder["year"]),
                "bridge": founder["name"],
                "supporting": [org["pid"], founder["pid"]],
            }
        )
    return passages, questions


def ranks(passages: list[dict], query: str, bm25: BM25Okapi) -> dict[str, int]:
    """1-based rank of every passage for `query`, ties broken by corpus order (as in chain.py)."""
    scores = bm25.get_scores(tokenize(query))
    order = sorted(range(len(passages)), key=lambda i: (-scores[i], i))
    return {passages[i]["id"]: r + 1 for r, i in enumerate(order)}


def bucket(q: dict, passages: list[dict], bm25: BM25Okapi) -> str | None:
    r = ranks(passages, q["question"], bm25)
    first = r[q["supporting"][0]]
    if len(q["supporting"]) == 1:
        return "near" if first <= 2 else "deep" if first <= 6 else None
    return "bridge" if first <= 2 and r[q["supporting"][1]] > MAX_K else None


def main() -> None:
    rng = random.Random(SEED)
    passages, questions = build_world(rng)
    bm25 = BM25Okapi([tokenize(p["text"]) for p in passages])
    pools: dict[str, list[dict]] = {k: [] for k in PER_SPLIT}
    for q in questions:
        b = bucket(q, passages, bm25)
        if b:
            pools[b].append(q)
    for k, need in PER_SPLIT.items():
        if len(pools[k]) < need * len(SPLITS):
            raise SystemExit(f"only {len(pools[k])} '{k}' questions; need {need * len(SPLITS)}")
        rng.shuffle(pools[k])
    here = Path(__file__).parent
    (here / "corpus").mkdir(exist_ok=True)
    (here / "data").mkdir(exist_ok=True)
    with (here / "corpus" / "passages.jsonl").open("w", encoding="utf-8") as fh:
        for p in passages:
            fh.write(json.dumps(p) + "\n")
    for s, split in enumerate(SPLITS):
        rows = []
        for k, need in PER_SPLIT.items():
            rows += pools[k][s * need : (s + 1) * need]
        rng.shuffle(rows)
        with (here / "data" / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for i, q in enumerate(rows):
                label = {
                    "answer": q["answer"],
                    "supporting": q["supporting"],
                    "bridge": q.get("bridge"),
                }
                row = {
                    "id": f"{split}-{i:03d}",
                    "inputs": {"question": q["question"]},
                    "label": label,
                }
                fh.write(json.dumps(row) + "\n")
    counts = {k: len(v) for k, v in pools.items()}
    print(f"{len(passages)} passages; candidate pools {counts}; wrote {len(SPLITS)} splits")


if __name__ == "__main__":
    main()
