"""Pre-chat qualification: a few scripted questions that pick the skill to route on.

Shoppers rarely know which department they need, and a conversation routed to the wrong
skill costs a transfer. Each shop configures a short question set; every option may name a
skill, and the answers vote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class QualificationError(ValueError):
    """The shopper's answers do not fit the question set (stale widget or forged request)."""


@dataclass(frozen=True, slots=True)
class Option:
    id: str
    label: str
    skill: str | None = None  # None: the answer says nothing about the department


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    text: str
    options: tuple[Option, ...]


class QuestionSet:
    """A validated question set; invalid configuration fails at load, not on a shopper's click."""

    def __init__(self, questions: Sequence[Question]) -> None:
        self.questions: tuple[Question, ...] = tuple(questions)
        self._options: dict[str, dict[str, Option]] = {}
        for q in self.questions:
            if q.id in self._options:
                raise ValueError(f"duplicate question id {q.id!r}")
            if not q.options:
                raise ValueError(f"question {q.id!r} has no options")
            by_id: dict[str, Option] = {}
            for o in q.options:
                if o.id in by_id:
                    raise ValueError(f"duplicate option id {o.id!r} in question {q.id!r}")
                by_id[o.id] = o
            self._options[q.id] = by_id

    def pick_skill(self, answers: Mapping[str, str]) -> str | None:
        """The skill named by most chosen options; ties go to the earliest question's skill.

        Unanswered questions are allowed (the shopper may skip); unknown ids are rejected
        rather than ignored so a widget out of sync with the configuration is noticed.
        """
        for qid, oid in answers.items():
            options = self._options.get(qid)
            if options is None:
                raise QualificationError(f"unknown question {qid!r}")
            if oid not in options:
                raise QualificationError(f"unknown option {oid!r} for question {qid!r}")
        # Question order, not answer order: the tie-break must not depend on how the client
        # happened to serialise its answers.
        chosen = [
            skill
            for q in self.questions
            if q.id in answers and (skill := self._options[q.id][answers[q.id]].skill) is not None
        ]
        if not chosen:
            return None
        # most_common keeps first-encountered order among equal counts: earliest question wins.
        return Counter(chosen).most_common(1)[0][0]

    def to_public(self) -> list[dict[str, Any]]:
        """JSON for the shopper widget; skills stay server-side (internal routing vocabulary)."""
        return [
            {
                "id": q.id,
                "text": q.text,
                "options": [{"id": o.id, "label": o.label} for o in q.options],
            }
            for q in self.questions
        ]

    @classmethod
    def from_config(cls, raw: list[dict[str, Any]]) -> QuestionSet:
        """Build from plain dicts (shop configuration file or database JSON)."""
        if not isinstance(raw, list):
            raise ValueError("question set must be a list of questions")
        questions = []
        for i, rq in enumerate(raw):
            qid = _text(rq, "id", f"question #{i + 1}")
            raw_options = rq.get("options")
            if not isinstance(raw_options, list):
                raise ValueError(f"question {qid!r}: 'options' must be a list")
            options = []
            for j, ro in enumerate(raw_options):
                oid = _text(ro, "id", f"question {qid!r} option #{j + 1}")
                where = f"question {qid!r} option {oid!r}"
                skill = ro.get("skill")
                if skill is not None and (not isinstance(skill, str) or not skill):
                    raise ValueError(f"{where}: 'skill' must be a non-empty string or null")
                options.append(Option(oid, _text(ro, "label", where), skill))
            questions.append(Question(qid, _text(rq, "text", f"question {qid!r}"), tuple(options)))
        return cls(questions)


def _text(raw: Any, key: str, where: str) -> str:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected an object")
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: {key!r} must be a non-empty string")
    return value
