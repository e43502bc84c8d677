"""The rule extractor on real-looking utterances: what it must and must not extract."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from memvault.extract import Turn
from memvault.extract.rules import RuleExtractor, when
from memvault.importance import derive

SAID = datetime(2026, 6, 15, 9, 30, tzinfo=UTC)  # a Monday
X = RuleExtractor()


def facts(text: str, speaker: str | None = None) -> list[tuple[str, str, str | None]]:
    return [
        (f.text, f.category, f.slot)
        for f in X.extract(Turn("user", text, SAID, "msg_1", speaker), [])
        if not f.ends
    ]


CATCHES = [
    ("My name is Dana Whitfield.", ("Name is Dana Whitfield", "identity", "identity.name")),
    ("Hey, call me Sam!", ("Name is Sam", "identity", "identity.name")),
    ("I'm 34 years old.", ("Is 34 years old", "identity", "identity.age")),
    ("I speak Portuguese and French.", ("Speaks Portuguese and French", "identity", None)),
    ("I live in Lisbon with my partner.", ("Lives in Lisbon", "location", "location.home")),
    ("We just moved to New York.", ("Lives in New York", "location", "location.home")),
    ("I'm originally from Ohio.", ("Is from Ohio", "location", "location.origin")),
    ("I was born in Porto.", ("Is from Porto", "location", "location.origin")),
    ("I work at Acme Corp.", ("Works at Acme Corp", "work", "work.employer")),
    ("I've been working at Google for three years.", ("Works at Google", "work", "work.employer")),
    ("I work as a software engineer.", ("Works as a software engineer", "work", "work.role")),
    ("I'm a nurse at the city hospital.", ("Works as a nurse", "work", "work.role")),
    ("I'm retired now.", ("Is retired", "work", "work.role")),
    ("I'm studying law at Leeds.", ("Studies law at Leeds", "education", None)),
    ("My wife is called Ana.", ("Wife's name is Ana", "family", "family.wife")),
    ("My son's name is Tom.", ("Has a son named Tom", "family", None)),
    ("I have two kids.", ("Has two kids", "family", None)),
    ("I got married last spring.", ("Is married", "family", "family.status")),
    ("I have a dog named Rex.", ("Has a dog named Rex", "pets", None)),
    ("My cat, Whiskers, sleeps all day.", ("Has a cat named Whiskers", "pets", None)),
    ("I love hiking in the mountains.", ("Likes hiking in the mountains", "hobbies", None)),
    ("I'm a huge fan of jazz.", ("Likes jazz", "preferences", None)),
    ("I can't stand olives.", ("Dislikes olives", "preferences", None)),
    (
        "My favorite color is teal.",
        ("Favorite color is teal", "preferences", "preferences.favorite.color"),
    ),
    ("I'm vegetarian.", ("Is vegetarian", "preferences", "preferences.diet")),
    ("I play the cello.", ("Plays the cello", "hobbies", None)),
    ("I'm allergic to peanuts.", ("Is allergic to peanuts", "health", None)),
    ("I have asthma.", ("Has asthma", "health", None)),
    ("I'm lactose intolerant.", ("Is lactose intolerant", "health", None)),
    ("My birthday is March 3.", ("Birthday is March 3", "dates", "identity.birthday")),
    ("I'm going to visit Rome next month.", ("Plans to visit Rome", "plans", None)),
    ("I want to learn Greek.", ("Wants to learn Greek", "plans", None)),
    ("I have a job interview next Tuesday.", ("Has a job interview coming up", "plans", None)),
    ("Where do you work? I work for the BBC.", ("Works at the BBC", "work", "work.employer")),
]


@pytest.mark.parametrize(("said", "expected"), CATCHES, ids=[c[0] for c in CATCHES])
def test_catches(said: str, expected: tuple[str, str, str | None]) -> None:
    assert expected in facts(said)


MISSES = [
    "Do you live in Paris?",  # a question
    "If I lived in Paris I would be happy.",  # a conditional
    "My friend lives in Paris.",  # someone else
    "I don't like it.",  # a pronoun: nothing to remember
    "I love you.",
    "I love that movie.",  # "that": something said before, not a fact on its own
    "I'm a bit tired today.",  # not an occupation
    "I'm 5 minutes away.",  # not an age
    "What's the weather like?",
    "Thanks, that was helpful!",
    "I don't live in Paris.",  # a negation
    "Would you recommend a good book?",
    "",
]


@pytest.mark.parametrize("said", MISSES)
def test_misses(said: str) -> None:
    assert facts(said) == []


def test_speaker_names_the_subject() -> None:
    assert facts("I live in Lisbon and my name is Dana.", "Dana") == [
        ("Dana lives in Lisbon", "location", "location.home"),
        ("Dana's name is Dana", "identity", "identity.name"),
    ]


def test_endings() -> None:
    for said, slot in [
        ("I quit my job last week.", "work.employer"),
        ("I no longer work at Acme.", "work.employer"),
        ("I don't live in Paris anymore.", "location.home"),
    ]:
        got = X.extract(Turn("user", said, SAID), [])
        assert [(f.ends, f.slot) for f in got] == [(True, slot)], said


def test_one_fact_per_slot_and_text_per_message() -> None:
    got = facts("I live in Paris. Actually I live in Lyon. I live in Paris.")
    assert got == [("Lives in Paris", "location", "location.home")]


@pytest.mark.parametrize(
    ("sentence", "future", "day"),
    [
        ("I moved here three weeks ago", False, "2026-05-25"),
        ("I've lived here since 2019", False, "2019-01-01"),
        ("I started in March", False, "2026-03-01"),
        ("I started in September", False, "2025-09-01"),
        ("I moved last year", False, "2025-06-15"),
        ("I moved yesterday", False, "2026-06-14"),
        ("I'm flying there next month", True, "2026-07-15"),
        ("I'm going in two weeks", True, "2026-06-29"),
        ("I have an exam next Tuesday", True, "2026-06-16"),
        ("I've been working there for 2 years", False, "2024-06-15"),
    ],
)
def test_times_relative_to_the_message(sentence: str, future: bool, day: str) -> None:
    got = when(sentence, SAID, future)
    assert got is not None
    assert got.date().isoformat() == day


def test_no_time_said() -> None:
    assert when("I live in Lisbon", SAID, False) is None


def test_fact_times_come_from_the_sentence() -> None:
    (fact,) = X.extract(Turn("user", "I moved to Berlin in 2019.", SAID), [])
    assert fact.valid_from == datetime(2019, 1, 1, tzinfo=UTC)


def test_derived_importance() -> None:
    assert derive("note", None, "Bought a new kettle today for the office") == 0.5
    assert derive("fact", "health", "Is allergic to peanuts") == 0.95
    assert derive("fact", "identity", "Name is Dana") == 0.8
    assert derive("fact", "hobbies", "Likes playing jazz piano") == 0.6
    assert derive("fact", "hobbies", "Likes jazz") == 0.5  # under three words
    assert derive("permanent", None, "Never call after 9pm") == 0.95
    assert derive("note", None, "ok") == 0.4
    assert derive("note", None, "Did you see the game last night?") == 0.35
    assert 0.05 <= derive("conversation", "health", "emergency must always remember 3") <= 0.95
