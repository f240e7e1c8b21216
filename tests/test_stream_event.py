"""Decoding and validation of one event: what passes, what is rejected and why."""

from __future__ import annotations

import pytest

from stream.errors import InvalidEvent
from stream.event import MAX_ID_BYTES, MAX_MESSAGE_BYTES, Decoder, Interaction, encode

NOW = 1_700_000_000_000


@pytest.fixture
def decoder() -> Decoder:
    return Decoder(max_future_ms=60_000, clock=lambda: NOW)


def test_full_event(decoder: Decoder) -> None:
    raw = (
        b'{"user":"u1","item":"i9","ts":1699999999000,"weight":2.5,"event_id":"e1",'
        b'"context":{"device":"tv","hour":7,"score":0.5}}'
    )
    assert decoder.decode(raw) == Interaction(
        "u1", "i9", 1_699_999_999_000, 2.5, "e1", {"device": "tv", "hour": 7, "score": 0.5}
    )


def test_int_ids_become_decimal_strings(decoder: Decoder) -> None:
    event = decoder.decode(b'{"user": 42, "item": -7, "ts": 1}')
    assert (event.user, event.item) == ("42", "-7")


def test_defaults_weight_one_no_event_id_empty_context(decoder: Decoder) -> None:
    event = decoder.decode(b'{"user": "u", "item": "i", "ts": 1}')
    assert (event.weight, event.event_id, event.context) == (1.0, None, {})


def test_int_weight_is_accepted_as_float(decoder: Decoder) -> None:
    event = decoder.decode(b'{"user": "u", "item": "i", "ts": 1, "weight": 3}')
    assert event.weight == 3.0 and isinstance(event.weight, float)


def test_unknown_fields_are_ignored(decoder: Decoder) -> None:
    raw = b'{"user": "u", "item": "i", "ts": 5, "page": {"nested": [1, null]}, "x": true}'
    assert decoder.decode(raw) == Interaction("u", "i", 5)


def test_record_timestamp_stands_in_for_missing_ts(decoder: Decoder) -> None:
    assert decoder.decode(b'{"user": "u", "item": "i"}', record_ts=1234).ts == 1234
    assert decoder.decode(b'{"user": "u", "item": "i", "ts": 9}', record_ts=1234).ts == 9


def test_encode_round_trips(decoder: Decoder) -> None:
    event = Interaction("u", "i", 77, 0.5, "e9", {"hour": 3})
    assert decoder.decode(encode(event)) == event
    assert encode({"user": 1, "item": "i2", "ts": 3}) == b'{"user":1,"item":"i2","ts":3}'


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"", "not JSON"),
        (b'{"user": "u", "item": "i", "ts": 1} trailing', "not JSON"),
        (b'{"user": "\xff", "item": "i", "ts": 1}', "not UTF-8"),
        (b'{"user": "u", "item": "i", "ts": 1, "other": "\xc3"}', "not UTF-8"),
        (b"[1, 2]", "Expected `object`, got `array`"),
        (b'{"item": "i", "ts": 1}', "missing required field `user`"),
        (b'{"user": "u", "ts": 1}', "missing required field `item`"),
        (b'{"user": true, "item": "i", "ts": 1}', "got `bool` - at `$.user`"),
        (b'{"user": 1.5, "item": "i", "ts": 1}', "got `float` - at `$.user`"),
        (b'{"user": null, "item": "i", "ts": 1}', "got `null` - at `$.user`"),
        (b'{"user": "u", "item": ["i"], "ts": 1}', "got `array` - at `$.item`"),
        (b'{"user": "", "item": "i", "ts": 1}', "user must be a non-empty"),
        (b'{"user": "u", "item": "", "ts": 1}', "item must be a non-empty"),
        (b'{"user": "u", "item": "i", "ts": "5"}', "got `str` - at `$.ts`"),
        (b'{"user": "u", "item": "i", "ts": 1.5}', "got `float` - at `$.ts`"),
        (b'{"user": "u", "item": "i", "ts": -1}', "ts must be epoch milliseconds >= 0, got -1"),
        (b'{"user": "u", "item": "i"}', "missing ts"),
        (b'{"user": "u", "item": "i", "ts": 1, "weight": -0.5}', "got -0.5"),
        (b'{"user": "u", "item": "i", "ts": 1, "weight": 1e999}', "Number out of range"),
        (b'{"user": "u", "item": "i", "ts": 1, "weight": NaN}', "not JSON"),
        (b'{"user": "u", "item": "i", "ts": 1, "weight": "2"}', "got `str` - at `$.weight`"),
        (b'{"user": "u", "item": "i", "ts": 1, "event_id": 5}', "at `$.event_id`"),
        (b'{"user": "u", "item": "i", "ts": 1, "context": {"a": {"b": 1}}}', "got `object`"),
        (b'{"user": "u", "item": "i", "ts": 1, "context": {"a": [1]}}', "got `array`"),
        (b'{"user": "u", "item": "i", "ts": 1, "context": {"a": true}}', "got `bool`"),
        (b'{"user": "u", "item": "i", "ts": 1, "context": {"a": null}}', "got `null`"),
        (b'{"user": "u", "item": "i", "ts": 1, "context": [1]}', "at `$.context`"),
    ],
)
def test_rejections_name_the_problem(decoder: Decoder, raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decoder.decode(raw)
    assert reason in caught.value.reason
    assert str(caught.value) == caught.value.reason


def test_negative_record_timestamp_means_none(decoder: Decoder) -> None:
    with pytest.raises(InvalidEvent, match="missing ts"):
        decoder.decode(b'{"user": "u", "item": "i"}', record_ts=-1)


def test_far_future_is_rejected_but_the_limit_itself_passes(decoder: Decoder) -> None:
    assert decoder.decode(b'{"user":"u","item":"i","ts":%d}' % (NOW + 60_000)).ts == NOW + 60_000
    with pytest.raises(InvalidEvent, match="far-future timestamp: ts 1700000060001 is 60001 ms"):
        decoder.decode(b'{"user":"u","item":"i","ts":%d}' % (NOW + 60_001))


def test_future_limit_follows_the_clock() -> None:
    now = [NOW]
    decoder = Decoder(max_future_ms=0, clock=lambda: now[0])
    decoder.decode(b'{"user":"u","item":"i","ts":%d}' % NOW)
    with pytest.raises(InvalidEvent, match="far-future"):
        decoder.decode(b'{"user":"u","item":"i","ts":%d}' % (NOW + 10))
    now[0] += 10
    assert decoder.decode(b'{"user":"u","item":"i","ts":%d}' % (NOW + 10)).ts == NOW + 10


def test_id_length_is_counted_in_utf8_bytes(decoder: Decoder) -> None:
    ok = "é" * (MAX_ID_BYTES // 2)  # 2 bytes each: exactly the limit
    assert decoder.decode(encode({"user": ok, "item": "i", "ts": 1})).user == ok
    with pytest.raises(InvalidEvent, match="item is 257 UTF-8 bytes, over the 256-byte limit"):
        decoder.decode(encode({"user": "u", "item": ok + "x", "ts": 1}))
    wide = "\U0001f600" * (MAX_ID_BYTES // 4)  # 4 bytes each: the limit in 64 characters
    assert decoder.decode(encode({"user": wide, "item": "i", "ts": 1})).user == wide
    with pytest.raises(InvalidEvent, match="user is 260 UTF-8 bytes"):
        decoder.decode(encode({"user": wide + "\U0001f600", "item": "i", "ts": 1}))


def test_oversize_message_is_rejected_before_decoding(decoder: Decoder) -> None:
    padding = "x" * MAX_MESSAGE_BYTES
    raw = encode({"user": "u", "item": "i", "ts": 1, "pad": padding})
    with pytest.raises(InvalidEvent, match=f"message is {len(raw)} bytes, over the 65536-byte"):
        decoder.decode(raw)
    fits = encode({"user": "u", "item": "i", "ts": 1, "pad": padding[: MAX_MESSAGE_BYTES - 100]})
    assert decoder.decode(fits).user == "u"


def test_invalid_max_future_is_refused() -> None:
    with pytest.raises(ValueError, match="max_future_ms must be >= 0, got -1"):
        Decoder(max_future_ms=-1)
