"""The simulated task model: the behaviour table of docs/sim.md, determinism, noise, limits."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from fapo.errors import FapoError
from fapo.runtime import REPEAT, SAMPLE
from fapo.sim import SimChatModel, count_tokens, count_words, flip_rate, make_sim, respond

PASSAGES = """[p1] The Brastow Guild was founded by Tessa Marrow in 1820. The Brastow Guild is based in Quillfeld.
[p2] Tessa Marrow was born in Orvel in 1790. Tessa Marrow worked as a glassmaker.
[p3] Orvel is a town on the Vell river. Orvel is known for its salt markets."""


def qa(instruction: str, question: str, passages: str = PASSAGES) -> str:
    return f"{instruction}\n\nPassages:\n{passages}\n\nQuestion: {question}\n"


def out(prompt: str, **kw: object) -> str:
    return respond(prompt, **kw).text  # type: ignore[arg-type]


# --- task recognition and style controls -----------------------------------------------------


def test_qa_is_verbose_by_default_but_contains_the_extracted_answer() -> None:
    text = out(qa("Answer the question using the passages.", "Where was Tessa Marrow born?"))
    assert text.startswith("Based on the passages, the answer is Orvel.")


@pytest.mark.parametrize(
    "instruction",
    [
        "Answer with only the final answer, no explanation.",
        "Give only the answer.",
        "Reply with just the answer.",
        "Do not explain.",
        "Output the entity and nothing else.",
        "Answer only with a name.",
        "Respond without any explanation.",
        "Answer with a single word or name.",
    ],
)
def test_only_answer_family_gives_the_bare_answer(instruction: str) -> None:
    assert out(qa(instruction, "Where was Tessa Marrow born?")) == "Orvel"


def test_wh_type_picks_numbers_for_when_and_what_year() -> None:
    ask = "Answer with only the final answer."
    assert out(qa(ask, "In what year was Tessa Marrow born?")) == "1790"
    assert out(qa(ask, "When was the Brastow Guild founded?")) == "1820"
    assert out(qa(ask, "Who founded the Brastow Guild?")) == "Tessa Marrow"


@pytest.mark.parametrize(
    "steps",
    [
        "Reason step by step: first identify the bridge entity, then answer.",
        "Think step-by-step.",
        "Work in two steps.",
        "Find the intermediate entity first, then use it to answer.",
        "This is a multi-hop question.",
    ],
)
def test_bridge_is_followed_only_when_told_to_reason_in_steps(steps: str) -> None:
    q = "Where was the founder of the Brastow Guild born?"
    only = "Answer with only the final answer."
    assert out(qa(only, q)) == "Tessa Marrow"  # stops at the bridge entity
    assert out(qa(f"{steps} {only}", q)) == "Orvel"
    assert (
        out(qa(f"{steps} {only}", "In what year was the founder of the Brastow Guild born?"))
        == "1790"
    )
    river = "Which river flows through the town where Tessa Marrow was born?"
    assert out(qa(f"{steps} {only}", river)) == "Vell"


def test_steps_do_not_hop_when_the_first_sentence_covers_the_question() -> None:
    text = out(
        qa("Think step by step. Answer with only the answer.", "Where was Tessa Marrow born?")
    )
    assert text == "Orvel"


def test_bridge_missing_from_passages_leaves_the_bridge_entity_as_answer() -> None:
    only_first = PASSAGES.splitlines()[0]
    prompt = qa(
        "Reason step by step. Answer with only the answer.",
        "Where was the founder of the Brastow Guild born?",
        only_first,
    )
    assert out(prompt) == "Tessa Marrow"


@pytest.mark.parametrize("instruction", ["Respond only with JSON.", "Return a JSON object."])
def test_json_family(instruction: str) -> None:
    data = json.loads(out(qa(instruction, "Where was Tessa Marrow born?")))
    assert data == {"answer": "Orvel"}


def test_unanswerable_question_says_so() -> None:
    assert out(qa("Answer with only the answer.", "What colour is the sky?")) == "unknown"


def test_query_writing_uses_question_words_or_the_bridge_entity() -> None:
    q = "Where was the founder of the Brastow Guild born?"
    plain = f"Write a search query for this question. Respond with only the query.\n\nQuestion: {q}"
    assert out(plain) == "founder brastow guild born"
    bridge = (
        "Write a search query for the missing passage. First identify the bridge entity, then "
        f"write the query. Respond with only the query.\n\nPassages:\n{PASSAGES.splitlines()[0]}"
        f"\n\nQuestion: {q}"
    )
    assert out(bridge) == "Tessa Marrow born"
    assert out(bridge.replace(" Respond with only the query.", "")).startswith(
        "Here is a search query:"
    )


def test_evidence_selection_returns_the_best_sentences_with_ids() -> None:
    q = "Where was the founder of the Brastow Guild born?"
    base = f"Select the evidence sentences. Output only the sentences.\n\nPassages:\n{PASSAGES}\n\nQuestion: {q}"
    assert out(base) == "[p1] The Brastow Guild was founded by Tessa Marrow in 1820."
    two = out(base.replace("Select", "Think step by step. Select"))
    assert two.splitlines() == [
        "[p1] The Brastow Guild was founded by Tessa Marrow in 1820.",
        "[p2] Tessa Marrow was born in Orvel in 1790.",
    ]


@pytest.mark.parametrize(
    ("claim", "verdict"),
    [
        ("Tessa Marrow was born in Orvel.", "SUPPORTED"),
        ("Tessa Marrow was born in Quillfeld.", "REFUTED"),
        ("Tessa Marrow painted ships.", "NOT ENOUGH INFO"),
    ],
)
def test_claim_verification(claim: str, verdict: str) -> None:
    prompt = f"Verify the claim against the passages. Answer with only the verdict.\n\nPassages:\n{PASSAGES}\n\nClaim: {claim}"
    assert out(prompt) == verdict


def test_claim_verdict_maps_onto_listed_labels() -> None:
    prompt = (
        f"Is the claim true?\n\nPassages:\n{PASSAGES}\n\nClaim: Tessa Marrow was born in Quillfeld.\n"
        "Labels: true, false, unknown\nAnswer with only the label."
    )
    assert out(prompt) == "false"


def test_classification_by_overlap_with_listed_labels_and_descriptions() -> None:
    prompt = (
        "Choose the category of the text. Answer with only the label.\n\n"
        "Text: The striker scored twice and the match ended in a draw.\n\n"
        "Categories:\n- politics: elections, parliament, ministers\n- sports: match, team, scored\n"
        "- weather: rain, storms, sunshine\n"
    )
    assert out(prompt) == "sports"
    assert out(prompt.replace(" Answer with only the label.", "")).startswith(
        "The best fit is sports"
    )
    inline = "Text: the weather turns to heavy rain tonight\nLabels: politics, sports, weather\nAnswer only with the label."
    assert out(inline) == "weather"
    assert out(inline.replace("the weather turns to ", "")) == "politics"  # no overlap: first label


WRITE = (
    "Write a short text about the topic below.{extra}\n\nTopic: the night market of Velmora\n\n"
    "Constraints:\n{constraints}\n"
)


def write(extra: str, *constraints: str) -> str:
    lines = "\n".join(f"- {c}" for c in constraints)
    return out(WRITE.format(extra=extra, constraints=lines))


def test_writing_ignores_constraints_unless_the_prompt_insists() -> None:
    cons = (
        "Include the word 'lantern'.",
        "Do not use the word 'very'.",
        "Do not use any commas.",
        "Use only lowercase letters.",
        "End the text with the phrase 'See you at dawn.'",
    )
    lazy = write("", *cons)
    assert lazy.startswith("Here is a short text about")
    assert "lantern" in lazy  # an included word is the one thing it always obeys
    assert "very" in lazy and "," in lazy and lazy != lazy.lower()
    strict = write(" Follow every constraint exactly.", *cons)
    assert "lantern" in strict and " very " not in f" {strict} " and "," not in strict
    assert strict == strict.lower() and strict.endswith("see you at dawn.")


@pytest.mark.parametrize(
    "insist",
    [
        "Follow every constraint exactly.",
        "You must satisfy all of the constraints.",
        "Obey each listed requirement.",
        "All constraints are mandatory.",
        "Do not ignore any constraint.",
        "Make sure to meet all the rules below.",
    ],
)
def test_insist_family(insist: str) -> None:
    text = write(f" {insist}", "Start the text with the word 'tonight'.")
    assert text.split()[0] == "tonight"


def test_title_and_start_word() -> None:
    text = write(
        " Follow every constraint.",
        "Give the text a title wrapped in double angular brackets, such as <<my title>>.",
    )
    assert text.startswith("<<The night market of Velmora>>\n")


@pytest.mark.parametrize("n", [18, 25, 31, 40, 47])
def test_exact_word_counts_are_never_met(n: int) -> None:
    text = write(" Follow every constraint exactly.", f"Write exactly {n} words.")
    assert count_words(text) != n
    assert abs(count_words(text) - n) <= 4  # it tries


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
def test_exact_bullet_counts_are_never_met(n: int) -> None:
    text = write(" Follow every constraint exactly.", f"Use exactly {n} bullet points.")
    bullets = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(bullets) != n and abs(len(bullets) - n) == 1


def test_min_words_is_met_when_insisted_and_max_tokens_truncates_it() -> None:
    prompt = WRITE.format(
        extra=" Follow every constraint exactly.", constraints="- Write at least 120 words."
    )
    full = respond(prompt)
    assert count_words(full.text) >= 120 and full.finish_reason == "stop"
    cut = respond(prompt, max_tokens=100)
    assert cut.finish_reason == "length" and cut.output_tokens == 100
    assert full.text.startswith(cut.text)
    assert count_words(write("", "Write at least 120 words.")) < 120


# --- parameters, determinism and noise -----------------------------------------------------------


def test_flip_rate_table() -> None:
    assert [flip_rate(t) for t in (0.0, 0.5, 1.0, 2.0, 5.0)] == [0.0, 0.1, 0.2, 0.4, 0.5]


def test_same_prompt_same_output_across_instances() -> None:
    prompt = qa("Answer the question.", "Where was the founder of the Brastow Guild born?")
    a = SimChatModel().invoke(prompt)
    b = make_sim("default").invoke(prompt)
    assert a.content == b.content


def _answers(model: SimChatModel, prompt: str, repeats: range) -> list[str]:
    outs = []
    for r in repeats:
        token = REPEAT.set(r)
        try:
            outs.append(str(model.invoke(prompt).content))
        finally:
            REPEAT.reset(token)
    return outs


def test_temperature_noise_differs_across_repeats_but_not_within_one() -> None:
    prompt = qa("Answer with only the final answer.", "Who founded the Brastow Guild?")
    hot = make_sim("default", temperature=1.0)
    first = _answers(hot, prompt, range(40))
    assert len(set(first)) > 1  # repeats disagree
    assert first == _answers(hot, prompt, range(40))  # ...identically every time
    flips = sum(a != "Tessa Marrow" for a in first) / len(first)
    assert 0.05 <= flips <= 0.45  # about the documented 20% at T=1.0
    cold = make_sim("default", temperature=0.0)
    assert set(_answers(cold, prompt, range(40))) == {"Tessa Marrow"}


def test_sample_index_also_seeds_the_noise() -> None:
    prompt = qa("Answer with only the final answer.", "Who founded the Brastow Guild?")
    hot = make_sim("default", temperature=1.0)
    outs = set()
    for s in range(40):
        token = SAMPLE.set(s)
        try:
            outs.add(str(hot.invoke(prompt).content))
        finally:
            SAMPLE.reset(token)
    assert len(outs) > 1


def test_usage_finish_reason_and_simulator_label() -> None:
    prompt = qa("Answer the question.", "Where was Tessa Marrow born?")
    msg = make_sim("default").invoke(prompt)
    usage = msg.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] == count_tokens(prompt)
    assert usage["output_tokens"] == count_tokens(str(msg.content))
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    meta = msg.response_metadata
    assert meta["finish_reason"] == "stop" and meta["model_name"] == "sim:default"
    assert meta["simulator"] is True and meta["sim_task"] == "qa"
    cut = make_sim("default", max_tokens=3).invoke(prompt)
    assert cut.response_metadata["finish_reason"] == "length"
    assert cut.content == "Based on the" and cut.usage_metadata["output_tokens"] == 3


def test_system_and_human_messages_are_read_together() -> None:
    msgs = [
        SystemMessage("Answer with only the final answer."),
        HumanMessage(f"Passages:\n{PASSAGES}\n\nQuestion: Where was Tessa Marrow born?"),
    ]
    assert make_sim("x").invoke(msgs).content == "Orvel"


def test_stop_sequences_cut_the_output() -> None:
    prompt = qa("Answer the question.", "Where was Tessa Marrow born?")
    assert make_sim("default").invoke(prompt, stop=[","]).content == "Based on the passages"


def test_async_latency_is_simulated() -> None:
    model = make_sim("bench", latency_ms=40)
    prompt = qa("Answer with only the answer.", "Where was Tessa Marrow born?")

    async def many() -> list[str]:
        replies = await asyncio.gather(*(model.ainvoke(prompt) for _ in range(5)))
        return [str(r.content) for r in replies]

    t0 = time.perf_counter()
    assert asyncio.run(many()) == ["Orvel"] * 5
    elapsed = time.perf_counter() - t0
    assert 0.04 <= elapsed < 0.5  # slept concurrently, not 5 x 40 ms in a row


def test_make_sim_rejects_unknown_settings_in_one_line() -> None:
    with pytest.raises(FapoError) as err:
        make_sim("default", top_p=0.9)
    assert "top_p" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FapoError):
        make_sim("default", temperature="hot")
    assert make_sim("default", timeout=5, max_retries=2, max_tokens=None).max_tokens is None


def test_identifying_params_name_it_a_simulator() -> None:
    model = make_sim("default", temperature=0.3, seed=4)
    assert model._llm_type == "fapo-sim"
    assert model._identifying_params["simulator"] is True
    prompt = qa("Answer with only the final answer.", "Who founded the Brastow Guild?")
    seeds = {respond(prompt, temperature=1.0, seed=s).text for s in range(30)}
    assert len(seeds) > 1  # the seed setting changes the noise too


# --- docs/sim.md examples are executable ------------------------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs" / "sim.md"
DOC_EXAMPLES = re.findall(r"^```sim-example\n(.*?)\n=>\n(.*?)\n```$", DOC.read_text(), re.S | re.M)


def test_docs_have_examples_for_every_task_kind() -> None:
    kinds = {respond(prompt).task for prompt, _ in DOC_EXAMPLES}
    assert kinds == {"qa", "query", "evidence", "verify", "classify", "write", "summarize"}


@pytest.mark.parametrize(("prompt", "expected"), DOC_EXAMPLES)
def test_docs_example(prompt: str, expected: str) -> None:
    assert respond(prompt).text == expected


# --- summarize ---------------------------------------------------------------------------------

REPORT = (
    "Text: Tessa Marrow came back to Quillfeld on Monday. The weather was mild. "
    "Tessa Marrow opened the glass museum in Quillfeld. The museum shows glass from Orvel.\n"
)


@pytest.mark.parametrize(
    ("instruction", "expected"),
    [
        ("Summarize the report. Return only the summary.", 1),
        ("Summarise the report in three short sentences. Return only the summary.", 3),
        ("Condense the report into 2 sentences. Return only the summary.", 2),
    ],
)
def test_summary_length_follows_the_instruction(instruction: str, expected: int) -> None:
    text = out(f"{instruction}\n\n{REPORT}")
    assert len(re.findall(r"[.!?](?:\s|$)", text)) == expected, text
    assert "The weather was mild." not in text  # the least salient sentence goes first


def test_summary_is_verbose_unless_asked_for_only_the_summary() -> None:
    assert out(f"Summarize the report.\n\n{REPORT}").startswith("Summary: Tessa Marrow opened")
    assert json.loads(out(f"Summarize the report as JSON.\n\n{REPORT}"))["summary"]


def test_summary_flips_swap_the_most_salient_sentence() -> None:
    prompt = f"Summarize the report. Return only the summary.\n\n{REPORT}"
    base = out(prompt)
    flipped = {out(prompt, temperature=2.5, offset=i) for i in range(40)}
    assert base in flipped and len(flipped) == 2, flipped


def test_an_option_list_keeps_the_label_task_even_when_summary_is_mentioned() -> None:
    prompt = (
        "Choose the label of this summary.\n\nText: the striker scored.\n\nLabels: sports, weather"
    )
    assert respond(prompt).task == "classify"
