"""structlog set-up shared by the services: JSON lines when not on a terminal (containers,
log shippers), readable console output when a person is watching."""

from __future__ import annotations

import logging
import sys

import structlog

from shared.config import Settings


def configure_logging(settings: Settings, service: str) -> structlog.stdlib.BoundLogger:
    as_json = settings.log_json if settings.log_json is not None else not sys.stderr.isatty()
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write() per line (PrintLogger writes the newline separately), so services
        # that share a log file or pipe never interleave halves of their lines.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr, format="%(name)s %(message)s")
    structlog.contextvars.bind_contextvars(service=service)
    return structlog.get_logger()


def log_settings(log: structlog.stdlib.BoundLogger, settings: Settings, *, public: bool = False) -> None:
    """Every service prints its effective configuration at start, secrets masked; the
    public-facing one also says when it is open to anyone."""
    log.info("effective_configuration", **settings.masked())
    if public and not (settings.api_key and settings.api_key.get_secret_value()):
        log.warning(
            "api_key_unset", message="S2T_API_KEY is not set: the service is open to anyone who can reach it"
        )
