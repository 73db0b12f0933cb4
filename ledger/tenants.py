"""Tenants: creating one, provisioning it with keys and assets, its rate limit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import text

from ledger import audit
from ledger.assets import create_asset
from ledger.audit import OPERATOR, Actor
from ledger.db import UnitOfWork
from ledger.errors import InvalidRequest, TenantNotFound
from ledger.keys import issue_api_key
from ledger.vocabulary import Scope

INSERT_TENANT = text("INSERT INTO tenants (name) VALUES (:name) RETURNING id")
LOCK_RATE_LIMIT = text("SELECT rate_limit_per_second FROM tenants WHERE id = :t FOR UPDATE")
SET_RATE_LIMIT = text("UPDATE tenants SET rate_limit_per_second = :n WHERE id = :t")


@dataclass(frozen=True)
class AssetSpec:
    """An asset to register: its code, display name and decimal places."""

    code: str
    name: str
    decimal_places: int


EURO = AssetSpec("EUR", "Euro", 2)


@dataclass(frozen=True)
class ProvisionedTenant:
    """A new tenant, with its keys in clear (shown this once) by scope."""

    id: uuid.UUID
    name: str
    api_keys: dict[Scope, str]

    def key(self, scope: Scope | str) -> str:
        """The tenant's key of `scope`."""
        return self.api_keys[Scope(scope)]


def create_tenant(work: UnitOfWork, name: str) -> uuid.UUID:
    """A new tenant's id."""
    if not 1 <= len(name) <= 200:
        raise InvalidRequest("invalid_name", "tenant name must be 1-200 characters", field="name")
    tenant_id: uuid.UUID = work.connection.execute(INSERT_TENANT, {"name": name}).scalar_one()
    return tenant_id


def provision_tenant(
    work: UnitOfWork,
    name: str,
    *,
    scopes: Iterable[Scope | str] = (Scope.ADMIN,),
    assets: Sequence[AssetSpec] = (EURO,),
    rate_limit_per_second: int | None = None,
) -> ProvisionedTenant:
    """A new tenant with a key of each of `scopes`, its `assets` and, if given, its own rate
    limit: what `tally tenants create`, `tally dev`, the bench and the tests start from."""
    tenant_id = create_tenant(work, name)
    keys = {Scope(scope): issue_api_key(work, tenant_id, scope)["api_key"] for scope in scopes}
    for asset in assets:
        create_asset(work, tenant_id, asset.code, asset.name, asset.decimal_places)
    if rate_limit_per_second is not None:
        set_rate_limit(work, tenant_id, rate_limit_per_second)
    return ProvisionedTenant(tenant_id, name, keys)


def set_rate_limit(
    work: UnitOfWork, tenant_id: uuid.UUID, per_second: int | None, *, actor: Actor = OPERATOR
) -> None:
    """Set the requests per second each of the tenant's keys may make (None: the default)."""
    if per_second is not None and (
        isinstance(per_second, bool) or not isinstance(per_second, int) or per_second < 1
    ):
        raise InvalidRequest(
            "invalid_rate_limit", "rate limit must be a positive whole number", field="per_second"
        )
    conn = work.connection
    before = conn.execute(LOCK_RATE_LIMIT, {"t": tenant_id}).first()
    if before is None:
        raise TenantNotFound(f"no tenant {tenant_id}")
    conn.execute(SET_RATE_LIMIT, {"t": tenant_id, "n": per_second})
    audit.append_event(
        conn,
        tenant_id,
        actor,
        "tenant.rate_limit_changed",
        f"tenant:{tenant_id}",
        {"before": before[0], "after": per_second},
    )
