"""`mdd provision`: one PostgreSQL role and one MinIO user per service, each allowed only what its service does."""

from __future__ import annotations

import uuid

import pytest
from minio.error import S3Error
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError

from infra.provision.access import BUCKET_ACCESS, SERVICES, Access, Bucket, database_role, minio_user, tables_of
from infra.provision.database import provision_database
from infra.provision.object_store import provision_minio
from shared.db import init_db, make_engine, upgrade_db
from shared.s3_upload import UploadError
from shared.settings import Settings
from shared.store import MinioStore, ObjectNotFound


def _role_url(owner_url: str, role: str, password: str) -> str:
    scheme, rest = owner_url.split("://", 1)
    return f"{scheme}://{role}:{password}@{rest.split('@', 1)[1]}"


@pytest.fixture
def provisioned_database(postgres_url: str) -> dict[str, str]:
    owner = make_engine(postgres_url)
    upgrade_db(owner)
    passwords = {service: uuid.uuid4().hex for service in SERVICES}
    assert provision_database(owner, passwords) == [database_role(s) for s in SERVICES]
    owner.dispose()
    return {service: _role_url(postgres_url, database_role(service), passwords[service]) for service in SERVICES}


def test_each_service_role_reads_and_writes_its_tables_and_nothing_else(provisioned_database: dict[str, str]) -> None:
    every_table = set().union(*(tables_of(s) for s in SERVICES))
    for service, url in provisioned_database.items():
        engine = create_engine(url)
        own, foreign = set(tables_of(service)), every_table - set(tables_of(service))
        with engine.connect() as connection:
            for table in own:
                connection.execute(text(f'SELECT count(*) FROM "{table}"'))
            for table in foreign:
                with pytest.raises(ProgrammingError, match="permission denied"):
                    connection.execute(text(f'SELECT count(*) FROM "{table}"'))
                connection.rollback()
            with pytest.raises(ProgrammingError, match="permission denied"):
                connection.execute(text("CREATE TABLE intruso (id int)"))
            connection.rollback()
            with pytest.raises(ProgrammingError, match="must be owner"):
                connection.execute(text(f'DROP TABLE "{sorted(own)[0]}"'))
            connection.rollback()
        engine.dispose()
    assert not {"auth_user", "auth_api_key", "status_event"} & set(tables_of("notify"))
    assert not {"notify_provider", "ingest_instance"} & set(tables_of("status_api"))


def test_a_service_starts_on_its_role_once_the_owner_has_migrated(provisioned_database: dict[str, str]) -> None:
    from services.ingest.poller import PacsPoll
    from services.ingest.tables import AssemblingStudy, StoredInstance
    from shared.reliability.tables import RELIABILITY_TABLES

    engine = make_engine(provisioned_database["ingest"])
    init_db(engine, [StoredInstance, AssemblingStudy, PacsPoll, *RELIABILITY_TABLES])  # what ingest does at start
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO reliability_lease (name, owner, expires_at) VALUES ('x', 'y', now())"))
        assert connection.execute(text("SELECT count(*) FROM ingest_study")).scalar_one() == 0
    engine.dispose()


def test_provisioning_again_changes_the_passwords_and_keeps_the_grants(postgres_url: str) -> None:
    owner = make_engine(postgres_url)
    upgrade_db(owner)
    provision_database(owner, {service: "primera" for service in SERVICES})
    provision_database(owner, {service: "segunda" for service in SERVICES})
    with owner.connect() as connection:
        grants = connection.execute(
            text("SELECT table_name FROM information_schema.role_table_grants "
                 "WHERE grantee = :role AND privilege_type = 'INSERT'"), {"role": "mdd_infer"}
        ).scalars().all()
    owner.dispose()
    assert sorted(set(grants)) == tables_of("infer")


@pytest.fixture
def provisioned_minio(minio) -> tuple[Settings, dict[str, MinioStore]]:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        store_backend="minio", minio_endpoint=minio.endpoint,
        bucket_dicom=f"p{tag}-dicom", bucket_derived=f"p{tag}-derived", bucket_results=f"p{tag}-results",
    )
    keys = {service: uuid.uuid4().hex for service in SERVICES}
    assert provision_minio(settings, minio.access_key, minio.secret_key, keys) == [minio_user(s) for s in SERVICES]
    stores = {service: MinioStore(minio.endpoint, minio_user(service), keys[service]) for service in SERVICES}
    return settings, stores


def test_each_service_minio_user_reaches_only_its_buckets(provisioned_minio) -> None:  # type: ignore[no-untyped-def]
    settings, stores = provisioned_minio
    names = {bucket: getattr(settings, bucket.value) for bucket in Bucket}
    for bucket, name in names.items():  # something to read in every bucket, written by whoever may write there
        writer = next(s for s in SERVICES if BUCKET_ACCESS[s].get(bucket) is Access.READ_WRITE)
        stores[writer].put_bytes(name, "HGE/1.2.3/objeto", b"datos", "application/octet-stream")
    for service, store in stores.items():
        store.ensure_buckets(list(names.values()))  # what the service does when it starts
        for bucket, name in names.items():
            access = BUCKET_ACCESS[service].get(bucket)
            if access is None:
                with pytest.raises(S3Error) as denied:
                    store.get_bytes(name, "HGE/1.2.3/objeto")
                assert denied.value.code == "AccessDenied", (service, bucket)
            else:
                assert store.get_bytes(name, "HGE/1.2.3/objeto") == b"datos", (service, bucket)
            if access is Access.READ_WRITE:
                store.put_bytes(name, f"HGE/1.2.3/{service}", b"x", "application/octet-stream")
            else:
                with pytest.raises(UploadError, match="AccessDenied"):
                    store.put_bytes(name, f"HGE/1.2.3/{service}", b"x", "application/octet-stream")
    with pytest.raises(ObjectNotFound):
        stores["status_api"].get_bytes(names[Bucket.DICOM], "HGE/no-existe")


def test_provisioning_minio_again_rotates_the_keys(minio, provisioned_minio) -> None:  # type: ignore[no-untyped-def]
    settings, stores = provisioned_minio
    provision_minio(settings, minio.access_key, minio.secret_key, {service: uuid.uuid4().hex for service in SERVICES})
    with pytest.raises(S3Error) as refused:
        stores["infer"].get_bytes(settings.bucket_derived, "cualquiera")
    assert refused.value.code in ("InvalidAccessKeyId", "SignatureDoesNotMatch")
