"""The chaos run's faults: when each happens, and doing it (docs/operations.md#the-chaos-run).

Worker kills every ~10 s (two `tally worker` processes, each restarted at once); the relay,
PostgreSQL, the broker and the webhook receiver once each. PostgreSQL and the receiver stay
down for a while, in a thread of their own, while the schedule goes on.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tally.bench.chaos.backends import Broker, OwnPostgres
from tally.stack import Children
from tally.webhook_receiver import WebhookReceiver

KILL_WORKER = "kill a worker"
KILL_RELAY = "kill the relay"
RESTART_POSTGRES = "restart PostgreSQL"
RESTART_BROKER = "restart the broker"
RECEIVER_DOWN = "take the receiver down"
# Faults that last: each is done when its outage ends, not when it is inflicted.
OUTAGES = (RESTART_POSTGRES, RECEIVER_DOWN)
DATABASE_DOWN_SECONDS = 4.0


@dataclass
class Fault:
    """One fault: what, and when it began and ended, in seconds into the load."""

    at: float
    what: str
    done_at: float = 0.0


def schedule(seconds: float) -> list[Fault]:
    """Worker kills every ~10 s; the relay, PostgreSQL, the broker and the receiver once."""
    plan = [Fault(at, KILL_WORKER) for at in range(5, int(seconds) - 2, 10)]
    plan += [
        Fault(seconds * 0.2, KILL_RELAY),
        Fault(seconds * 0.35, RESTART_POSTGRES),
        Fault(seconds * 0.55, RESTART_BROKER),
        Fault(seconds * 0.7, RECEIVER_DOWN),
    ]
    return sorted(plan, key=lambda fault: fault.at)


@dataclass
class Targets:
    """What the faults strike: the stack's processes, the backends and the receiver."""

    children: Children
    workers: list[str]
    postgres: OwnPostgres
    broker: Broker
    receiver: WebhookReceiver


def inject(plan: list[Fault], started: float, targets: Targets, faults: list[Fault]) -> None:
    """Inflict each fault of `plan` at its time after `started`, noting it in `faults`;
    returns once every outage has ended."""
    kills = 0
    outages: list[threading.Thread] = []
    receiver_down_seconds = min(30.0, max(5.0, (plan[-1].at if plan else 30) * 0.4))
    children = targets.children
    for fault in plan:
        delay = started + fault.at - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the fault's moment in the schedule
        fault.at = time.monotonic() - started
        if fault.what == KILL_WORKER:
            name = targets.workers[kills % len(targets.workers)]
            kills += 1
            children.kill(name, sig=signal.SIGKILL)
            children.start(name, "worker", "--loglevel", "WARNING")
        elif fault.what == KILL_RELAY:
            children.kill("relay", sig=signal.SIGKILL)
            children.start("relay", "relay")
        elif fault.what == RESTART_BROKER:
            targets.broker.stop()
            targets.broker.start()
        elif fault.what == RESTART_POSTGRES:
            targets.postgres.stop()
            # Back after the outage being measured; the schedule goes on meanwhile.
            _later(DATABASE_DOWN_SECONDS, targets.postgres.start, fault, started, outages)
        elif fault.what == RECEIVER_DOWN:
            targets.receiver.stop()
            _later(receiver_down_seconds, targets.receiver.start, fault, started, outages)
        if fault.what not in OUTAGES:
            fault.done_at = time.monotonic() - started
        faults.append(fault)
    for outage in outages:
        outage.join()


def _later(
    delay: float,
    restore: Callable[[], None],
    fault: Fault,
    started: float,
    outages: list[threading.Thread],
) -> None:
    """End an outage after `delay` seconds, in a thread of its own; note when it ended."""

    def end() -> None:
        time.sleep(delay)  # the outage's length
        restore()
        fault.done_at = time.monotonic() - started

    thread = threading.Thread(target=end, daemon=True)
    thread.start()
    outages.append(thread)
