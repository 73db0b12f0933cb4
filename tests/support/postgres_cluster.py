"""Private PostgreSQL servers for tests that must configure, restart or restore one.

The machine's shared server is not a test's to reconfigure (WAL archiving needs a
restart), so these tests run their own: `initdb` into a scratch folder, a free loopback
port, settings of their own. The binaries are the ones pgserver ships (present wherever
Tally's dependencies are), so a server and the `pg_basebackup` that copies it always
share a major version. PostgreSQL refuses to run as root: under root the servers and
their tools run as pgserver's system user, as the embedded server does.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tally.stack import free_port

START_TIMEOUT_SECONDS = 60


def postgres_bin_dir() -> Path:
    """Where pgserver keeps `initdb`, `pg_ctl`, `pg_basebackup` and the rest."""
    # platformdirs warns that XDG_RUNTIME_DIR is unset (usual under root); pgserver copes.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def server_account() -> pwd.struct_passwd | None:
    """The system user servers run as: None for ourselves, pgserver's user under root."""
    if os.geteuid() != 0:
        return None
    from pgserver.utils import ensure_user_exists

    return ensure_user_exists("pgserver")


class PostgresTools:
    """PostgreSQL's command-line tools, run as the servers' system user, in one folder
    that user owns (removed with everything in it by `cleanup`)."""

    def __init__(self) -> None:
        self.bin_dir = postgres_bin_dir()
        self.account = server_account()
        # Not under pytest's temporary folders: those are private to root.
        self.root = Path(tempfile.mkdtemp(prefix="tally-pg-"))
        self._own(self.root)

    def _own(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def folder(self, name: str) -> Path:
        """A new folder under the root, private to the servers' user."""
        path = self.root / name
        path.mkdir(mode=0o700)
        self._own(path)
        return path

    def run(self, program: str, *args: str, timeout: float = 120) -> str:
        """Run a PostgreSQL tool (or any other program on the PATH) as the servers' user;
        its output. Fails with that output when the program does."""
        tool = self.bin_dir / program
        command = [str(tool) if tool.is_file() else program, *args]
        account = self.account
        # Output through a file: a server that pg_ctl starts must not hold our pipe open.
        with tempfile.TemporaryFile() as output:
            result = subprocess.run(
                command,
                cwd=self.root,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                user=account.pw_uid if account else None,
                group=account.pw_gid if account else None,
                extra_groups=[] if account else None,
            )
            output.seek(0)
            text = output.read().decode(errors="replace")
        if result.returncode != 0:
            raise AssertionError(f"`{' '.join(command)}` exited {result.returncode}:\n{text}")
        return text

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Cluster:
    """One PostgreSQL server: a data directory and the loopback port it listens on."""

    tools: PostgresTools
    name: str
    data_dir: Path
    port: int = 0

    @property
    def server_url(self) -> str:
        """The `postgres` database as the `postgres` superuser (trust auth, loopback only)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log_file(self) -> Path:
        return self.tools.root / f"{self.name}.log"

    def configure(self, **settings: str | int) -> None:
        """Append settings to postgresql.conf (a later line wins); effective at next start."""
        lines = "".join(f"{key} = {_quoted(value)}\n" for key, value in settings.items())
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"\n# set by the test ({self.name})\n{lines}")

    def start(self) -> None:
        """Start on a free loopback port; returns once the server accepts connections."""
        self.port = free_port()
        self.configure(
            listen_addresses="127.0.0.1",
            port=self.port,
            unix_socket_directories=str(self.tools.root),
        )
        self.tools.run(
            "pg_ctl",
            "start",
            "--wait",
            f"--timeout={START_TIMEOUT_SECONDS}",
            f"--pgdata={self.data_dir}",
            f"--log={self.log_file}",
            timeout=START_TIMEOUT_SECONDS + 10,
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it runs (`fast`: roll back open transactions, then stop)."""
        if (self.data_dir / "postmaster.pid").exists():
            self.tools.run("pg_ctl", "stop", "--wait", f"--pgdata={self.data_dir}", f"-m{mode}")

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_file.read_text(errors="replace")[-chars:]
        return ""


def _quoted(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def initdb(tools: PostgresTools, name: str) -> Cluster:
    """A new, empty cluster (superuser `postgres`, trust auth), not started."""
    data_dir = tools.root / name
    # No fsync after initdb: a test's cluster is thrown away if the machine crashes.
    tools.run(
        "initdb",
        f"--pgdata={data_dir}",
        "--username=postgres",
        "--auth=trust",
        "--encoding=UTF8",
        "--no-sync",
    )
    return Cluster(tools, name, data_dir)


@contextlib.contextmanager
def running(cluster: Cluster) -> Iterator[Cluster]:
    """Start the cluster; stop it after, whatever happened."""
    try:
        cluster.start()
    except (AssertionError, subprocess.TimeoutExpired) as error:
        # pg_ctl may give up waiting on a server that did start: that one must not linger.
        with contextlib.suppress(AssertionError):
            cluster.stop("immediate")
        raise AssertionError(f"{error}\n{cluster.name} log:\n{cluster.log_tail()}") from None
    try:
        yield cluster
    finally:
        cluster.stop()
