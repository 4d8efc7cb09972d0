"""Context-managed launchers for real Kafka, MinIO and PostgreSQL servers.

Each launcher starts the server on a free port of 127.0.0.1 with its data in a fresh
temporary folder, waits (bounded) until it answers, yields its connection details, and
stops it and deletes the folder on exit.  A server that does not come up raises
:class:`ServerStartError` carrying the last lines of its log.

Missing artefacts are fetched on first use through ``infra/kafka/fetch.sh`` and
``infra/minio/fetch.sh`` (cached in ``${MDD_CACHE_DIR:-<repo>/.cache}``).

Command line: ``python -m infra.servers kafka|kafka-sasl|minio|postgres`` starts one server, prints
its connection details as JSON and runs until interrupted.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

INFRA_DIR = Path(__file__).resolve().parent
REPO_ROOT = INFRA_DIR.parent

KAFKA_START_TIMEOUT_S = 120.0
MINIO_START_TIMEOUT_S = 60.0
POSTGRES_START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


class ServerStartError(RuntimeError):
    """A server process could not be started or did not become ready in time."""


@dataclass(frozen=True)
class KafkaInfo:
    """Connection details of a running Kafka broker.

    The SASL fields are set only for a broker started with ``sasl=True``: they are the
    credentials of its super user (SCRAM-SHA-512).
    """

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class S3Info:
    """Connection details of a running S3-compatible server (``endpoint`` is ``host:port``)."""

    endpoint: str
    access_key: str
    secret_key: str
    secure: bool = False

    @property
    def url(self) -> str:
        """The endpoint as an http(s) URL."""
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"


@dataclass(frozen=True)
class PostgresInfo:
    """Connection details of a running PostgreSQL server (SQLAlchemy URL, psycopg driver)."""

    url: str
    host: str
    port: int
    user: str
    database: str

    @property
    def dsn(self) -> str:
        """A libpq connection string for psycopg/psql."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.database}"


# --------------------------------------------------------------------------- helpers


def cache_dir() -> Path:
    """The artefact cache folder: ``$MDD_CACHE_DIR`` or ``<repo>/.cache``."""
    return Path(os.environ.get("MDD_CACHE_DIR") or REPO_ROOT / ".cache")


def free_ports(count: int = 1) -> list[int]:
    """Return ``count`` distinct TCP ports that are currently free on 127.0.0.1."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _run_fetch_script(script: Path) -> Path:
    """Run a fetch script (idempotent) and return the path it prints on its last line."""
    try:
        done = subprocess.run(
            ["bash", str(script)], check=True, stdout=subprocess.PIPE, text=True
        )
    except subprocess.CalledProcessError as exc:
        raise ServerStartError(f"{script.relative_to(REPO_ROOT)} failed (exit {exc.returncode})") from exc
    return Path(done.stdout.strip().splitlines()[-1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _which(name: str, extra_globs: tuple[str, ...] = ()) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        (p for pattern in extra_globs for p in glob.glob(pattern)),
        key=lambda p: [int(x) if x.isdigit() else x for x in Path(p).parts],
    )
    if candidates:
        return candidates[-1]
    raise ServerStartError(f"'{name}' not found; run infra/setup-debian.sh")


class _Process:
    """A server child process in its own session, with output captured to a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log = log
        self._argv, self._cwd, self._env = argv, cwd, env
        self._ready: tuple[Callable[[], bool], float] | None = None
        self._spawn()

    def _spawn(self) -> None:
        self._log_handle = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        try:
            self.popen = subprocess.Popen(
                self._argv,
                cwd=self._cwd,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=self._log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            self._log_handle.close()
            raise ServerStartError(f"{self.name}: cannot start {self._argv[0]}: {exc}") from exc

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.popen.poll() is None

    def restart(self) -> None:
        """Start the stopped process again (same command line, so same ports and data) and
        wait until it is ready by the check and timeout of the last ``wait_ready``."""
        if self.running:
            raise RuntimeError(f"{self.name} is still running")
        self._spawn()
        if self._ready is not None:
            self.wait_ready(*self._ready)

    def wait_ready(self, check: Callable[[], bool], timeout: float) -> None:
        """Poll ``check`` until it returns True; fail if the process exits or time runs out."""
        self._ready = (check, timeout)
        deadline = time.monotonic() + timeout
        while True:
            code = self.popen.poll()
            if code is not None:
                raise ServerStartError(
                    f"{self.name} exited with code {code} before becoming ready; "
                    f"last log lines ({self.log}):\n{_tail(self.log)}"
                )
            with contextlib.suppress(Exception):
                if check():
                    return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.name} not ready after {timeout:.0f}s; "
                    f"last log lines ({self.log}):\n{_tail(self.log)}"
                )
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> None:
        """Signal the whole process group, wait, and kill it if it lingers."""
        try:
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, sig)
                try:
                    self.popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
            # Reap stragglers (children of the main process) in any case.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)
        finally:
            self._log_handle.close()


class ServerControl:
    """Stop a launched server and start it again on the same ports with the same data.

    Pass one as ``control=`` to :func:`kafka_server`, :func:`minio_server`, :func:`postgres_server` or
    :func:`orthanc_server` to simulate an outage; the launcher still stops the server (whichever incarnation runs) on exit.
    """

    def __init__(self) -> None:
        self._process: _Process | None = None

    def _attach(self, process: _Process) -> None:
        self._process = process

    def _attached(self) -> _Process:
        if self._process is None:
            raise RuntimeError("ServerControl is not attached to a running launcher")
        return self._process

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._attached().running

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (``SIGKILL`` for a crash); its data folder is kept."""
        self._attached().stop(sig)

    def start(self) -> None:
        """Start the stopped server again and wait (bounded) until it answers as at first start."""
        self._attached().restart()


@contextlib.contextmanager
def _temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _run_in_thread(coro_factory: Callable[[], object]) -> object:
    """Run an async function to completion on a private event loop (safe inside a running loop)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro_factory()).result()  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Kafka


def kafka_libs() -> Path:
    """Folder with the Kafka broker jars, fetched with Maven on first use."""
    return _run_fetch_script(INFRA_DIR / "kafka" / "fetch.sh")


def hapi_fhir_libs() -> Path:
    """The folder of HAPI FHIR's validator jars (fetched with Maven on first use, then cached)."""
    return _run_fetch_script(INFRA_DIR / "fhir" / "fetch.sh")


def ohif_dist() -> Path:
    """Folder with the prebuilt OHIF viewer (``index.html``, ``app-config.js``), fetched with npm on first use."""
    return _run_fetch_script(INFRA_DIR / "ohif" / "fetch.sh")


def _kafka_cluster_id() -> str:
    """A random KRaft cluster id, never starting with "-" (the storage tool would read it as an option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"
_KAFKA_SECRET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~-")


@dataclass(frozen=True)
class _KafkaSasl:
    """Credentials of a SASL-enabled broker: the SCRAM super user and the controller's PLAIN login."""

    admin_user: str
    admin_password: str
    controller_password: str


def _check_kafka_secret(kind: str, value: str) -> str:
    # These values go verbatim into JAAS lines and into StorageTool's "[name=..,password=..]".
    if not value or not set(value) <= _KAFKA_SECRET_CHARS:
        raise ValueError(f"{kind} de Kafka inválido / invalid Kafka {kind}: use only [A-Za-z0-9._~-]")
    return value


def _kafka_sasl_properties(port: int, controller_port: int, sasl: _KafkaSasl) -> dict[str, str]:
    """Overrides for a SASL_PLAINTEXT/SCRAM-SHA-512 client listener with ACLs enforced.

    SCRAM credentials live in the cluster metadata, which the controller cannot read before it
    authenticates, so the controller listener uses SASL/PLAIN with a static JAAS login instead.
    """
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    return {
        "listeners": f"SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": KAFKA_SASL_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": KAFKA_SASL_MECHANISM,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config":
            f'{scram} required username="{sasl.admin_user}" password="{sasl.admin_password}";',
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config":
            f'{plain} required username="controller" password="{sasl.controller_password}" '
            f'user_controller="{sasl.controller_password}";',
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{sasl.admin_user};User:controller",
    }


def _kafka_properties(port: int, controller_port: int, data_dir: Path, sasl: _KafkaSasl | None = None) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "3",
        "auto.create.topics.enable": "true",
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "3",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
    }
    if sasl is not None:
        settings.update(_kafka_sasl_properties(port, controller_port, sasl))
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _kafka_metadata_ok(bootstrap: str, **client_options: str) -> bool:
    """True when the broker answers a cluster metadata request listing at least one broker."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, **client_options)
        await admin.start()
        try:
            cluster = await admin.describe_cluster()
            return bool(cluster.get("brokers"))
        finally:
            await admin.close()

    return bool(_run_in_thread(probe))


@contextlib.contextmanager
def kafka_server(
    timeout: float = KAFKA_START_TIMEOUT_S,
    *,
    sasl: bool = False,
    admin_user: str = "admin",
    admin_password: str | None = None,
    control: ServerControl | None = None,
) -> Iterator[KafkaInfo]:
    """Run a single-node KRaft Kafka broker (combined broker+controller) on free ports.

    With ``sasl=True`` clients must authenticate with SASL/SCRAM-SHA-512 and Kafka ACLs are
    enforced (``StandardAuthorizer``, nothing allowed without an ACL). ``admin_user`` is a super
    user whose SCRAM credential is written when the storage is formatted; its password is
    ``admin_password`` or a random one, returned in the yielded :class:`KafkaInfo`.
    """
    sasl_config = None
    if sasl:
        sasl_config = _KafkaSasl(
            admin_user=_check_kafka_secret("usuario / user", admin_user),
            admin_password=_check_kafka_secret("contraseña / password", admin_password or secrets.token_hex(16)),
            controller_password=secrets.token_hex(16),
        )
    libs = kafka_libs()
    java = _which("java")
    classpath = f"{libs}/*"
    jvm = [
        java,
        "-Xms128m",
        "-Xmx512m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={INFRA_DIR / 'kafka' / 'log4j2.properties'}",
        "-cp",
        classpath,
    ]
    with _temp_dir("mdd-kafka-") as tmp:
        port, controller_port = free_ports(2)
        props = tmp / "server.properties"
        props.write_text(_kafka_properties(port, controller_port, tmp / "data", sasl_config))
        jvm.insert(1, f"-Dkafka.logs.dir={tmp / 'logs'}")
        log = tmp / "kafka.log"
        add_scram: list[str] = []
        if sasl_config is not None:
            add_scram = [
                "--add-scram",
                f"{KAFKA_SASL_MECHANISM}=[name={sasl_config.admin_user},password={sasl_config.admin_password}]",
            ]
        fmt = subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", "--standalone",
             "-t", _kafka_cluster_id(), "-c", str(props), *add_scram],
            cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        if fmt.returncode != 0:
            raise ServerStartError(
                f"kafka storage format failed (exit {fmt.returncode}):\n{fmt.stdout[-4000:]}"
            )
        proc = _Process("kafka", [*jvm, "kafka.Kafka", str(props)], log, cwd=tmp)
        if control is not None:
            control._attach(proc)
        try:
            bootstrap = f"127.0.0.1:{port}"
            info = KafkaInfo(bootstrap=bootstrap)
            client_options: dict[str, str] = {}
            if sasl_config is not None:
                info = KafkaInfo(
                    bootstrap=bootstrap,
                    security_protocol="SASL_PLAINTEXT",
                    sasl_mechanism=KAFKA_SASL_MECHANISM,
                    username=sasl_config.admin_user,
                    password=sasl_config.admin_password,
                )
                client_options = {
                    "security_protocol": info.security_protocol,
                    "sasl_mechanism": KAFKA_SASL_MECHANISM,
                    "sasl_plain_username": sasl_config.admin_user,
                    "sasl_plain_password": sasl_config.admin_password,
                }
            proc.wait_ready(lambda: _tcp_open(port) and _kafka_metadata_ok(bootstrap, **client_options), timeout)
            yield info
        finally:
            proc.stop()


# --------------------------------------------------------------------------- MinIO


def minio_binary() -> Path:
    """Path of the pinned MinIO server binary, built with ``go install`` on first use."""
    return _run_fetch_script(INFRA_DIR / "minio" / "fetch.sh")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local URL
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def minio_server(
    timeout: float = MINIO_START_TIMEOUT_S, *, control: ServerControl | None = None
) -> Iterator[S3Info]:
    """Run a single-drive MinIO server on free ports with random root credentials.

    ``control`` (a :class:`ServerControl`) can stop and start it again while the block runs.
    """
    binary = minio_binary()
    with _temp_dir("mdd-minio-") as tmp:
        port, console_port = free_ports(2)
        access_key = "mdd-" + secrets.token_hex(4)
        secret_key = secrets.token_hex(16)
        env = {
            **os.environ,
            "MINIO_ROOT_USER": access_key,
            "MINIO_ROOT_PASSWORD": secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
            "MINIO_CI_CD": "1",
        }
        argv = [
            str(binary), "server", str(tmp / "data"),
            "--address", f"127.0.0.1:{port}",
            "--console-address", f"127.0.0.1:{console_port}",
            "--certs-dir", str(tmp / "certs"),
            "--quiet",
        ]
        proc = _Process("minio", argv, tmp / "minio.log", cwd=tmp, env=env)
        if control is not None:
            control._attach(proc)
        try:
            proc.wait_ready(lambda: _http_ok(f"http://127.0.0.1:{port}/minio/health/live"), timeout)
            yield S3Info(endpoint=f"127.0.0.1:{port}", access_key=access_key, secret_key=secret_key)
        finally:
            proc.stop()


# --------------------------------------------------------------------------- PostgreSQL

_PG_GLOBS = ("/usr/lib/postgresql/*/bin/{name}",)  # Debian/Ubuntu layout, newest version wins


def _pg_tool(name: str) -> str:
    return _which(name, tuple(pattern.format(name=name) for pattern in _PG_GLOBS))


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as when we are root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServerStartError("running as root but neither a 'postgres' nor a 'nobody' account exists")


@contextlib.contextmanager
def postgres_server(
    database: str = "mdd", timeout: float = POSTGRES_START_TIMEOUT_S, control: ServerControl | None = None
) -> Iterator[PostgresInfo]:
    """Run a throw-away PostgreSQL cluster (trust auth, superuser ``postgres``) with ``database`` created.

    Durable as in production (fsync, synchronous commit, full-page writes on): a ``kill -9`` of the
    server loses nothing it acknowledged, which the fault tests rely on.
    """
    import psycopg

    initdb, postgres = _pg_tool("initdb"), _pg_tool("postgres")
    account = _unprivileged_user()
    as_user: list[str] = []
    if account is not None:
        as_user = [_which("runuser"), "-u", account.pw_name, "--"]
    with _temp_dir("mdd-postgres-") as tmp:
        if account is not None:
            os.chown(tmp, account.pw_uid, account.pw_gid)
        data = tmp / "data"
        init = subprocess.run(
            [*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--no-locale", "--no-sync"],
            cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        if init.returncode != 0:
            raise ServerStartError(f"initdb failed (exit {init.returncode}):\n{init.stdout[-4000:]}")
        (port,) = free_ports(1)
        argv = [
            *as_user, postgres, "-D", str(data),
            "-h", "127.0.0.1", "-p", str(port), "-k", str(tmp),
            "-c", "shared_buffers=32MB", "-c", "max_connections=100",
        ]
        proc = _Process("postgres", argv, tmp / "postgres.log", cwd=tmp)
        try:
            admin_dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2"

            def ready() -> bool:
                with psycopg.connect(admin_dsn):
                    return True

            proc.wait_ready(ready, timeout)
            if control is not None:
                control._attach(proc)
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{database}"')
            yield PostgresInfo(
                url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}",
                host="127.0.0.1",
                port=port,
                user="postgres",
                database=database,
            )
        finally:
            # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to leave.
            proc.stop(signal.SIGINT)


# --------------------------------------------------------------------------- Orthanc


@dataclass(frozen=True)
class OrthancInfo:
    """A running Orthanc PACS: DICOM AE title and port, REST API URL."""

    ae_title: str
    dicom_port: int
    http_url: str


@contextlib.contextmanager
def orthanc_server(ae_title: str = "ORTHANC", timeout: float = 60.0, control: ServerControl | None = None) -> Iterator[OrthancInfo]:
    """Run Orthanc (Debian package) as a PACS that answers C-ECHO, C-STORE, C-FIND and C-GET from anyone."""
    binary = _which("Orthanc", ("/usr/sbin/Orthanc", "/usr/bin/Orthanc"))
    with _temp_dir("mdd-orthanc-") as tmp:
        dicom_port, http_port = free_ports(2)
        config = {
            "Name": "PACS-PRUEBA",
            "DicomAet": ae_title,
            "DicomPort": dicom_port,
            "HttpPort": http_port,
            "StorageDirectory": str(tmp / "storage"),
            "IndexDirectory": str(tmp / "index"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "Plugins": [],
        }
        (tmp / "orthanc.json").write_text(json.dumps(config))
        proc = _Process("orthanc", [binary, str(tmp / "orthanc.json")], tmp / "orthanc.log", cwd=tmp)
        try:
            url = f"http://127.0.0.1:{http_port}"
            proc.wait_ready(lambda: _http_ok(f"{url}/system") and _tcp_open(dicom_port), timeout)
            if control is not None:
                control._attach(proc)
            yield OrthancInfo(ae_title=ae_title, dicom_port=dicom_port, http_url=url)
        finally:
            proc.stop()


# --------------------------------------------------------------------------- nginx


def _nginx_conf(server_block: str, tmp: Path) -> str:
    """A whole nginx.conf around one ``server { ... }`` block, every path in ``tmp`` (no root needed)."""
    # Run as root, nginx would drop its workers to "nobody", who may not read the files it serves.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp_paths = "".join(f"    {kind}_temp_path {tmp / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} info;\n"
        "events { worker_connections 256; }\n"
        "http {\n    include /etc/nginx/mime.types;\n    default_type application/octet-stream;\n"
        f"    access_log {tmp / 'access.log'};\n{temp_paths}{server_block}\n}}\n"
    )


@contextlib.contextmanager
def nginx_server(server_block: str, port: int, timeout: float = 30.0) -> Iterator[Path]:
    """Run nginx (Debian package) with one ``server`` block that listens on 127.0.0.1:``port``.

    Yields the server's folder (``access.log``, ``error.log``); its log lines show in a failure message.
    """
    binary = _which("nginx", ("/usr/sbin/nginx",))
    with _temp_dir("mdd-nginx-") as tmp:
        (tmp / "nginx.conf").write_text(_nginx_conf(server_block, tmp))
        argv = [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(tmp / "nginx.conf")]
        proc = _Process("nginx", argv, tmp / "error.log", cwd=tmp)
        try:
            proc.wait_ready(lambda: _tcp_open(port), timeout)
            yield tmp
        finally:
            proc.stop(signal.SIGQUIT)  # graceful: workers finish their requests


# --------------------------------------------------------------------------- DCMTK


def dcmtk_tool(name: str) -> str:
    """Path of a DCMTK command-line tool (e.g. ``echoscu``).

    pynetdicom installs Python look-alikes with the same names in the virtualenv, so every
    match on PATH is checked for DCMTK's ``--version`` banner.
    """
    seen: set[str] = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(folder, name)
        real = os.path.realpath(candidate)
        if real in seen or not os.access(candidate, os.X_OK):
            continue
        seen.add(real)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            banner = subprocess.run(
                [candidate, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, timeout=10,
            ).stdout
            if "dcmtk" in banner.lower():
                return candidate
    raise FileNotFoundError(f"DCMTK '{name}' not found on PATH; run infra/setup-debian.sh")


# --------------------------------------------------------------------------- dicom3tools


def dicom3tools_tool(name: str) -> str:
    """Path of a dicom3tools program (e.g. ``dciodvfy``, the IOD validator that judges what we write)."""
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"dicom3tools '{name}' not found on PATH; run infra/setup-debian.sh")
    return found


# --------------------------------------------------------------------------- CLI

LAUNCHERS: dict[str, Callable[[], contextlib.AbstractContextManager[object]]] = {
    "kafka": kafka_server,
    "kafka-sasl": lambda: kafka_server(sasl=True),  # SCRAM-SHA-512 + ACLs; prints the admin credentials
    "minio": minio_server,
    "postgres": postgres_server,
}


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.servers kafka|minio|postgres``: run one server until interrupted."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in LAUNCHERS:
        print(f"usage: python -m infra.servers {{{'|'.join(LAUNCHERS)}}}", file=sys.stderr)
        return 2

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Explicit handlers: a shell's background job inherits SIGINT as ignored.
    signal.signal(signal.SIGINT, _terminate)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        with LAUNCHERS[args[0]]() as info:
            print(json.dumps({"server": args[0], **asdict(info)}), flush=True)  # type: ignore[call-overload]
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    except ServerStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
