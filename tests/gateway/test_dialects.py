"""The two registries of dialects agree, and each declared Dialect is whole."""

from __future__ import annotations

import pytest

from trackgate.adapters import transports
from trackgate.adapters.registry import ADAPTERS, BY_NAME, CODECS
from trackgate.gateway.dialect import Dialect
from trackgate.gateway.ingest import IngestRoute
from trackgate.gateway.responses import default_error
from trackgate.gateway.routes import DIALECTS, ingest_routes


def test_gateway_and_adapters_name_the_same_dialects_in_the_same_order():
    # a dialect added on one side only fails here
    assert [d.name for d in DIALECTS] == [c.name for c in CODECS] == list(ADAPTERS)
    for dialect in DIALECTS:
        assert dialect.adapter is BY_NAME[dialect.name].adapter


def test_every_dialect_has_a_transport_of_its_own_kind():
    for codec in CODECS:
        assert codec.transport.kind == codec.transport.dialect == codec.name
        assert transports.TRANSPORTS[codec.name] is codec.transport
    assert set(transports.TRANSPORTS) == {"webhook", *ADAPTERS}


def test_partial_decoders_are_the_routes_that_decode_item_by_item():
    partial = {c.name for c in CODECS if c.partial is not None}
    assert partial == {"commandersact"}
    for dialect in DIALECTS:
        for route in dialect.ingest.values():
            assert (route.partial is not None) == (dialect.name in partial)
            if route.partial is not None:
                assert route.partial is BY_NAME[dialect.name].partial


def test_every_dialect_declares_its_own_error_shape():
    # none answers a 413 the default way: Segment, Commanders Act, Bucket and TinyTrail say 400,
    # Spectacle adds its success flag, OpenPanel names fastify's error
    default = default_error(413, "request_too_large", "too big", None)
    for dialect in DIALECTS:
        assert dialect.render_error is not default_error
        response = dialect.render_error(413, "request_too_large", "too big", None)
        assert (response.status_code, response.body) != (default.status_code, default.body), dialect.name


@pytest.mark.parametrize(
    ("replay_of", "payload", "call"),
    [
        ("segment", {"batch": []}, "batch"),
        ("segment", {"type": "identify"}, "identify"),
        ("spectacle", {"type": "page"}, "page"),
        ("openpanel", {"type": "track", "payload": {}}, "track"),
        ("bucket", [{"type": "user"}], "bulk"),
        ("bucket", {"userId": "u", "event": "x"}, "event"),
        ("bucket", {"featureId": "f"}, "feedback"),
        ("bucket", {"companyId": "c"}, "company"),
        ("bucket", {"userId": "u"}, "user"),
        ("commandersact", {"batch": []}, "batch"),
        ("tinytrail", {"website_id": "w"}, "collect"),
    ],
)
def test_each_adapter_infers_the_call_of_a_stored_payload(replay_of, payload, call):
    assert BY_NAME[replay_of].replay_call(payload) == call


def test_a_dialect_refuses_a_route_of_another_adapter():
    segment, spectacle = DIALECTS[0], DIALECTS[1]
    with pytest.raises(ValueError, match="decodes with 'spectacle'"):
        Dialect(
            name="segment",
            adapter=segment.adapter,
            ingest={"/x": next(iter(spectacle.ingest.values()))},
            render_error=segment.render_error,
            new_source=segment.new_source,
            demo_lines=segment.demo_lines,
        )
    with pytest.raises(ValueError, match="declares the adapter"):
        Dialect(
            name="segment",
            adapter=spectacle.adapter,
            ingest={},
            render_error=segment.render_error,
            new_source=segment.new_source,
            demo_lines=segment.demo_lines,
        )


def test_a_shared_path_goes_to_the_claiming_dialect_else_to_the_one_without_a_claim():
    event = ingest_routes()["/event"]
    assert not isinstance(event, IngestRoute)
    assert event.choose({"authorization": "Bearer k"}, {}).adapter.dialect == "bucket"
    assert event.choose({}, {"publishableKey": "k"}).adapter.dialect == "bucket"
    assert event.choose({"openpanel-client-id": "c"}, {}).adapter.dialect == "openpanel"
