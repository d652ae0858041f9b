"""bench/report.md is written by three tools: `make bench` the whole file, `make chaos` and
`make soak` each their own section between markers. Each replaces only its own part."""

from __future__ import annotations

from bench import report_md


def test_a_section_is_appended_then_replaced_in_place(tmp_path):
    report = tmp_path / "report.md"
    report.write_text("# Benchmarks\n\nfigures\n")
    report_md.write_section(report, "chaos", ["## Fault drills", "first"])
    report_md.write_section(report, "soak", ["## Soak", "one"])
    report_md.write_section(report, "chaos", ["## Fault drills", "second"])
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nfigures\n\n<!-- chaos:begin -->\n## Fault drills\nsecond\n")
    assert "first" not in text and text.count("<!-- chaos:begin -->") == 1
    assert text.endswith("<!-- soak:begin -->\n## Soak\none\n<!-- soak:end -->\n")


def test_the_sections_are_what_make_bench_keeps(tmp_path):
    report = tmp_path / "report.md"
    report_md.write_section(report, "chaos", ["drills"])
    report_md.write_section(report, "soak", ["soak"])
    kept = report_md.sections("# Benchmarks (old)\n\n" + report.read_text())
    assert kept == "<!-- chaos:begin -->\ndrills\n<!-- chaos:end -->\n<!-- soak:begin -->\nsoak\n<!-- soak:end -->\n"
