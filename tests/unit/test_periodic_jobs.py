"""The relay's slower jobs (sealing) run at most once per their own interval."""

from __future__ import annotations

from worker.relay import at_most_every


def test_a_job_runs_at_once_then_only_when_its_interval_has_passed():
    now = [100.0]
    runs: list[float] = []

    def seal() -> int:
        runs.append(now[0])
        return 1

    job = at_most_every(60, seal, clock=lambda: now[0])
    for moment in (100.0, 101.0, 159.9, 160.0, 200.0, 220.5):
        now[0] = moment
        job()

    assert runs == [100.0, 160.0, 220.5]
    assert job.__name__ == "seal"
