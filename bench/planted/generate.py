"""Generate the planted-defect suite's fictional worlds, corpora and splits (seeded, not read by fapo).

    .venv/bin/python bench/planted/generate.py            # rewrites every tenant's data/ and corpus/
    .venv/bin/python bench/planted/generate.py claim-check

Every name is invented, so no model's world knowledge answers anything. Where retrieval matters,
examples are bucketed by where the tenant's own BM25 (imported from its chain.py, so the buckets
cannot drift from the chain) ranks the passage they need; the buckets say which planted defect an
example is exposed to, but the ground truth is derived by evaluation (ground_truth.py), not from
them.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SEED = 1212
SPLITS = {"train": 48, "val": 36, "test": 36}

FIRST = [
    "Tessa",
    "Ilse",
    "Bram",
    "Odile",
    "Corin",
    "Maren",
    "Elio",
    "Sabe",
    "Torvin",
    "Lysa",
    "Anwen",
    "Dario",
    "Fenna",
    "Galen",
    "Hesper",
    "Ivo",
    "Jora",
    "Kestrel",
    "Linnea",
    "Mathis",
    "Nerys",
    "Oskar",
    "Perrin",
    "Quilla",
    "Roswyn",
    "Stellan",
    "Talia",
    "Ulric",
    "Vesna",
    "Wendel",
    "Yara",
    "Zoran",
    "Aldric",
    "Brisa",
    "Cato",
    "Delphine",
    "Emrys",
    "Faye",
    "Gideon",
    "Halla",
]
LAST = [
    "Marrow",
    "Quill",
    "Ashdown",
    "Brenner",
    "Castell",
    "Dunmore",
    "Everly",
    "Farrow",
    "Garrick",
    "Holloway",
    "Ingram",
    "Jessop",
    "Kettering",
    "Larch",
    "Morrow",
    "Nettle",
    "Orrin",
    "Pellham",
    "Quarry",
    "Rook",
    "Selwyn",
    "Thorne",
    "Umber",
    "Vance",
    "Wicken",
    "Yardley",
    "Zeller",
    "Abernot",
    "Brisk",
    "Colter",
]
TOWNS = [
    "Quillfeld",
    "Orvel",
    "Brastow",
    "Kelmere",
    "Dunhollow",
    "Ashbury",
    "Varn",
    "Tolmere",
    "Estwick",
    "Harrowgate",
    "Lunmouth",
    "Pellbrook",
    "Rivenby",
    "Saltmere",
    "Thistlecombe",
    "Underhay",
    "Westerly",
    "Yarrowfield",
    "Zennor",
    "Caldwick",
    "Morbeck",
    "Fenwick",
    "Glassby",
    "Hollin",
]
ORG_A = [
    "Brastow",
    "Copper",
    "Lantern",
    "Silver",
    "Heron",
    "Amber",
    "Granite",
    "Willow",
    "Cobalt",
    "Juniper",
    "Saffron",
    "Thistle",
    "Marble",
    "Obsidian",
    "Cedar",
    "Falcon",
]
ORG_B = ["Guild", "Society", "Company", "Trust", "Circle", "Foundation", "Works", "Union"]
JOBS = [
    "glassmaker",
    "cartographer",
    "weaver",
    "clockmaker",
    "brewer",
    "shipwright",
    "bookbinder",
    "potter",
]


def load_chain(tenant: str) -> Any:
    """The tenant's chain module (for its tokenizer), imported from its folder."""
    path = HERE / tenant / "chain.py"
    spec = importlib.util.spec_from_file_location(f"planted_{tenant.replace('-', '_')}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def names(rng: random.Random, n: int) -> list[str]:
    """n distinct "First Last" names."""
    pool = [f"{first} {last}" for first in FIRST for last in LAST]
    rng.shuffle(pool)
    return pool[:n]


def orgs(rng: random.Random, n: int) -> list[str]:
    pool = [f"{a} {b}" for a in ORG_A for b in ORG_B]
    rng.shuffle(pool)
    return pool[:n]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )


def split_rows(
    tenant: str, prefix: str, buckets: dict[str, list[dict]], quota: dict[str, int]
) -> None:
    """Deal each bucket's examples round-robin into train/val/test by the per-split quota and write
    data/{split}.jsonl; `quota[bucket]` is the count per split scaled by SPLITS (train larger)."""
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for bucket, rows in buckets.items():
        need = {s: round(quota[bucket] * n / SPLITS["val"]) for s, n in SPLITS.items()}
        if len(rows) < sum(need.values()):
            raise SystemExit(
                f"{tenant}: bucket {bucket} has {len(rows)} rows, needs {sum(need.values())}"
            )
        it = iter(rows)
        for s in SPLITS:
            for _ in range(need[s]):
                out[s].append({**next(it), "bucket": bucket})
    for s, rows in out.items():
        random.Random(f"{SEED}-{tenant}-{s}").shuffle(rows)
        data = [
            {
                "id": f"{prefix}-{s}-{i:03d}",
                "inputs": r["inputs"],
                "label": {**r["label"], "bucket": r["bucket"]},
            }
            for i, r in enumerate(rows)
        ]
        write_jsonl(HERE / tenant / "data" / f"{s}.jsonl", data)


def bm25_rank(chain: Any, corpus: list[dict], query: str, pid: str) -> int:
    """1-based rank of passage `pid` for `query` under the chain's tokenizer and tie-break."""
    from rank_bm25 import BM25Okapi

    bm25 = BM25Okapi([chain.tokenize(p["text"]) for p in corpus])
    scores = bm25.get_scores(chain.tokenize(query))
    order = sorted(range(len(corpus)), key=lambda i: (-scores[i], i))
    return 1 + [corpus[i]["id"] for i in order].index(pid)


# --- claim-check ----------------------------------------------------------------------------------


def claim_check() -> None:
    """People with a birth passage and an organization passage, plus letter passages that repeat a
    person's name and town (they outrank the gold passage for some claims: the k defect)."""
    rng = random.Random(f"{SEED}-claim-check")
    chain = load_chain("claim-check")
    people = names(rng, 120)
    clubs = orgs(rng, 120)
    corpus: list[dict] = []
    facts = []
    for i, person in enumerate(people):
        town, other, seat = rng.sample(TOWNS, 3)
        year, founded = rng.randint(1700, 1850), rng.randint(1860, 1900)
        job = rng.choice(JOBS)
        bio = f"{person} was born in {town} in {year}. {person} worked as a {job} in {other}."
        org = f"{person} founded the {clubs[i]} in {founded}. The {clubs[i]} is based in {seat}."
        corpus.append({"id": f"b{i:03d}", "text": bio})
        corpus.append({"id": f"o{i:03d}", "text": org})
        facts.append((person, town, clubs[i], i))
        if i % 2 == 0:  # a letter naming the person thrice and the birth town: a BM25 decoy
            letter = f"{person} wrote from {town} to {person}'s kin."
            corpus.append({"id": f"l{i:03d}", "text": letter})
    rng.shuffle(corpus)
    buckets: dict[str, list[dict]] = {"near": [], "deep": [], "unverified": []}
    for person, town, club, i in facts:
        wrong_town = rng.choice([t for t in TOWNS if t != town])
        kind = rng.choice(["supported", "contradicted"])
        claim = f"{person} was born in {town if kind == 'supported' else wrong_town}."
        verdict = "SUPPORTED" if kind == "supported" else "CONTRADICTED"
        sentence = f"[b{i:03d}] {person} was born in {town} in "
        bio = next(p for p in corpus if p["id"] == f"b{i:03d}")
        sentence = f"[b{i:03d}] " + bio["text"].split(". ")[0] + "."
        rank = bm25_rank(chain, corpus, claim, f"b{i:03d}")
        row = {
            "inputs": {"claim": claim},
            "label": {
                "verdict": verdict,
                "passage": f"[{bio['id']}] {bio['text']}",
                "sentence": sentence,
            },
        }
        if rank == 1:
            buckets["near"].append(row)
        elif rank <= 4:
            buckets["deep"].append(row)
        instrument = rng.choice(["violin", "harp", "flute", "cello"])
        buckets["unverified"].append(
            {
                "inputs": {"claim": f"{person} played the {instrument} at the {club} festival."},
                "label": {"verdict": "UNVERIFIED", "passage": "", "sentence": ""},
            }
        )
    write_jsonl(
        HERE / "claim-check" / "corpus" / "passages.jsonl", sorted(corpus, key=lambda p: p["id"])
    )
    print("claim-check buckets:", {k: len(v) for k, v in buckets.items()})
    split_rows("claim-check", "cc", buckets, {"near": 14, "deep": 12, "unverified": 10})


# --- ticket-routing -------------------------------------------------------------------------------

DEPARTMENTS = {
    "billing": (
        "invoice, charge, payment, refund, subscription",
        {
            "double_charge": (
                "duplicate charge, charged twice",
                "My card got a duplicate charge for the {p} payment.",
            ),
            "refund_request": (
                "refund, money back after a return",
                "I sent the {p} back and want a refund of my payment.",
            ),
            "invoice_error": (
                "wrong amount, invoice total, tax",
                "The invoice total for the {p} shows the wrong tax amount.",
            ),
        },
    ),
    "shipping": (
        "parcel, delivery, courier, tracking, address",
        {
            "late_delivery": (
                "late, delayed, still waiting",
                "The delivery of my {p} is late and I am still waiting for the parcel.",
            ),
            "lost_parcel": (
                "lost, missing, never arrived",
                "The courier says the parcel with my {p} is lost and it never arrived.",
            ),
            "wrong_address": (
                "wrong address, street, moved",
                "The {p} parcel went to the wrong address on my old street.",
            ),
        },
    ),
    "account": (
        "password, login, email, profile, username",
        {
            "locked_out": (
                "locked, blocked after failed attempts",
                "My login is locked after three failed attempts with my password.",
            ),
            "password_reset": (
                "reset link, forgot",
                "I forgot my password and the reset link never shows up in my email.",
            ),
            "email_change": (
                "change email, new address on the profile",
                "I need to change the email on my profile to a new one.",
            ),
        },
    ),
    "device": (
        "screen, battery, button, charger, firmware",
        {
            "battery_drain": (
                "drains, dies within hours",
                "The battery of my {p} drains and dies within two hours.",
            ),
            "broken_screen": (
                "cracked, broken display",
                "The screen of my {p} is cracked and the display flickers.",
            ),
            "firmware_update": (
                "update stuck, new version",
                "The firmware update on my {p} is stuck at the new version.",
            ),
        },
    ),
}
PRODUCTS = ["kettle", "lamp", "speaker", "tablet", "camera", "heater", "blender", "radio"]


def ticket_routing() -> None:
    """Tickets whose problem sentence comes first ("direct") or after a long greeting that pushes it
    past the baseline clip ("late"); every department and issue type appears in each split."""
    rng = random.Random(f"{SEED}-ticket-routing")
    catalog = {
        d: {"description": desc, "issues": {i: v[0] for i, v in issues.items()}}
        for d, (desc, issues) in DEPARTMENTS.items()
    }
    out = HERE / "ticket-routing" / "catalog" / "departments.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(catalog, indent=2) + "\n", encoding="utf-8")
    people = names(rng, 400)
    buckets: dict[str, list[dict]] = {"direct": [], "late": []}
    for n in range(200):
        dept = list(DEPARTMENTS)[n % 4]
        issue = list(DEPARTMENTS[dept][1])[(n // 4) % 3]
        problem = DEPARTMENTS[dept][1][issue][1].format(p=rng.choice(PRODUCTS))
        town = rng.choice(TOWNS)
        greeting = (
            f"Hello, this is {people[n]} writing from {town} after many happy years as your "
            f"customer. I hope you are well and that the week treats you kindly."
        )
        closing = f"Thanks, {people[n].split()[0]}."
        late = n % 2 == 1
        ticket = f"{greeting} {problem} {closing}" if late else f"{problem} {closing}"
        row = {
            "inputs": {"ticket": ticket},
            "label": {"department": dept, "issue": issue, "problem": problem},
        }
        buckets["late" if late else "direct"].append(row)
    split_rows("ticket-routing", "tr", buckets, {"direct": 18, "late": 18})


# --- fact-lookup ----------------------------------------------------------------------------------

LONG_TOWNS = [
    "Upper Varn Crossing",
    "Lower Kelmere Bridge",
    "Old Saltmere Quay",
    "North Orvel Green",
]


def fact_lookup() -> None:
    """Registry entries of people in surname families. Buckets: `plain` (the full name finds the
    entry; dropping the first name makes the family ambiguous), `deep` (a short registry note that
    repeats the name outranks the entry), `hop` (the question names the trade, and the entry's third
    sentence links the birth town to someone else: harmless unless the answer step hops on),
    `long` (a three-word birth town)."""
    from fapo.sim import STOPWORDS as SIM_STOP

    rng = random.Random(f"{SEED}-fact-lookup")
    chain = load_chain("fact-lookup")
    surnames = rng.sample(LAST, 27)
    people = [(f, s) for s in surnames for f in rng.sample(FIRST, 8)]
    rng.shuffle(people)
    corpus: list[dict] = []
    plan = []
    for i, (first, last) in enumerate(people):
        name = f"{first} {last}"
        bucket = ["plain", "deep", "plain", "hop", "plain", "long", "plain", "deep"][i % 8]
        town = rng.choice(LONG_TOWNS) if bucket == "long" else rng.choice(TOWNS)
        year, job = rng.randint(1700, 1850), rng.choice(JOBS)
        text = f"{name} was born in {town} in {year}. {name} trained as a {job}."
        if bucket == "hop":
            other = f"{rng.choice(FIRST)} {rng.choice([x for x in LAST if x not in surnames])}"
            text += f" {town} is home to the {job} guild of {other}."
        rid = f"r{i:03d}"
        corpus.append({"id": rid, "text": text})
        if bucket == "deep":
            corpus.append(
                {"id": f"n{i:03d}", "text": f"Note: {name} signed for {name}'s {last} kin."}
            )
        plan.append((rid, name, town, year, job, bucket))
    rng.shuffle(corpus)
    buckets: dict[str, list[dict]] = {b: [] for b in ("plain", "deep", "hop", "long")}
    for rid, name, town, year, job, bucket in plan:
        when = rng.random() < 0.3 and bucket != "long"
        who = f"the {job} {name}" if bucket == "hop" else name
        question = f"In what year was {who} born?" if when else f"Where was {who} born?"
        terms = [
            w
            for w in dict.fromkeys(re.findall(r"[a-z0-9]+", question.lower()))
            if w not in SIM_STOP
        ]
        query = " ".join(terms)
        rank = bm25_rank(chain, corpus, query, rid)
        dropped = bm25_rank(chain, corpus, " ".join(terms[1:]), rid)
        entry = next(p for p in corpus if p["id"] == rid)
        ok = {
            "plain": rank == 1 and dropped > 3,
            "deep": 2 <= rank <= 3,
            "hop": rank == 1,
            "long": rank == 1,
        }[bucket]
        if ok:
            buckets[bucket].append(
                {
                    "inputs": {"question": question},
                    "label": {
                        "answer": str(year) if when else town,
                        "entry": f"[{rid}] {entry['text']}",
                        "query": query,
                    },
                }
            )
    write_jsonl(
        HERE / "fact-lookup" / "corpus" / "registry.jsonl", sorted(corpus, key=lambda p: p["id"])
    )
    print("fact-lookup buckets:", {k: len(v) for k, v in buckets.items()})
    split_rows("fact-lookup", "fl", buckets, {"plain": 10, "deep": 8, "hop": 8, "long": 8})


# --- kb-match -------------------------------------------------------------------------------------

SYMPTOMS = [
    (
        "The display flickers and dims after a firmware update; reinstall the display driver.",
        "display flickers and dims",
    ),
    (
        "The battery swells and bulges near the hinge; replace the battery pack.",
        "battery swells and bulges",
    ),
    (
        "The cooling fan rattles and whines at startup; clean the fan vent.",
        "cooling fan rattles and whines",
    ),
    (
        "The power button sticks and jams when pressed; replace the button spring.",
        "power button sticks and jams",
    ),
    (
        "The wireless link drops and stalls every few minutes; reset the antenna module.",
        "wireless link drops and stalls",
    ),
    (
        "The charging port wobbles and sparks on contact; tighten the port bracket.",
        "charging port wobbles and sparks",
    ),
    (
        "The speaker crackles and hisses at high volume; reseat the speaker cable.",
        "speaker crackles and hisses",
    ),
    (
        "The case overheats and scorches during long sessions; replace the thermal pad.",
        "case overheats and scorches",
    ),
]
SIDE = [
    "cleaned the fan vent",
    "replaced the battery pack",
    "tightened the port bracket",
    "reinstalled the display driver",
    "reseated the speaker cable",
    "reset the antenna module",
    "bought a new bag",
    "moved house",
]


def kb_match() -> None:
    """48 articles (12 devices x 4 of 8 symptoms) titled only "Service note N". Reports name
    the device, the symptom and a side remark whose words also occur in other articles, which
    pushes the matching article down the ranking for some (buckets `near`: rank 1, `mid`: rank 2-4). Kept only when the matching article wins the matcher's overlap among the
    top five with bodies shown, so the fully fixed pipeline can get it right."""
    from fapo.sim import content_words

    rng = random.Random(f"{SEED}-kb-match")
    chain = load_chain("kb-match")
    devices = [
        f"{f} {m}"
        for f in ("Heron", "Falcon", "Otter", "Lynx", "Marten", "Ibis")
        for m in ("X300", "Z500")
    ]
    kb: list[dict] = []
    owned: dict[str, list[tuple[str, int]]] = {}
    n = 101
    per_model = {m: sorted(rng.sample(range(len(SYMPTOMS)), 4)) for m in ("X300", "Z500")}
    for dev in devices:
        for j, sym in enumerate(per_model[dev.split()[1]]):
            aid = f"KB-{n}"
            body = SYMPTOMS[sym][0]
            body = f"On the {dev}, {body[0].lower()}{body[1:]}"
            kb.append({"id": aid, "title": f"Service note {j + 1}", "body": body})
            owned.setdefault(dev, []).append((aid, sym))
            n += 1
    rng.shuffle(kb)
    order = {a["id"]: i for i, a in enumerate(kb)}
    kb.sort(key=lambda a: order[a["id"]])
    by_id = {a["id"]: a for a in kb}
    from rank_bm25 import BM25Okapi

    from fapo.sim import STOPWORDS as SIM_STOP

    bm = BM25Okapi([chain.tokenize(f"{a['title']} {a['body']}") for a in kb])
    buckets: dict[str, list[dict]] = {"near": [], "mid": [], "deep": []}
    for _ in range(6):
        for dev, arts in owned.items():
            for aid, sym in arts:
                report = f"My {dev} {SYMPTOMS[sym][1]} since I {rng.choice(SIDE)} last week."
                terms = [
                    w
                    for w in dict.fromkeys(re.findall(r"[a-z0-9]+", report.lower()))
                    if w not in SIM_STOP
                ]
                query = " ".join(terms)
                sc = bm.get_scores(chain.tokenize(query))
                ranked = [kb[i]["id"] for i in sorted(range(len(kb)), key=lambda i: (-sc[i], i))]
                rank, top5 = ranked.index(aid) + 1, ranked[:5]
                words = set(content_words(report))

                def overlap(a: str, words: set[str] = words) -> int:
                    art = by_id[a]
                    return len(words & set(content_words(f"{a} {art['title']}. {art['body']}")))

                if aid not in top5 or any(overlap(o) >= overlap(aid) for o in top5 if o != aid):
                    continue
                bucket = "near" if rank == 1 else "mid" if rank <= 4 else "deep"
                row = {"inputs": {"report": report}, "label": {"article": aid, "query": query}}
                if row not in buckets[bucket]:
                    buckets[bucket].append(row)
    write_jsonl(HERE / "kb-match" / "corpus" / "articles.jsonl", kb)
    print("kb-match buckets:", {k: len(v) for k, v in buckets.items()})
    split_rows(
        "kb-match", "kb", {"near": buckets["near"], "mid": buckets["mid"]}, {"near": 20, "mid": 16}
    )


# --- policy-qa ------------------------------------------------------------------------------------

TOPICS = [
    "travel claims",
    "leave requests",
    "laptop repairs",
    "parking permits",
    "badge renewals",
    "training budgets",
    "desk moves",
    "expense refunds",
    "locker keys",
    "visitor passes",
]


def policy_qa() -> None:
    """Handbook sections of five to six passages: which office handles a topic (and within how
    many days), and where that office sits (two hops: topic -> office -> town)."""
    from fapo.sim import count_tokens

    rng = random.Random(f"{SEED}-policy-qa")
    offices = [f"{a} {b}" for a in ORG_A for b in ("Office", "Desk", "Bureau")]
    buckets: dict[str, list[dict]] = {"office": [], "days": [], "hop": []}
    for n in range(300):
        topics = rng.sample(TOPICS, 3)
        offs = rng.sample(offices, 3)
        towns = rng.sample(TOWNS, 3)
        days = rng.sample(range(3, 30), 3)
        passages, pid = [], rng.sample(range(10, 99), 6)
        for j in range(3):
            policy = f"{topics[j][0].upper()}{topics[j][1:]} are handled by the {offs[j]} within {days[j]} days."
            passages.append((f"h{pid[j]}", f"{policy} Late {topics[j]} need a signed note."))
            passages.append(
                (
                    f"h{pid[j + 3]}",
                    f"The {offs[j]} sits in {towns[j]}. The {offs[j]} opens at nine.",
                )
            )
        rng.shuffle(passages)
        section = [f"[{i}] {t}" for i, t in passages]
        line = {i: t.split(". ")[0] + "." for i, t in passages}
        gid, oid = f"h{pid[0]}", f"h{pid[3]}"
        first = f"[{gid}] {line[gid]}"
        if (
            count_tokens(first) > 20
            or count_tokens(first) + count_tokens(f"[{oid}] {line[oid]}") <= 20
        ):
            continue
        kind = ["office", "days", "hop"][n % 3]
        question, answer, evidence = {
            "office": (f"Which office handles {topics[0]}?", offs[0], [first]),
            "days": (f"Within how many days are {topics[0]} handled?", str(days[0]), [first]),
            "hop": (
                f"Where does the office that handles {topics[0]} sit?",
                towns[0],
                [first, f"[{oid}] {line[oid]}"],
            ),
        }[kind]
        buckets[kind].append(
            {
                "inputs": {"question": question, "section": section},
                "label": {"answer": answer, "evidence": evidence},
            }
        )
    print("policy-qa buckets:", {k: len(v) for k, v in buckets.items()})
    split_rows("policy-qa", "pq", buckets, {"office": 10, "days": 10, "hop": 16})


# --- news-section ---------------------------------------------------------------------------------

SECTION_LINES = {
    "economy": ("{n} said the {t} market prices and trade fell at the bank.", "market"),
    "science": (
        "{n} led a research study at the {t} laboratory with young scientists.",
        "laboratory",
    ),
    "sport": ("{n} coached the {t} team to a league match goal.", "team"),
    "culture": ("{n} opened a museum festival with theatre and music in {t}.", "museum"),
}
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def news_section() -> None:
    """Four-sentence articles: a lead, the sentence that decides the section, weather, crowds.
    Bucket `one`: the crowd sentence repeats a word of the section sentence, which makes it the
    most salient (a one-sentence summary keeps it); bucket `two`: the weather sentence repeats the
    lead's day, so the lead wins and only a two-sentence summary keeps the section sentence. Both
    are checked against the simulator's summarizer (fapo.sim), not assumed."""
    from fapo.sim import respond

    rng = random.Random(f"{SEED}-news-section")
    people = names(rng, 400)
    prompt = (HERE / "news-section" / "prompts" / "summarize.md").read_text(encoding="utf-8")
    buckets: dict[str, list[dict]] = {"one": [], "two": []}
    for n in range(400):
        section = list(SECTION_LINES)[n % 4]
        kind = "one" if (n // 4) % 2 == 0 else "two"
        name, town, day = people[n], rng.choice(TOWNS), rng.choice(DAYS)
        line, noun = SECTION_LINES[section]
        key = line.format(n=name, t=town)
        lead = f"{name} spoke in {town} on {day}."
        weather = (
            f"The {day} weather in {town} stayed mild."
            if kind == "two"
            else "The weather stayed mild."
        )
        crowd = (
            f"Crowds at the {noun} cheered {name} in {town}."
            if kind == "one"
            else f"Crowds cheered {name} in {town}."
        )
        article = " ".join([lead, key, weather, crowd])

        def summary(k: int, article: str = article) -> str:
            return respond(prompt.format(sentences=k, article=article)).text

        if (key in summary(1)) != (kind == "one") or key not in summary(2):
            continue
        buckets[kind].append(
            {"inputs": {"article": article}, "label": {"section": section, "key": key}}
        )
    print("news-section buckets:", {k: len(v) for k, v in buckets.items()})
    split_rows("news-section", "ns", buckets, {"one": 16, "two": 20})


GENERATORS: dict[str, Callable[[], None]] = {
    "claim-check": claim_check,
    "ticket-routing": ticket_routing,
    "fact-lookup": fact_lookup,
    "kb-match": kb_match,
    "policy-qa": policy_qa,
    "news-section": news_section,
}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(GENERATORS):
        GENERATORS[name]()
