"""The overview: the last hour and day, the queue, webhook deliveries, and three charts."""

from __future__ import annotations

from api.console import charts
from api.console.blueprint import bp, principal, render
from api.database import request_connection
from ledger.activity import tenant_activity


@bp.get("/")
def overview() -> tuple[str, int]:
    with request_connection() as conn:
        activity = tenant_activity(conn, principal().tenant_id)
    latency_times = [bucket for bucket, *_ in activity.latency]
    return render(
        "overview.html",
        activity=activity,
        applied_chart=charts.bar_chart(
            "chart-applied",
            "Transactions applied per minute, last hour",
            activity.applied_per_minute,
        ),
        latency_chart=charts.line_chart(
            "chart-latency",
            "Accept to applied latency, last hour (5-minute buckets)",
            latency_times,
            {
                "p50": [p50 for _, p50, _, _ in activity.latency],
                "p95": [p95 for _, _, p95, _ in activity.latency],
                "p99": [p99 for _, _, _, p99 in activity.latency],
            },
            " ms",
        ),
        rejections_chart=charts.horizontal_bars(
            "chart-rejections",
            "Rejections by code, last day",
            list(activity.day.rejections.items()),
        ),
    )
