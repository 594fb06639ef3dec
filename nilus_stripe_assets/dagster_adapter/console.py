"""Console output of runs: a `dg.Failure` shows as its one-line message, without Dagster's stack trace.

A `dg.Failure` is Dagster's way to say "this step failed for a known reason" (the README's Troubleshooting
messages are all raised as one). Dagster's default console logger still prints it with the framework's
"Stack Trace" (~20 lines of Dagster internals), and a run launched by `dagster asset materialize` cannot
pick another logger without run config (Dagster selects custom loggers only when run config names them).
The instance can, though: `dagster.yaml` adds this handler to every run's log manager

    python_logs:
      python_log_level: INFO            # the console shows INFO and up; the UI still records every event
      dagster_handler_config:
        handlers:
          failures_in_one_line:
            class: nilus_stripe_assets.dagster_adapter.console.FailuresInOneLine

Dagster hands each record to the instance's handlers (the event log first, so the UI keeps the full error)
and then to the console logger. This handler prints nothing: like a `logging.Filter`, it rewrites the
records of a failure raised as `dg.Failure` so that the console prints its description once, as the run's
failure. Any other error (a bug) keeps Dagster's full rendering with its stack, which fixing a bug needs.
"""

from __future__ import annotations

import logging
import sys
import warnings

from dagster import Failure

from ..source.config import ConfigError

FAILURE_CLASS = "Failure"  # SerializableErrorInfo.cls_name of a raised dg.Failure
_FAILURE_PREFIX = "dagster._core.definitions.events.Failure: "


def _raised_failure(data):
    """The `dg.Failure` an event's error is or was caused by, else None. A setting refused while a
    resource starts (`StripeResource.max_in_flight: 0`) reaches the event wrapped by Dagster as
    `DagsterResourceFunctionError`, with the Failure as its cause."""
    error = getattr(data, "error", None)
    for _ in range(10):  # a chain is a few links long; never loop on a malformed one
        if error is None or error.cls_name == FAILURE_CLASS:
            return error
        error = error.cause or error.context
    return None


def failure_description(event) -> str | None:
    """The description of the `dg.Failure` a STEP_FAILURE or RUN_FAILURE event carries, else None."""
    if event is None or not (event.is_step_failure or event.is_run_failure or event.is_resource_init_failure):
        return None
    data = event.event_specific_data
    step_failure = getattr(data, "first_step_failure_event", None)  # a run failure names the step's
    if step_failure is not None:
        return failure_description(step_failure)
    error = _raised_failure(data)
    if error is None:
        # Under the multiprocess executor a resource that refused its settings fails the step's child process
        # before the step starts: the run's failure is a DagsterSubprocessError whose text holds the child's
        # error chain (not linked as a cause), with the Failure's line in it.
        message = getattr(getattr(data, "error", None), "message", "") or ""
        for line in message.splitlines():
            if line.startswith(_FAILURE_PREFIX) and event.is_run_failure:
                return line[len(_FAILURE_PREFIX):].strip()
        return None
    described = getattr(getattr(data, "user_failure_data", None), "description", None)
    if described:
        return described
    message = error.message.strip()
    return message[len(_FAILURE_PREFIX):] if message.startswith(_FAILURE_PREFIX) else message


def quiet_known_warnings() -> None:
    """Hide two Dagster notices about Dagster's own code, which users cannot act on: the beta notice for the
    instance's yaml logging handler above, and the one Dagster's CLI raises parsing `--select '*'`."""
    from dagster import BetaWarning

    warnings.filterwarnings("ignore", message="Handling yaml-defined logging configuration", category=BetaWarning)
    warnings.filterwarnings("ignore", message="Parameter `include_sources` of function", category=BetaWarning)


def config_errors_in_one_line() -> None:
    """Print a `ConfigError` (or a `dg.Failure`, e.g. `StripeResource(max_in_flight=0)` in a location's code)
    that stops definitions from loading as its one line, without a traceback.

    Dagster's CLI (`dagster asset materialize -f examples/definitions.py`) lets an exception raised while
    loading definitions reach Python's top level, which prints the traceback of Dagster's loader (~150
    lines for a typo in a pipeline's YAML). A `ConfigError` already names the attribute and the fix, so
    the process prints that line and exits 1. Every other exception keeps the default traceback; code
    servers (`dagster dev`) catch load errors themselves and show them in the UI.
    """
    previous = sys.excepthook
    if getattr(previous, "_nilus_config_errors", False):
        return

    def hook(exc_type, exc, tb):
        seen = exc
        while seen is not None and not isinstance(seen, (ConfigError, Failure)):
            seen = seen.__cause__ or seen.__context__
        if seen is None:
            return previous(exc_type, exc, tb)
        print(seen.description if isinstance(seen, Failure) else str(seen), file=sys.stderr)

    hook._nilus_config_errors = True
    sys.excepthook = hook


class FailuresInOneLine(logging.Handler):
    """Rewrites failure records raised as `dg.Failure` to their description (see the module docstring)."""

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        description = failure_description(event)
        if description is None:
            return
        record.msg, record.args = description, ()
        if event.is_step_failure or event.is_resource_init_failure:
            # Said once, by the run's failure. A step's console output passes through Dagster's log
            # capture (a `tail -F` of a file, checked once a second), which can drop a step's last
            # lines when it ends quickly (dagster-io/dagster#23336); the run's failure is printed
            # outside it. Demoted to DEBUG for the console only: the event log already has it.
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
