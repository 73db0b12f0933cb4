"""The chaos run's merchants: open-loop submissions from a pool of sender threads, each one
sent again (same body, same reference_id) until it is accepted, and every answer counted."""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tally.bench.workloads import ASSET
from tally.load_client import API, Connection, bearer

CLIENT_TIMEOUT_SECONDS = 10.0
SENDERS = 24
WALLETS = 200
BATCH_ITEMS = 10
# A merchant's back-off before sending an unaccepted submission again.
RESEND_AFTER_SECONDS = 0.2


@dataclass
class Submission:
    """One request body, its path under the API, and what became of it."""

    body: dict[str, Any]
    path: str
    accepted_id: str | None = None  # a batch's ids, comma-separated
    attempts: int = 0


@dataclass
class Answers:
    """Every HTTP answer the clients got, by kind."""

    statuses: Counter[str] = field(default_factory=Counter)
    hung: int = 0  # no answer within the client's timeout
    without_retry_after: int = 0  # 503s missing it
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str) -> None:
        """One more answer of this kind."""
        with self.lock:
            self.statuses[what] += 1


def funding_items(amount: int) -> list[dict[str, Any]]:
    """A top-up of `amount` for each of the run's wallets."""
    return [
        {"type": "topup", "user_id": f"w{n}", "asset_code": ASSET, "amount": amount,
         "reference_id": f"fund-{n}", "payment_method": "card"}
        for n in range(WALLETS)
    ]  # fmt: skip


class MerchantLoad:
    """Open-loop submissions at `rate` per second from a pool of sender threads; each one is
    resent until accepted (or the run gives up on it)."""

    def __init__(self, port: int, api_key: str, rate: float, bulk_share: float) -> None:
        self.port = port
        self.headers = bearer(api_key)
        self.rate = rate
        self.bulk_share = bulk_share
        self.submissions: list[Submission] = []
        self.answers = Answers()
        self._todo: queue.Queue[Submission | None] = queue.Queue()
        self._rng = random.Random(7)
        self._stop_sending = threading.Event()
        self._threads: list[threading.Thread] = []

    def _item(self, index: int) -> dict[str, Any]:
        user = f"w{self._rng.randrange(WALLETS)}"
        item: dict[str, Any] = {
            "asset_code": ASSET,
            "amount": self._rng.randint(1, 500),
            "reference_id": f"chaos-{index}",
            "user_id": user,
        }
        roll = self._rng.random()
        if roll < 0.4:
            item.update(type="topup", payment_method="card")
        elif roll < 0.7:
            item.update(type="transfer", to_user_id=f"w{(int(user[1:]) + 1) % WALLETS}")
        else:
            item.update(type="spend", item_id="sku-1")
        return item

    def run(self, seconds: float) -> None:
        """Offer load for `seconds` (returns when the last submission is handed out)."""
        self._threads = [threading.Thread(target=self._sender, daemon=True) for _ in range(SENDERS)]
        for thread in self._threads:
            thread.start()
        started = time.monotonic()
        index = 0
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * self.rate)
            while index < due:
                if self._rng.random() < self.bulk_share:
                    items = [self._item(index + n) for n in range(BATCH_ITEMS)]
                    index += BATCH_ITEMS
                    submission = Submission({"transactions": items}, "/transactions/batch")
                else:
                    submission = Submission(self._item(index), "/transactions")
                    index += 1
                self.submissions.append(submission)
                self._todo.put(submission)
            time.sleep(0.005)  # the open loop's tick

    def finish(self, timeout: float) -> None:
        """Wait until every submission is accepted (or `timeout`), then stop the senders."""
        deadline = time.monotonic() + timeout
        while self._todo.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.1)  # polling the senders' progress, bounded by the deadline
        self._stop_sending.set()
        for _ in self._threads:
            self._todo.put(None)
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT_SECONDS + 5)

    def _sender(self) -> None:
        connection = Connection(self.port, timeout=CLIENT_TIMEOUT_SECONDS, headers=self.headers)
        while (submission := self._todo.get()) is not None:
            try:
                if not self._send(connection, submission) and not self._stop_sending.is_set():
                    time.sleep(RESEND_AFTER_SECONDS)
                    self._todo.put(submission)
            finally:
                self._todo.task_done()
        connection.close()

    def _send(self, connection: Connection, submission: Submission) -> bool:
        """Send once; whether the submission is now accepted."""
        submission.attempts += 1
        try:
            response = connection.request(
                "POST", f"{API}{submission.path}", json_body=submission.body
            )
        except TimeoutError:
            with self.answers.lock:
                self.answers.hung += 1
            return False
        except OSError:
            self.answers.count("no connection")
            return False
        self.answers.count(str(response.status_code))
        if response.status_code == 503 and "Retry-After" not in response.headers:
            with self.answers.lock:
                self.answers.without_retry_after += 1
        if response.status_code not in (200, 202):
            return False
        answer = response.json()
        if submission.path.endswith("/batch"):
            accepted = [r for r in answer["results"] if r["outcome"] in ("accepted", "replayed")]
            if len(accepted) != len(submission.body["transactions"]):
                return False
            submission.accepted_id = ",".join(r["transaction"]["id"] for r in accepted)
        else:
            submission.accepted_id = answer["id"]
        return True

    def accepted_ids(self) -> list[str]:
        """The transaction ids of every accepted submission (a batch's each)."""
        return [
            transaction_id
            for submission in self.submissions
            if submission.accepted_id
            for transaction_id in submission.accepted_id.split(",")
        ]
