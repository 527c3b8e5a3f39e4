from tests.helpers import stored


def test_track_is_stored_once(client, write_key, drain, db):
    body = {"userId": "u1", "event": "Signed Up", "messageId": "m-1", "properties": {"plan": "pro"}}
    for _ in range(2):
        r = client.post("/v1/track", json=body, auth=(write_key, ""))
        assert r.status_code == 200, r.text
        assert r.json() == {"success": True}
    drain()
    rows = stored(db)
    assert len(rows) == 1
    assert rows[0]["name"] == "Signed Up"
    assert rows[0]["properties"] == {"plan": "pro"}
