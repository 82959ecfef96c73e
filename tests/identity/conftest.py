"""Fixtures of the identity tests: a runtime requiring signatures (the default), keys per tenant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from kflow.api.apikeys import Scope, create_key
from kflow.bus.principals import publish_key
from kflow.settings import Settings
from tests.readside.conftest import (  # noqa: F401  (fixtures)
    ReadSide,
    api,
    readside,
    start_projector,
)
from tests.runtime.conftest import Runtime, runtime_factory  # noqa: F401  (fixtures)


@dataclass(frozen=True)
class Key:
    """An API key made like ``kflow apikey create`` makes it."""

    key_id: str
    token: str
    tenant: str

    def settings(self, base: Settings) -> Settings:
        """``base`` with this key as the process's credential (``KFLOW_API_KEY``)."""
        return base.model_copy(update={"api_key": SecretStr(self.token)})


@pytest.fixture
def issue(readside: ReadSide) -> Callable[..., Key]:  # noqa: F811
    """Create a key in PostgreSQL and publish its signing key, as the CLI does."""

    def make(tenant: str, *scopes: str) -> Key:
        with readside.connect() as conn:
            key = create_key(
                conn, f"svc-{tenant}", tenant, [Scope(s) for s in scopes or ("write",)]
            )
        s = readside.settings
        publish_key(s.kafka_bootstrap, s.topic_prefix, key.signing_record())
        return Key(key.key_id, key.token, tenant)

    return make


@pytest.fixture
def secured(runtime_factory: Runtime, readside: ReadSide) -> Runtime:  # noqa: F811
    """One orchestrator, refusing unsigned commands as by default (no processor: nothing runs
    steps)."""
    runtime_factory.settings = readside.settings
    runtime_factory.start_orchestrator()
    return runtime_factory
