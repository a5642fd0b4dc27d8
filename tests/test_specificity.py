"""Changes that name a benchmark's own verifiers are flagged in the report (issue 19)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fapo.loop import RunOptions
from fapo.loop import run as run_loop
from fapo.settings import load_settings
from fapo.specificity import added_lines, flag_variants, named_terms

REPO = Path(__file__).resolve().parents[1]

DIFF = """--- a/structure.yaml
+++ b/structure.yaml
@@ -0,0 +1,2 @@
+# enforce count:word_count_range like WordCountRangeChecker
+transforms: []
-# count:numbers was here (removed lines are not flagged)
"""


def test_only_added_whole_identifiers_are_flagged() -> None:
    terms = ["count:word_count_range", "WordCountRangeChecker", "count:numbers", "count:word"]
    assert named_terms(added_lines(DIFF), terms) == [
        "count:word_count_range",
        "WordCountRangeChecker",
    ]
    assert named_terms("see count:word_count_ranges and XWordCountRangeChecker", terms) == []
    flags = flag_variants(
        [
            {"id": "v001", "diff": DIFF, "proposal": {"level": "structure"}},
            {"id": "v002", "diff": "+a general rewrite of the prompt\n", "proposal": {}},
        ],
        terms,
    )
    assert [(f.variant, f.level) for f in flags] == [("v001", "structure")]
    assert flag_variants([{"id": "v001", "diff": DIFF}], []) == []


def test_report_flags_a_change_naming_an_instruction_id(tmp_path: Path) -> None:
    """A real run on a small copy of tenants/ifbench: the scripted agent's change names an
    instruction id, and report.md lists it under Benchmark-specific changes."""
    shutil.copy(REPO / "fapo.toml", tmp_path / "fapo.toml")
    dest = tmp_path / "tenants" / "ifb"
    shutil.copytree(
        REPO / "tenants" / "ifbench", dest, ignore=shutil.ignore_patterns("__pycache__")
    )
    for split in ("train", "val", "test"):
        path = dest / "data" / f"{split}.jsonl"
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:8]))
    revise = (dest / "prompts" / "revise.md").read_text()
    script = tmp_path / "script.yaml"
    script.write_text(
        "proposals:\n"
        "  - rationale: spell out count:numbers\n"
        "    files:\n"
        "      prompts/revise.md: |\n"
        + "".join(f"        {line}\n" for line in revise.splitlines())
        + "        For count:numbers, write the numbers as digits.\n"
    )
    settings = load_settings(tmp_path)
    opts = RunOptions(agent=f"scripted:{script}", run_id="flag", budget={"max_variants": 1})
    run_loop(dest, opts, settings)
    report = (tmp_path / "runs" / "ifbench" / "flag" / "report.md").read_text()
    assert "## Benchmark-specific changes" in report
    line = next(x for x in report.splitlines() if "names the benchmark" in x)
    assert "count:numbers" in line and "prompt" in line
    data = json.loads((tmp_path / "runs" / "ifbench" / "flag" / "report.json").read_text())
    assert data["benchmark_specific"] == [
        {"variant": "v001", "level": "prompt", "terms": ["count:numbers"]}
    ]
