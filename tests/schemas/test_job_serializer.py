"""The RQ serializer (``schemas/jobs.py``): persist and forward jobs decode into typed structs, chosen
by the function their data names; anything else decodes as plain JSON."""

from __future__ import annotations

from tests.helpers import make_event
from trackgate.schemas.destinations import FORWARD_FUNC, ForwardJob
from trackgate.schemas.jobs import DELETE_FUNC, PERSIST_FUNC, DeleteData, MsgspecJSONSerializer, PersistBatch

S = MsgspecJSONSerializer


def test_a_persist_job_decodes_into_a_typed_batch():
    batch = PersistBatch(batch_id="b1", events=[make_event("m1")])
    func, instance, (arg,), kwargs = S.loads(S.dumps((PERSIST_FUNC, None, [batch], {})))
    assert (func, instance, kwargs) == (PERSIST_FUNC, None, {})
    assert arg == batch


def test_a_forward_job_decodes_into_a_typed_job():
    job = ForwardJob(delivery_id=7, destination_id="dst_1", events=[make_event("m1")])
    data = S.dumps((FORWARD_FUNC, None, [job], {}))
    assert S.loads(data)[2] == (job,)
    assert S.loads(data.decode())[2] == (job,)  # as text too


def test_any_other_job_or_value_decodes_as_plain_json():
    delete = DeleteData(source_ids=["src_a"], reason="website w1")
    assert S.loads(S.dumps((DELETE_FUNC, None, [delete], {}))) == (
        DELETE_FUNC,
        None,
        [{"source_ids": ["src_a"], "workspace": None, "reason": "website w1"}],
        {},
    )
    assert S.loads(S.dumps({"meta": 1})) == {"meta": 1}


def test_a_job_naming_the_persist_function_with_another_shape_still_decodes():
    """Not the typed shape (an argument that is no batch): read as plain JSON, for the job to refuse."""
    assert S.loads(S.dumps((PERSIST_FUNC, None, [{"not": "a batch"}], {}))) == (
        PERSIST_FUNC,
        None,
        [{"not": "a batch"}],
        {},
    )
