"""The plain event (tracking.events): its ids and its JSON-ready form."""

from __future__ import annotations

import json
import os
import uuid

from tracking.events import Event, new_id


def test_event_ids_are_random_version_4_uuids_unique_within_a_process():
    ids = [Event(type="API").id for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for ident in ids[:300]:
        parsed = uuid.UUID(ident)
        assert str(parsed) == ident  # canonical lower-case text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_never_repeats_its_parents_ids():
    new_id()  # the parent has a block of random bytes in use
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the ids it would make next
        try:
            os.write(write, json.dumps([new_id() for _ in range(50)]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        child = json.loads(fh.read())
    os.waitpid(pid, 0)
    parent = [new_id() for _ in range(50)]
    assert not set(child) & set(parent)


def test_to_dict_is_json_ready_and_does_not_share_the_events_mappings():
    event = Event(type="API", headers={"User-Agent": "x"}, params={"q": ["a"]}, status=200)
    data = event.to_dict()
    assert json.loads(json.dumps(data))["timestamp"] == event.timestamp.isoformat()
    data["headers"]["User-Agent"] = "changed"
    data["params"]["extra"] = "1"
    assert event.headers == {"User-Agent": "x"} and event.params == {"q": ["a"]}
    again = Event.from_dict(json.loads(json.dumps(event.to_dict())))
    assert again == event


def test_to_dict_keeps_a_bad_records_non_mapping_values_as_they_are():
    """A record whose headers are null still becomes data (its dead letter is written)."""
    event = Event.from_dict({"type": "API", "headers": None, "params": ["not", "a", "dict"]})
    data = event.to_dict()
    assert data["headers"] is None and data["params"] == ["not", "a", "dict"]
    assert json.loads(json.dumps(data))["type"] == "API"
