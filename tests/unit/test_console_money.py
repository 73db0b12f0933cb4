"""The console writes any amount exactly, in its asset's decimals, however large."""

from __future__ import annotations

from flask import Flask, g

from api.console.formatting import money
from ledger.money import MAX_AMOUNT


def test_the_console_writes_128_bit_amounts_exactly_in_the_assets_decimals() -> None:
    with Flask(__name__).app_context():
        g.asset_decimals = {"WEI": 18, "PTS": 0}

        assert money(MAX_AMOUNT, "WEI") == "170,141,183,460,469,231,731.687303715884105727 WEI"
        assert money(-10 * 10**18, "WEI") == "-10.000000000000000000 WEI"
        assert money(2**100, "PTS") == "1,267,650,600,228,229,401,496,703,205,376 PTS"
        # A system account past the ceiling too.
        assert money(-3 * MAX_AMOUNT, "PTS") == f"-{3 * MAX_AMOUNT:,} PTS"
