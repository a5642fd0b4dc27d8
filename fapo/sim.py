"""The offline simulated task model (`sim:NAME`): a simulator, not an LLM.

It exists so the demo, the tests and the optimizer's benchmarks run the whole loop offline and
deterministically. It reads only the rendered messages (never labels or files) and behaves like a
weak but instruction-sensitive model: it recognizes a few task kinds and a few instruction families
from the prompt text, so the *right* change at the *right* level is what raises a score.
Every behaviour below is documented in docs/sim.md ("what in the prompt -> what the sim does");
change the two together.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from fapo.errors import FapoError
from fapo.runtime import seed_offset

# --- what the sim recognizes (keep in sync with the tables in docs/sim.md) ---------------------

_STOP_TEXT = """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself just
    me more most my no nor not now of off on once only or other our out over own same she should
    so some such than that the their them then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you your
    year"""
STOPWORDS = frozenset(_STOP_TEXT.split())

_I = re.IGNORECASE
#: "Give only the answer": no preamble, no explanation.
ONLY_ANSWER = [
    re.compile(p, _I)
    for p in (
        r"\bonly\b[^.\n]{0,30}\b(answer|name|entity|label|verdict|query|word|phrase|span|number|"
        r"text|id|sentences?|evidence|json)\b",
        r"\b(answer|respond|reply|output|return|print)\s+(with\s+)?only\b",
        r"\bjust\s+the\s+(final\s+|short\s+)?(answer|name|label|entity|query|text)\b",
        r"\bno\s+(explanations?|reasoning|preamble|commentary|extra\s+(text|words))\b",
        r"\bwithout\s+(any\s+)?(explanations?|preamble|commentary|extra\s+(text|words))\b",
        r"\b(do\s+not|don't|never)\s+(explain|add\s+(any\s+)?(explanation|commentary))\b",
        r"\bnothing\s+else\b",
        r"\b(bare|short)\s+answer\b",
        r"\banswer\s+with\s+(a|the|one)\s+(single\s+)?(word|name|entity|phrase|span|number)\b",
    )
]
#: "Respond in JSON".
JSON_FORMAT = [re.compile(r"\bjson\b", _I)]
#: "Reason step by step": follow a bridge entity across two passages.
STEPS = [
    re.compile(p, _I)
    for p in (
        r"\bstep[\s-]+by[\s-]+step\b",
        r"\bin\s+(two\s+|2\s+|separate\s+|several\s+)?steps\b",
        r"\bchain[\s-]+of[\s-]+thought\b",
        r"\bbridge\b",
        r"\bmulti[\s-]?hop\b",
        r"\bintermediate\s+(entity|answer|step|fact)\b",
        r"\bthink\s+(it\s+)?through\b",
        r"\bfirst\b[^.\n]{0,80}\bthen\b",
    )
]
#: "Follow every constraint": the only way to get the writing task to obey listed constraints.
INSIST = [
    re.compile(p, _I)
    for p in (
        r"\b(follow|obey|satisfy|meet|respect|honou?r|fulfil+|apply|comply\s+with|adhere\s+to)\b"
        r"[^.\n]{0,30}\b(every|each|all)\b[^.\n]{0,25}"
        r"\b(constraints?|requirements?|rules?|instructions?|conditions?)\b",
        r"\b(every|each|all)\s+(of\s+the\s+)?(listed\s+|given\s+|following\s+|above\s+)?"
        r"(constraints?|requirements?|rules?|conditions?)\b[^.\n]{0,30}"
        r"\b(must|exactly|strictly|mandatory|required)\b",
        r"\b(do\s+not|don't|never)\s+(skip|ignore|miss|drop|violate|break)\s+(any|a\s+single)\b"
        r"[^.\n]{0,20}\b(constraints?|requirements?|rules?|instructions?)\b",
        r"\b(constraints?|requirements?|rules?)\s+(are|is)\s+(mandatory|strict|required|"
        r"non-negotiable)\b",
    )
]
#: Task triggers, tried in this order (see docs/sim.md "Task recognition").
QUERY_TASK = re.compile(
    r"\b(search|retrieval|lookup|bm25)\s+quer(y|ies)\b|\b(write|generate|formulate|produce|"
    r"compose|create|give|output|return)\b[^.\n]{0,30}\bquer(y|ies)\b",
    _I,
)
EVIDENCE_TASK = re.compile(
    r"\b(select|extract|quote|list|return|output|copy)\b[^.\n]{0,40}"
    r"\b(sentences?|evidence|supporting\s+facts?)\b",
    _I,
)
SUMMARY_TASK = re.compile(r"\b(summari[sz]e|summary|condense|tl;?dr)\b", _I)
SUMMARY_COUNT = re.compile(
    r"\b(one|two|three|four|five|[1-9])\s+(?:short\s+|key\s+|full\s+)?sentences?\b", _I
)
_COUNTS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
BRIDGE_QUERY = re.compile(r"\b(entity|entities|name|names)\b", _I)
WRITE_VERB = re.compile(r"^\s*(write|compose|draft|create)\b", _I | re.M)
NUMERIC_WH = re.compile(
    r"\b(when|how\s+many|how\s+much|what\s+year|which\s+year|in\s+what\s+year|what\s+number)\b",
    _I,
)

_PASSAGE = re.compile(r"^\s*\[([^\]\n]{1,40})\]\s*(\S.*)$")
_PASSAGE_ALT = re.compile(r"^\s*(?:passage|document|doc)\s+([\w.-]{1,20})\s*[:.)]\s*(\S.*)$", _I)
_FIELD = re.compile(
    r"^\s*(?:[A-Za-z-]+\s+)?(question|claim|statement|text|input|topic|description|request)"
    r"\s*:\s*(.*)$",
    _I,
)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(\S.*)$")
_OPTIONS_HEADER = re.compile(
    r"\b(labels?|categor(y|ies)|class(es)?|options?|candidates?|choices?)\b", _I
)
_CONSTRAINTS_HEADER = re.compile(r"\b(constraints?|requirements?|rules)\b", _I)
_WORD = re.compile(r"[a-z0-9]+")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_CAND_TOKEN = re.compile(r"[A-Za-z0-9][\w'-]*")
_COUNT_WORD = re.compile(r"[A-Za-z0-9]+(?:['-][A-Za-z0-9]+)*")
_Q = r"[\"'\u201c\u2018](.+?)[\"'\u201d\u2019]"

#: Constraint phrasings the writing task understands (docs/sim.md "Writing constraints").
CONSTRAINT_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        "exclude",
        re.compile(r"\b(do\s+not|don't|never|avoid|without)\b[^.]*?\b(?:word|term)\s+" + _Q, _I),
    ),
    (
        "include",
        re.compile(
            r"\b(include|use|mention|contain)\w*\b[^.]*?\b(?:word|keyword|term)s?\s+" + _Q, _I
        ),
    ),
    ("start", re.compile(r"\b(start|begin)\w*\b[^.]*?\bwith\s+(?:the\s+)?word\s+" + _Q, _I)),
    (
        "end",
        re.compile(
            r"\b(end|finish)\w*\b[^.]*?\bwith\s+(?:the\s+)?(?:exact\s+)?(?:phrase|words?|sentence)\s+"
            + _Q,
            _I,
        ),
    ),
    ("exact_words", re.compile(r"\bexactly\s+(\d+)\s+words\b", _I)),
    (
        "exact_bullets",
        re.compile(r"\bexactly\s+(\d+)\s+(?:bullet\s+points?|bullets|list\s+items|items)\b", _I),
    ),
    (
        "min_words",
        re.compile(
            r"\b(?:at\s+least|no\s+fewer\s+than|not\s+fewer\s+than|a\s+minimum\s+of)\s+(\d+)\s+words\b",
            _I,
        ),
    ),
    (
        "max_words",
        re.compile(
            r"\b(?:at\s+most|no\s+more\s+than|not\s+more\s+than|fewer\s+than|a\s+maximum\s+of)\s+(\d+)\s+words\b",
            _I,
        ),
    ),
    ("lowercase", re.compile(r"\blower[\s-]*case\b|\bno\s+capital\s+letters\b", _I)),
    ("title", re.compile(r"\btitle\b", _I)),
    (
        "no_commas",
        re.compile(
            r"\b(no|without|avoid|do\s+not\s+use|don't\s+use|never\s+use)\b[^.]*?\bcommas?\b", _I
        ),
    ),
]

#: The sim's default prose: every sentence uses "very" or "really" and a comma, on purpose.
PROSE = (
    "{T} is a very old subject, and people still argue about it.",
    "Many visitors say that {t} feels really calm, even on busy days.",
    "The story of {t} is very long, and it keeps changing.",
    "There is a really quiet rhythm to {t}, like a slow song.",
    "Some days around {t} are very busy, while others are still.",
    "Local guides describe {t} with warm, really careful words.",
    "Nobody can explain {t} in a single sentence, which is very fitting.",
    "Children who hear about {t} ask really good questions, again and again.",
    "Old maps show {t} in very small letters, almost hidden.",
    "Writers return to {t} often, and each one sees something really new.",
)
_FILLERS = ("more", "indeed", "still", "again", "often")
_VERDICTS = ("SUPPORTED", "REFUTED", "NOT ENOUGH INFO")


def flip_rate(temperature: float) -> float:
    """Chance that a call at this temperature takes its second-best choice (docs/sim.md)."""
    return max(0.0, min(0.5, 0.2 * float(temperature)))


def count_tokens(text: str) -> int:
    """The sim's token count: words and punctuation marks (used for usage and max_tokens)."""
    return len(_TOKEN.findall(text))


def count_words(text: str) -> int:
    """Words as the writing task counts them (runs of letters/digits, inner ' and - allowed)."""
    return len(_COUNT_WORD.findall(text))


def stem(word: str) -> str:
    """A crude suffix stripper, so "founder" and "founded" match."""
    for suffix in ("ing", "ers", "er", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> list[str]:
    """Stemmed lower-case words minus stopwords: what lexical overlap is computed on."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


# --- prompt parsing ------------------------------------------------------------------------------


@dataclass
class Passage:
    pid: str
    sentences: list[str]


@dataclass
class Parsed:
    """What the sim sees in a prompt: instructions (for triggers) and the recognized blocks."""

    instructions: str = ""
    passages: list[Passage] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    options: list[tuple[str, str]] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'<])", text) if s.strip()]


def parse_prompt(text: str) -> Parsed:
    """Split a prompt into passages, fields, option and constraint lists, and instruction text."""
    out = Parsed()
    instructions: list[str] = []
    lines = text.splitlines()
    i = 0
    block: str | None = None  # "options" | "constraints" while reading a bullet list
    while i < len(lines):
        line = lines[i]
        i += 1
        m = _PASSAGE.match(line) or _PASSAGE_ALT.match(line)
        if m:
            out.passages.append(Passage(m.group(1).strip(), split_sentences(m.group(2))))
            block = None
            continue
        b = _BULLET.match(line)
        if b and block == "options":
            name, _, desc = b.group(1).partition(": ")
            out.options.append((name.strip(), desc.strip()))
            continue
        if b and block == "constraints":
            out.constraints.append(b.group(1).strip())
            continue
        f = _FIELD.match(line)
        if f and not _OPTIONS_HEADER.search(line.split(":")[0]):
            key, value = f.group(1).lower(), f.group(2).strip()
            if not value:
                chunk: list[str] = []
                while i < len(lines) and lines[i].strip():
                    chunk.append(lines[i].strip())
                    i += 1
                value = " ".join(chunk)
            out.fields.setdefault(key, value)
            block = None
            continue
        head, colon, rest = line.partition(":")
        if colon and _OPTIONS_HEADER.search(head) and len(head) < 120:
            block = "options"
            inline = (
                [o.strip() for o in re.split(r"[,|/]", rest) if o.strip()] if rest.strip() else []
            )
            out.options.extend((o, "") for o in inline)
            if inline:
                block = None
            continue
        if colon and not rest.strip() and _CONSTRAINTS_HEADER.search(head) and len(head) < 120:
            block = "constraints"
            continue
        if not line.strip():
            continue
        block = None
        instructions.append(line)
        out.other.append(line.strip())
    out.instructions = "\n".join(instructions)
    return out


def _any(patterns: Sequence[re.Pattern[str]], text: str) -> bool:
    return any(p.search(text) for p in patterns)


# --- lexical machinery -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    pid: str
    text: str
    order: int


def _sentences(passages: list[Passage]) -> list[Sent]:
    out: list[Sent] = []
    for p in passages:
        for s in p.sentences:
            out.append(Sent(p.pid, s, len(out)))
    return out


def _ranked(sents: list[Sent], words: set[str]) -> list[tuple[int, Sent]]:
    """Sentences by overlap with `words`, best first; ties go to the earlier sentence."""
    scored = [(len(words & set(content_words(s.text))), s) for s in sents]
    return sorted(scored, key=lambda x: (-x[0], x[1].order))


def candidates(sentence: str, exclude: str = "") -> list[str]:
    """Answer candidates in a sentence: runs of capitalized words and numbers, minus any whose
    words all appear in `exclude` (the question), minus a leading stopword ("The")."""
    excluded = set(re.findall(r"[a-z0-9]+", exclude.lower()))
    toks = list(_CAND_TOKEN.finditer(sentence))
    spans: list[list[str]] = []
    prev_end = -1
    for t in toks:
        word = t.group(0)
        if word.endswith("'s"):
            word = word[:-2]
        gap = sentence[prev_end : t.start()] if prev_end >= 0 else ""
        if word.isdigit():
            spans.append([word])
            prev_end = -1
            continue
        if word[0].isupper():
            if spans and prev_end >= 0 and gap.strip() == "" and not spans[-1][0].isdigit():
                spans[-1].append(word)
            else:
                spans.append([word])
            prev_end = t.end() if not t.group(0).endswith("'s") else -1
        else:
            prev_end = -1
    out: list[str] = []
    for span in spans:
        while span and span[0].lower() in STOPWORDS:
            span = span[1:]
        if not span:
            continue
        words = {w.lower() for w in span}
        if words <= excluded:
            continue
        name = " ".join(span)
        if name not in out:
            out.append(name)
    return out


def _pick(cands: list[str], question: str) -> list[str]:
    """Order candidates by the question's wh-type: numbers first for when/how many/what year."""
    nums = [c for c in cands if c.isdigit()]
    names = [c for c in cands if not c.isdigit()]
    return nums + names if NUMERIC_WH.search(question) else names + nums


def _contains(sentence: str, entity: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(entity) + r"(?!\w)", sentence) is not None


@dataclass
class Reading:
    """The sim's reading of a question over passages: the sentences it used and its answers."""

    first: Sent | None = None
    bridge: str | None = None
    second: Sent | None = None
    answers: list[str] = field(default_factory=list)
    residual: list[str] = field(default_factory=list)


def read(question: str, passages: list[Passage], steps: bool) -> Reading:
    """Extractive QA by lexical overlap; with `steps`, follow a bridge entity to a second sentence."""
    sents = _sentences(passages)
    qwords = set(content_words(question))
    ranked = _ranked(sents, qwords)
    if not ranked or ranked[0][0] == 0:
        return Reading()
    first = ranked[0][1]
    r = Reading(first=first)
    cands = candidates(first.text, question)
    r.answers = _pick(cands, question)
    for _, s in ranked[1:3]:  # fallbacks used by temperature flips
        r.answers += [
            c for c in _pick(candidates(s.text, question), question) if c not in r.answers
        ]
    names = [c for c in cands if not c.isdigit()]
    r.bridge = names[0] if names else None
    covered = set(content_words(first.text))
    r.residual = [w for w in dict.fromkeys(content_words(question)) if w not in covered]
    if not (steps and r.bridge and r.residual):
        return r
    hop = [s for s in sents if s is not first and _contains(s.text, r.bridge)]
    best = _ranked(hop, set(r.residual))
    if best and best[0][0] > 0:
        r.second = best[0][1]
        second = _pick(candidates(r.second.text, question + " " + r.bridge), question)
        if second:
            r.answers = second + [a for a in r.answers if a not in second]
    return r


# --- tasks ------------------------------------------------------------------------------------------


@dataclass
class Draft:
    """A task's answer in the three output forms the style controls choose from."""

    bare: str
    verbose: str
    data: dict[str, Any]
    task: str


def _flip(rng_value: float, temperature: float) -> bool:
    return rng_value < flip_rate(temperature)


def _task_qa(p: Parsed, steps: bool, flip: bool) -> Draft:
    question = p.fields.get("question", "")
    r = read(question, p.passages, steps)
    if not r.answers:
        return Draft(
            "unknown", "I could not find the answer in the passages.", {"answer": "unknown"}, "qa"
        )
    answer = r.answers[1] if flip and len(r.answers) > 1 else r.answers[0]
    used = [s.text for s in (r.first, r.second) if s is not None]
    if steps and r.second is not None:
        verbose = (
            f"Step 1: {used[0]} This points to {r.bridge}. Step 2: {used[1]} "
            f"So the answer is {answer}."
        )
    else:
        verbose = f"Based on the passages, the answer is {answer}. {used[0]}"
    return Draft(answer, verbose, {"answer": answer}, "qa")


def _task_query(p: Parsed, steps: bool, flip: bool) -> Draft:
    question = p.fields.get("question") or p.fields.get("claim") or p.fields.get("text", "")
    words = [w for w in dict.fromkeys(_WORD.findall(question.lower())) if w not in STOPWORDS]
    terms = words
    if p.passages and (steps or BRIDGE_QUERY.search(p.instructions)):
        r = read(question, p.passages, steps=False)
        if r.bridge:
            covered = set(content_words(r.first.text)) if r.first else set()
            rest = [w for w in words if stem(w) not in covered]
            terms = [r.bridge, *rest]
    if flip and len(terms) > 1:
        terms = terms[1:]
    query = " ".join(terms)
    return Draft(query, f"Here is a search query: {query}", {"query": query}, "query")


def _task_evidence(p: Parsed, steps: bool, flip: bool) -> Draft:
    question = p.fields.get("question") or p.fields.get("claim", "")
    ranked = _ranked(_sentences(p.passages), set(content_words(question)))
    if not ranked or ranked[0][0] == 0:
        return Draft("", "I found no relevant sentences.", {"sentences": []}, "evidence")
    top = ranked[1][1] if flip and len(ranked) > 1 else ranked[0][1]
    picked = [top]
    if steps:
        r = read(question, p.passages, steps=True)
        if r.second is not None and r.second not in picked:
            picked.append(r.second)
    lines = [f"[{s.pid}] {s.text}" for s in picked]
    body = "\n".join(lines)
    return Draft(body, "The relevant sentences are:\n" + body, {"sentences": lines}, "evidence")


def _map_verdict(verdict: str, options: list[tuple[str, str]]) -> str:
    if not options:
        return verdict
    cues = {
        "SUPPORTED": r"support|true|yes|correct|entail",
        "REFUTED": r"refut|false|\bno\b|incorrect|contradict",
        "NOT ENOUGH INFO": r"not enough|unknown|neutral|insufficient|cannot",
    }
    for name, desc in options:
        if re.search(cues[verdict], f"{name} {desc}", _I):
            return name
    return options[0][0]


def _task_verify(p: Parsed, steps: bool, flip: bool) -> Draft:
    claim = p.fields.get("claim") or p.fields.get("statement", "")
    words = set(content_words(claim))
    ranked = _ranked(_sentences(p.passages), words)
    verdict = "NOT ENOUGH INFO"
    if ranked and words:
        best = ranked[0][1].text
        cover = ranked[0][0] / len(words)
        if cover >= 1.0:
            verdict = "SUPPORTED"
        elif cover >= 0.5 and candidates(claim, best) and candidates(best, claim):
            verdict = "REFUTED"
    if flip:
        verdict = _VERDICTS[(_VERDICTS.index(verdict) + 1) % 3]
    out = _map_verdict(verdict, p.options)
    return Draft(out, f"The claim is {out} by the passages.", {"verdict": out}, "verify")


def _task_classify(p: Parsed, steps: bool, flip: bool) -> Draft:
    text = next(
        (p.fields[k] for k in ("text", "input", "description", "request") if k in p.fields),
        " ".join(p.other),
    )
    words = set(content_words(text))
    scored = sorted(
        enumerate(p.options),
        key=lambda io: (-len(words & set(content_words(f"{io[1][0]} {io[1][1]}"))), io[0]),
    )
    pick = scored[1] if flip and len(scored) > 1 else scored[0]
    name, desc = pick[1]
    verbose = f"The best fit is {name}" + (f": {desc}" if desc else ".")
    return Draft(name, verbose, {"label": name}, "classify")


def _summary_text(p: Parsed) -> str:
    for key in ("text", "input", "description", "request"):
        if key in p.fields:
            return p.fields[key]
    return " ".join(s for pa in p.passages for s in pa.sentences)


def _task_summarize(p: Parsed, steps: bool, flip: bool) -> Draft:
    """Extractive summary: the N most salient sentences, in text order (docs/sim.md)."""
    sents = split_sentences(_summary_text(p))
    m = SUMMARY_COUNT.search(p.instructions)
    n = 1 if not m else _COUNTS.get(m.group(1).lower()) or int(m.group(1))
    words = [set(content_words(s)) for s in sents]
    salience = [
        len({w for w in ws if any(w in other for j, other in enumerate(words) if j != i)})
        for i, ws in enumerate(words)
    ]
    ranked = sorted(range(len(sents)), key=lambda i: (-salience[i], i))
    chosen = ranked[:n]
    if flip and chosen and len(ranked) > n:
        chosen = [ranked[n], *chosen[1:]]
    summary = " ".join(sents[i] for i in sorted(chosen))
    return Draft(summary, f"Summary: {summary}", {"summary": summary}, "summarize")


@dataclass
class Constraint:
    kind: str
    arg: str = ""


def parse_constraints(lines: list[str]) -> list[Constraint]:
    """Recognized constraints in listed order; an unrecognized line is ignored (docs/sim.md)."""
    out: list[Constraint] = []
    for line in lines:
        for kind, pat in CONSTRAINT_PATTERNS:
            m = pat.search(line)
            if m:
                out.append(Constraint(kind, m.groups()[-1] if m.groups() else ""))
                break
    return out


def _drop_word(text: str, word: str) -> str:
    text = re.sub(r"\s*\b" + re.escape(word) + r"\b", "", text, flags=_I)
    return re.sub(r"^\s+", "", text)


def _write(topic: str, cons: list[Constraint], obey: bool, only: bool, noise: int) -> str:
    """The writing task. Obeys listed constraints only when `obey`; never hits exact counts."""
    t = topic.strip().rstrip(".") or "the topic"
    start = int(hashlib.sha256(t.encode()).hexdigest(), 16) % len(PROSE)
    sentences = [
        PROSE[(start + j) % len(PROSE)].format(T=t[0].upper() + t[1:], t=t)
        for j in range(len(PROSE))
    ]
    kinds = {c.kind: c for c in cons}
    active = {c.kind for c in cons} if obey else {"include"}
    if noise >= 0 and obey:  # a temperature flip ignores one constraint
        skippable = [c.kind for c in cons if c.kind in active and c.kind != "include"]
        if skippable:
            active.discard(skippable[noise % len(skippable)])
    delta_seed = int(hashlib.sha256((t + "|n").encode()).hexdigest(), 16)
    target_words = 30
    if "min_words" in active:
        target_words = int(int(kinds["min_words"].arg) * 1.1) + 5
    if "max_words" in active:
        target_words = min(target_words, max(5, int(kinds["max_words"].arg) - 3))
    exact_words = int(kinds["exact_words"].arg) if "exact_words" in kinds else None
    if exact_words is not None and "exact_words" in active:
        target_words = max(3, exact_words + (1, 2, 3, -1, -2, -3)[delta_seed % 6])
    keywords = [c.arg for c in cons if c.kind == "include" and "include" in active]
    if "exact_bullets" in active:
        n = int(kinds["exact_bullets"].arg)
        n = n + 1 if n <= 1 or delta_seed % 2 else n - 1
        items = [sentences[j % len(sentences)] for j in range(n)]
        if keywords:
            items[0] += " It is about " + " and ".join(keywords) + "."
        body = "\n".join(f"- {s}" for s in items)
    else:
        note = f"It is about {' and '.join(keywords)}." if keywords else ""
        budget = max(3, target_words - count_words(note))
        chosen: list[str] = []
        j = 0
        while not chosen or count_words(" ".join(chosen)) < budget:
            chosen.append(sentences[j % len(sentences)])
            j += 1
        body = " ".join(chosen)
        trims = ("exact_words" in active and exact_words is not None) or "max_words" in active
        words = list(_COUNT_WORD.finditer(body))
        if trims and len(words) > budget:  # cut mid-sentence, keyword note kept
            body = body[: words[budget - 1].end()].rstrip(",") + "."
        if note:
            parts = split_sentences(body)
            body = " ".join([*parts[:1], note, *parts[1:]])
    for c in cons:
        if c.kind == "exclude" and "exclude" in active:
            body = _drop_word(body, c.arg)
    if "no_commas" in active:
        body = body.replace(",", "")
    if "start" in active:
        body = f"{kinds['start'].arg} {body}"
    if "end" in active:
        body = f"{body} {kinds['end'].arg}"
    if "title" in active:
        body = f"<<{t[0].upper() + t[1:]}>>\n{body}"
    if "lowercase" in active:
        body = body.lower()
    if exact_words is not None and count_words(body) == exact_words:  # never exact, by design
        excluded = {c.arg.lower() for c in cons if c.kind == "exclude"}
        filler = next(w for w in _FILLERS if w not in excluded)
        first = _COUNT_WORD.search(body.split("\n")[-1])
        offset = len(body) - len(body.split("\n")[-1])
        if first:
            at = offset + first.end()
            body = f"{body[:at]} {filler}{body[at:]}"
    if not (obey or only):
        body = f"Here is a short text about {t}:\n\n{body}"
    return body


def _task_write(p: Parsed, steps: bool, flip: bool, insist: bool, only: bool, noise: int) -> Draft:
    topic = p.fields.get("topic") or p.fields.get("request") or p.fields.get("text") or ""
    if not topic:
        m = re.search(r"\babout\s+([^.\n:]+)", p.instructions, _I)
        topic = m.group(1) if m else "the topic"
    cons = parse_constraints(p.constraints or p.other)
    body = _write(topic, cons, insist, only, noise if flip else -1)
    return Draft(body, body, {"text": body}, "write")


def _task_unknown(p: Parsed, steps: bool, flip: bool) -> Draft:
    return Draft("unknown", "I am not sure what is being asked.", {"answer": "unknown"}, "unknown")


def recognize(p: Parsed) -> str:
    """The task kind, by the first rule that matches (docs/sim.md "Task recognition")."""
    has_q = any(k in p.fields for k in ("question", "claim", "statement"))
    if QUERY_TASK.search(p.instructions) and (has_q or "text" in p.fields):
        return "query"
    if EVIDENCE_TASK.search(p.instructions) and p.passages and has_q:
        return "evidence"
    if ("claim" in p.fields or "statement" in p.fields) and p.passages:
        return "verify"
    if p.options:
        return "classify"
    if SUMMARY_TASK.search(p.instructions) and (
        p.passages or any(k in p.fields for k in ("text", "input", "description", "request"))
    ):
        return "summarize"
    if (
        p.constraints
        or "topic" in p.fields
        or (WRITE_VERB.search(p.instructions) and "question" not in p.fields)
    ):
        return "write"
    if "question" in p.fields:
        return "qa"
    return "unknown"


@dataclass
class Reply:
    text: str
    task: str
    finish_reason: str
    input_tokens: int
    output_tokens: int


def respond(
    prompt: str,
    *,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    seed: int = 0,
    offset: int = 0,
    stop: Sequence[str] | None = None,
    name: str = "sim",
) -> Reply:
    """The whole simulator as a pure function of the prompt text, settings and repeat offset."""
    p = parse_prompt(prompt)
    ins = p.instructions
    only, as_json, steps, insist = (
        _any(ONLY_ANSWER, ins),
        _any(JSON_FORMAT, ins),
        _any(STEPS, ins),
        _any(INSIST, ins),
    )
    digest = hashlib.sha256(
        json.dumps([name, seed, round(float(temperature), 6), offset, prompt]).encode()
    ).digest()
    roll = int.from_bytes(digest[:8], "big") / 2**64
    flip = _flip(roll, temperature)
    noise = digest[8]
    task = recognize(p)
    if task == "write":
        draft = _task_write(p, steps, flip, insist, only or as_json, noise)
    else:
        handler = {
            "query": _task_query,
            "evidence": _task_evidence,
            "verify": _task_verify,
            "classify": _task_classify,
            "summarize": _task_summarize,
            "qa": _task_qa,
        }.get(task, _task_unknown)
        draft = handler(p, steps, flip)
    if as_json:
        text = json.dumps(draft.data, ensure_ascii=False)
    elif only:
        text = draft.bare
    else:
        text = draft.verbose
    finish = "stop"
    for s in stop or ():
        if s and s in text:
            text = text[: text.index(s)]
    if max_tokens is not None and count_tokens(text) > max_tokens:
        toks = list(_TOKEN.finditer(text))
        text = text[: toks[max_tokens - 1].end()] if max_tokens > 0 else ""
        finish = "length"
    return Reply(text, task, finish, count_tokens(prompt), count_tokens(text))


# --- the LangChain chat model ------------------------------------------------------------------


def _message_text(messages: Sequence[BaseMessage]) -> str:
    parts: list[str] = []
    for m in messages:
        c = m.content
        if isinstance(c, str):
            parts.append(c)
        else:
            parts.extend(b if isinstance(b, str) else str(b.get("text", "")) for b in c)
    return "\n\n".join(parts)


class SimChatModel(BaseChatModel):
    """A deterministic simulator of a weak, instruction-sensitive chat model (not an LLM)."""

    model_name: str = "sim"
    temperature: float = 0.0
    max_tokens: int | None = None
    latency_ms: float = 0.0
    seed: int = 0

    @property
    def _llm_type(self) -> str:
        return "fapo-sim"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "simulator": True,
        }

    def _result(self, messages: list[BaseMessage], stop: list[str] | None) -> ChatResult:
        reply = respond(
            _message_text(messages),
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=self.seed,
            offset=seed_offset(),
            stop=stop,
            name=self.model_name,
        )
        meta = {
            "finish_reason": reply.finish_reason,
            "model_name": self.model_name,
            "model_provider": "fapo-sim",
            "simulator": True,
            "sim_task": reply.task,
        }
        usage = {
            "input_tokens": reply.input_tokens,
            "output_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }
        msg = AIMessage(content=reply.text, usage_metadata=usage, response_metadata=meta)
        gen = ChatGeneration(message=msg, generation_info={"finish_reason": reply.finish_reason})
        return ChatResult(
            generations=[gen], llm_output={"model_name": self.model_name, "simulator": True}
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000)
        return self._result(messages, stop)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000)
        return self._result(messages, stop)


#: Settings `make_sim` accepts; `timeout`/`max_retries` are accepted and ignored (nothing to wait on).
SIM_SETTINGS = ("temperature", "max_tokens", "latency_ms", "seed")
_IGNORED = ("timeout", "max_retries")


def make_sim(name: str, **settings: Any) -> SimChatModel:
    """The factory behind model spec `sim:NAME` (NAME only labels the simulator and seeds noise)."""
    unknown = sorted(set(settings) - set(SIM_SETTINGS) - set(_IGNORED))
    if unknown:
        raise FapoError(
            f"sim:{name}: setting '{unknown[0]}' is not supported by the simulator; "
            f"use {', '.join(SIM_SETTINGS)}"
        )
    kept = {k: v for k, v in settings.items() if k in SIM_SETTINGS and v is not None}
    try:
        return SimChatModel(model_name=f"sim:{name}", **kept)
    except ValueError as err:
        first = str(err).splitlines()
        raise FapoError(
            f"sim:{name}: bad setting ({first[-1].strip() if first else err})"
        ) from None
