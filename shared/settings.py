"""One settings object for every service (pydantic-settings, environment prefix ``MDD_``).

Every default is right for the embedded mode: one process, in-process transport, a local folder
as object store, SQLite, torch in process. The distributed mode changes ``MDD_TRANSPORT``,
``MDD_STORE_BACKEND`` and ``MDD_DATABASE_URL`` (``mdd serve`` picks Kafka and MinIO for you).
Lists and maps are given as JSON, e.g. ``MDD_NOTIFY_EMAILS='["radiologia@hospital.mx"]'``.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.dicom_uids import DEFAULT_INSTANCE_UID_ROOT
from shared.object_keys import HospitalId

Transport = Literal["memory", "kafka"]
StoreBackend = Literal["local", "minio"]
KafkaSecurityProtocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class Sender(BaseModel):
    """A modality or PACS allowed to send, by its calling AE title."""

    hospital_id: HospitalId
    addresses: list[str] = Field(
        default_factory=list, description="Allowed source addresses or networks (10.1.2.3, 10.1.2.0/24)"
    )
    any_address: bool = Field(
        False, description="Accept this AE title from any address (an explicit opt-out: the AE title alone is easy to forge)"
    )

    @field_validator("addresses")
    @classmethod
    def _addresses_are_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"dirección inválida / invalid address: {entry!r}") from exc
        return value

    def allows(self, address: str) -> bool:
        """Whether a peer at ``address`` may use this AE title (IPv4-mapped IPv6 read as IPv4)."""
        if self.any_address:
            return True
        try:
            peer = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped
        return any(peer in ipaddress.ip_network(entry, strict=False) for entry in self.addresses)

    @model_validator(mode="after")
    def _addresses_or_explicit_opt_out(self) -> Sender:
        if not self.addresses and not self.any_address:
            raise ValueError(
                "un emisor necesita sus direcciones (addresses) o any_address=true explícito"
                " / a sender needs its source addresses, or an explicit any_address=true"
            )
        return self


class DicomDestination(BaseModel):
    """A DICOM node we open associations to: host, port, its AE title, and whether it speaks DICOM TLS."""

    host: str
    port: int = Field(104, ge=1, le=65535)
    ae_title: str = Field(min_length=1, max_length=16)
    tls: bool = False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: A shorter JWT signing secret can be found by trying (HS256 is only as strong as its key).
MIN_JWT_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """Configuration of Mexican Deep DICOM, read from ``MDD_*`` environment variables or ``.env``."""

    model_config = SettingsConfigDict(env_prefix="MDD_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("var"), description="Carpeta de datos (almacén local, SQLite) / data folder")
    hospital_id: HospitalId = Field("HOSP-DEMO", description="Hospital de los estudios si el AE no está mapeado / default hospital")
    senders: dict[str, Sender] = Field(
        default_factory=dict,
        description='Modalidades/PACS por AE que llama, JSON / senders by calling AE: '
        '{"MAMO_SALA1": {"hospital_id": "HGE-ENSENADA", "addresses": ["10.1.2.3"]}}',
    )
    accept_unknown_senders: bool | None = Field(
        None,
        description="Aceptar AE no configurados; por omisión solo si el SCP escucha en loopback"
        " / accept unknown calling AEs; by default only while the SCP listens on loopback",
    )

    transport: Transport = Field("memory", description="memory (un proceso / one process) o kafka")
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Servidores Kafka / Kafka bootstrap servers")
    kafka_partitions: int = Field(
        6, ge=1, description="Particiones al crear tópicos: hasta tantas réplicas por servicio / partitions of new topics: "
        "up to that many replicas per service"
    )
    kafka_replication_factor: int = Field(1, ge=1, description="Réplicas al crear tópicos / replication factor")
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SASL_PLAINTEXT o SASL_SSL hacia Kafka / Kafka security protocol"
    )
    kafka_sasl_mechanism: KafkaSaslMechanism = Field(
        "SCRAM-SHA-512", description="Mecanismo SASL: SCRAM-SHA-512, SCRAM-SHA-256 o PLAIN / SASL mechanism"
    )
    kafka_sasl_username: str | None = Field(None, description="Usuario SASL de los servicios / SASL user of the services")
    kafka_sasl_password: SecretStr | None = Field(None, description="Contraseña SASL / SASL password")
    topic_prefix: str = Field("mdd.", description="Prefijo de tópicos / topic prefix")
    consumer_group_prefix: str = Field("mdd", description="Prefijo de grupos de consumo / consumer group prefix")
    max_delivery_attempts: int = Field(
        3, ge=1, description="Fallas (entrada que no se puede procesar) antes de la DLQ / failures before the DLQ"
    )
    max_interrupted_attempts: int = Field(
        5, ge=1,
        description="Veces que un mensaje puede quedar interrumpido por la caída de su consumidor (memoria, kill) antes de "
        "la DLQ / times a message may be cut short by its consumer's death (out of memory, kill) before the DLQ",
    )
    retry_backoff_seconds: float = Field(0.5, ge=0, description="Espera inicial entre intentos (exponencial) / backoff")
    dependency_retry_max_seconds: float = Field(
        15.0, gt=0,
        description="Espera máxima entre reintentos mientras una dependencia (almacén, base de datos, broker, SMTP, PACS) no "
        "responde; esos reintentos no gastan intentos / longest wait between tries while a dependency is down (such tries "
        "spend no attempts)",
    )

    store_backend: StoreBackend = Field("local", description="local (carpeta / folder) o minio (S3)")
    store_dir: Path | None = Field(None, description="Carpeta del almacén local (por omisión DATA_DIR/store)")
    minio_endpoint: str = Field("127.0.0.1:9000", description="host:puerto de MinIO / S3")
    minio_access_key: str = Field("mdd", description="Clave de acceso S3 / access key")
    minio_secret_key: str = Field("mdd-secret-key", description="Clave secreta S3 / secret key")
    minio_secure: bool = Field(False, description="HTTPS hacia MinIO / use TLS")
    minio_region: str = Field("us-east-1", description="Región S3 con la que se firman las peticiones / S3 signing region")
    minio_public_url: str | None = Field(
        None,
        description="URL por la que navegadores y proveedores llegan a MinIO (p. ej. https://archivos.hospital.mx); los "
        "enlaces temporales se firman para ella; vacío = MDD_MINIO_ENDPOINT / URL browsers and providers reach MinIO "
        "at; presigned links are signed for it",
    )
    bucket_dicom: str = Field("dicom", description="Bucket de instancias recibidas / raw instances")
    bucket_derived: str = Field("derived", description="Bucket de imágenes derivadas / preprocessing outputs")
    bucket_results: str = Field("results", description="Bucket de resultados de IA / AI results")

    database_url: str | None = Field(
        None, description="URL SQLAlchemy; por omisión SQLite en DATA_DIR (postgresql+psycopg://… en distribuido)"
    )
    database_pool_size: int = Field(
        10, ge=1, le=100,
        description="Conexiones que cada servicio mantiene abiertas con PostgreSQL (más otras tantas en picos) / "
        "PostgreSQL connections each service keeps open (as many again at peaks)",
    )

    ae_title: str = Field("MDD", description="AE title del SCP DICOM / SCP AE title")
    dicom_host: str = Field("127.0.0.1", description="Interfaz del SCP (0.0.0.0 para la red del hospital)")
    dicom_port: int = Field(11112, description="Puerto DICOM / DICOM port")
    max_associations: int = Field(25, ge=1, description="Asociaciones simultáneas / simultaneous associations")
    min_free_bytes: int = Field(
        1_073_741_824, ge=0, description="Reserva de espacio libre; debajo se rechazan asociaciones / free-space reserve"
    )
    spool_dir: Path | None = Field(None, description="Carpeta temporal de recepción (por omisión DATA_DIR/spool)")
    dicom_tls_cert: Path | None = Field(None, description="Certificado PEM para DICOM TLS / TLS certificate")
    dicom_tls_key: Path | None = Field(None, description="Llave PEM para DICOM TLS / TLS private key")
    dicom_tls_ca: Path | None = Field(
        None,
        description="CA de los certificados de los pares: se exige a los clientes (TLS mutuo) y verifica a los servidores "
        "a los que nos conectamos / CA of peer certificates: required from clients, verifies servers we connect to",
    )
    dicom_max_pdu: int = Field(
        4194304, ge=4096, le=2**32 - 1, description="PDU máximo que recibimos (bytes), entrante y saliente / maximum PDU we receive"
    )
    dicom_destinations: dict[str, DicomDestination] = Field(
        default_factory=dict,
        description='Nodos DICOM por AE title, JSON: destinos de C-MOVE y de reportes de compromiso de almacenamiento / '
        'DICOM nodes by AE title (C-MOVE destinations, storage commitment reports): '
        '{"KPACS_SALA1": {"host": "10.1.2.5", "port": 104, "ae_title": "KPACS_SALA1", "tls": false}}',
    )
    pacs_host: str | None = Field(None, description="PACS a consultar (C-FIND/C-GET); vacío = sin sondeo / PACS to poll")
    pacs_port: int = Field(4242, description="Puerto DICOM del PACS / PACS port")
    pacs_ae_title: str = Field("ORTHANC", description="AE title del PACS / PACS AE title")
    pacs_hospital_id: HospitalId | None = Field(None, description="Hospital de los estudios traídos del PACS / hospital of pulled studies")
    pacs_modality: str = Field("MG", description="Modalidad a buscar / modality to find")
    pacs_poll_seconds: float = Field(60.0, gt=0, description="Intervalo de sondeo / poll interval")
    pacs_lookback_days: int = Field(1, ge=0, description="Días que cubre el primer sondeo / days the first poll covers")
    pacs_retrieve: Literal["C-GET", "C-MOVE"] = Field(
        "C-GET", description="Cómo se traen los estudios: C-GET, o C-MOVE hacia nuestro AE / how studies are retrieved"
    )
    pacs_tls: bool = Field(False, description="DICOM TLS hacia el PACS sondeado / DICOM TLS to the polled PACS")
    ingest_http_host: str = Field("127.0.0.1", description="Interfaz de STOW-RS y carga ZIP / STOW-RS and ZIP host")
    ingest_http_port: int = Field(8100, description="Puerto de STOW-RS y carga ZIP / STOW-RS and ZIP port")
    ingest_url: str | None = Field(
        None,
        description="URL con la que la API llega a la ingesta (STOW-RS en /dicomweb de la API); vacío = "
        "http://INGEST_HTTP_HOST:INGEST_HTTP_PORT / URL the status API reaches ingest at (e.g. http://ingest:8100)",
    )
    ingest_http_token: SecretStr | None = Field(
        None,
        description="Token con el que la API entra a las puertas HTTP de la ingesta (igual en ambas); vacío = uno "
        "aleatorio en DATA_DIR / token the status API presents at ingest's HTTP doors; empty: a random one in DATA_DIR",
    )
    study_quiet_seconds: float = Field(30.0, gt=0, description="Silencio que completa un estudio / quiet period")
    publish_timeout_seconds: float = Field(15.0, gt=0, description="Espera máxima del broker por evento / broker ack timeout")
    watchdog_interval_seconds: float = Field(
        30.0, gt=0, description="Cada cuánto revisa el vigilante los plazos de los estudios / watchdog sweep interval"
    )
    watchdog_ingest_margin_seconds: float = Field(
        300.0, ge=0, description="Plazo de recepción: silencio + este margen / receiving deadline: quiet period plus this margin"
    )
    watchdog_preprocess_seconds: float = Field(
        600.0, gt=0, description="Plazo de completo a preprocesado / deadline from completed to preprocessed"
    )
    watchdog_infer_seconds: float = Field(
        600.0, gt=0, description="Plazo de preprocesado a resultados / deadline from preprocessed to results"
    )
    watchdog_redrive_attempts: int = Field(
        2, ge=0, description="Reenvíos del último evento de un estudio atascado / re-drives of a stuck study's last event"
    )

    segmentation_backend: Literal["classic", "sam", "seed"] = Field(
        "classic", description="Segmentación: classic, sam o seed (la receta de la semilla) / segmentation backend"
    )
    sam_model_type: Literal["vit_b", "vit_l", "vit_h"] = Field("vit_b", description="Tipo de modelo SAM / SAM model type")
    sam_checkpoint: Path | None = Field(None, description="Checkpoint oficial de SAM (obligatorio con sam) / SAM checkpoint")
    sam_device: str = Field("cpu", description="cpu o cuda para SAM / SAM device")

    infer_backend: Literal["torch", "onnx", "triton"] = Field("torch", description="torch, onnx o triton / model backend")
    model_weights: str | None = Field(
        None, description="Checkpoint; vacío = el modelo sintético incluido, 'untrained' = pesos aleatorios"
    )
    onnx_model_path: Path | None = Field(None, description="Modelo ONNX exportado (backend onnx) / exported ONNX model")
    triton_url: str = Field("127.0.0.1:8001", description="host:puerto de Triton/KServe v2 / Triton endpoint")
    triton_protocol: Literal["grpc", "http"] = Field("grpc", description="grpc o http hacia Triton / protocol")
    triton_model_name: str = Field("twoview", description="Nombre del modelo en Triton / model name")
    triton_timeout_seconds: float = Field(10.0, gt=0, description="Tiempo máximo por petición / request timeout")
    triton_retries: int = Field(3, ge=0, description="Reintentos por petición / retries")
    triton_binary_data: bool = Field(
        True, description="Tensores binarios por HTTP (Triton); false para MLServer / binary tensors over HTTP"
    )
    infer_batch_size: int = Field(16, ge=1, description="Mamas por lote de inferencia / breasts per batch")
    infer_batch_wait_ms: float = Field(
        20.0, ge=0, description="Espera para juntar estudios en un lote / wait to batch studies together"
    )
    model_backbone: Literal["efficientnet_b0", "compact_cnn", "small_cnn"] = Field(
        "efficientnet_b0", description="Red base sin checkpoint / backbone when no checkpoint is loaded"
    )
    torch_device: str = Field("cpu", description="cpu o cuda")
    triage_high: float = Field(0.5, ge=0, le=1, description="Puntuación ≥ umbral → ROJO / score for RED")
    triage_low: float = Field(0.2, ge=0, le=1, description="Puntuación < umbral → VERDE / score below is GREEN")
    triage_hospital_thresholds: dict[str, dict[Literal["high", "low"], float]] = Field(
        default_factory=dict,
        description='Umbrales por hospital, JSON / per hospital: {"HGE-ENSENADA": {"high": 0.4, "low": 0.1}}',
    )

    smtp_host: str = Field("127.0.0.1", description="Servidor SMTP / SMTP server")
    smtp_port: int = Field(1025, description="Puerto SMTP / SMTP port")
    smtp_from: str = Field("semaforo@mdd.local", description="Remitente / sender")
    notify_emails: list[str] = Field(default_factory=list, description="Destinatarios de cada resultado, JSON / every result")
    notify_red_emails: list[str] = Field(default_factory=list, description="Destinatarios extra de ROJO, JSON / RED lights")
    notify_rules_file: Path | None = Field(
        None, description="Reglas por hospital (TOML); reemplaza a NOTIFY_EMAILS / per-hospital rules file (docs/notifications.md)"
    )
    notify_send_attempts: int = Field(3, ge=1, description="Intentos por mensaje antes de darlo por fallido / attempts per message")
    notify_backoff_seconds: float = Field(1.0, ge=0, description="Espera inicial entre intentos de envío (exponencial) / send backoff")
    notify_sending_lease_seconds: float = Field(
        60.0, gt=0,
        description="Tras este tiempo otro proceso retoma un envío interrumpido (reenvía correo y webhooks con el mismo "
        "identificador; SMS y chat quedan inciertos y se avisa a TI) / after this an interrupted send is taken over (e-mail "
        "and webhooks resent under the same id; SMS and chat become uncertain and IT is told)",
    )
    alert_deadline_seconds: float = Field(
        120.0, gt=0,
        description="Plazo para que un resultado ROJO llegue a sus destinatarios; vencido se reenvía y luego se avisa a TI / "
        "deadline for a RED result to reach its people; past it the study is re-driven, then IT is alerted",
    )
    it_alert_channels: list[str] = Field(
        default_factory=list,
        description='Canales de TI para alertas del sistema (ROJO sin notificar, entregas inciertas), JSON: correos o URLs de '
        'apprise / IT channels for system alerts (RED not notified, uncertain deliveries): ["ti@hospital.mx", "tgram://…"]',
    )
    public_base_url: str = Field("http://127.0.0.1:8000", description="URL pública de la API para enlaces / link base")
    provider_link_ttl_seconds: int = Field(
        86400, ge=60, le=604800, description="Vigencia de los enlaces de descarga para proveedores (máx. 7 días) / provider link lifetime"
    )
    provider_webhook_timeout_seconds: float = Field(10.0, gt=0, description="Tiempo máximo por webhook a proveedores / provider webhook timeout")
    provider_delivery_attempts: int = Field(5, ge=1, description="Intentos de entrega a un proveedor antes de la DLQ / provider attempts")
    provider_retry_backoff_seconds: float = Field(
        2.0, ge=0, description="Espera inicial entre intentos a proveedores (exponencial) / provider retry backoff"
    )

    results_pacs_host: str | None = Field(
        None, description="PACS que recibe el SR y la imagen de resultados; vacío = no se envían / results PACS host"
    )
    results_pacs_port: int = Field(104, ge=1, le=65535, description="Puerto DICOM del PACS de resultados / results PACS port")
    results_pacs_ae_title: str = Field("PACS", description="AE title del PACS de resultados / results PACS called AE")
    results_calling_ae_title: str = Field("MDD", description="Nuestro AE al enviar resultados / our calling AE for results")
    results_pacs_tls: bool = Field(False, description="DICOM TLS hacia el PACS de resultados / DICOM TLS to the results PACS")
    results_pacs: dict[str, DicomDestination] = Field(
        default_factory=dict,
        description='PACS de resultados por hospital, JSON / per hospital: '
        '{"HGE-ENSENADA": {"host": "10.1.2.4", "port": 104, "ae_title": "KPACS"}}',
    )

    uid_root: str = Field(
        DEFAULT_INSTANCE_UID_ROOT,
        description="Raíz de los UID que crea el sistema (resultados, mosaico), terminada en punto; el hospital puede "
        "usar la suya / root of the UIDs we create, ending in a dot",
    )

    result_deadline_minutes: float = Field(
        60.0, gt=0, description="Plazo para tener resultados desde la adquisición (tablero) / deadline for results since acquisition (board)"
    )
    hospital_result_deadlines: dict[str, float] = Field(
        default_factory=dict,
        description='Plazo de resultados por hospital en minutos, JSON / per hospital: {"HGE-ENSENADA": 30}',
    )
    api_host: str = Field("127.0.0.1", description="Interfaz de la API y el tablero / API host")
    api_port: int = Field(8000, description="Puerto de la API / API port")
    api_reuse_port: bool = Field(
        False,
        description="Varias réplicas de la API de estado en el mismo puerto (SO_REUSEPORT, Linux; con PostgreSQL y Kafka) / "
        "several status API replicas on one port",
    )
    api_forwarded_allow_ips: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="Proxies inversos de confianza (IP o red CIDR), JSON: se creen sus X-Forwarded-For y "
        "X-Forwarded-Proto (dirección en la bitácora de auditoría, URL de DICOMweb); [\"*\"] = cualquiera / "
        "trusted reverse proxies whose X-Forwarded-For/-Proto are believed (audit address, DICOMweb URLs)",
    )
    api_limit_concurrency: int = Field(
        1000, ge=10, description="Conexiones abiertas a la vez por proceso de la API (incluidos los flujos en vivo); "
        "las de más reciben 503 / connections open at once per API process (live streams included); past it, 503",
    )
    api_timeout_keep_alive: int = Field(
        5, ge=1, le=300, description="Segundos que una conexión inactiva sigue abierta / seconds an idle connection stays open"
    )
    api_header_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Plazo para recibir los encabezados de cada petición; un cliente más lento "
        "se desconecta / deadline for each request's headers; a slower client is disconnected",
    )
    bootstrap_api_key: SecretStr | None = Field(
        None, description="Llave de administrador creada al primer arranque si no hay otra / admin API key created at first start"
    )
    auth_jwt_secret: SecretStr | None = Field(
        None, description="Secreto que firma los tokens JWT (al menos 32 caracteres); vacío = uno aleatorio por proceso "
        "/ JWT signing secret (at least 32 characters); empty = a random one per process"
    )
    auth_jwt_issuer: str = Field("mdd-status-api", min_length=1, description="Emisor (iss) de los tokens JWT / JWT issuer")
    auth_jwt_audience: str = Field("mdd-status-api", min_length=1, description="Audiencia (aud) de los tokens JWT / JWT audience")
    auth_token_minutes: int = Field(60, ge=1, le=1440, description="Vigencia de un token de sesión / session token lifetime")
    auth_cache_seconds: float = Field(
        10.0, ge=0, le=300,
        description="Segundos que se recuerda un token válido; una llave o usuario desactivado se rechaza a más tardar "
        "tras ese tiempo; 0 = consultar siempre / seconds a valid token is remembered (a deactivated key is refused "
        "within that time); 0 = always look up",
    )
    auth_login_max_failures: int = Field(
        5, ge=1, le=1000, description="Contraseñas fallidas por usuario dentro de la ventana antes de bloquearlo / "
        "failed sign-ins per username within the window before it is locked",
    )
    auth_login_max_client_failures: int = Field(
        20, ge=1, le=10000, description="Contraseñas fallidas desde una dirección (todos los usuarios; un proxy o NAT "
        "de hospital junta a muchos) antes de bloquearla / failed sign-ins from one client address before it is locked",
    )
    auth_login_window_minutes: float = Field(
        15.0, gt=0, le=1440, description="Ventana en la que se cuentan los fallos / window in which failures are counted"
    )
    auth_login_lockout_minutes: float = Field(
        15.0, gt=0, le=1440, description="Duración del bloqueo (429 con Retry-After) / how long a lockout lasts"
    )
    auth_password_workers: int = Field(
        2, ge=1, le=32, description="Hilos que calculan Argon2 al iniciar sesión, aparte de los que atienden las demás "
        "rutas / threads that run Argon2 for sign-ins, apart from the ones serving the other routes",
    )
    api_max_streams_per_principal: int = Field(
        5, ge=1, le=1000, description="Flujos en vivo (/events) abiertos a la vez por usuario o llave en cada réplica; "
        "el siguiente recibe 429 / live streams open at once per user or key on each replica; the next one gets 429",
    )
    metrics_token: SecretStr | None = Field(
        None, description="Token Bearer que solo abre GET /metrics (para el recolector de Prometheus, al menos 32 "
        "caracteres); vacío = /metrics solo para administradores / bearer token that opens GET /metrics only (for a "
        "Prometheus scraper, at least 32 characters); empty = administrators only",
    )
    # --- pseudonymous patient keys ---
    patient_key_secret: SecretStr | None = Field(
        None, description="Secreto de la implantación para la clave seudónima del paciente (HMAC-SHA256 de hospital y "
        "PatientID); vacío = uno aleatorio guardado en la carpeta de datos / per-deployment secret of the patient key"
    )
    patient_key_previous_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="Secretos anteriores (JSON), aceptados al buscar tras una rotación / previous secrets, accepted for lookup",
    )
    viewer_url_template: str = Field(
        "http://127.0.0.1:3000/viewer?StudyInstanceUIDs={study_uid}",
        description="Enlace «Abrir en visor» del tablero; {study_uid} y {dicomweb} (raíz DICOMweb de la API) se "
        "sustituyen; vacío = sin enlace / board's open-in-viewer link template (e.g. OHIF); empty = no link",
    )
    cors_allow_origins: list[str] = Field(
        default_factory=list,
        description="Orígenes de navegador que pueden leer la API (p. ej. el visor OHIF), JSON: "
        '["https://visor.hospital.mx"]; vacío = sin encabezados CORS / browser origins allowed to call the API '
        "(e.g. OHIF); empty = no CORS",
    )

    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR")
    log_json: bool | None = Field(
        None,
        description="Un objeto JSON por línea (true) o líneas legibles (false); vacío = JSON salvo en una terminal / "
        "JSON lines (true) or readable lines (false); empty = JSON unless writing to a terminal",
    )
    # --- input limits (bombs): every door refuses past these, with a reason ---
    instance_max_bytes: int = Field(
        2_147_483_648, ge=1024,
        description="Tamaño máximo de una instancia por cualquier puerta (C-STORE, STOW-RS, entrada de ZIP) / largest "
        "instance accepted through any door",
    )
    upload_max_entries: int = Field(10_000, ge=1, description="Entradas máximas de un ZIP / most entries in a ZIP upload")
    upload_max_total_bytes: int = Field(
        21_474_836_480, ge=1024, description="Tamaño descomprimido máximo de un ZIP / largest uncompressed ZIP upload"
    )
    upload_max_ratio: int = Field(
        200, ge=2,
        description="Compresión máxima de una entrada de ZIP de más de 1 MiB (descomprimido ÷ comprimido) / highest "
        "compression ratio of a ZIP entry over 1 MiB",
    )
    inflated_max_bytes: int = Field(
        268_435_456, ge=1024,
        description="Tamaño máximo de un conjunto de datos Deflated ya inflado / largest Deflated data set once inflated",
    )
    image_max_side: int = Field(16384, ge=1, description="Filas o columnas máximas de una imagen / largest Rows or Columns")
    image_max_pixels: int = Field(
        1_073_741_824, ge=1, description="Filas × columnas × cuadros máximos de una imagen / most Rows x Columns x frames"
    )
    decode_max_bytes: int = Field(
        134_217_728, ge=1024,
        description="Memoria máxima de los píxeles decodificados (preprocesado, WADO-RS), calculada del encabezado antes "
        "de decodificar / largest decoded pixel data (preprocess, WADO-RS), computed from the header before decoding",
    )
    stow_max_body_bytes: int = Field(
        4_294_967_296, ge=1024,
        description="Tamaño máximo del cuerpo de una petición STOW-RS (413 si lo excede) / largest STOW-RS request body",
    )

    @field_validator("minio_public_url")
    @classmethod
    def _public_url_is_an_origin(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/") or parts.query:
            raise ValueError(
                "MDD_MINIO_PUBLIC_URL debe ser http(s)://servidor[:puerto], sin ruta / must be http(s)://host[:port], no path"
            )
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("*", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object, info: ValidationInfo) -> object:
        # An empty variable for an optional path (`MDD_NOTIFY_RULES_FILE=` in .env or compose) means
        # "not set", not the current folder.
        if isinstance(value, str) and not value.strip() and cls.model_fields[info.field_name].annotation == Path | None:
            return None
        return value

    @field_validator("api_forwarded_allow_ips")
    @classmethod
    def _proxies_are_addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry)  # strict, as uvicorn reads it: 10.0.0.1/8 is refused
            except ValueError:
                raise ValueError(
                    f"MDD_API_FORWARDED_ALLOW_IPS: {entry!r} no es una IP ni una red CIDR / is not an IP address "
                    "or CIDR network"
                ) from None
        return value

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> "Settings":
        if self.triage_low > self.triage_high:
            raise ValueError("MDD_TRIAGE_LOW debe ser ≤ MDD_TRIAGE_HIGH / low threshold must not exceed high")
        return self

    @model_validator(mode="after")
    def _kafka_sasl_complete(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password and self.kafka_sasl_password.get_secret_value()
        ):
            raise ValueError(
                "MDD_KAFKA_SECURITY_PROTOCOL=SASL_* requiere MDD_KAFKA_SASL_USERNAME y MDD_KAFKA_SASL_PASSWORD"
                " / SASL needs a username and a password"
            )
        return self

    @property
    def resolved_store_dir(self) -> Path:
        """Folder of the local object store."""
        return self.store_dir or self.data_dir / "store"

    @property
    def resolved_database_url(self) -> str:
        """Database URL; SQLite under the data folder unless ``MDD_DATABASE_URL`` is set."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'mdd.db').as_posix()}"

    @property
    def resolved_spool_dir(self) -> Path:
        """Folder where incoming instances are spooled before they reach the store."""
        return self.spool_dir or self.data_dir / "spool"

    @field_validator("auth_jwt_secret", "metrics_token")
    @classmethod
    def _secret_is_long_enough(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        length = len(value.get_secret_value()) if value is not None else 0
        if 0 < length < MIN_JWT_SECRET_LENGTH:
            variable = f"MDD_{str(info.field_name).upper()}"
            raise ValueError(
                f"{variable} es demasiado corto ({length} < {MIN_JWT_SECRET_LENGTH} caracteres); genere uno con "
                f"`openssl rand -base64 48` / {variable} is too short ({length} < {MIN_JWT_SECRET_LENGTH} characters)"
            )
        return value

    @field_validator("uid_root")
    @classmethod
    def _uid_root_is_a_root(cls, value: str) -> str:
        if not re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*\.", value) or len(value) > 54:
            raise ValueError(
                "MDD_UID_ROOT debe ser una raíz de UID (números separados por puntos, terminada en punto, máx. 54) / "
                "must be a UID root: dot-separated numbers ending in a dot, at most 54 characters"
            )
        return value

    @property
    def resolved_ingest_url(self) -> str:
        """Where the status API forwards STOW-RS: ``MDD_INGEST_URL``, else the ingest's own HTTP address."""
        if self.ingest_url:
            return self.ingest_url.rstrip("/")
        host = "127.0.0.1" if self.ingest_http_host in ("0.0.0.0", "::", "") else self.ingest_http_host
        return f"http://{host}:{self.ingest_http_port}"

    @property
    def resolved_accept_unknown_senders(self) -> bool:
        """Unknown calling AEs are welcome only on a workstation's own loopback, unless set explicitly."""
        if self.accept_unknown_senders is not None:
            return self.accept_unknown_senders
        return _is_loopback(self.dicom_host)

    def hospital_for_calling_ae(self, calling_ae: str) -> str:
        """Hospital a sending modality belongs to (falls back to ``hospital_id``); the polled PACS sending by
        C-MOVE belongs to ``MDD_PACS_HOSPITAL_ID``."""
        sender = self.senders.get(calling_ae.strip())
        if sender:
            return sender.hospital_id
        if self.pacs_host and self.pacs_hospital_id and calling_ae.strip() == self.pacs_ae_title:
            return self.pacs_hospital_id
        return self.hospital_id


def settings_table() -> str:
    """The configuration table of the README, in Markdown, from the fields above."""
    rows = ["| variable | por omisión / default | descripción / description |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        shown = "" if default is None else str(default).replace("|", "\\|")
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `MDD_{name.upper()}` | `{shown}` | {description} |")
    return "\n".join(rows)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
