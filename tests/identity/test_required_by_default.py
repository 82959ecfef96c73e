"""Issue 12: signatures are required by default (ADR 0061), and a command is keyed by its
workflow id (ADR 0062). Real Kafka; the orchestrator runs with the default settings.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Message, Producer

from kflow.bus.contracts import encode_input
from kflow.bus.credentials import MissingApiKey
from kflow.bus.envelope import envelope_meta
from kflow.bus.signing import Signer
from kflow.bus.topics import topic_names
from kflow.cli.run import service_command
from kflow.client import Client
from kflow.core.events import InputRejected, WorkflowRejected, WorkflowStarted
from kflow.core.inputs import CancelWorkflow, Input, PauseWorkflow, StartWorkflow
from kflow.settings import Settings
from tests.bus.kafka_helpers import end_offsets
from tests.conftest import SESSION_KEY
from tests.identity.conftest import Key
from tests.runtime.conftest import TEST_QUEUES, Runtime, types_of

pytestmark = [pytest.mark.integration, pytest.mark.topics(partitions=2, queues=TEST_QUEUES)]

GATE = {"name": "gate", "nodes": [{"id": "review", "type": "approval"}]}


def _produce(
    rt: Runtime,
    command: Input,
    signer: Signer | None,
    record_key: str | None = None,
    partition: int = -1,
) -> int:
    """Write ``command`` straight to the commands topic (as a raw producer would); its
    partition. ``record_key`` defaults to the workflow id, as kflow's senders key it."""
    record_key = record_key if record_key is not None else command.workflow_id
    value = encode_input(command, envelope_meta(command, actor="raw"))
    headers = list(signer.headers(record_key, value).items()) if signer else []
    landed: list[int] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        landed.append(msg.partition())

    producer = Producer({"bootstrap.servers": rt.settings.kafka_bootstrap})
    producer.produce(
        topic_names(rt.prefix).commands,
        value,
        record_key,
        headers=headers,
        partition=partition,
        on_delivery=on_delivery,
    )
    assert producer.flush(30) == 0
    return landed[0]


def _notice(rt: Runtime, wid: str, kind: str) -> InputRejected | WorkflowRejected:
    found = [e for e in rt.wait_for(wid, kind) if type(e).__name__ == kind]
    assert isinstance(found[-1], InputRejected | WorkflowRejected)
    return found[-1]


def test_an_unsigned_command_is_refused_with_the_default_settings(
    runtime_factory: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KFLOW_REQUIRE_SIGNED_COMMANDS", raising=False)
    default = Settings().require_signed_commands
    assert default is True
    rt = runtime_factory
    rt.start_orchestrator(require_signatures=default)  # as `kflow run orchestrator` reads it
    rt.apply(GATE)
    owned = rt.start("gate")  # signed with the session's key (tenant default)
    rt.wait_for(owned, "WorkflowStarted")
    fresh = f"wf-{uuid.uuid4().hex[:8]}"
    _produce(rt, StartWorkflow(workflow_id=fresh, name="gate", version=0), None)
    _produce(rt, CancelWorkflow(workflow_id=owned, reason="unsigned"), None)
    for notice in (_notice(rt, fresh, "WorkflowRejected"), _notice(rt, owned, "InputRejected")):
        assert notice.code == "unauthenticated"
        assert "not signed" in notice.reason and "KFLOW_API_KEY" in notice.reason
    assert "WorkflowStarted" not in types_of(rt.events[fresh])
    assert "WorkflowCancelled" not in types_of(rt.events[owned])


def test_a_signed_command_re_keyed_to_another_partition_is_refused(
    secured: Runtime, issue: Callable[..., Key]
) -> None:
    a = issue("a")
    signer = Signer.from_token(a.token)
    secured.apply(GATE)
    wid = f"wf-{uuid.uuid4().hex[:8]}"
    home = _produce(secured, StartWorkflow(workflow_id=wid, name="gate", version=0), signer)
    started = secured.wait_for(wid, "WorkflowStarted")[0]
    assert isinstance(started, WorkflowStarted) and started.tenant == "a"
    elsewhere = 1 - home  # the other of the two partitions: another owner's workflows
    cancel = CancelWorkflow(workflow_id=wid, reason="re-keyed")
    _produce(secured, cancel, signer, record_key=f"other-{wid}", partition=elsewhere)
    refused = _notice(secured, wid, "InputRejected")
    assert refused.code == "forbidden"
    assert f"the record key 'other-{wid}' is not the workflow id {wid!r}" in refused.reason
    twin = f"wf-{uuid.uuid4().hex[:8]}"  # a start keyed by another id is not started either
    start = StartWorkflow(workflow_id=twin, name="gate", version=0)
    _produce(secured, start, signer, record_key=wid, partition=home)
    rejected = _notice(secured, twin, "WorkflowRejected")
    assert rejected.code == "forbidden" and "is not the workflow id" in rejected.reason
    _produce(secured, PauseWorkflow(workflow_id=wid), signer)  # keyed right: applied
    secured.wait_for(wid, "WorkflowPaused")
    assert "WorkflowCancelled" not in types_of(secured.events[wid])
    assert "WorkflowStarted" not in types_of(secured.events[twin])


def test_senders_without_a_key_fail_fast_naming_the_fix(
    isolated_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = topic_names(isolated_settings.topic_prefix).commands
    env = {
        **os.environ,
        "HOME": str(tmp_path),  # no ~/.config/kflow/api-key
        "KFLOW_TOPIC_PREFIX": isolated_settings.topic_prefix,
        "KFLOW_KAFKA_BOOTSTRAP": isolated_settings.kafka_bootstrap,
    }
    env.pop("KFLOW_API_KEY", None)
    env.pop("KFLOW_API_KEY_FILE", None)
    env.pop("KFLOW_REQUIRE_SIGNED_COMMANDS", None)
    for args in (
        ("start", "gate", "--id", "w-1"),
        ("cancel", "w-1"),
        ("bulk", "pause", "--id", "w-1"),
    ):
        done = subprocess.run(
            service_command(*args), env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1, done.stdout
        line = done.stderr.strip()
        assert "\n" not in line, line
        assert line.startswith(f"error: kflow {args[0]} must be signed with an API key"), line
        assert "kflow apikey create" in line and "KFLOW_API_KEY" in line
        assert str(tmp_path / ".config" / "kflow" / "api-key") in line
    monkeypatch.setenv("HOME", str(tmp_path))
    keyless = isolated_settings.model_copy(update={"api_key": None, "api_key_file": None})
    with Client(keyless) as client, pytest.raises(MissingApiKey, match="kflow apikey create"):
        client.start("gate", {}, id="w-2")
    assert sum(end_offsets(isolated_settings.kafka_bootstrap, commands).values()) == 0


def test_the_demo_saves_its_key_once_and_says_what_it_kept(
    isolated_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kflow.examples.demo import save_for_cli

    path = tmp_path / "kflow" / "api-key"
    fresh = isolated_settings.model_copy(update={"api_key": None, "api_key_file": str(path)})
    save_for_cli(fresh, SESSION_KEY)  # a fresh machine: saved, private
    assert f"saved the demo's admin key to {path} (mode 0600)" in capsys.readouterr().out
    assert path.read_text() == SESSION_KEY + "\n" and path.stat().st_mode & 0o077 == 0
    save_for_cli(fresh, "kf_0123456789ab_" + "x" * 43)  # a later run: kept, and it works
    assert f"{path} exists: kept as it is (not overwritten)" in capsys.readouterr().out
    assert path.read_text() == SESSION_KEY + "\n"
    path.write_text("kf_0123456789ab_" + "y" * 43 + "\n")  # a key of another stack
    save_for_cli(fresh, SESSION_KEY)
    assert "holds a key this stack does not know" in " ".join(capsys.readouterr().out.split())
