"""Real-server smoke tests for the launchers in ``infra.servers`` (and the DCMTK tools).

Every test talks to a real process: a KRaft Kafka broker, a MinIO server, a PostgreSQL
cluster, and DCMTK's ``echoscu`` against a pynetdicom SCP.  A server that cannot start makes
the fixture, and so the test, fail.
"""

from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import uuid


from infra.servers import (
    KafkaInfo,
    PostgresInfo,
    S3Info,
    ServerControl,
    dcmtk_tool,
    free_ports,
    kafka_server,
    minio_server,
)


# The servers come from the session fixtures in tests/conftest.py (kafka, minio, postgres).


def test_kafka_round_trips_a_message(kafka: KafkaInfo) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = f"infra-smoke-{uuid.uuid4().hex[:8]}"
    payload = b'{"study": "1.2.840.113619.2.55.3"}'

    async def round_trip() -> tuple[bytes | None, bytes | None, int]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
        await producer.start()
        try:
            sent = await producer.send_and_wait(topic, payload, key=b"study-1")
            partitions = await producer.partitions_for(topic)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka.bootstrap,
            group_id="infra-smoke",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), timeout=30)
        finally:
            await consumer.stop()
        assert record.offset == sent.offset
        return record.key, record.value, len(partitions)

    key, value, partitions = asyncio.run(round_trip())
    assert key == b"study-1"
    assert value == payload
    assert partitions == 3  # auto-created with num.partitions=3


def test_minio_stores_and_returns_an_object(minio: S3Info) -> None:
    from minio import Minio

    client = Minio(minio.endpoint, access_key=minio.access_key, secret_key=minio.secret_key, secure=minio.secure)
    bucket = "mdd-infra-smoke"
    data = b"DICM" + bytes(range(256)) * 4
    client.make_bucket(bucket)
    client.put_object(
        bucket, "studies/a/image.dcm", io.BytesIO(data), len(data), content_type="application/dicom"
    )

    response = client.get_object(bucket, "studies/a/image.dcm")
    try:
        assert response.read() == data
    finally:
        response.close()
        response.release_conn()
    listed = [obj.object_name for obj in client.list_objects(bucket, prefix="studies/", recursive=True)]
    assert listed == ["studies/a/image.dcm"]


def test_postgres_round_trips_a_row(postgres: PostgresInfo) -> None:
    from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, select

    assert postgres.url.startswith("postgresql+psycopg://") and postgres.url.endswith("/mdd")
    engine = create_engine(postgres.url)
    metadata = MetaData()
    studies = Table(
        "infra_smoke_studies",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("accession", String(64), nullable=False),
    )
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(studies.insert(), [{"id": 1, "accession": "ACC-0001"}])
        with engine.connect() as conn:
            rows = conn.execute(select(studies.c.id, studies.c.accession)).all()
            database = conn.exec_driver_sql("select current_database()").scalar_one()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [(1, "ACC-0001")]
    assert database == "mdd"


def test_dcmtk_echoscu_reaches_a_pynetdicom_scp() -> None:
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import Verification

    echoes: list[str] = []

    def on_echo(event: evt.Event) -> int:
        echoes.append(event.assoc.requestor.ae_title)
        return 0x0000

    ae = AE(ae_title="MDD-SCP")
    ae.add_supported_context(Verification)
    (port,) = free_ports(1)
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)])
    try:
        result = subprocess.run(
            [dcmtk_tool("echoscu"), "-aet", "MDD-TEST", "-aec", "MDD-SCP", "127.0.0.1", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=30,
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stdout
    assert echoes == ["MDD-TEST"]


def listening(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def test_minio_stopped_and_started_again_keeps_its_address_credentials_and_objects() -> None:
    from minio import Minio

    control = ServerControl()
    with minio_server(control=control) as info:
        client = Minio(info.endpoint, access_key=info.access_key, secret_key=info.secret_key, secure=info.secure)
        client.make_bucket("antes")
        client.put_object("antes", "a.dcm", io.BytesIO(b"DICM-antes"), 10)
        port = int(info.endpoint.rsplit(":", 1)[1])

        control.stop()
        assert not control.running and not listening(port)

        control.start()
        assert control.running
        response = client.get_object("antes", "a.dcm")
        try:
            assert response.read() == b"DICM-antes"
        finally:
            response.close()
            response.release_conn()
    assert not control.running  # the launcher stopped the second incarnation too


def test_kafka_stopped_and_started_again_keeps_its_address_and_messages() -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = f"restart-{uuid.uuid4().hex[:8]}"

    async def produce(bootstrap: str, value: bytes) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, value, key=b"study-1")  # one partition: ordered
        finally:
            await producer.stop()

    async def read_all(bootstrap: str, expected: int) -> list[bytes]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"check-{uuid.uuid4()}", auto_offset_reset="earliest")
        await consumer.start()
        values: list[bytes] = []
        try:
            for _ in range(30):
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    values += [record.value for record in records]
                if len(values) >= expected:
                    break
        finally:
            await consumer.stop()
        return values

    control = ServerControl()
    with kafka_server(control=control) as info:
        asyncio.run(produce(info.bootstrap, b"antes"))
        port = int(info.bootstrap.rsplit(":", 1)[1])

        control.stop()
        assert not control.running and not listening(port)

        control.start()
        asyncio.run(produce(info.bootstrap, b"despues"))
        assert asyncio.run(read_all(info.bootstrap, 2)) == [b"antes", b"despues"]
    assert not control.running
