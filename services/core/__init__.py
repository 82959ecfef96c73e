"""The pure domain core of kflow: definitions, planner, state machine, replay. No I/O.

The public names are re-exported here; see docs/design/contracts.md.
"""

from kflow.core.backoff import retry_delay_ms, seed_for
from kflow.core.codec import (
    event_from_dict,
    event_to_dict,
    input_from_dict,
    input_to_dict,
    state_from_dict,
    state_to_dict,
)
from kflow.core.definition import (
    APPROVAL,
    SLEEP,
    NodeSpec,
    OnFailure,
    RetryPolicy,
    WorkflowDefinition,
    definition_json,
    load_definition,
    parse_definition,
)
from kflow.core.errors import (
    DefinitionError,
    ErrorClass,
    KflowError,
    NeedsReview,
    NodeError,
    PermanentError,
    Problem,
    TransientError,
)
from kflow.core.expressions import ExpressionError
from kflow.core.fold import evolve, evolve_all
from kflow.core.jsondoc import NULL, Json
from kflow.core.limits import DEFAULT_LIMITS, Limits
from kflow.core.machine import decide, decide_and_evolve
from kflow.core.planner import Plan, plan
from kflow.core.replay import Divergence, replay, verify
from kflow.core.state import (
    StepRecord,
    Timer,
    WorkflowState,
    is_terminal,
    pending_timers,
    step_key,
)
from kflow.core.validation import validate_definition
from kflow.core.views import (
    StepView,
    Task,
    WorkflowSummary,
    apply_step_event,
    apply_workflow_event,
    is_waiting,
    step_view,
    summary,
    tasks_from_events,
    timers_for,
)

__all__ = [
    "APPROVAL",
    "DEFAULT_LIMITS",
    "NULL",
    "SLEEP",
    "DefinitionError",
    "Divergence",
    "ErrorClass",
    "ExpressionError",
    "Json",
    "KflowError",
    "Limits",
    "NeedsReview",
    "NodeError",
    "NodeSpec",
    "OnFailure",
    "PermanentError",
    "Plan",
    "Problem",
    "RetryPolicy",
    "StepRecord",
    "StepView",
    "Task",
    "Timer",
    "TransientError",
    "WorkflowDefinition",
    "WorkflowState",
    "WorkflowSummary",
    "apply_step_event",
    "apply_workflow_event",
    "decide",
    "decide_and_evolve",
    "definition_json",
    "event_from_dict",
    "event_to_dict",
    "evolve",
    "evolve_all",
    "input_from_dict",
    "input_to_dict",
    "is_terminal",
    "is_waiting",
    "load_definition",
    "parse_definition",
    "pending_timers",
    "plan",
    "replay",
    "retry_delay_ms",
    "seed_for",
    "state_from_dict",
    "state_to_dict",
    "step_key",
    "step_view",
    "summary",
    "tasks_from_events",
    "timers_for",
    "validate_definition",
    "verify",
]
