"""One settings object for every service (pydantic-settings, environment prefix ``MDD_``).

Every default is right for the embedded mode: one process, in-process transport, a local folder
as object store, SQLite, torch in process. The distributed mode changes ``MDD_TRANSPORT``,
``MDD_STORE_BACKEND`` and ``MDD_DATABASE_URL`` (``mdd serve`` picks Kafka and MinIO for you).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Transport = Literal["memory", "kafka"]
StoreBackend = Literal["local", "minio"]
InferBackend = Literal["torch", "triton"]


class Settings(BaseSettings):
    """Configuration of Mexican Deep DICOM, read from ``MDD_*`` environment variables or ``.env``."""

    model_config = SettingsConfigDict(env_prefix="MDD_", env_file=".env", extra="ignore")

    # Where data lives in the embedded mode (object store folder, SQLite file, logs).
    data_dir: Path = Path("var")
    hospital_id: str = Field(
        "HOSP-DEMO", description="Hospital that studies belong to unless the calling AE is mapped"
    )
    calling_ae_hospitals: dict[str, str] = Field(
        default_factory=dict,
        description='Calling AE title -> hospital_id, as JSON: {"MAMO_SALA1": "HGE-ENSENADA"}',
    )

    # Transport
    transport: Transport = "memory"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_partitions: int = Field(3, ge=1)
    kafka_replication_factor: int = Field(1, ge=1)
    topic_prefix: str = "mdd."
    consumer_group_prefix: str = "mdd"
    max_delivery_attempts: int = Field(3, ge=1)
    retry_backoff_seconds: float = Field(0.5, ge=0)

    # Object store
    store_backend: StoreBackend = "local"
    store_dir: Path | None = None
    minio_endpoint: str = "127.0.0.1:9000"
    minio_access_key: str = "mdd"
    minio_secret_key: str = "mdd-secret-key"
    minio_secure: bool = False
    bucket_dicom: str = "dicom"
    bucket_derived: str = "derived"
    bucket_results: str = "results"

    # Database
    database_url: str | None = None

    # Ingest (DICOM)
    ae_title: str = "MDD"
    dicom_host: str = "127.0.0.1"
    dicom_port: int = 11112
    study_quiet_seconds: float = Field(30.0, gt=0)
    publish_timeout_seconds: float = Field(15.0, gt=0)

    # Preprocess
    segmentation_backend: Literal["classic"] = "classic"

    # Infer
    infer_backend: InferBackend = "torch"
    model_weights: Path | None = None
    model_backbone: Literal["efficientnet_b0", "small_cnn"] = "efficientnet_b0"
    torch_device: str = "cpu"
    triage_high: float = Field(0.5, ge=0, le=1)
    triage_low: float = Field(0.2, ge=0, le=1)

    # Notify
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_from: str = "semaforo@mdd.local"
    notify_emails: list[str] = Field(
        default_factory=list, description="Recipients of every triage result, as JSON list"
    )
    notify_red_emails: list[str] = Field(
        default_factory=list, description="Extra recipients for RED triage lights, as JSON list"
    )
    public_base_url: str = "http://127.0.0.1:8000"

    # Status API
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    # Logging
    log_level: str = "INFO"
    log_json: bool = True

    @property
    def resolved_store_dir(self) -> Path:
        """Folder of the local object store."""
        return self.store_dir or self.data_dir / "store"

    @property
    def resolved_database_url(self) -> str:
        """Database URL; SQLite under the data folder unless ``MDD_DATABASE_URL`` is set."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'mdd.db').as_posix()}"

    def hospital_for_calling_ae(self, calling_ae: str) -> str:
        """Hospital a sending modality belongs to (falls back to ``hospital_id``)."""
        return self.calling_ae_hospitals.get(calling_ae.strip(), self.hospital_id)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
