"""The LLM extractor and summarizer against a real local HTTP server speaking the chat
completions API with scripted answers (no model runs here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from memvault.extract import ExtractionError, Turn
from memvault.extract.llm import ChatClient, LlmExtractor, LlmSummarizer, parse_facts
from tests.integration.chat_server import ChatServer, Reply, chat_server, facts_reply

SAID = datetime(2026, 6, 15, 9, 30, tzinfo=UTC)
TURN = Turn("user", "I moved to Lisbon in May and I'm allergic to cats.", SAID, "msg_1", "Dana")


@pytest.fixture
def server() -> ChatServer:
    with chat_server() as s:
        yield s  # type: ignore[misc]


def client(server: ChatServer, **kw: object) -> ChatClient:
    opts: dict[str, object] = {"model": "test-model", "timeout_s": 2.0, "backoff_s": 0.01}
    opts.update(kw)
    return ChatClient(server.url, **opts)  # type: ignore[arg-type]


def test_facts_with_json_mode_and_the_prompt(server: ChatServer) -> None:
    server.script(
        facts_reply(
            {
                "text": "Lives in Lisbon",
                "category": "location",
                "slot": "location.home",
                "importance": 0.7,
                "valid_from": "2026-05-01",
            },
            {"text": "Is allergic to cats", "category": "health"},
        )
    )
    got = LlmExtractor(client(server)).extract(TURN, [Turn("assistant", "Welcome!", SAID)])
    assert [(f.text, f.category, f.slot, f.importance) for f in got] == [
        ("Lives in Lisbon", "location", "location.home", 0.7),
        ("Is allergic to cats", "health", None, None),
    ]
    assert got[0].valid_from == datetime(2026, 5, 1, tzinfo=UTC)
    body = server.requests[0]
    assert body["model"] == "test-model"
    assert body["temperature"] == 0
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert "Today is 2026-06-15" in system["content"]
    assert "Dana" in system["content"]
    assert "assistant: Welcome!" in user["content"]
    assert TURN.content in user["content"]


def test_malformed_items_are_dropped_or_repaired(server: ChatServer) -> None:
    server.script(
        facts_reply(
            {"text": "", "category": "work"},  # no text: dropped
            {"text": "Likes tea", "category": "beverages", "importance": 7},  # repaired
            {"text": "Works at Acme", "slot": "Not A Slot!", "valid_from": "someday"},
            {"ends": True, "slot": "work.employer"},
            {"ends": True},  # an end without a slot: dropped
            "not an object",
        )
    )
    got = LlmExtractor(client(server)).extract(TURN, [])
    assert [(f.text, f.category, f.slot, f.importance, f.ends) for f in got] == [
        ("Likes tea", "general", None, None, False),
        ("Works at Acme", "general", None, None, False),
        ("", "general", "work.employer", None, True),
    ]
    assert got[1].valid_from is None


def test_fenced_json_is_read() -> None:
    answer = '```json\n{"facts": [{"text": "Plays chess", "category": "hobbies"}]}\n```'
    assert [f.text for f in parse_facts(answer, SAID)] == ["Plays chess"]


def test_an_answer_that_is_not_json_is_retryable(server: ChatServer) -> None:
    server.script(Reply("Sure! Dana lives in Lisbon."))
    with pytest.raises(ExtractionError) as err:
        LlmExtractor(client(server)).extract(TURN, [])
    assert err.value.retry


def test_server_errors_are_retried_then_succeed(server: ChatServer) -> None:
    server.script(
        Reply(status=500, raw=b"boom"), Reply(status=429, raw=b"slow down"), facts_reply()
    )
    assert LlmExtractor(client(server, retries=2)).extract(TURN, []) == []
    assert len(server.requests) == 3


def test_server_errors_past_the_retries_raise_retryable(server: ChatServer) -> None:
    server.script(Reply(status=503, raw=b"down"))
    with pytest.raises(ExtractionError, match="503") as err:
        LlmExtractor(client(server, retries=1)).extract(TURN, [])
    assert err.value.retry
    assert len(server.requests) == 2


def test_a_timeout_is_retryable(server: ChatServer) -> None:
    server.script(Reply(json.dumps({"facts": []}), delay_s=1.5))
    with pytest.raises(ExtractionError, match="timed out") as err:
        LlmExtractor(client(server, timeout_s=0.3, retries=0)).extract(TURN, [])
    assert err.value.retry


def test_refused_credentials_are_not_retried(server: ChatServer) -> None:
    server.script(Reply(status=401, raw=b'{"error": "bad key"}'))
    with pytest.raises(ExtractionError) as err:
        LlmExtractor(client(server)).extract(TURN, [])
    assert not err.value.retry
    assert len(server.requests) == 1


def test_a_server_without_json_mode_is_asked_plainly(server: ChatServer) -> None:
    server.script(Reply(status=400, raw=b'{"error": "response_format unsupported"}'), facts_reply())
    assert LlmExtractor(client(server)).extract(TURN, []) == []
    assert "response_format" in server.requests[0]
    assert "response_format" not in server.requests[1]


def test_a_body_that_is_not_a_completion_is_retried(server: ChatServer) -> None:
    server.script(Reply(raw=b'{"unexpected": true}'), facts_reply({"text": "Likes tea"}))
    assert [f.text for f in LlmExtractor(client(server)).extract(TURN, [])] == ["Likes tea"]


def test_an_unreachable_endpoint_is_retryable() -> None:
    c = ChatClient("http://127.0.0.1:9/v1", model="m", timeout_s=0.5, retries=0)
    with pytest.raises(ExtractionError, match="unreachable") as err:
        LlmExtractor(c).extract(TURN, [])
    assert err.value.retry


def test_prompt_templates_keep_braces(server: ChatServer) -> None:
    server.script(facts_reply())
    template = 'Extract for {speaker} on {today}. Answer {"facts": []} in {categories}.'
    LlmExtractor(client(server), template).extract(TURN, [])
    system = server.requests[0]["messages"][0]["content"]
    assert system.startswith('Extract for Dana on 2026-06-15. Answer {"facts": []} in identity,')


def test_summarizer(server: ChatServer) -> None:
    server.script(Reply("Dana lives in Lisbon and is allergic to cats."))
    text = LlmSummarizer(client(server)).summarize(
        ["Lives in Lisbon", "Is allergic to cats"], ["I moved in May"], "Dana"
    )
    assert text == "Dana lives in Lisbon and is allergic to cats."
    user = server.requests[0]["messages"][1]["content"]
    assert "- Lives in Lisbon" in user
    assert "- I moved in May" in user
    assert "response_format" not in server.requests[0]
    server.script(Reply("   "))
    with pytest.raises(ExtractionError, match="empty"):
        LlmSummarizer(client(server)).summarize(["x"], [], "Dana")


def test_known_facts_are_shown_and_only_their_refs_kept(server: ChatServer) -> None:
    from memvault.extract import Known

    server.script(
        facts_reply(
            {"text": "Dislikes coffee", "replaces": ["F1", "F7", 3]},
            {"text": "Drinks tea", "replaces": "F1"},
        )
    )
    got = LlmExtractor(client(server)).extract(
        TURN, [], [Known("F1", "Likes coffee"), Known("F2", "Lives in Lisbon", "location.home")]
    )
    assert [(f.text, f.replaces) for f in got] == [("Dislikes coffee", ("F1",)), ("Drinks tea", ())]
    user = server.requests[0]["messages"][1]["content"]
    assert user.startswith(
        "Known facts:\n[F1] Likes coffee\n[F2] Lives in Lisbon (slot location.home)\n\n"
    )
