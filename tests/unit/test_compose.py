"""docker-compose.yml describes a stack the real `tally` command can run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from config.settings import Settings
from tally.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
TALLY_SERVICES = ("migrate", "api", "worker", "relay", "webhooks")
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items() if value is not None}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Dependency name -> condition (the short list form means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def test_the_stack_has_the_databases_brokers_and_tally_processes(services):
    assert {"postgres", "redis", "rabbitmq", *TALLY_SERVICES} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3-management")


def test_every_tally_command_parses_with_the_real_cli(services):
    parser = build_parser()
    commands = {name: command_of(s) for name, s in services.items()}
    tally_commands = {name: c for name, c in commands.items() if c and c[0] == "tally"}
    assert set(TALLY_SERVICES) <= set(tally_commands)
    for name, command in tally_commands.items():
        try:
            args = parser.parse_args(command[1:])
        except SystemExit:
            pytest.fail(f"{name}: `{shlex.join(command)}` is not a valid tally command")
        assert args.command == command[1], name


def test_the_api_listens_on_all_interfaces_on_its_published_port(services):
    args = build_parser().parse_args(command_of(services["api"])[1:])
    assert args.host == "0.0.0.0"
    assert any(str(port).endswith(f":{args.port}") for port in services["api"]["ports"])


def test_each_tally_process_runs_as_a_service_of_its_own(services):
    """A supervisor sees every process: each service runs the command it is named after."""
    parser = build_parser()
    for name in ("api", "worker", "relay", "webhooks"):
        assert parser.parse_args(command_of(services[name])[1:]).command == name, name


def test_the_relay_leaves_webhooks_to_their_own_service(services):
    """The relay (nothing else re-publishes stale queued transactions) runs without its
    dispatcher: webhook deliveries are the `webhooks` service's one job."""
    relay = build_parser().parse_args(command_of(services["relay"])[1:])
    assert relay.no_webhooks


def test_tally_services_know_their_database_and_broker(services):
    for name in TALLY_SERVICES:
        env = environment_of(services[name])
        assert env.get("DATABASE_URL", "").startswith("postgresql://"), name
        assert env.get("BROKER_URL"), name
        assert "build" in services[name] or "image" in services[name], name


def test_tally_services_are_built_from_the_dockerfile(services):
    assert (ROOT / "Dockerfile").is_file()
    for name in TALLY_SERVICES:
        assert services[name]["build"] in {".", "./"}, name


def test_dependencies_exist_and_wait_for_what_they_need(services):
    for name, service in services.items():
        for dependency, condition in depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert condition in CONDITIONS, f"{name}: unknown condition {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
    for name in ("api", "worker", "relay", "webhooks"):
        assert depends_on(services[name]).get("migrate") == "service_completed_successfully"
    assert depends_on(services["migrate"]).get("postgres") == "service_healthy"


def test_api_processes_share_rate_limits_and_metrics_need_a_token(services):
    env = environment_of(services["api"])
    # Redis holds the counts whichever broker the stack runs on.
    assert env["TALLY_RATE_LIMIT_STORAGE_URL"].startswith("redis://redis:")
    # No token baked in: unset, /metrics refuses every scrape.
    assert env["TALLY_METRICS_TOKEN"] == "${TALLY_METRICS_TOKEN:-}"


def postgres_settings(service: dict[str, Any]) -> dict[str, str]:
    """The `-c name=value` settings on the postgres server's command line."""
    command = command_of(service)
    assert command[0] == "postgres", command
    pairs = [command[i + 1] for i, flag in enumerate(command) if flag == "-c"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_postgres_archives_its_wal_to_a_volume_of_its_own(services, compose):
    """Point-in-time recovery needs every WAL segment kept beside the base backups
    (docs/operations.md#backups-and-restore)."""
    postgres = services["postgres"]
    settings = postgres_settings(postgres)
    assert settings["wal_level"] in {"replica", "logical"}
    assert settings["archive_mode"] == "on"
    assert int(settings["archive_timeout"]) > 0
    mounts = dict(volume.split(":", 1) for volume in postgres["volumes"])
    archive, base_backups = mounts["wal-archive"], mounts["base-backups"]
    # Copied into the archive volume, never overwriting a segment archived before.
    command = settings["archive_command"]
    assert f"cp %p {archive}/%f" in command
    assert f"test ! -f {archive}/%f" in command
    # Not inside the data directory: a restore replaces that, the archive must outlive it.
    assert not PurePosixPath(archive).is_relative_to(mounts["postgres-data"])
    assert {"wal-archive", "base-backups"} <= set(compose["volumes"])
    # The entrypoint hands both volumes to the server's user before the server starts.
    entrypoint = " ".join(postgres["entrypoint"])
    assert f"-o postgres -g postgres -m 700 {archive} {base_backups}" in entrypoint
    assert 'exec docker-entrypoint.sh "$$@"' in entrypoint


def required(name: str) -> re.Pattern[str]:
    """`${NAME:?message}`: compose refuses to start while NAME is unset or empty."""
    return re.compile(r"\$\{" + name + r":\?[^}]+\}")


def test_webhook_secret_keys_are_required_by_the_processes_that_seal_or_open_secrets(services):
    for name in ("api", "webhooks", "migrate"):
        env = environment_of(services[name])
        assert required("TALLY_WEBHOOK_SECRET_KEYS").fullmatch(
            env.get("TALLY_WEBHOOK_SECRET_KEYS", "")
        ), name
    for name in ("worker", "relay"):
        assert "TALLY_WEBHOOK_SECRET_KEYS" not in environment_of(services[name]), name


def test_the_api_logs_in_as_its_own_role_with_a_required_password(services):
    """RLS holds against the API's own SQL only if its login is neither the owner nor a
    superuser (docs/security.md#roles-and-logins)."""
    env = environment_of(services["api"])
    assert required("TALLY_API_DB_PASSWORD").fullmatch(env["TALLY_API_DB_PASSWORD"])
    assert required("TALLY_MONITOR_DB_PASSWORD").fullmatch(env["TALLY_MONITOR_DB_PASSWORD"])
    assert "TALLY_API_DATABASE_URL" not in env
    settings = Settings(
        database_url=env["DATABASE_URL"],
        api_db_password="from-the-environment",
        monitor_db_password="from-the-environment",
    )
    api_login = make_url(settings.require_api_database_url())
    assert (api_login.username, api_login.host, api_login.database) == (
        "tally_api",
        "postgres",
        "tally",
    )
    assert make_url(settings.require_monitor_database_url()).username == "tally_monitor"
    # The API is never handed the owner's credentials.
    assert make_url(env["DATABASE_URL"]).username is None
    assert make_url(env["DATABASE_URL"]).password is None


def test_migrate_sets_the_logins_passwords(services):
    env = environment_of(services["migrate"])
    assert required("TALLY_API_DB_PASSWORD").fullmatch(env["TALLY_API_DB_PASSWORD"])
    assert required("TALLY_MONITOR_DB_PASSWORD").fullmatch(env["TALLY_MONITOR_DB_PASSWORD"])


def test_tally_owns_the_database_and_is_not_a_superuser(services):
    postgres_env = environment_of(services["postgres"])
    # The image makes POSTGRES_USER a superuser: the owner must be another role.
    assert postgres_env["POSTGRES_USER"] != "tally"
    for name in ("migrate", "worker", "relay", "webhooks"):
        assert make_url(environment_of(services[name])["DATABASE_URL"]).username == "tally", name
    init_dir = next(
        volume.split(":")[0]
        for volume in services["postgres"]["volumes"]
        if ":/docker-entrypoint-initdb.d" in volume
    )
    init_sql = " ".join(path.read_text() for path in sorted((ROOT / init_dir).glob("*.sql")))
    create = re.search(r"CREATE ROLE tally ([^;]+);", init_sql)
    assert create is not None
    assert "CREATEROLE" in create.group(1) and "SUPERUSER" not in create.group(1)
    assert "ALTER DATABASE tally OWNER TO tally" in init_sql
