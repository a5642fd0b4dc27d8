"""Regenerate data/*.jsonl and corpus/labelled.jsonl (deterministic): short support tickets, each
routed to one of four teams. `python generate.py` from this folder.

Tickets are built from per-team templates and fillers; every template is used in the labelled
pool the chain retrieves from *and* in the splits, with different fillers, so the nearest labelled
tickets (BM25) usually carry the right team — retrieval depth matters. Shared words ("order",
"account", "app", "card") make the lexical match imperfect on purpose.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TEMPLATES: dict[str, list[str]] = {
    "billing": [
        "I was charged twice for order {n}, please refund one payment.",
        "My card was billed {amt} but the invoice says {amt2}.",
        "Why is there a {amt} fee on my statement this month?",
        "Please cancel my subscription renewal and refund the charge.",
        "The discount code was not applied and I paid full price for order {n}.",
        "I need a copy of the invoice for my payment of {amt}.",
    ],
    "shipping": [
        "My package for order {n} has not arrived after {d} days.",
        "The tracking number shows the parcel stuck in {city} since {day}.",
        "The courier left my delivery at the wrong address in {city}.",
        "Can you ship order {n} to {city} instead of my home address?",
        "The box arrived damaged and half of order {n} is missing.",
        "When will my parcel be delivered? It was dispatched on {day}.",
    ],
    "account": [
        "I cannot log in, the password reset email never comes.",
        "Please change the email address on my account to a new one.",
        "How do I delete my account and all my personal data?",
        "My account was locked after {d} failed sign-in attempts.",
        "I want to update my username and profile name.",
        "Someone else signed in to my account from {city}, please secure it.",
    ],
    "technical": [
        "The app crashes every time I open the settings page on my phone.",
        "The website shows error {code} when I click checkout.",
        "Pages load very slowly since the update on {day}.",
        "The search button does nothing in the {browser} browser.",
        "Notifications stopped working in the app after version {ver}.",
        "Uploading a photo fails with error {code} on the {browser} browser.",
    ],
}
CITIES = ["Lyon", "Porto", "Leeds", "Graz", "Turin", "Ghent", "Bergen", "Malmo", "Cork", "Bern"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
BROWSERS = ["Firefox", "Chrome", "Safari", "Edge"]


def fill(template: str, rng: random.Random) -> str:
    return template.format(
        n=rng.randint(10000, 99999),
        amt=f"${rng.randint(5, 300)}.{rng.randint(0, 99):02d}",
        amt2=f"${rng.randint(5, 300)}.{rng.randint(0, 99):02d}",
        d=rng.randint(3, 21),
        city=rng.choice(CITIES),
        day=rng.choice(DAYS),
        code=rng.choice([400, 403, 404, 500, 502, 503]),
        browser=rng.choice(BROWSERS),
        ver=f"{rng.randint(2, 9)}.{rng.randint(0, 9)}",
    )


def main() -> None:
    rng = random.Random(15)
    here = Path(__file__).parent
    items = [(team, t) for team, ts in TEMPLATES.items() for t in ts]
    pool = [{"team": team, "text": fill(t, rng)} for team, t in items]
    splits: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    sizes = {"train": 8, "val": 12, "test": 12}
    for split, size in sizes.items():
        chosen = rng.sample(items, size)
        for i, (team, t) in enumerate(chosen):
            splits[split].append(
                {
                    "id": f"{split}-{i:03d}",
                    "inputs": {"ticket": fill(t, rng)},
                    "label": {"answer": team},
                }
            )
    (here / "corpus").mkdir(exist_ok=True)
    (here / "data").mkdir(exist_ok=True)
    with (here / "corpus" / "labelled.jsonl").open("w", encoding="utf-8") as fh:
        for i, row in enumerate(pool):
            fh.write(json.dumps({"id": f"l{i:02d}", **row}) + "\n")
    for split, rows in splits.items():
        with (here / "data" / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
