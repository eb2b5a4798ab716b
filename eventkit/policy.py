"""What becomes of a delivery: the subscription's settings, retry backoff, `decide` (the one place
that holds every dead-letter rule) and `ClaimSize` (how much to claim). No I/O: the consumer
applies them."""

from __future__ import annotations

import functools
import random
import traceback
from dataclasses import dataclass
from enum import StrEnum

from eventkit import codec
from eventkit.clock import now_ms
from eventkit.handlers import Handler
from eventkit.records import Claim


@dataclass(frozen=True)
class Subscription:
    """The settings of one persistent subscription (SPEC §3 subscribe_persistent)."""

    event_types: tuple[str, ...]
    consumer_group: str
    consumer_name: str
    handler: Handler
    batch_size: int = 10
    max_retries: int = 3
    lease_seconds: float = 30.0
    retry_delay: float = 0.5
    max_retry_delay: float = 60.0

    @functools.cached_property
    def max_attempts(self) -> int:
        return 1 + self.max_retries

    @functools.cached_property
    def lease_ms(self) -> int:  # read for every delivery
        return max(1, int(self.lease_seconds * 1000))


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Delay before the retry that follows failed attempt `attempt`: base*2^(attempt-1), capped,
    with jitter in [50 %, 100 %] so retries of many events spread out."""
    delay = min(cap, base * 2 ** min(max(0, attempt - 1), 64))
    return float(delay * (0.5 + 0.5 * random.random()))


def describe(error: BaseException) -> str:
    """`Type: message` for logs and the DLQ; never raises, whatever the exception's str() does."""
    try:
        text = str(error)
    except Exception:
        text = "<its str() raised>"
    return f"{type(error).__name__}: {text}"


def format_traceback(error: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(error))
    except Exception:  # a traceback is help, not a reason to fail the delivery's outcome
        return describe(error)


class Verdict(StrEnum):
    ACK = "ack"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What becomes of one delivery."""

    verdict: Verdict
    error: str = ""
    traceback: str = ""
    #: when a retry is due (epoch ms)
    due_ms: int = 0


ACKED = Outcome(Verdict.ACK)


def decide(claim: Claim, subscription: Subscription, error: BaseException | str | None) -> Outcome:
    """Every dead-letter rule, in one place. No error: ack. An error no retry can fix (the stored
    record cannot be read, its version is not supported): the DLQ now. The last allowed attempt
    (1 + max_retries) failed, or earlier attempts died with their leases: the DLQ. Otherwise a
    retry after exponential backoff. `error` may be text (the last error of a lease that expired)."""
    if error is None:
        return ACKED
    if isinstance(error, str):
        text, trace = error, ""
    else:
        text, trace = describe(error), format_traceback(error)
    if isinstance(error, codec.DECODE_ERRORS) or claim.attempt >= subscription.max_attempts:
        return Outcome(Verdict.DEAD, text, trace)
    delay = backoff_seconds(claim.attempt, subscription.retry_delay, subscription.max_retry_delay)
    return Outcome(Verdict.RETRY, text, trace, now_ms() + int(delay * 1000))


#: adaptive claims grow up to this many events (or batch_size, if larger): Kafka's max.poll.records
CLAIM_CAP = 500
#: and only while a batch is handled within this time, so a member never sits on work that
#: another member of its group could be doing (and leases stay far from expiring)
CLAIM_BATCH_SECONDS = 0.1
#: claims grow only with leases at least this long: the events of a batch wait behind each
#: handler, and one that hangs would let a short lease of the events after it expire
MIN_LEASE_TO_GROW = 5.0


class ClaimSize:
    """How many events the next claim asks for: batch_size, doubled after each full batch that
    was handled within CLAIM_BATCH_SECONDS (up to CLAIM_CAP), halved after a slower one, and
    back to batch_size after a short claim (the backlog is gone). Never above batch_size with a
    lease shorter than MIN_LEASE_TO_GROW.

    A backlog is drained in a few large claims (one round trip each), while an idle group still
    claims its first event at once (the size grows only on full claims), and the members of a
    group keep sharing the work: each claims for itself, and no batch outlasts the time budget.
    """

    def __init__(self, batch_size: int, lease_seconds: float = 30.0) -> None:
        self.batch_size = batch_size
        grows = lease_seconds >= MIN_LEASE_TO_GROW
        self.cap = max(batch_size, CLAIM_CAP) if grows else batch_size
        self.size = batch_size

    def observe(self, asked: int, claimed: int, seconds: float) -> None:
        """Adjust after a batch of `claimed` events (of `asked`) handled in `seconds`."""
        if claimed < asked:
            self.size = self.batch_size
        elif seconds > CLAIM_BATCH_SECONDS:
            self.size = max(self.batch_size, self.size // 2)
        else:
            self.size = min(self.cap, 2 * max(self.size, asked))
