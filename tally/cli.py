"""The `tally` command."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import OperationalError

from config.settings import Settings, SettingsError
from ledger.db import LoginRefused
from ledger.errors import LedgerError
from ledger.vocabulary import Scope

if TYPE_CHECKING:
    from ledger.db import UnitOfWork


@contextmanager
def command_unit_of_work(settings: Settings, *, publishes: bool = False) -> Iterator[UnitOfWork]:
    """A command's one unit of work, on an engine of its own; with `publishes`, the
    transaction ids it publishes go to the broker (BROKER_URL) once it has committed."""
    from ledger.db import make_engine, unit_of_work

    publisher = None
    if publishes:
        from worker.publisher import Publisher

        publisher = Publisher(settings.require_broker_url(), settings.queue)
    engine = make_engine(settings.require_database_url(), pool_size=1, max_overflow=0)
    try:
        with unit_of_work(engine, publish=publisher.publish if publisher else None) as work:
            yield work
    finally:
        engine.dispose()


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from config.settings import API_ROLE, MONITOR_ROLE
    from tally.migrate import set_login_passwords, upgrade

    database_url = settings.require_database_url()
    upgrade(database_url)
    print("database is at the latest schema")
    passwords = {API_ROLE: settings.api_db_password, MONITOR_ROLE: settings.monitor_db_password}
    for role in set_login_passwords(database_url, passwords):
        print(f"{role} can log in with its password from the environment")
    return 0


def _scope(args: argparse.Namespace) -> str:
    # --admin predates scopes: it is `--scope admin`.
    return str(Scope.ADMIN) if args.admin else str(args.scope)


def cmd_tenants_create(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.tenants import provision_tenant

    with command_unit_of_work(settings) as work:
        tenant = provision_tenant(work, args.name, scopes=[_scope(args)], assets=())
    scope = _scope(args)
    print(
        json.dumps(
            {
                "tenant_id": str(tenant.id),
                "name": args.name,
                "api_key": tenant.key(scope),
                "scope": scope,
            }
        )
    )
    return 0


def cmd_tenants_set_rate_limit(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.tenants import set_rate_limit

    with command_unit_of_work(settings) as work:
        set_rate_limit(work, args.tenant, args.per_second)
    print(json.dumps({"tenant_id": str(args.tenant), "rate_limit_per_second": args.per_second}))
    return 0


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.keys import issue_api_key

    with command_unit_of_work(settings) as work:
        key = issue_api_key(work, args.tenant, _scope(args))
    print(json.dumps({"tenant_id": str(args.tenant), **key}))
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.keys import list_api_keys

    with command_unit_of_work(settings) as work:
        keys = list_api_keys(work.connection, args.tenant)
    print(json.dumps(keys, indent=2))
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.keys import revoke_api_keys_matching

    with command_unit_of_work(settings) as work:
        revoked = revoke_api_keys_matching(work, args.key)
    print(json.dumps({"revoked": revoked}))
    return 0 if revoked else 1


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.chain_verify import verify_chains
    from ledger.verify import verify_ledger

    with command_unit_of_work(settings) as work:
        report = verify_ledger(work.connection, args.tenant)
        if args.chain:
            report.checks += verify_chains(work.connection, args.tenant).checks
    print("\n".join(report.lines()))
    print("ledger is consistent" if report.ok else "LEDGER INVARIANTS VIOLATED")
    return 0 if report.ok else 1


def cmd_seal(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.db import make_engine
    from worker.relay import seal_once

    engine = make_engine(settings.require_database_url(), pool_size=1, max_overflow=0)
    try:
        for seal in seal_once(engine, args.tenant):
            print(json.dumps(seal.view()))
    finally:
        engine.dispose()
    return 0


def cmd_requeue(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.audit import OPERATOR
    from ledger.queue import requeue_transaction

    with command_unit_of_work(settings, publishes=True) as work:
        view = requeue_transaction(work, args.tenant, args.transaction_id, actor=OPERATOR)
    print(json.dumps({"requeued": True, "transaction": view}))
    return 0


def cmd_webhook_secrets_new_key(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.webhooks.secrets import new_key

    print(new_key())
    return 0


def cmd_webhook_secrets_reseal(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.wallet_token_keys import reseal_signing_keys
    from ledger.webhooks.endpoints import reseal_secrets
    from ledger.webhooks.secrets import SecretBox

    box = SecretBox(settings.require_webhook_secret_keys())
    with command_unit_of_work(settings) as work:
        report = reseal_secrets(work, box)
        # The wallet-token signing keys are sealed by the same keys.
        signing_keys, unreadable_keys = reseal_signing_keys(work, box)
    print(
        json.dumps(
            {
                "resealed": report.resealed,
                "unreadable": [str(i) for i in report.unreadable],
                "signing_keys_resealed": signing_keys,
                "unreadable_signing_keys": unreadable_keys,
            }
        )
    )
    if report.unreadable or unreadable_keys:
        names = ", ".join(
            [str(endpoint_id) for endpoint_id in report.unreadable]
            + [f"wallet-token key {kid}" for kid in unreadable_keys]
        )
        print(
            f"tally: no key in TALLY_WEBHOOK_SECRET_KEYS opens the secrets of: {names}",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_wallet_token_keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.wallet_token_keys import rotate_signing_key

    with command_unit_of_work(settings) as work:
        retired = rotate_signing_key(work, args.tenant)
    print(json.dumps({"retired": retired}))
    return 0


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a UUID") from None


def _per_second(value: str) -> int | None:
    if value == "default":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None


def _scope_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scope",
        choices=[str(scope) for scope in Scope],
        default=str(Scope.WRITE),
        help="what the key may do (docs/security.md); default write",
    )
    parser.add_argument("--admin", action="store_true", help="the same as --scope admin")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tally", description="Tally wallet ledger")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Callable[..., int], help: str, parent: Any = commands) -> Any:
        sub = parent.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    add("migrate", cmd_migrate, "apply the database migrations")

    tenants = commands.add_parser("tenants", help="manage tenants").add_subparsers(
        dest="tenants_command", required=True
    )
    create = add(
        "create", cmd_tenants_create, "create a tenant and print its first API key", tenants
    )
    create.add_argument("name")
    _scope_arguments(create)
    rate = add(
        "set-rate-limit",
        cmd_tenants_set_rate_limit,
        "set the requests per second each of a tenant's keys may make",
        tenants,
    )
    rate.add_argument("tenant", type=_uuid)
    rate.add_argument(
        "per_second", type=_per_second, help="a positive number, or 'default' for the setting"
    )

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    key_create = add("create", cmd_keys_create, "create another API key for a tenant", keys)
    key_create.add_argument("--tenant", required=True, type=_uuid)
    _scope_arguments(key_create)
    key_list = add("list", cmd_keys_list, "list a tenant's keys: prefix, scope, last use", keys)
    key_list.add_argument("--tenant", required=True, type=_uuid)
    key_revoke = add("revoke", cmd_keys_revoke, "revoke an API key (the key or its prefix)", keys)
    key_revoke.add_argument("key")

    verify = add("verify", cmd_verify, "check the ledger invariants; non-zero exit on violation")
    verify.add_argument("--tenant", type=_uuid, help="check only this tenant")
    verify.add_argument(
        "--chain", action="store_true", help="also recompute the hash chains and the seals"
    )
    seal = add("seal", cmd_seal, "seal the hash chains of tenants with entries since their seal")
    seal.add_argument("--tenant", type=_uuid, help="seal only this tenant")

    requeue = add("requeue", cmd_requeue, "put a failed transaction back in the queue")
    requeue.add_argument("--tenant", required=True, type=_uuid)
    requeue.add_argument("transaction_id", type=_uuid)

    secrets = commands.add_parser(
        "webhook-secrets", help="manage the keys that seal webhook secrets at rest"
    ).add_subparsers(dest="webhook_secrets_command", required=True)
    add(
        "new-key",
        cmd_webhook_secrets_new_key,
        "print a new key for TALLY_WEBHOOK_SECRET_KEYS",
        secrets,
    )
    add(
        "reseal",
        cmd_webhook_secrets_reseal,
        "seal every webhook secret again under the first key of TALLY_WEBHOOK_SECRET_KEYS"
        " (after adding a new key); exits 1 naming the endpoints no key opens",
        secrets,
    )

    token_keys = commands.add_parser(
        "wallet-token-keys", help="manage the keys that sign a tenant's wallet tokens"
    ).add_subparsers(dest="wallet_token_keys_command", required=True)
    rotate = add(
        "rotate",
        cmd_wallet_token_keys_rotate,
        "retire the tenant's signing key (its tokens verify until they expire); the next"
        " token issued is signed by a new one",
        token_keys,
    )
    rotate.add_argument("--tenant", required=True, type=_uuid)

    _add_runtime_commands(commands, add)
    return parser


def _add_runtime_commands(commands: Any, add: Callable[..., Any]) -> None:
    """Commands that run processes: the API, the worker, the relay, the dev stack, the bench."""
    from tally import serve

    api = add("api", serve.run_api, "serve the HTTP API with granian")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=2, help="API worker processes (granian)")
    api.add_argument(
        "--threads",
        type=int,
        help="Flask threads per API process (default: TALLY_API_THREADS, else 32)",
    )
    api.add_argument("--access-log", action="store_true")

    worker = add("worker", serve.run_worker, "run a Celery worker (applies queued transactions)")
    worker.add_argument(
        "--concurrency", type=int, default=2, help="pool size (prefork and threads pools)"
    )
    worker.add_argument("--loglevel", default="INFO")
    worker.add_argument(
        "--pool",
        choices=["prefork", "threads", "solo"],
        default="solo",
        help="Celery pool (default solo: one process, no hand-off to pool children, the "
        "cheapest per transaction; run more worker processes to scale out)",
    )

    relay = add(
        "relay",
        serve.run_relay,
        "re-publish stale queued transactions, expire due holds, and deliver webhooks"
        " unless --no-webhooks",
    )
    relay.add_argument(
        "--no-webhooks",
        action="store_true",
        help="do not deliver webhooks here (run `tally webhooks` for them instead)",
    )

    add("webhooks", serve.run_webhooks, "deliver webhooks (the webhook dispatcher alone)")

    from tally.bench.arguments import add_arguments
    from tally.bench.run import run_bench

    add_arguments(add("bench", run_bench, "benchmark the real stack against the raw ledger write"))

    from tally.dev import run_dev

    dev = add("dev", run_dev, "run the whole stack locally (API, worker and relay)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--data-dir", default=".tally", help="embedded databases and dev credentials")
    dev.add_argument(
        "--concurrency", type=int, default=1, help="`tally worker` processes (default 1)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return int(args.handler(args, settings))
    except SettingsError as error:
        print(f"tally: {error}", file=sys.stderr)
        return 2
    except LedgerError as error:
        print(f"tally: {error.message} ({error.code})", file=sys.stderr)
        return 1
    except LoginRefused as error:
        print(f"tally: {error}", file=sys.stderr)
        return 2
    except OperationalError as error:
        print(f"tally: cannot reach the database: {error.orig}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
