import dataclasses
import json

import pytest

from benchmarks.report import markdown_table, save, update_section


def test_markdown_table():
    assert markdown_table(("a", "b"), [(1, "x"), (2.5, "")]) == (
        "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 |  |")


def test_update_section_replaces_only_its_section(tmp_path):
    path = tmp_path / "doc.md"
    path.write_text("a\n<!-- t:start -->\nold\n<!-- t:end -->\nb\n<!-- u:start -->\nu\n"
                    "<!-- u:end -->\n")
    update_section(path, "t", "new")
    assert path.read_text() == ("a\n<!-- t:start -->\nnew\n<!-- t:end -->\nb\n"
                                "<!-- u:start -->\nu\n<!-- u:end -->\n")
    with pytest.raises(SystemExit, match="no <!-- v:start"):
        update_section(path, "v", "x")


def test_save_keeps_the_table_and_the_rows(tmp_path, capsys):
    @dataclasses.dataclass
    class Row:
        case: str
        value: float

    save(tmp_path / "out", "kind", "| table |", dict(rows=[Row("a", 1.5)]))
    assert (tmp_path / "out" / "kind.md").read_text() == "| table |\n"
    assert json.loads((tmp_path / "out" / "kind.json").read_text()) == {
        "rows": [{"case": "a", "value": 1.5}]}
    assert "| table |" in capsys.readouterr().out
