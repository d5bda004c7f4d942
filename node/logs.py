"""Logging setup: structlog in front, the stdlib (aiohttp, asyncio) bridged through it.

One call, :func:`configure_logging`, at process start. Every record, whether it came from
``structlog.get_logger()`` or from a library's ``logging.getLogger(...)``, goes through the same
processor chain, so the redaction below applies to both and the output format is uniform.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

__all__ = [
    "LIBRARY_LOGGERS",
    "LOG_LEVELS",
    "REDACTED",
    "configure_logging",
    "redact_secrets",
    "register_secret",
    "structured_foreign",
]

LogFormat = Literal["json", "console"]
# "debug-all" is "debug" with the libraries' own debug output too (aiosqlite alone writes a
# line per statement); every other level keeps the libraries at warning or above.
LOG_LEVELS = ("debug-all", "debug", "info", "warning", "error", "critical")
REDACTED = "[redacted]"
# Third-party loggers: quiet (warning) unless the level is "debug-all". The API's access log
# is not among them: it is off unless asked for (``access_log``) and then ours (api.access).
LIBRARY_LOGGERS = ("aiosqlite", "kademlia", "rpcudp", "aiohttp", "asyncio", "urllib3")

# A key is secret when one of its words (split on "_", "-" or ".") is one of these. Word
# matching, not substring, so "keepalive" or "monkey" stay visible while "api_token",
# "private_key" and "Authorization" are scrubbed.
_SECRET_WORDS = frozenset(
    {"token", "secret", "key", "private", "seed", "authorization", "password", "passphrase"}
)
_WORD_SPLIT = re.compile(r"[_\-.\s]+")
# Credentials that slip into free text (an exception message, a logged header line).
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_MAX_DEPTH = 8
# Exact secret values (the API token) scrubbed from every string, traceback text included.
_SECRETS: set[str] = set()
_MIN_SECRET = 8


def register_secret(value: str) -> None:
    """Scrub ``value`` wherever it appears in a log line from now on (tracebacks too)."""
    if len(value) < _MIN_SECRET:
        raise ValueError(f"a secret to scrub must be at least {_MIN_SECRET} characters")
    _SECRETS.add(value)


def _is_secret_key(name: object) -> bool:
    if not isinstance(name, str):
        return False
    return any(w in _SECRET_WORDS for w in _WORD_SPLIT.split(name.lower()) if w)


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, str):
        value = _BEARER.sub(r"\1 " + REDACTED, value)
        for secret in _SECRETS:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if _is_secret_key(k) else _scrub(v, depth + 1)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v, depth + 1) for v in value)
    return value


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def structured_foreign(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """structlog processor for records from stdlib loggers (libraries, ``dht``): the message
    template stays the ``event`` and its arguments become a list field, so no data hides in a
    preformatted string. If the formatted text carries a bearer credential, every argument is
    redacted (the template alone does not show which one it was)."""
    record = event_dict.get("_record")
    args = event_dict.pop("positional_args", None)  # ProcessorFormatter(pass_foreign_args)
    if not isinstance(record, logging.LogRecord) or event_dict.get("_from_structlog"):
        return event_dict
    if isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], Mapping):
        args = args[0]  # logging's %(name)s form
    if not args:
        return event_dict
    secret = bool(_BEARER.search(str(event_dict.get("event", ""))))
    event_dict["event"] = str(record.msg)
    if isinstance(args, Mapping):
        event_dict["args"] = {
            str(k): REDACTED if secret else _plain(v) for k, v in args.items()
        }
    else:
        event_dict["args"] = [REDACTED if secret else _plain(v) for v in args]
    return event_dict


def redact_secrets(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace values of secret-looking keys, recursively."""
    out: MutableMapping[str, Any] = event_dict
    for k in list(out):
        out[k] = REDACTED if _is_secret_key(k) else _scrub(out[k])
    return event_dict


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at emit time (test capture, redirection)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    name = level.strip().lower()
    if name not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r} (expected one of {', '.join(LOG_LEVELS)})")
    if name == "debug-all":
        return logging.DEBUG
    return int(getattr(logging, name.upper()))


def configure_logging(
    format: LogFormat = "console",
    level: str | int = "info",
    *,
    stream: TextIO | None = None,
) -> None:
    """Route structlog and stdlib logging to ``stream`` (stderr) as JSON lines or console text.

    JSON: one object per line, tracebacks as structured fields. Libraries' loggers
    (:data:`LIBRARY_LOGGERS`) stay at warning unless ``level`` is ``"debug-all"``.
    Safe to call more than once (tests do): it replaces the root handler it installed before.
    """
    if format not in ("json", "console"):
        raise ValueError(f"unknown log format {format!r} (expected 'json' or 'console')")
    lvl = _level_number(level)
    everything = isinstance(level, str) and level.strip().lower() == "debug-all"
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        redact_secrets,
    ]
    foreign: list[Processor] = [structured_foreign, *shared]
    renderer: Processor
    # Tracebacks are rendered before the last redaction pass, so what they show is scrubbed
    # too; and without frame locals, which hold requests, headers and keys.
    if format == "json":
        renderer = structlog.processors.JSONRenderer()
        tracebacks: Processor = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        tracebacks = structlog.processors.format_exc_info
    final: list[Processor] = [tracebacks, redact_secrets, renderer]

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: reconfiguring (tests, `run` after `init`) must take effect everywhere.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign,
        pass_foreign_args=True,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler: logging.StreamHandler[TextIO] = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.setFormatter(formatter)
    handler.set_name("spacepanda")

    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == "spacepanda":
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(lvl)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(lvl if everything else max(lvl, logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)  # as "aiohttp" (older setup)
