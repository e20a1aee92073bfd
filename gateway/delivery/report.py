"""Plain-text tables of test verdicts for terminals and CI logs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.delivery.records import EvaluationRecord

_WEAKEST = 3


def _table(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def format_record(record: EvaluationRecord, path: Path | None = None) -> str:
    """One model's checks, gates and verdict, with the failed stories when there are any."""
    st = record.stories
    rows = [["check", "value", "gate", "result"]]
    rows.append(
        [
            "story tests",
            f"{st.passed}/{st.total} passed",
            "all pass",
            _verdict(st.total > 0 and not st.failed),
        ]
    )
    rows.append(["action accuracy", f"{st.action_accuracy:.3f}", "", ""])
    nlu = record.nlu
    if nlu is None:
        rows.append(["intent accuracy", "not evaluated", "delivery.nlu_folds=0", ""])
    else:
        rows.append(
            [
                f"intent accuracy ({nlu.folds}-fold CV)",
                f"{nlu.accuracy:.3f}",
                f">= {record.min_intent_accuracy:.3f}",
                _verdict(nlu.accuracy >= record.min_intent_accuracy),
            ]
        )
        rows.append(
            [
                "intent F1 (weighted)",
                f"{nlu.f1:.3f}",
                f">= {record.min_intent_f1:.3f}",
                _verdict(nlu.f1 >= record.min_intent_f1),
            ]
        )
    lines = [f"{record.lang}: {record.model} (sha256 {record.sha256[:12]})", *_table(rows, "  ")]
    if nlu is not None and nlu.per_intent:
        weakest = sorted(nlu.per_intent.items(), key=lambda item: item[1].f1)[:_WEAKEST]
        lines.append("  weakest intents (F1): " + ", ".join(f"{name} {s.f1:.2f}" for name, s in weakest))
    if nlu is not None and nlu.confusions:
        lines.append("  frequent confusions: " + ", ".join(f"{t} -> {p} ({n})" for t, p, n in nlu.confusions))
    if st.failed_report:
        lines.append("  failed stories (Rasa's predictions in comments):")
        lines += ["    " + line for line in st.failed_report.splitlines()]
    verdict = "PASSED" if record.passed else "FAILED: " + "; ".join(record.failures)
    lines.append(f"  {verdict}")
    if path is not None:
        lines.append(f"  record: {path}")
    return "\n".join(lines)


def format_summary(records: Sequence[EvaluationRecord]) -> str:
    """One line per language."""
    rows = [["lang", "model", "stories", "intent acc", "intent F1", "result"]]
    for r in records:
        acc = f"{r.nlu.accuracy:.3f}" if r.nlu else "-"
        f1 = f"{r.nlu.f1:.3f}" if r.nlu else "-"
        rows.append([r.lang, r.model, f"{r.stories.passed}/{r.stories.total}", acc, f1, _verdict(r.passed)])
    return "\n".join(_table(rows))
