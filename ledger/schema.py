"""Every table of the database in one metadata: the ledger's (ledger/models.py), ledger
time's (ledger/time_models.py), the seals' (ledger/chain_models.py), wallet tokens'
(ledger/wallet_token_models.py) and the webhooks' (ledger/webhooks/models.py), which
register their tables on the same Base."""

from __future__ import annotations

from ledger.chain_models import Seal
from ledger.models import Base
from ledger.time_models import BalanceSnapshot, PeriodClose
from ledger.wallet_token_models import CorsOrigin, WalletToken, WalletTokenIssuer, WalletTokenKey
from ledger.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "BalanceSnapshot",
    "CorsOrigin",
    "PeriodClose",
    "Seal",
    "WalletToken",
    "WalletTokenIssuer",
    "WalletTokenKey",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "metadata",
]

metadata = Base.metadata
