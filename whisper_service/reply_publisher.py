"""Publishing a job's reply so that a Redis restart does not lose it.

Pub/sub keeps nothing: a reply published while Redis is away fails, and one published
just after a restart, before the gateway has subscribed its reply channels again
(it reconnects with backoff, up to 5 s), reaches nobody. Both are retried with capped
exponential backoff for ``S2T_REPLY_RETRY_S``. No subscriber counts as "not yet" only
while Redis has been up less than :data:`RESUBSCRIBE_GRACE_S`, the time every gateway
takes at most to subscribe again: later, the client has simply gone, and waiting would
only hold up the worker (a job queued again for a client that left during the outage
costs at most that). A reply that Redis still refuses after ``S2T_REPLY_RETRY_S``
raises: the job is not settled, and the audio service's requeue buffer queues it again.
A shutdown request (SIGTERM) ends the retries at once, the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import redis
import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_exponential,
)

from shared.queue import REDIS_AWAY, redis_restarted_within, stop_requested

log = structlog.get_logger()

RETRY_FIRST_DELAY_S = 0.25
RETRY_MAX_DELAY_S = 2.0
#: Twice the gateway's longest pub/sub reconnect delay (gateway/replies.py, 5 s).
RESUBSCRIBE_GRACE_S = 10.0


def stop_when(condition: Callable[[], bool]) -> Callable[[RetryCallState], bool]:
    """A tenacity stop condition from a plain predicate."""
    return lambda state: condition()


def _give_up(state: RetryCallState) -> int:
    """Out of time: Redis still away raises; still nobody subscribed means the client has
    gone, and the reply is dropped."""
    assert state.outcome is not None
    if state.outcome.failed:
        raise state.outcome.exception()  # type: ignore[misc]
    return 0


def publish_reply(
    client: redis.Redis,
    channel: str,
    data: bytes,
    retry_s: float,
    stopping: Callable[[], bool] = stop_requested,
) -> int:
    """Publish ``data``; returns how many subscribers got it (0: nobody is listening, and
    Redis has not restarted lately). Raises the last Redis error after ``retry_s``."""

    def attempt() -> int | None:
        receivers = int(client.publish(channel, data))
        if receivers == 0 and redis_restarted_within(client, RESUBSCRIBE_GRACE_S):
            return None  # the gateway may not have subscribed again yet
        return receivers

    retrying = Retrying(
        retry=retry_if_exception_type(REDIS_AWAY) | retry_if_result(lambda r: r is None),
        wait=wait_exponential(multiplier=RETRY_FIRST_DELAY_S, max=RETRY_MAX_DELAY_S),
        stop=stop_after_delay(retry_s) | stop_when(stopping),
        retry_error_callback=_give_up,
        before_sleep=lambda state: log.info("reply_retry", attempt=state.attempt_number),
    )
    return int(retrying(attempt))
