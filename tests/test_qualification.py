from __future__ import annotations

import json
from typing import Any

import pytest

from signaling.qualification import (
    Option,
    QualificationError,
    Question,
    QuestionSet,
)

pytestmark = pytest.mark.unit

CONFIG: list[dict[str, Any]] = [
    {
        "id": "what",
        "text": "What are you looking for?",
        "options": [
            {"id": "guitar", "label": "A guitar", "skill": "guitars"},
            {"id": "keys", "label": "A keyboard", "skill": "pianos"},
            {"id": "dunno", "label": "Not sure yet", "skill": None},
        ],
    },
    {
        "id": "level",
        "text": "How do you play?",
        "options": [
            {"id": "beginner", "label": "Just starting"},
            {"id": "studio", "label": "Studio work", "skill": "recording"},
            {"id": "stage", "label": "On stage", "skill": "pianos"},
        ],
    },
    {
        "id": "budget",
        "text": "Budget?",
        "options": [
            {"id": "low", "label": "Under 500", "skill": "guitars"},
            {"id": "rec", "label": "Whatever it takes", "skill": "recording"},
        ],
    },
]


@pytest.fixture
def qs() -> QuestionSet:
    return QuestionSet.from_config(CONFIG)


def test_single_skill_answer(qs: QuestionSet) -> None:
    assert qs.pick_skill({"what": "keys"}) == "pianos"


def test_majority_wins_over_first_question(qs: QuestionSet) -> None:
    assert qs.pick_skill({"what": "guitar", "level": "studio", "budget": "rec"}) == "recording"


def test_tie_goes_to_earliest_question_regardless_of_answer_order(qs: QuestionSet) -> None:
    assert qs.pick_skill({"what": "keys", "level": "studio"}) == "pianos"
    assert qs.pick_skill({"level": "studio", "what": "keys"}) == "pianos"
    assert qs.pick_skill({"budget": "low", "level": "studio"}) == "recording"


def test_options_without_skill_do_not_vote(qs: QuestionSet) -> None:
    assert qs.pick_skill({"what": "dunno", "level": "beginner"}) is None
    assert qs.pick_skill({"what": "dunno", "level": "stage"}) == "pianos"
    assert qs.pick_skill({}) is None


def test_unknown_question_or_option_is_named(qs: QuestionSet) -> None:
    with pytest.raises(QualificationError, match="'colour'"):
        qs.pick_skill({"colour": "red"})
    with pytest.raises(QualificationError, match=r"'drums'.*'what'"):
        qs.pick_skill({"what": "drums"})
    assert issubclass(QualificationError, ValueError)


def test_to_public_is_json_ready_and_hides_skills(qs: QuestionSet) -> None:
    public = qs.to_public()
    assert json.loads(json.dumps(public)) == public
    assert [q["id"] for q in public] == ["what", "level", "budget"]
    assert public[0]["text"] == "What are you looking for?"
    assert public[0]["options"][0] == {"id": "guitar", "label": "A guitar"}
    assert "guitars" not in json.dumps(public)


def test_from_config_builds_dataclasses(qs: QuestionSet) -> None:
    assert qs.questions[1].options[0] == Option("beginner", "Just starting", None)
    assert qs.questions[0].options[0].skill == "guitars"


def test_constructor_rejects_duplicate_question_ids() -> None:
    q = Question("q1", "?", (Option("a", "A", None),))
    with pytest.raises(ValueError, match="'q1'"):
        QuestionSet([q, q])


def test_constructor_rejects_duplicate_option_ids() -> None:
    q = Question("q1", "?", (Option("a", "A", None), Option("a", "Again", "x")))
    with pytest.raises(ValueError, match=r"'a'.*'q1'"):
        QuestionSet([q])


def test_constructor_rejects_question_without_options() -> None:
    with pytest.raises(ValueError, match="'empty'"):
        QuestionSet([Question("empty", "?", ())])


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ([{"text": "?", "options": []}], "question #1"),
        ([{"id": "q", "text": "?"}], "'q'"),
        ([{"id": "q", "text": "?", "options": [{"label": "x"}]}], "option #1"),
        ([{"id": "q", "text": "?", "options": [{"id": "o", "label": "x", "skill": 3}]}],
         "'o'"),
        ([{"id": "q", "options": [{"id": "o", "label": "x"}]}], "'text'"),
    ],
)
def test_from_config_rejects_malformed_input(raw: list[dict[str, Any]], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        QuestionSet.from_config(raw)


def test_empty_question_set_picks_nothing() -> None:
    assert QuestionSet([]).pick_skill({}) is None
