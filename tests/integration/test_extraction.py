"""Extraction end to end on each backend: jobs, consolidation, temporal validity, summaries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from memvault import FrozenClock, MemVault, Settings
from memvault.errors import InvalidArgumentError, NotFoundError
from tests.integration.chat_server import Reply, chat_server, facts_reply


def _vault(settings: Settings, clock: FrozenClock, **overrides: Any) -> MemVault:
    return MemVault(settings.model_copy(update={"job_worker": False, **overrides}), clock=clock)


@pytest.fixture
def xv(settings: Settings, clock: FrozenClock) -> Iterator[MemVault]:
    v = _vault(settings, clock)
    yield v
    v.close()


def say(v: MemVault, clock: FrozenClock, text: str, user: str = "u") -> None:
    v.remember(user, [{"role": "user", "content": text}], wait=True)
    clock.advance(60)


def current(v: MemVault, user: str = "u") -> list[str]:
    return sorted(str(m.content) for m in v.get_user_facts(user))


def test_remember_extracts_facts_that_link_to_their_message(xv: MemVault) -> None:
    stored = xv.remember(
        "u",
        [
            {"role": "user", "content": "Hi, my name is Dana and I live in Lisbon."},
            {"role": "assistant", "content": "Nice to meet you, Dana. I live in the cloud."},
            {"role": "user", "content": "I'm allergic to peanuts.", "metadata": {"mood": "ok"}},
        ],
        wait=True,
    )
    assert [m.role for m in stored] == ["user", "assistant", "user"]
    facts = {str(m.content): m for m in xv.get_user_facts("u")}
    assert set(facts) == {"Name is Dana", "Lives in Lisbon", "Is allergic to peanuts"}
    lisbon = facts["Lives in Lisbon"]
    assert lisbon.memory_type == "fact"
    assert lisbon.namespace == "facts"
    assert lisbon.category == "location"
    assert lisbon.metadata == {
        "extractor": "rules",
        "sources": [stored[0].message_id],
        "slot": "location.home",
    }
    assert lisbon.valid_from == stored[0].created_at
    assert lisbon.valid_to is None
    assert facts["Is allergic to peanuts"].importance == 0.95  # fact + health + "allergic"
    assert xv.job_counts("u") == {"pending": 0, "running": 0, "done": 2, "failed": 0}
    (entry,) = xv.history("u", lisbon.memory_id)
    assert (entry.operation, entry.actor) == ("extract", "extractor:rules")
    assert entry.reason == f"from message {stored[0].message_id}"
    assert xv.get_message_history("u")[0].content.startswith("Hi, my name is Dana")


def test_moving_twice_leaves_one_current_fact_and_two_in_history(
    xv: MemVault, clock: FrozenClock
) -> None:
    t0 = clock.now()
    say(xv, clock, "I live in Paris.")
    t1 = clock.now()
    say(xv, clock, "I just moved to Berlin!")
    t2 = clock.now()
    say(xv, clock, "Big news: we moved to Rome.")
    assert current(xv) == ["Lives in Rome"]
    every = xv.list_memories(
        "u", filters={"memory_types": ["fact"], "include_superseded": True}, order="created_asc"
    ).items
    paris, berlin, rome = every
    assert [str(m.content) for m in every] == ["Lives in Paris", "Lives in Berlin", "Lives in Rome"]
    assert paris.superseded_by == berlin.memory_id
    assert berlin.superseded_by == rome.memory_id
    assert paris.valid_to == berlin.valid_from
    assert berlin.valid_to == rome.valid_from
    assert rome.valid_to is None
    assert rome.superseded_by is None
    last = xv.history("u", paris.memory_id)[-1]
    assert last.operation == "supersede"
    assert last.reason == (
        f"superseded by {berlin.memory_id} (location.home): 'Lives in Paris' -> 'Lives in Berlin'"
    )
    # What held at each time, by search and by listing.
    for when, city in [(t0, "Paris"), (t1, "Berlin"), (t2, "Rome")]:
        hits = xv.search("u", "lives", filters={"as_of": when}, mode="lexical")
        assert [str(h.memory.content) for h in hits] == [f"Lives in {city}"]
        listed = xv.list_memories("u", filters={"memory_types": ["fact"], "as_of": when}).items
        assert [str(m.content) for m in listed] == [f"Lives in {city}"]
    assert [h.memory.memory_id for h in xv.search("u", "lives", mode="lexical")] == [rome.memory_id]
    assert xv.get("u", paris.memory_id).valid_to is not None  # readable by id, as history
    # Revert restores: Berlin holds again, with its history kept.
    back = xv.revert("u", berlin.memory_id, 1)
    assert back.valid_to is None
    assert back.superseded_by is None
    assert current(xv) == ["Lives in Berlin", "Lives in Rome"]
    assert [e.operation for e in xv.history("u", berlin.memory_id)] == [
        "extract",
        "supersede",
        "revert",
    ]


def test_a_repeated_fact_merges_into_the_stored_one(xv: MemVault, clock: FrozenClock) -> None:
    say(xv, clock, "I'm vegetarian.")
    say(xv, clock, "As I said, I'm vegetarian!")
    (fact,) = xv.get_user_facts("u")
    assert len(fact.metadata["sources"]) == 2
    assert fact.version == 2
    assert xv.history("u", fact.memory_id)[-1].operation == "merge"
    assert "repeats it (same" in str(xv.history("u", fact.memory_id)[-1].reason)


def test_a_slot_that_ends_closes_the_fact_without_replacing_it(
    xv: MemVault, clock: FrozenClock
) -> None:
    say(xv, clock, "I work at Acme.")
    say(xv, clock, "I quit my job yesterday.")
    assert current(xv) == []
    (acme,) = xv.list_memories(
        "u", filters={"memory_types": ["fact"], "include_superseded": True}
    ).items
    assert acme.valid_to is not None
    assert acme.superseded_by is None
    assert xv.history("u", acme.memory_id)[-1].operation == "end"


def test_a_fact_that_held_earlier_stays_searchable_as_of_then(
    xv: MemVault, clock: FrozenClock
) -> None:
    say(xv, clock, "I moved to Oslo in 2019.")
    (oslo,) = xv.get_user_facts("u")
    assert oslo.valid_from is not None
    assert oslo.valid_from.year == 2019
    hits = xv.search(
        "u", "Oslo", filters={"as_of": oslo.valid_from + timedelta(days=30)}, mode="lexical"
    )
    assert [h.memory.memory_id for h in hits] == [oslo.memory_id]
    before = xv.search(
        "u", "Oslo", filters={"as_of": oslo.valid_from - timedelta(days=1)}, mode="lexical"
    )
    assert before == []


def test_when_messages_are_queued(settings: Settings, clock: FrozenClock) -> None:
    off = _vault(settings, clock)
    try:
        off.add_message("u", "user", "I live in Oslo.")  # no extractor configured: no job
        assert off.job_counts("u")["pending"] == 0
        off.add_message("u", "user", "I live in Oslo.", extract=True)  # asked: rules
        assert off.job_counts("u")["pending"] == 1
        with pytest.raises(InvalidArgumentError):
            off.add_message("u", "user", "x", extract="yes")  # type: ignore[arg-type]
    finally:
        off.close()
    on = _vault(settings, clock, extractor="rules")
    try:
        on.add_message("u", "user", "I live in Oslo.")
        on.add_message("u", "assistant", "I live in the cloud.")  # not an extract role
        on.add_message("u", "user", "I live in Oslo.", extract=False)
        assert on.job_counts("u")["pending"] == 2
        assert on.run_jobs().claimed == 2
        assert current(on) == ["Lives in Oslo"]
    finally:
        on.close()


def test_remember_rejects_bad_input_before_writing(xv: MemVault) -> None:
    for bad, index in [
        ([{"role": "user", "content": "ok"}, {"role": "robot", "content": "x"}], 1),
        ([{"role": "user", "content": ""}], 0),
        ([{"role": "user", "content": "ok", "extra": 1}], 0),
        (["not an object"], 0),
    ]:
        with pytest.raises(InvalidArgumentError) as err:
            xv.remember("u2", bad)  # type: ignore[arg-type]
        assert err.value.details.get("index") == index
    with pytest.raises(InvalidArgumentError):
        xv.remember("u2", [])
    assert xv.get_message_history("u2") == []


def test_an_llm_that_fails_retries_with_backoff_then_fails_visibly(
    settings: Settings, clock: FrozenClock
) -> None:
    with chat_server() as server:
        v = _vault(
            settings,
            clock,
            extractor="llm",
            llm_url=server.url,
            llm_model="m",
            llm_retries=0,
            llm_timeout_s=2.0,
            job_max_attempts=3,
            job_backoff_s=10.0,
        )
        try:
            server.script(Reply("this is not json"))
            msg = v.add_message("u", "user", "I live in Lisbon.")
            assert v.run_jobs().retried == 1
            (job,) = v.list_jobs(user_id="u")
            assert (job.status, job.attempts) == ("pending", 1)
            assert "not JSON" in str(job.last_error)
            assert v.run_jobs().claimed == 0  # backing off
            clock.advance(10)
            server.script(Reply(status=500, raw=b"boom"))
            assert v.run_jobs().retried == 1
            clock.advance(19)
            assert v.run_jobs().claimed == 0  # 20 s after the second attempt
            clock.advance(1)
            assert v.run_jobs().failed == 1
            job = v.get_job(job.job_id)
            assert (job.status, job.attempts) == ("failed", 3)
            assert "500" in str(job.last_error)
            assert [m.message_id for m in v.get_message_history("u")] == [msg.message_id]
            assert v.get_user_facts("u") == []
            # Queued again by hand, against a model that answers.
            server.script(facts_reply({"text": "Lives in Lisbon", "category": "location"}))
            assert v.retry_jobs([job.job_id]) == 1
            assert v.run_jobs().done == 1
            assert current(v) == ["Lives in Lisbon"]
            assert v.get_job(job.job_id).result == {
                "extractor": "llm",
                "facts": 1,
                "added": [v.get_user_facts("u")[0].memory_id],
                "merged": [],
                "superseded": [],
                "ended": [],
            }
        finally:
            v.close()


def test_a_refused_request_fails_at_once(settings: Settings, clock: FrozenClock) -> None:
    with chat_server() as server:
        v = _vault(settings, clock, extractor="llm", llm_url=server.url, llm_model="m")
        try:
            server.script(Reply(status=401, raw=b"no"))
            v.add_message("u", "user", "I live in Lisbon.")
            assert v.run_jobs().failed == 1
            assert v.list_jobs(status="failed")[0].attempts == 1
        finally:
            v.close()


def test_a_lost_lease_writes_nothing(settings: Settings, clock: FrozenClock) -> None:
    """A worker whose lease ran out (another took the job) cannot finish it: its facts roll
    back with the job's end, and the job's effects land once."""
    with chat_server() as server:
        v = _vault(
            settings, clock, extractor="llm", llm_url=server.url, llm_model="m", job_lease_s=30
        )
        try:
            server.script(facts_reply({"text": "Lives in Lisbon", "category": "location"}))
            v.add_message("u", "user", "I live in Lisbon.")
            first = v._inner.backend  # the same store, leased twice
            from memvault.service.admin import drive

            (job1,) = drive(first.claim_jobs(clock.now(), 30, 1, 5))
            clock.advance(31)
            assert v.run_jobs().done == 1  # a second worker took it after the lease ran out
            assert drive(v._inner._run_job(job1)) == "retried"  # the first one's write fails
            assert current(v) == ["Lives in Lisbon"]
            job = v.get_job(job1.job_id)
            assert job.status == "done"
            assert job.attempts == 2
        finally:
            v.close()


def test_generate_summary_from_facts_and_recent_messages(xv: MemVault, clock: FrozenClock) -> None:
    with pytest.raises(NotFoundError):
        xv.generate_summary("nobody")
    say(xv, clock, "My name is Dana and I live in Lisbon.")
    say(xv, clock, "I'm allergic to peanuts. I love hiking.")
    s = xv.generate_summary("u")
    assert s.content.splitlines() == [
        "Identity: Name is Dana.",
        "Location: Lives in Lisbon.",
        "Health: Is allergic to peanuts.",
        "Hobbies: Likes hiking.",
        "Recently said: My name is Dana and I live in Lisbon; "
        "I'm allergic to peanuts. I love hiking",
    ]
    assert xv.get_summary("u") == s
    ctx = xv.context("u", "What should I cook tonight?")
    assert ctx.messages[0].content.startswith("User Memory: Identity: Name is Dana.")
    with pytest.raises(InvalidArgumentError):
        xv.generate_summary("u", mode="poem")


def test_a_summary_is_regenerated_every_n_new_facts(settings: Settings, clock: FrozenClock) -> None:
    v = _vault(settings, clock, summary_every_facts=2)
    try:
        say(v, clock, "I live in Lisbon.")
        assert v.get_summary("u") is None
        say(v, clock, "I play the cello.")  # the second fact queues a summary job: run by wait
        first = v.get_summary("u")
        assert first is not None
        assert "Plays the cello." in first.content
        say(v, clock, "I'm vegetarian.")
        assert v.get_summary("u") == first  # one fact since: not yet
        say(v, clock, "I moved to Porto.")  # a fact and a supersession
        again = v.get_summary("u")
        assert again is not None
        assert "Lives in Porto." in again.content
        assert "Lisbon" not in again.content.split("Recently said")[0]
    finally:
        v.close()


def test_an_llm_summary(settings: Settings, clock: FrozenClock) -> None:
    with chat_server() as server:
        v = _vault(
            settings, clock, summary_mode="llm", llm_url=server.url, llm_model="m", llm_retries=0
        )
        try:
            say(v, clock, "I live in Lisbon.")
            server.script(Reply("Lives in Lisbon; nothing else known."))
            assert v.generate_summary("u").content == "Lives in Lisbon; nothing else known."
            assert "- Lives in Lisbon" in server.requests[-1]["messages"][1]["content"]
            assert v.generate_summary("u", mode="extractive").content.startswith("Location:")
            server.script(Reply(status=500, raw=b"x"))
            from memvault.errors import UnavailableError

            with pytest.raises(UnavailableError):
                v.generate_summary("u")
            assert v.get_summary("u") is not None  # the stored one is kept
        finally:
            v.close()


def test_jobs_listing_and_validation(xv: MemVault, clock: FrozenClock) -> None:
    say(xv, clock, "I live in Oslo.")
    say(xv, clock, "I live in Bergen.", user="other")
    jobs = xv.list_jobs()
    assert len(jobs) == 2
    assert jobs[0].user_id == "other"
    assert [j.user_id for j in xv.list_jobs(user_id="u")] == ["u"]
    assert xv.list_jobs(before=jobs[0].job_id) == jobs[1:]
    with pytest.raises(NotFoundError):
        xv.get_job(jobs[0].job_id, user_id="u")
    for bad in [{"status": "stuck"}, {"before": "mem_1"}]:
        with pytest.raises(InvalidArgumentError):
            xv.list_jobs(**bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        xv.get_job("nope")
    with pytest.raises(InvalidArgumentError):
        xv.retry_jobs("job_x")  # type: ignore[arg-type]
    assert "lease_token" not in jobs[0].model_dump()


def test_erasing_a_user_takes_their_jobs(xv: MemVault, clock: FrozenClock) -> None:
    xv.add_message("u", "user", "I live in Oslo.", extract=True)
    assert xv.erase_user("u")["jobs"] == 1
    assert xv.list_jobs() == []


def test_named_speakers_keep_their_own_slots(xv: MemVault, clock: FrozenClock) -> None:
    """One conversation of two people (one user id): a slot is per speaker."""
    xv.remember(
        "conv",
        [
            {"role": "user", "content": "I live in Boston.", "metadata": {"speaker": "Ann"}},
            {"role": "user", "content": "I live in Denver.", "metadata": {"speaker": "Bo"}},
            {"role": "user", "content": "I'm a huge fan of jazz.", "metadata": {"speaker": "Ann"}},
            {"role": "user", "content": "I'm a huge fan of jazz.", "metadata": {"speaker": "Bo"}},
        ],
        wait=True,
    )
    clock.advance(60)
    xv.remember(
        "conv",
        [{"role": "user", "content": "I moved to Austin.", "metadata": {"speaker": "Bo"}}],
        wait=True,
    )
    assert current(xv, "conv") == [
        "Ann likes jazz",
        "Ann lives in Boston",
        "Bo likes jazz",
        "Bo lives in Austin",
    ]


def test_an_llm_judges_which_known_fact_a_new_one_contradicts(
    settings: Settings, clock: FrozenClock
) -> None:
    with chat_server() as server:
        v = _vault(settings, clock, extractor="llm", llm_url=server.url, llm_model="m")
        try:
            server.script(facts_reply({"text": "Likes coffee", "category": "preferences"}))
            say(v, clock, "I love coffee.")
            (coffee,) = v.get_user_facts("u")
            server.script(
                facts_reply(
                    {"text": "Dislikes coffee", "category": "preferences", "replaces": ["F1"]},
                    {"text": "Drinks tea", "category": "preferences", "replaces": ["F9"]},
                )
            )
            say(v, clock, "I've gone off coffee, I only drink tea now.")
            prompt = server.requests[-1]["messages"][1]["content"]
            assert "Known facts:\n[F1] Likes coffee" in prompt
            assert current(v) == ["Dislikes coffee", "Drinks tea"]
            old = v.get("u", coffee.memory_id)
            assert old.valid_to is not None
            assert old.superseded_by == v.get_user_facts("u")[0].memory_id
            assert "the extractor found it contradicted" in str(
                v.history("u", coffee.memory_id)[-1].reason
            )
        finally:
            v.close()
