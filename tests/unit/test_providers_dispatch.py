"""The provider subscriber in the embedded mode (local-folder store, in-process bus), with a real
loopback HTTP server as the provider: no download links, retries, dead letters, refusals."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest
from pydicom import dcmread
from sqlmodel import Session, select

from shared.bus import MemoryBus
from shared.events import DeadLetter, StudyCompleted
from shared.runtime import ServiceContext, build_context
from shared.settings import Settings
from shared.synth import SyntheticStudy
from shared.topics import dead_letter_topic
from services.notify.providers.offers import NO_LINKS_NOTE
from services.notify.providers.registry import ProviderSpec, add_provider
from services.notify.providers.signing import verify_signature
from services.notify.providers.subscriber import register_providers
from services.notify.providers.tables import ProviderDelivery
from services.status_api.operations import replay
from tests.provider_support import WebhookReceiver, stage_study, webhook_receiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as server:
        yield server


@asynccontextmanager
async def _context(settings: Settings) -> AsyncIterator[ServiceContext]:
    context = build_context(
        settings.model_copy(update={"provider_delivery_attempts": 3, "provider_retry_backoff_seconds": 0.01})
    )
    dispatcher = register_providers(context)
    await context.bus.start()
    await dispatcher.start()  # the sweep sends what had to wait
    try:
        yield context
    finally:
        await dispatcher.stop()
        await context.bus.stop()
        context.engine.dispose()


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[ServiceContext]:
    async with _context(settings) as context:
        yield context


async def _complete(ctx: ServiceContext, event: StudyCompleted) -> None:
    await ctx.bus.publish(event)
    assert isinstance(ctx.bus, MemoryBus)
    await ctx.bus.drain()


def _dead_letters(ctx: ServiceContext) -> list[DeadLetter]:
    assert isinstance(ctx.bus, MemoryBus)
    topic = dead_letter_topic(ctx.settings.topic_prefix)
    return [
        DeadLetter.model_validate_json(payload) for sent_topic, payload in ctx.bus.sent if sent_topic == topic
    ]


def _statuses(ctx: ServiceContext) -> dict[str, tuple[str, int]]:
    with Session(ctx.engine) as session:
        return {
            row.delivery_key: (row.status, row.attempts)
            for row in session.exec(select(ProviderDelivery)).all()
        }


async def test_local_store_offers_say_there_are_no_links_and_send_once(
    ctx: ServiceContext, receiver: WebhookReceiver, four_view_study: SyntheticStudy
) -> None:
    acme = add_provider(
        ctx.engine,
        ProviderSpec(
            provider_id="acme",
            display_name="Acme",
            hospitals=["H1"],
            webhook_url=receiver.url("/acme"),
            deidentify=True,
        ),  # type: ignore[arg-type]
    )
    event = stage_study(ctx, four_view_study, "H1")
    await _complete(ctx, event)
    await _complete(ctx, event)  # at-least-once delivery: the same event again

    [post] = receiver.posts_to("/acme")
    assert acme.webhook_secret is not None
    verify_signature(acme.webhook_secret, post.body, post.headers["x-mdd-signature"])
    offer = json.loads(post.body)
    assert offer["links_note"] == NO_LINKS_NOTE and offer["links_expire_at"] is None
    assert [instance["url"] for instance in offer["instances"]] == [None] * 4
    assert offer["study_uid"] != four_view_study.study_uid and offer["deidentified"] is True
    # the de-identified copies still exist in the results bucket, ready for a store with links
    keys = ctx.store.list_keys(ctx.settings.bucket_results, f"deid/acme/{offer['study_uid']}/")
    assert len(keys) == 4
    copy = dcmread(io.BytesIO(ctx.store.get_bytes(ctx.settings.bucket_results, keys[0])))
    assert copy.PatientID != four_view_study.patient_id
    assert _statuses(ctx) == {f"H1:{four_view_study.study_uid}:acme:webhook": ("sent", 1)}


async def _until(ctx: ServiceContext, probe: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``probe`` until it holds (the deliveries' states are in the message if it never does)."""
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out; deliveries: {_statuses(ctx)}"
        await asyncio.sleep(0.05)


async def _settled(ctx: ServiceContext, keys: list[str]) -> None:
    """Wait until every one of these deliveries is sent or failed."""
    await _until(ctx, lambda: all(_statuses(ctx).get(key, ("pending",))[0] in ("sent", "failed") for key in keys))


async def test_a_refusing_webhook_is_dead_lettered_and_one_that_is_down_is_waited_for_without_holding_up_others(
    ctx: ServiceContext, receiver: WebhookReceiver, four_view_study: SyntheticStudy
) -> None:
    receiver.script["/caido"] = [400] * 3  # refuses the offer, every time
    receiver.script["/lento"] = [503] * 3  # down for as many tries as the attempts allowed, then accepts
    for name in ("caido", "lento", "listo"):
        add_provider(
            ctx.engine,
            ProviderSpec(
                provider_id=name, display_name=name, hospitals=["H1"], webhook_url=receiver.url(f"/{name}")
            ),  # type: ignore[arg-type]
        )
    event = stage_study(ctx, four_view_study, "H1")
    study = four_view_study.study_uid
    keys = [f"H1:{study}:{name}:webhook" for name in ("caido", "lento", "listo")]
    await _complete(ctx, event)
    await _settled(ctx, keys)

    assert len(receiver.posts_to("/caido")) == 3 and len(receiver.posts_to("/lento")) == 4
    assert len(receiver.posts_to("/listo")) == 1
    # Refusals spend attempts; the provider being down spends none.
    assert _statuses(ctx) == {keys[0]: ("failed", 3), keys[1]: ("sent", 1), keys[2]: ("sent", 1)}
    [letter] = _dead_letters(ctx)
    assert (
        letter.stage == "notify-providers:caido:webhook"
        and "HTTP 400" in letter.error
        and letter.attempts == 3
    )
    assert StudyCompleted.model_validate_json(letter.payload) == event  # re-drivable as it was

    # An operator replays the dead letter: only what failed is tried again, with the same delivery id.
    replay(ctx.engine, str(letter.dead_letter_id), "ti")
    await _until(ctx, lambda: _statuses(ctx)[keys[0]] == ("sent", 1))
    posts = receiver.posts_to("/caido")
    assert len(posts) == 4 and len(receiver.posts_to("/lento")) == 4 and len(receiver.posts_to("/listo")) == 1
    assert posts[0].headers["x-mdd-delivery"] == posts[-1].headers["x-mdd-delivery"]
    assert _statuses(ctx)[keys[0]] == ("sent", 1)


async def test_burned_in_annotation_is_refused_for_de_identifying_providers_only(
    settings: Settings, receiver: WebhookReceiver, four_view_study: SyntheticStudy
) -> None:
    it_channel = receiver.url("/ti").replace("http://", "json://")
    async with _context(settings.model_copy(update={"it_alert_channels": [it_channel]})) as ctx:
        await _burned_in_case(ctx, receiver, four_view_study)


async def _burned_in_case(ctx: ServiceContext, receiver: WebhookReceiver, four_view_study: SyntheticStudy) -> None:
    add_provider(
        ctx.engine,
        ProviderSpec(
            provider_id="anon",
            display_name="A",
            hospitals=["H1"],
            webhook_url=receiver.url("/anon"),
            deidentify=True,
        ),
    )  # type: ignore[arg-type]
    add_provider(
        ctx.engine,
        ProviderSpec(
            provider_id="full", display_name="F", hospitals=["H1"], webhook_url=receiver.url("/full")
        ),
    )  # type: ignore[arg-type]
    event = stage_study(ctx, four_view_study, "H1")
    burned = event.views[2]
    dataset = dcmread(io.BytesIO(ctx.store.get_bytes(ctx.settings.bucket_dicom, burned.object_key)))
    dataset.BurnedInAnnotation = "YES"
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    ctx.store.put_bytes(ctx.settings.bucket_dicom, burned.object_key, buffer.getvalue(), "application/dicom")

    await _complete(ctx, event)

    assert receiver.posts_to("/anon") == [] and len(receiver.posts_to("/full")) == 1
    study = four_view_study.study_uid
    assert _statuses(ctx)[f"{event.hospital_id}:{study}:anon:webhook"][0] == "failed"
    [letter] = _dead_letters(ctx)
    assert letter.stage == "notify-providers:anon:webhook" and "burned-in" in letter.error
    [alert] = receiver.posts_to("/ti")  # held, and IT told once, by its own channel
    told = json.loads(alert.body)
    assert study in told["message"] and "anon" in told["title"] and "burned-in" in told["message"]
