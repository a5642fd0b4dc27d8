"""Generate the data of the planted suite's second batch of tenants (seeded; not read by fapo).

    .venv/bin/python bench/planted/generate_more.py            # rewrites these tenants' data/, corpus/
    .venv/bin/python bench/planted/generate_more.py year-gap

The first six tenants come from generate.py; these two cover pipeline shapes those do not: a
fan-out/fan-in graph that extracts two values in parallel and computes with them in code
(`year-gap`), and a conditional graph whose router sends each request down one of two branches
(`intake-route`). The same conventions hold: every name is invented, buckets only shape the data
(each is checked against the tenant's own BM25 or the simulator, not assumed), and the ground
truth is measured by ground_truth.py.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from generate import (  # noqa: E402
    FIRST,
    LAST,
    ORG_A,
    ORG_B,
    SEED,
    TOWNS,
    load_chain,
    split_rows,
    write_jsonl,
)

# --- year-gap -------------------------------------------------------------------------------------

MORE_A = [
    "Harbor",
    "Ember",
    "Linden",
    "Russet",
    "Pewter",
    "Quartz",
    "Sable",
    "Tamarack",
    "Umbra",
    "Verdant",
    "Wren",
    "Yew",
    "Alder",
    "Bramble",
]

MORE_B = ["League", "Fellowship", "Assembly", "Collective", "Order", "Chapter", "Syndicate"]


def year_gap() -> None:
    """Pairs of organisations, each with a founding passage. Buckets: `plain` (both founding
    passages rank first for the name), `deep` (a hall note repeating the second organisation's
    name outranks its founding passage: only a deeper k finds it), `renamed` (the second founding
    sentence also has a later rename year, the last year of a reply that repeats the sentence).
    Every example is checked against the chain's BM25 and the simulator's reading."""
    from fapo.sim import respond

    rng = random.Random(f"{SEED}-year-gap")
    chain = load_chain("year-gap")
    pool = [f"{a} {b}" for a in ORG_A + MORE_A for b in ORG_B + MORE_B]
    rng.shuffle(pool)
    founders = [f"{f} {s}" for f in FIRST for s in LAST]
    rng.shuffle(founders)
    plan = []
    corpus: list[dict] = []
    for n in range(len(pool) // 2):
        first, second = pool[2 * n], pool[2 * n + 1]
        bucket = ["plain", "deep", "renamed"][n % 3]
        y1, y2 = rng.sample(range(1700, 1880), 2)
        p1, p2 = founders[2 * n], founders[2 * n + 1]
        t1, t2 = rng.sample(TOWNS, 2)
        s2 = f"The {second} was founded in {y2} by {p2}"
        if bucket == "renamed":
            s2 += f" and renamed in {y2 + rng.randint(5, 60)}"
        corpus.append(
            {
                "id": f"a{2 * n:03d}",
                "text": f"The {first} was founded in {y1} by {p1}. The {first} is based in {t1}.",
            }
        )
        corpus.append({"id": f"a{2 * n + 1:03d}", "text": f"{s2}. The {second} is based in {t2}."})
        if bucket == "deep":
            corpus.append(
                {
                    "id": f"h{n:03d}",
                    "text": f"The {second} hall of the {second} was rebuilt in {rng.randint(1890, 1950)}.",
                }
            )
        plan.append((first, second, y1, y2, f"a{2 * n:03d}", f"a{2 * n + 1:03d}", bucket))
    rng.shuffle(corpus)
    corpus.sort(key=lambda p: p["id"])  # the file's order: the chain's BM25 breaks ties by it
    write_jsonl(HERE / "year-gap" / "corpus" / "archive.jsonl", corpus)
    by_id = {p["id"]: p for p in corpus}
    prompts = {
        s: (HERE / "year-gap" / "prompts" / f"year_{s}.md").read_text(encoding="utf-8")
        for s in ("first", "second")
    }

    def search(name: str, k: int) -> list[str]:
        from rank_bm25 import BM25Okapi

        bm = BM25Okapi([chain.tokenize(p["text"]) for p in corpus])
        scores = bm.get_scores(chain.tokenize(name))
        order = sorted(range(len(corpus)), key=lambda i: (-scores[i], i))
        hits = [f"[{corpus[i]['id']}] {corpus[i]['text']}" for i in order[:k]]
        return [h for h in hits if name in h]  # as the chain's lookup: passages naming it

    def read(
        which: str, name: str, passages: list[str], bare: bool, temperature: float = 0.0
    ) -> int | None:
        prompt = prompts["first" if bare else which].format(passages="\n".join(passages), name=name)
        return chain.parse_year(respond(prompt, temperature=temperature, name="sim:default").text)

    def voted_second(name: str, passages: list[str]) -> int | None:
        """The second-noise fix's vote: 7 bare draws at the chain's temperature 1.0."""
        prompt = prompts["first"].format(passages="\n".join(passages), name=name)
        draws = [
            chain.parse_year(respond(prompt, temperature=1.0, offset=s, name="sim:default").text)
            for s in range(7)
        ]
        return max(sorted(set(draws), key=str), key=draws.count)

    buckets: dict[str, list[dict]] = {b: [] for b in ("plain", "deep", "renamed")}
    for first, second, y1, y2, a1, a2, bucket in plan:
        top1 = [search(first, 1)[0], search(second, 1)[0]]
        gold = [f"[{a1}] {by_id[a1]['text']}", f"[{a2}] {by_id[a2]['text']}"]
        deep4 = search(second, 4)
        ok = (
            top1[0] == gold[0]
            and (top1[1] == gold[1]) == (bucket != "deep")
            and gold[1] in deep4
            and read("first", first, search(first, 4), bare=True) == y1
            and read("second", second, deep4, bare=True) == y2
            and voted_second(second, deep4) == y2
            and (read("second", second, [gold[1]], bare=False) == y2) == (bucket != "renamed")
            # The first year's draw at temperature 1.0 depends on the whole prompt: were k's fix
            # to change it, leave-one-out (first-noise left out with k fixed) would miss a flip
            # the baseline has. The lookup's name filter keeps the prompt the same; this guards it.
            and (read("first", first, top1[:1], bare=True, temperature=1.0) == y1)
            == (read("first", first, search(first, 4), bare=True, temperature=1.0) == y1)
        )
        if ok:
            buckets[bucket].append(
                {
                    "inputs": {"first": first, "second": second},
                    "label": {
                        "gap": str(abs(y2 - y1)),
                        "first_year": y1,
                        "second_year": y2,
                        "first_passage": gold[0],
                        "second_passage": gold[1],
                    },
                }
            )
    print("year-gap buckets:", {k: len(v) for k, v in buckets.items()})
    split_rows("year-gap", "yg", buckets, {"plain": 12, "deep": 12, "renamed": 12})


# --- intake-route ---------------------------------------------------------------------------------

TOPICS = ("warranty", "repair", "return")
FAULTS = {
    "hinge": "The lid hinge squeaks and sticks when it opens.",
    "battery": "The battery drains overnight and swells at one corner.",
    "screen": "The screen flickers and a crack runs across it.",
    "fan": "The fan rattles and whines after a minute.",
    "port": "The charging port wobbles and sparks on contact.",
}
SEASONS = ("spring", "summer", "autumn", "winter")


def intake_route() -> None:
    """Customer messages of two kinds. `question`: "Which desk handles the repair of the Heron
    X300?" answered by one FAQ entry; `direct`: a fault report naming the part within the first
    80 characters; `late`: a fault report whose part sentence comes after an opening and a
    purchase note, past 80 characters (clipped away at the baseline). Each example is checked
    against the chain's BM25 and the simulator (triage, answer and part right with every fix)."""
    from fapo.sim import respond

    rng = random.Random(f"{SEED}-intake-route")
    chain = load_chain("intake-route")
    devices = [
        f"{f} {m}"
        for f in ("Heron", "Falcon", "Otter", "Lynx", "Marten", "Ibis")
        for m in ("X300", "Z500")
    ]
    desks = [f"{a} {b}" for a in ORG_A + MORE_A for b in ("Desk", "Office")]
    rng.shuffle(desks)
    faq: list[dict] = []
    for i, (dev, topic) in enumerate((d, t) for d in devices for t in TOPICS):
        town = rng.choice(TOWNS)
        faq.append(
            {
                "id": f"f{i:02d}",
                "text": f"The {topic} of the {dev} is handled by the {desks[i]} in {town}.",
                "desk": desks[i],
            }
        )
    rng.shuffle(faq)
    write_jsonl(
        HERE / "intake-route" / "corpus" / "faq.jsonl",
        [{"id": e["id"], "text": e["text"]} for e in faq],
    )
    from rank_bm25 import BM25Okapi

    bm = BM25Okapi([chain.tokenize(e["text"]) for e in faq])

    def top3(text: str) -> list[str]:
        sc = bm.get_scores(chain.tokenize(text))
        return [
            f"[{faq[i]['id']}] {faq[i]['text']}"
            for i in sorted(range(len(faq)), key=lambda i: (-sc[i], i))[:3]
        ]

    read = {
        n: (HERE / "intake-route" / "prompts" / f"{n}.md").read_text(encoding="utf-8")
        for n in ("triage", "part")
    }
    answer_fixed = (
        HERE / "intake-route" / "fixes" / "answer-verbose" / "prompts" / "answer.md"
    ).read_text(encoding="utf-8")

    def triage(text: str) -> str:
        return respond(read["triage"].format(text=text, routes=chain._options(chain.ROUTES))).text

    def voted(text: str) -> str:
        """The majority of the triage fix's vote (7 draws at the chain's temperature 1.0)."""
        prompt = read["triage"].format(text=text, routes=chain._options(chain.ROUTES))
        draws = [
            respond(prompt, temperature=1.0, offset=s, name="sim:default").text for s in range(7)
        ]
        return max(sorted(set(draws)), key=draws.count)

    def part(text: str) -> str:
        return respond(read["part"].format(text=text, parts=chain._options(chain.PARTS))).text

    people = [f"{f} {s}" for f in FIRST for s in LAST]
    rng.shuffle(people)
    buckets: dict[str, list[dict]] = {"question": [], "direct": [], "late": []}
    for n in range(300):
        kind = ("question", "direct", "late")[n % 3]
        dev, who = rng.choice(devices), people[n]
        if kind == "question":
            topic = rng.choice(TOPICS)
            message = f"Which desk handles the {topic} of the {dev}? Thanks, {who.split()[0]}."
            entry = next(e for e in faq if e["text"].startswith(f"The {topic} of the {dev} "))
            line = f"[{entry['id']}] {entry['text']}"
            got = respond(answer_fixed.format(entries="\n".join(top3(message)), text=message)).text
            ok = (
                line in top3(message)
                and got == entry["desk"]
                and triage(message) == voted(message) == "question"
            )
            label = {
                "route": "question",
                "outcome": entry["desk"],
                "detail": message,
                "entry": line,
            }
        else:
            name = rng.choice(list(FAULTS))
            detail = FAULTS[name]
            if kind == "direct":
                message = f"{detail} Something on my {dev} is broken. Regards, {who}."
            else:
                message = (
                    f"Something on my {dev} is broken. I bought it in {rng.choice(TOWNS)} last "
                    f"{rng.choice(SEASONS)}. {detail} Regards, {who}."
                )
            clipped = message[:80]
            ok = (
                triage(clipped) == "fault"
                and triage(message) == voted(message) == "fault"
                and part(message) == name
                and (detail in clipped) == (kind == "direct")
            )
            label = {"route": "fault", "outcome": name, "detail": detail, "entry": ""}
        if ok:
            buckets[kind].append({"inputs": {"message": message}, "label": label})
    print("intake-route buckets:", {k: len(v) for k, v in buckets.items()})
    split_rows("intake-route", "ir", buckets, {"question": 16, "direct": 8, "late": 12})


GENERATORS: dict[str, Callable[[], None]] = {"year-gap": year_gap, "intake-route": intake_route}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(GENERATORS):
        GENERATORS[name]()
