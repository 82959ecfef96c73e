"""API keys: 401 without a valid key, 403 without the scope, 404 for another tenant's data."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from kflow.api.keycache import KeyCache
from tests.readside.conftest import ApiServer, ReadSide, RunningProjector, wait_until
from tests.readside.workload import make_logs

pytestmark = pytest.mark.integration


@pytest.fixture
def seeded(
    readside: ReadSide, api: ApiServer, start_projector: Callable[[str], RunningProjector]
) -> ApiServer:
    acme = make_logs("acme", 3, tenant="acme")
    other = make_logs("globex", 2, tenant="globex")
    total = readside.produce(acme + other)
    start_projector("postgres").wait_applied(total)
    return api


def _get(api: ApiServer, path: str, token: str | None = None, **params: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(api.url + path, headers=headers, params=params, timeout=10)  # type: ignore[arg-type]


def test_missing_or_unknown_key_is_401_problem(seeded: ApiServer) -> None:
    r = _get(seeded, "/workflows")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    body = r.json()
    assert body["status"] == 401 and "Authorization: Bearer" in body["detail"]
    fake = "kf_0123456789ab_" + "A" * 43
    assert _get(seeded, "/workflows", fake).status_code == 401
    assert _get(seeded, "/workflows", "not-a-key").status_code == 401


def test_revoked_key_is_401(
    seeded: ApiServer, make_key: Callable[..., str], readside: ReadSide
) -> None:
    from kflow.api.apikeys import parse_key_id, revoke_key

    token = make_key("acme", "read")
    assert _get(seeded, "/workflows", token).status_code == 200
    with readside.connect() as conn:
        key_id = parse_key_id(token)
        assert key_id is not None and revoke_key(conn, key_id)
    assert _get(seeded, "/workflows", token).status_code == 401


def _cache_keys_for_minutes(api: ApiServer) -> KeyCache:
    """The fixture's API runs without a key cache; give it a long one (as in production)."""
    keys: KeyCache = api.app.state.resources.keys
    keys.ttl_s = 300.0
    wait_until(lambda: keys.listener is not None, "the revocation listener to connect")
    return keys


def test_revocation_evicts_a_cached_key_at_once(
    seeded: ApiServer, make_key: Callable[..., str], readside: ReadSide
) -> None:
    from kflow.api.apikeys import hash_token, parse_key_id, revoke_key

    keys = _cache_keys_for_minutes(seeded)
    token = make_key("acme", "read")
    assert _get(seeded, "/workflows", token).status_code == 200
    assert hash_token(token) in keys.entries  # the next requests do not ask PostgreSQL
    assert _get(seeded, "/workflows/acme-000000", token).status_code == 200
    other = make_key("acme", "read")
    assert _get(seeded, "/workflows", other).status_code == 200
    with readside.connect() as conn:
        key_id = parse_key_id(token)
        assert key_id is not None and revoke_key(conn, key_id)
    # NOTIFY is asynchronous: the key is gone once PostgreSQL delivers it (well under the
    # 5-minute cache life; the cache is not consulted while a notification is unread)
    wait_until(lambda: hash_token(token) not in keys.entries, "the revocation to arrive")
    r = _get(seeded, "/workflows", token)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert _get(seeded, "/workflows", other).status_code == 200  # other keys stay cached
    assert hash_token(other) in keys.entries


def test_a_key_deleted_by_hand_in_sql_is_evicted_too(
    seeded: ApiServer, make_key: Callable[..., str], readside: ReadSide
) -> None:
    from kflow.api.apikeys import hash_token, parse_key_id

    keys = _cache_keys_for_minutes(seeded)
    token = make_key("acme", "read")
    assert _get(seeded, "/workflows", token).status_code == 200
    assert hash_token(token) in keys.entries
    with readside.connect() as conn, conn.transaction():
        conn.execute("DELETE FROM api_keys WHERE key_id = %s", (parse_key_id(token),))
    wait_until(lambda: hash_token(token) not in keys.entries, "the deletion to arrive")
    assert _get(seeded, "/workflows", token).status_code == 401


def test_revocation_while_the_listener_reconnects_is_not_missed(
    seeded: ApiServer, make_key: Callable[..., str], readside: ReadSide
) -> None:
    from kflow.api.apikeys import parse_key_id, revoke_key

    keys = _cache_keys_for_minutes(seeded)
    token = make_key("acme", "read")
    assert _get(seeded, "/workflows", token).status_code == 200
    listener = keys.listener
    assert listener is not None
    with readside.connect() as conn:
        # wait (up to 30 s) until the backend is gone: the API's socket then reads EOF
        row = conn.execute(
            "SELECT pg_terminate_backend(%s, 30000)", (listener.info.backend_pid,)
        ).fetchone()
        assert row == (True,)
        key_id = parse_key_id(token)
        assert key_id is not None and revoke_key(conn, key_id)  # nobody listens right now
    assert _get(seeded, "/workflows", token).status_code == 401
    wait_until(lambda: keys.listener not in (None, listener), "the listener to reconnect")
    assert _get(seeded, "/workflows", token).status_code == 401


def test_read_key_cannot_command_403(seeded: ApiServer, make_key: Callable[..., str]) -> None:
    token = make_key("acme", "read")
    r = httpx.post(
        seeded.url + "/workflows/acme-000000/cancel",
        headers={"Authorization": f"Bearer {token}"},
        json={"reason": "x"},
        timeout=10,
    )
    assert r.status_code == 403
    assert "write" in r.json()["detail"]


def test_tenant_sees_only_its_workflows(seeded: ApiServer, make_key: Callable[..., str]) -> None:
    acme = make_key("acme", "read")
    listed = _get(seeded, "/workflows", acme).json()["items"]
    assert sorted(w["workflow_id"] for w in listed) == ["acme-000000", "acme-000001", "acme-000002"]
    assert _get(seeded, "/workflows/acme-000001", acme).status_code == 200
    for path in ("/workflows/globex-000000", "/workflows/globex-000000/events"):
        r = _get(seeded, path, acme)
        assert r.status_code == 404, path
    r = httpx.post(
        seeded.url + "/workflows/globex-000000/pause",
        headers={"Authorization": f"Bearer {make_key('acme', 'write')}"},
        timeout=10,
    )
    assert r.status_code == 404
    assert _get(seeded, "/workflows", acme, tenant="globex").status_code == 403


HOSTILE: list[tuple[str, dict[str, object]]] = [
    ("/workflows/1' OR '1'='1", {}),
    ("/workflows/x;DROP TABLE executions;--", {}),
    ("/workflows/" + "a" * 5000, {}),
    ("/workflows", {"status": "running' OR 1=1 --"}),
    ("/workflows", {"name": "a" * 1000}),
    ("/workflows", {"limit": 10**12}),
    ("/workflows", {"limit": -1}),
    ("/workflows", {"cursor": "'; DROP TABLE executions; --"}),
    ("/workflows", {"cursor": "x" * 5000}),
    ("/workflows", {"created_after": "yesterday"}),
    ("/workflows", {"created_after": "2026-01-01T00:00:00"}),
    ("/workflows/acme-000000/events", {"after_seq": "1 OR 1=1"}),
    ("/workflows/acme-000000/events", {"after_seq": 2**70}),
]


def test_hostile_ids_and_filters_are_4xx_problems(
    seeded: ApiServer, make_key: Callable[..., str]
) -> None:
    token = make_key("acme", "read")
    for path, params in HOSTILE:
        r = _get(seeded, path, token, **params)
        assert 400 <= r.status_code < 500, (path, params, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json", (path, params)
    assert len(_get(seeded, "/workflows", token).json()["items"]) == 3  # the table is intact
