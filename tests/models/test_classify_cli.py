"""``finsentry classify`` on arguments, JSONL and CSV files (the real shipped model)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from finsentry.schema import SENTIMENTS
from models.cli import classify_command
from models.registry import SHIPPED_DIR, SHIPPED_VERSION

pytestmark = pytest.mark.unit

app = typer.Typer()
app.command("classify")(classify_command)
app.command("noop")(lambda: None)
COMMON = ["--model", str(SHIPPED_DIR), "--backend", "fp32", "--device", "cpu"]


def test_classify_texts_prints_a_table() -> None:
    result = CliRunner().invoke(app, ["classify", "Acme beats estimates", "Acme misses", *COMMON])
    assert result.exit_code == 0, result.output
    assert "Acme beats estimates" in result.output and SHIPPED_VERSION in result.output


def test_classify_jsonl_keeps_fields_adds_verdicts_and_marks_rows_without_text(
    tmp_path: Path,
) -> None:
    source = tmp_path / "in.jsonl"
    rows = [
        {"id": 1, "text": "Profit doubled"},
        {"id": 2, "text": "  "},
        {"id": 3, "other": "x"},
        {"id": 4, "text": "Shares plunge on fraud probe"},
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    target = tmp_path / "out" / "scored.jsonl"
    result = CliRunner().invoke(
        app,
        ["classify", "--input", str(source), "--output", str(target), "--batch-size", "2", *COMMON],
    )
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["id"] for r in out] == [1, 2, 3, 4]
    assert out[0]["sentiment"] in SENTIMENTS and out[0]["text"] == "Profit doubled"
    assert "error" in out[1] and "error" in out[2] and "sentiment" not in out[2]
    assert out[3]["score"] < out[0]["score"]
    assert "2 without text" in result.output


def test_classify_csv_uses_the_named_column(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["headline", "ticker"])
        writer.writerow(["Fed hikes rates again", "SPY"])
    target = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "classify",
            "--input",
            str(source),
            "--output",
            str(target),
            "--text-column",
            "headline",
            *COMMON,
        ],
    )
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in target.read_text().splitlines()]
    assert row["ticker"] == "SPY" and row["topic"] in row["topic_probs"]


def test_classify_rejects_a_missing_column_and_texts_with_a_file(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("title\nhello\n")
    missing = CliRunner().invoke(
        app, ["classify", "--input", str(source), "--output", str(tmp_path / "o.jsonl"), *COMMON]
    )
    assert missing.exit_code == 2 and "no column 'text'" in missing.output
    both = CliRunner().invoke(app, ["classify", "hi", "--input", str(source), *COMMON])
    assert both.exit_code == 2
