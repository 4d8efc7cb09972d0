"""Who may touch what: each service's buckets and tables, the one table both provisioners read.

A service reads and writes only the tables declared in its own folder and in ``shared/`` (services
never import each other), and the buckets listed here. Operators' commands (``mdd db``, ``mdd dlq``,
``mdd studies``) run as the database owner through the ``provision`` service, not as a service role.
"""

from __future__ import annotations

import importlib
from enum import Enum
from typing import Final

from shared.schema import TABLE_MODULES
from shared.settings import Settings


class Access(str, Enum):
    """What a service may do in a bucket."""

    READ = "read"
    READ_WRITE = "read_write"


class Bucket(str, Enum):
    """The three buckets, by the setting that names them."""

    DICOM = "bucket_dicom"
    DERIVED = "bucket_derived"
    RESULTS = "bucket_results"


SERVICES: Final[tuple[str, ...]] = ("ingest", "preprocess", "infer", "notify", "status_api")

BUCKET_ACCESS: Final[dict[str, dict[Bucket, Access]]] = {
    # received instances in; SR and mosaic of a study out again by C-MOVE/C-GET
    "ingest": {Bucket.DICOM: Access.READ_WRITE, Bucket.RESULTS: Access.READ},
    "preprocess": {Bucket.DICOM: Access.READ, Bucket.DERIVED: Access.READ_WRITE},
    "infer": {Bucket.DERIVED: Access.READ},
    # SR, mosaic and providers' de-identified copies; links signed for them
    "notify": {Bucket.DICOM: Access.READ, Bucket.DERIVED: Access.READ, Bucket.RESULTS: Access.READ_WRITE},
    # WADO-RS, thumbnails, the mosaic
    "status_api": {Bucket.DICOM: Access.READ, Bucket.DERIVED: Access.READ, Bucket.RESULTS: Access.READ},
}

READ_ACTIONS: Final[tuple[str, ...]] = ("s3:GetObject",)
WRITE_ACTIONS: Final[tuple[str, ...]] = (
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
BUCKET_ACTIONS: Final[tuple[str, ...]] = ("s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads")


def minio_user(service: str) -> str:
    """The MinIO access key of a service."""
    return f"mdd-{service.replace('_', '-')}"


def database_role(service: str) -> str:
    """The PostgreSQL role of a service."""
    return f"mdd_{service}"


def minio_secret_variable(service: str) -> str:
    """The ``.env`` variable holding a service's MinIO secret key."""
    return f"{service.upper()}_MINIO_SECRET"


def database_password_variable(service: str) -> str:
    """The ``.env`` variable holding a service's PostgreSQL password."""
    return f"{service.upper()}_DB_PASSWORD"


def minio_policy(service: str, settings: Settings) -> dict[str, object]:
    """The IAM policy of a service's MinIO user: its buckets, read or read-write, nothing else."""
    statements: list[dict[str, object]] = []
    for bucket, access in BUCKET_ACCESS[service].items():
        name = getattr(settings, bucket.value)
        actions = READ_ACTIONS + (WRITE_ACTIONS if access is Access.READ_WRITE else ())
        statements.append({"Effect": "Allow", "Action": list(BUCKET_ACTIONS), "Resource": [f"arn:aws:s3:::{name}"]})
        statements.append({"Effect": "Allow", "Action": list(actions), "Resource": [f"arn:aws:s3:::{name}/*"]})
    return {"Version": "2012-10-17", "Statement": statements}


def table_owners() -> dict[str, str | None]:
    """Each table and the service it belongs to; ``None`` for the shared ones every service uses."""

    owners: dict[str, str | None] = {}
    for module_name in TABLE_MODULES:
        module = importlib.import_module(module_name)
        parts = module_name.split(".")
        owner = parts[1] if parts[0] == "services" else None
        for value in vars(module).values():
            table = getattr(value, "__table__", None)
            if table is not None and getattr(value, "__module__", None) == module_name:
                owners[table.name] = owner
    return owners


def tables_of(service: str) -> list[str]:
    """The tables a service reads and writes: its own and the shared ones."""
    return sorted(name for name, owner in table_owners().items() if owner in (service, None))
