"""The orchestrator's wire codec (pure): requests, replies, compression, limits."""

from __future__ import annotations

import json
import zlib

import pytest

from memvault import InvalidArgumentError, NotFoundError, PayloadTooLargeError
from memvault.zmq import protocol


def test_a_request_round_trips() -> None:
    frames = protocol.encode_request(
        "get_memory", {"memory_id": "mem_1"}, request_id="r1", api_key="k", idempotency_key="i"
    )
    req = protocol.decode_request(frames, 1 << 20)
    assert (req.action, req.payload, req.request_id, req.api_key) == (
        "get_memory",
        {"memory_id": "mem_1"},
        "r1",
        "k",
    )
    assert req.compress
    assert req.idempotency_key == "i"
    assert req.version == protocol.PROTOCOL_VERSION


def test_a_seed_004_request_without_version_or_id_is_accepted() -> None:
    req = protocol.decode_request([b'{"action": "health"}'], 1024)
    assert (req.action, req.payload, req.version, req.compress) == ("health", {}, 1, False)


def test_large_messages_are_compressed_and_read_back() -> None:
    body = json.dumps({"action": "create_memory", "payload": {"content": "a" * 50_000}})
    frames = protocol.pack(body.encode(), 1000)
    assert frames[0] == protocol.ZLIB
    assert len(frames[1]) < 2000
    assert protocol.unpack(frames, 1 << 20) == body.encode()
    assert protocol.pack(b"small", 1000) == [b"small"]
    assert protocol.pack(body.encode(), None) == [body.encode()]


def test_a_compressed_bomb_is_refused_at_the_limit() -> None:
    bomb = [protocol.ZLIB, zlib.compress(b"{" + b" " * 5_000_000 + b"}")]
    with pytest.raises(PayloadTooLargeError):
        protocol.unpack(bomb, 100_000)


@pytest.mark.parametrize(
    "frames",
    [
        [b"{"],
        [b'"just a string"'],
        [b'{"action": 5}'],
        [b'{"action": "x", "v": 2}'],
        [b'{"action": "x", "v": true}'],
        [b'{"action": "x", "payload": [1]}'],
        [b'{"action": "x", "request_id": 7}'],
        [b'{"action": "x", "api_key": 7}'],
        [b'{"action": "x", "idempotency_key": ""}'],
        [b"one", b"two"],
        [protocol.ZLIB, b"garbage"],
    ],
)
def test_malformed_requests_are_invalid(frames: list[bytes]) -> None:
    with pytest.raises(InvalidArgumentError):
        protocol.decode_request(frames, 1024)


def test_oversize_requests_are_payload_too_large() -> None:
    with pytest.raises(PayloadTooLargeError):
        protocol.decode_request([b" " * 2000], 1024)


def test_replies_carry_the_envelope_and_errors_come_back_as_exceptions() -> None:
    ok = json.loads(protocol.success({"a": 1}, "r"))
    assert ok == {"status": "success", "data": {"a": 1}, "request_id": "r"}
    err = protocol.decode_reply([protocol.failure(NotFoundError("gone", {"x": 1}), "r")], 1024)
    assert err["error"] == {"code": "NOT_FOUND", "message": "gone", "details": {"x": 1}}
    exc = protocol.error_of(err)
    assert isinstance(exc, NotFoundError)
    assert exc.details == {"x": 1}


def test_the_request_id_of_a_bad_request_is_still_echoed_when_readable() -> None:
    assert protocol.request_id_of([b'{"request_id": "abc", "action": 3}']) == "abc"
    assert protocol.request_id_of([b"nope"]) is None


def test_what_orjson_refuses_reads_and_writes_as_the_json_module_does() -> None:
    # Integers past 64 bits and NaN are JSON the REST door's parser reads too.
    body = b'{"action": "x", "payload": {"n": 123456789012345678901234567890, "f": NaN}}'
    req = protocol.decode_request([body], 1 << 20)
    assert req.payload["n"] == 123456789012345678901234567890
    assert req.payload["f"] != req.payload["f"]  # NaN
    # A lone surrogate is not text any store can hold: refused as REST refuses it.
    with pytest.raises(InvalidArgumentError):
        protocol.decode_request([b'{"action": "x", "payload": {"s": "\\ud800"}}'], 1 << 20)
    # A surrogate pair is one character and reads as it.
    req = protocol.decode_request([b'{"action": "x", "payload": {"s": "\\ud83d\\ude00"}}'], 99)
    assert req.payload["s"] == "\U0001f600"
    # Written back, such values stay valid JSON text (ASCII escapes where UTF-8 cannot hold them).
    out = protocol.success({"n": 2**70, "s": "\ud800 é"}, "r1")
    assert json.loads(out) == {
        "status": "success",
        "data": {"n": 2**70, "s": "\ud800 é"},
        "request_id": "r1",
    }
    # The usual reply is orjson's, the same JSON value as the standard module's.
    data = {"memory_id": "mem_1", "tags": ["a"], "metadata": {"k": 1.5}, "content": "ünï"}
    assert json.loads(protocol.success(data, None)) == {
        "status": "success",
        "data": data,
        "request_id": None,
    }
    assert json.loads(protocol.success_encoded(b'{"a":1}', "r2")) == {
        "status": "success",
        "data": {"a": 1},
        "request_id": "r2",
    }
