"""Issue 12: one identity on every entry point, checked by the orchestrator (ADR 0060).

Tenant A's credentials cannot start, cancel, signal, pause or read tenant B's workflows
through kflow.Client, the CLI, HTTP, raw Kafka or the outbox; each refused command leaves a
notice in the log that says why. Real Kafka, PostgreSQL and Redis throughout.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from confluent_kafka import Producer

from kflow.bus.contracts import encode_input
from kflow.bus.envelope import envelope_meta
from kflow.bus.principals import publish_revocation
from kflow.bus.signing import Signer
from kflow.bus.topics import topic_names
from kflow.cli.run import service_command
from kflow.client import Client
from kflow.client.errors import WorkflowRejected as Rejected
from kflow.core.events import Event, InputRejected, WorkflowRejected, WorkflowStarted
from kflow.core.inputs import CancelWorkflow, Input, PauseWorkflow, StartWorkflow
from kflow.relay.outbox import enqueue_start, install
from kflow.relay.relay import Relay, RelayConfig
from tests.identity.conftest import Key
from tests.readside.conftest import ApiServer, ReadSide, RunningProjector
from tests.runtime.conftest import TEST_QUEUES, Runtime, types_of

pytestmark = [pytest.mark.integration, pytest.mark.topics(partitions=2, queues=TEST_QUEUES)]

GATE = {"name": "gate", "nodes": [{"id": "review", "type": "approval"}]}
"""Waits for a signal: the workflow stays open for the whole test."""


def _start_b(rt: Runtime, b: Key) -> str:
    rt.apply(GATE)
    with Client(b.settings(rt.settings), actor="billing") as client:
        wid = client.start("gate", {}).workflow_id
    started = rt.wait_for(wid, "WorkflowStarted")[0]
    assert isinstance(started, WorkflowStarted)
    assert (started.tenant, started.actor) == ("b", f"apikey:{b.key_id}:svc-b as billing")
    return wid


def _refusals(rt: Runtime, wid: str, count: int) -> list[Event]:
    deadline = time.monotonic() + 60
    while True:
        rt._read()
        found = [
            e for e in rt.events.get(wid, []) if isinstance(e, InputRejected | WorkflowRejected)
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _untouched(rt: Runtime, wid: str) -> None:
    changes = [t for t in types_of(rt.events[wid]) if not t.endswith("Rejected")]
    assert "WorkflowCancelled" not in changes and "WorkflowPaused" not in changes
    assert "WorkflowSignalled" not in changes


def test_client_of_tenant_a_cannot_touch_tenant_b(
    secured: Runtime, issue: Callable[..., Key]
) -> None:
    a, b = issue("a"), issue("b")
    wid = _start_b(secured, b)
    with Client(a.settings(secured.settings)) as client:
        handle = client.get_handle(wid)
        handle.cancel("mine now")
        handle.signal("review", {"approved": True})
        handle.pause()
        with pytest.raises(Rejected) as taken:
            client.start("gate", {}, id=wid).result(timeout=60)
    assert taken.value.code == "forbidden" and "not available to tenant 'a'" in taken.value.reason
    refused = _refusals(secured, wid, 4)
    assert [(type(e).__name__, e.code) for e in refused] == [  # type: ignore[attr-defined]
        ("InputRejected", "forbidden"),
        ("InputRejected", "forbidden"),
        ("InputRejected", "forbidden"),
        ("WorkflowRejected", "forbidden"),
    ]
    assert all(f"no workflow {wid!r} in tenant 'a'" in e.reason for e in refused[:3])  # type: ignore[attr-defined]
    _untouched(secured, wid)
    with Client(b.settings(secured.settings)) as client:  # the owner still can
        client.get_handle(wid).pause()
    secured.wait_for(wid, "WorkflowPaused")


def _raw(
    rt: Runtime, topic: str, command: Input, tenant: str | None, signer: Signer | None
) -> None:
    value = encode_input(command, envelope_meta(command, actor="mallory", tenant=tenant))
    headers = signer.headers(command.workflow_id, value) if signer else {}
    producer = Producer({"bootstrap.servers": rt.settings.kafka_bootstrap})
    producer.produce(topic, value, command.workflow_id, headers=list(headers.items()))
    assert producer.flush(30) == 0


def test_forged_envelopes_on_kafka_are_refused_with_a_reason(
    secured: Runtime, issue: Callable[..., Key]
) -> None:
    a, b = issue("a"), issue("b")
    wid = _start_b(secured, b)
    commands = topic_names(secured.prefix).commands
    cancel = CancelWorkflow(workflow_id=wid, reason="forged")
    _raw(secured, commands, cancel, "b", None)  # unsigned, claiming B
    _raw(secured, commands, cancel, "b", Signer(a.key_id, b"\x00" * 32))  # a's id, wrong key
    _raw(secured, commands, cancel, "b", Signer.from_token(a.token))  # a's key, claiming B
    _raw(secured, commands, PauseWorkflow(workflow_id=wid), None, Signer.from_token(a.token))
    fresh = f"wf-{uuid.uuid4().hex[:8]}"
    _raw(secured, commands, StartWorkflow(workflow_id=fresh, name="gate", version=0), "b", None)
    reasons = [(e.code, e.reason) for e in _refusals(secured, wid, 4)]  # type: ignore[attr-defined]
    assert reasons[0][0] == "unauthenticated" and "not signed" in reasons[0][1]
    assert reasons[1][0] == "unauthenticated" and "does not match" in reasons[1][1]
    assert reasons[2][0] == "forbidden" and "claims tenant 'b'" in reasons[2][1]
    assert reasons[3] == ("forbidden", f"no workflow {wid!r} in tenant 'a'")
    start = secured.wait_for(fresh, "WorkflowRejected")[0]
    assert isinstance(start, WorkflowRejected) and start.code == "unauthenticated"
    # a command written to the results topic (whose writers are processors) is misrouted
    _raw(secured, topic_names(secured.prefix).results, cancel, None, Signer.from_token(b.token))
    _raw(secured, commands, PauseWorkflow(workflow_id=wid), None, Signer.from_token(b.token))
    secured.wait_for(wid, "WorkflowPaused")
    assert "WorkflowCancelled" not in types_of(secured.events[wid])


def _cli(rt: Runtime, key: Key, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KFLOW_TOPIC_PREFIX": rt.prefix,
        "KFLOW_KAFKA_BOOTSTRAP": rt.settings.kafka_bootstrap,
        "KFLOW_API_KEY": key.token,
    }
    return subprocess.run(
        service_command(*args), env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_of_tenant_a_cannot_command_or_read_tenant_b(
    secured: Runtime, issue: Callable[..., Key]
) -> None:
    a, b = issue("a"), issue("b")
    wid = _start_b(secured, b)
    for args in (("cancel", wid, "--actor", "anyone"), ("signal", wid, "review")):
        refused_cli = _cli(secured, a, *args)
        assert refused_cli.returncode == 1, refused_cli.stdout
        assert f"rejected (forbidden): no workflow {wid!r} in tenant 'a'" in refused_cli.stderr
    refused = _refusals(secured, wid, 2)
    assert [e.code for e in refused] == ["forbidden", "forbidden"]  # type: ignore[attr-defined]
    _untouched(secured, wid)
    read = _cli(secured, a, "events", wid)
    assert read.returncode == 1 and "of tenant 'a'" in read.stderr and "Started" not in read.stdout
    own = _cli(secured, b, "events", wid, "--json")
    assert own.returncode == 0 and "WorkflowStarted" in own.stdout
    audited = _cli(secured, a, "audit", "replay", wid)  # the audit shows only the own tenant too
    assert audited.returncode == 1 and f"{wid!r} of tenant 'a'" in audited.stderr
    assert "WorkflowStarted" not in audited.stdout
    own_audit = _cli(secured, b, "audit", "replay", wid)
    assert own_audit.returncode == 0 and "verified" in own_audit.stdout, own_audit.stderr


def test_http_tenant_a_cannot_command_or_read_tenant_b(
    secured: Runtime,
    readside: ReadSide,
    api: ApiServer,
    start_projector: Callable[[str], RunningProjector],
    issue: Callable[..., Key],
) -> None:
    from kflow.api.apikeys import Scope, create_key

    start_projector("postgres")
    secured.apply(GATE)
    a = issue("a")
    with readside.connect() as conn:  # made only in PostgreSQL: the API publishes its key
        b = create_key(conn, "web", "b", [Scope.WRITE])
    hb = {"Authorization": f"Bearer {b.token}"}
    ha = {"Authorization": f"Bearer {a.token}"}
    created = httpx.post(f"{api.url}/workflows", json={"name": "gate", "input": {}}, headers=hb)
    assert created.status_code == 202, created.text
    wid = created.json()["workflow_id"]
    started = secured.wait_for(wid, "WorkflowStarted")[0]
    assert isinstance(started, WorkflowStarted)
    assert (started.tenant, started.actor) == ("b", f"apikey:{b.key_id}:web")
    deadline = time.monotonic() + 60
    while httpx.get(f"{api.url}/workflows/{wid}", headers=hb).status_code != 200:
        assert time.monotonic() < deadline, "the projector did not show the workflow"
        time.sleep(0.1)
    assert httpx.get(f"{api.url}/workflows/{wid}", headers=ha).status_code == 404
    assert httpx.get(f"{api.url}/workflows/{wid}/events", headers=ha).status_code == 404
    for action in ("cancel", "pause"):
        assert httpx.post(f"{api.url}/workflows/{wid}/{action}", headers=ha).status_code == 404
    taken = httpx.post(
        f"{api.url}/workflows", json={"name": "gate", "workflow_id": wid}, headers=ha
    )
    assert taken.status_code == 409
    paused = httpx.post(f"{api.url}/workflows/{wid}/pause", headers=hb)
    assert paused.status_code == 202
    secured.wait_for(wid, "WorkflowPaused")
    _untouched_but_paused = [t for t in types_of(secured.events[wid]) if t == "WorkflowCancelled"]
    assert not _untouched_but_paused


def test_outbox_row_claiming_another_tenant_is_refused(
    secured: Runtime, readside: ReadSide, issue: Callable[..., Key]
) -> None:
    a = issue("a")
    secured.apply(GATE)
    schema = f"ob_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(readside.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    dsn = psycopg.conninfo.make_conninfo(readside.dsn, options=f"-c search_path={schema}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        install(conn)
    with psycopg.connect(dsn) as conn:
        own = enqueue_start(conn, name="gate", input={}, tenant="a", actor="orders")
        other = enqueue_start(conn, name="gate", input={}, tenant="b", actor="orders")
        unclaimed = enqueue_start(conn, name="gate", input={})
        conn.commit()
    relay = Relay(
        RelayConfig(
            dsn=dsn,
            bootstrap=secured.settings.kafka_bootstrap,
            topic_prefix=secured.prefix,
            signer=Signer.from_token(a.token),
        )
    )
    try:
        assert relay.relay_batch().published == 3
    finally:
        relay.close()
    refused = secured.wait_for(other, "WorkflowRejected")[0]
    assert isinstance(refused, WorkflowRejected) and refused.code == "forbidden"
    assert "claims tenant 'b'" in refused.reason
    actor = f"apikey:{a.key_id}:svc-a"
    for wid, recorded in ((own, f"{actor} as orders"), (unclaimed, actor)):
        started = secured.wait_for(wid, "WorkflowStarted")[0]
        assert isinstance(started, WorkflowStarted)
        assert (started.tenant, started.actor) == ("a", recorded)


def _first_events(rt: Runtime, wid: str) -> list[Event]:
    deadline = time.monotonic() + 60
    while not rt.events.get(wid):
        assert time.monotonic() < deadline, f"{wid}: no answer"
        rt._read()
    return rt.events[wid]


def test_revocation_reaches_the_orchestrator_within_seconds(
    secured: Runtime, issue: Callable[..., Key]
) -> None:
    a = issue("a")
    secured.apply(GATE)
    signer = Signer.from_token(a.token)
    commands = topic_names(secured.prefix).commands
    producer = Producer({"bootstrap.servers": secured.settings.kafka_bootstrap, "linger.ms": 0})
    sent: list[tuple[float, str]] = []
    stop = threading.Event()

    def keep_sending() -> None:  # a start every 10 ms, signed with the key being revoked
        while not stop.wait(0.01):
            wid = f"wf-{uuid.uuid4().hex[:8]}"
            command = StartWorkflow(workflow_id=wid, name="gate", version=0)
            value = encode_input(command, envelope_meta(command))
            headers = list(signer.headers(wid, value).items())
            producer.produce(commands, value, wid, headers=headers)
            producer.poll(0)
            sent.append((time.monotonic(), wid))

    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()
    time.sleep(0.5)
    called = time.monotonic()
    publish_revocation(secured.settings.kafka_bootstrap, secured.prefix, a.key_id)
    acked = time.monotonic()
    time.sleep(3)
    stop.set()
    sender.join(5)
    assert producer.flush(30) == 0
    outcome = {wid: type(_first_events(secured, wid)[0]).__name__ for _, wid in sent}
    refused = [t for t, wid in sent if outcome[wid] == "WorkflowRejected"]
    accepted = [t for t, wid in sent if outcome[wid] == "WorkflowStarted"]
    assert accepted and refused, "the key was never accepted, or never refused"
    last = _first_events(secured, sent[-1][1])[0]  # 3 s after the ack
    assert isinstance(last, WorkflowRejected) and last.code == "unauthenticated"
    assert f"key {a.key_id} is revoked" in last.reason
    print(
        f"revocation: publish call took {(acked - called) * 1000:.0f} ms; last accepted start "
        f"sent {(max(accepted) - acked) * 1000:+.0f} ms, first refused "
        f"{(min(refused) - acked) * 1000:+.0f} ms from its ack"
    )


def _cli_env(rt: Runtime, readside: ReadSide, token: str | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "KFLOW_TOPIC_PREFIX": rt.prefix,
        "KFLOW_KAFKA_BOOTSTRAP": rt.settings.kafka_bootstrap,
        "KFLOW_DATABASE_URL": readside.dsn,
        "KFLOW_DB_SCHEMA": readside.schema,
    }
    env.pop("KFLOW_API_KEY", None)
    if token is not None:
        env["KFLOW_API_KEY"] = token
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        service_command(*args), env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return done


def _token(output: str) -> tuple[str, str]:
    fields = dict(line.split(":", 1) for line in output.splitlines() if ":" in line)
    return fields["key id"].strip(), fields["api key"].strip()


def test_keys_made_rotated_and_revoked_with_the_cli(secured: Runtime, readside: ReadSide) -> None:
    secured.apply(GATE)
    made = _run(
        _cli_env(secured, readside), "apikey", "create", "--name", "ops", "--tenant", "a",
        "--scope", "write",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    old_id, old = _token(made.stdout)
    first = f"wf-{uuid.uuid4().hex[:8]}"
    assert _run(_cli_env(secured, readside, old), "start", "gate", "--id", first).returncode == 0
    started = secured.wait_for(first, "WorkflowStarted")[0]
    assert isinstance(started, WorkflowStarted) and started.tenant == "a"
    rotated = _run(_cli_env(secured, readside), "apikey", "rotate", old_id)
    assert rotated.returncode == 0, rotated.stderr
    new_id, new = _token(rotated.stdout)
    assert new_id != old_id and f"revoked {old_id}" in rotated.stderr
    stale, fresh = f"wf-{uuid.uuid4().hex[:8]}", f"wf-{uuid.uuid4().hex[:8]}"
    _run(_cli_env(secured, readside, old), "start", "gate", "--id", stale)
    _run(_cli_env(secured, readside, new), "start", "gate", "--id", fresh)
    refused = secured.wait_for(stale, "WorkflowRejected")[0]
    assert isinstance(refused, WorkflowRejected) and f"key {old_id} is revoked" in refused.reason
    started = secured.wait_for(fresh, "WorkflowStarted")[0]
    assert isinstance(started, WorkflowStarted) and started.actor == f"apikey:{new_id}:ops as cli"
    gone = _run(_cli_env(secured, readside), "apikey", "revoke", new_id)
    assert gone.returncode == 0 and f"revoked {new_id}" in gone.stdout
    last = f"wf-{uuid.uuid4().hex[:8]}"
    _run(_cli_env(secured, readside, new), "cancel", fresh)
    _run(_cli_env(secured, readside, new), "start", "gate", "--id", last)
    refused = secured.wait_for(last, "WorkflowRejected")[0]
    assert isinstance(refused, WorkflowRejected) and refused.code == "unauthenticated"
    assert "WorkflowCancelled" not in types_of(secured.events[fresh])


def test_unsigned_commands_reach_only_the_default_tenant_when_signatures_are_optional(
    runtime_factory: Runtime, issue: Callable[..., Key]
) -> None:
    rt = runtime_factory
    rt.start_orchestrator(require_signatures=False)
    b = issue("b")
    wid = _start_b(rt, b)
    commands = topic_names(rt.prefix).commands
    _raw(rt, commands, CancelWorkflow(workflow_id=wid), None, None)
    claim = f"wf-{uuid.uuid4().hex[:8]}"
    _raw(rt, commands, StartWorkflow(workflow_id=claim, name="gate", version=0), "b", None)
    mine = f"wf-{uuid.uuid4().hex[:8]}"  # unsigned, no tenant: the default tenant, as before
    _raw(rt, commands, StartWorkflow(workflow_id=mine, name="gate", version=0), None, None)
    refused = _refusals(rt, wid, 1)
    assert [e.code for e in refused] == ["forbidden"]  # type: ignore[attr-defined]
    rejected = rt.wait_for(claim, "WorkflowRejected")[0]
    assert isinstance(rejected, WorkflowRejected) and "cannot act for tenant 'b'" in rejected.reason
    started = rt.wait_for(mine, "WorkflowStarted")[0]
    assert isinstance(started, WorkflowStarted) and started.tenant is None
    _untouched(rt, wid)


def test_a_key_saved_by_the_cli_signs_the_cli(
    secured: Runtime, readside: ReadSide, tmp_path: Path
) -> None:
    secured.apply(GATE)
    env = {**_cli_env(secured, readside), "HOME": str(tmp_path)}  # a fresh user, no key
    saved = tmp_path / ".config" / "kflow" / "api-key"
    made = _run(env, "apikey", "create", "--name", "me", "--tenant", "a", "--scope", "write",
                "--save")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert f"api key: saved to {saved} (mode 0600)" in made.stdout and "kf_" not in made.stdout
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    wid = f"wf-{uuid.uuid4().hex[:8]}"
    assert _run(env, "start", "gate", "--id", wid).returncode == 0
    started = secured.wait_for(wid, "WorkflowStarted")[0]
    assert isinstance(started, WorkflowStarted) and started.tenant == "a"
    key = saved.read_text()
    again = _run(env, "apikey", "create", "--name", "me", "--tenant", "a", "--scope", "write",
                 "--save")  # fmt: skip
    assert again.returncode == 1 and "never overwritten, so no key was created" in again.stderr
    kept = _run(env, "apikey", "create", "--name", "me", "--tenant", "a", "--scope", "write",
                "--save", "--unless-saved")  # fmt: skip
    assert kept.returncode == 0 and "no key created" in kept.stdout
    assert saved.read_text() == key
