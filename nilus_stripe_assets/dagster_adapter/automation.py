"""Jobs, schedules and the events sensor that keep the Stripe tables current.

- `stripe_incremental`: every Stripe asset in `sync:incremental` mode (new objects by `created`, plus
  updates and deletes from events), hourly by default.
- `stripe_daily` (in `nilus_stripe_assets.daily`): the partitioned job, yesterday's partition at 02:00 UTC.
- `stripe_events_sensor`: polls `/v1/events` and requests an incremental run only for the objects that
  changed, so quiet objects cost no requests.
All start stopped; turn them on in the UI (Automation) or with `dagster schedule start` / `dagster sensor start`.
"""

import json
from typing import Iterable, Optional, Sequence

import dagster as dg
from ..source.catalog import CATALOG, STRIPE_OBJECT_TYPE
from .resources import StripeResource

INCREMENTAL_JOB = "stripe_incremental"
_OBJECT_BY_STRIPE_TYPE = {stripe_type: name for name, stripe_type in STRIPE_OBJECT_TYPE.items()}
# Children whose states travel inside their parent's events (a subscription's `items`, an invoice's
# `lines`), by the parent's Stripe type. Payment methods have their own events (`payment_method.attached`,
# …). Children re-listed by parent follow the events that name their parents (`Parent.relist_on`: a
# customer's balance transactions after its `customer.*` events).
_ALSO_REFRESH: dict[str, list[str]] = {}
for _name, _obj in CATALOG.items():
    if _obj.parent is not None and _obj.parent.embedded_field:
        _ALSO_REFRESH.setdefault(STRIPE_OBJECT_TYPE[_obj.parent.object], []).append(_name)
    for _kind, _ in _obj.relist_on:
        _ALSO_REFRESH.setdefault(_kind, []).append(_name)
MAX_EVENTS_PER_TICK = 2000  # bound one tick's work; the cursor resumes the rest on the next tick


def incremental_run_config(asset_keys: Sequence[dg.AssetKey], assets_defs: Sequence[dg.AssetsDefinition]) -> dict:
    """Run config putting the given Stripe assets in sync:incremental mode (one entry per step that holds any)."""
    wanted = set(asset_keys)
    ops = {a.op.name: {"config": {"mode": "sync:incremental"}} for a in assets_defs if wanted & set(a.keys)}
    return {"ops": ops}


def _keys_by_object(assets_defs: Sequence[dg.AssetsDefinition]) -> dict[str, dg.AssetKey]:
    """Catalog object name -> asset key, from the specs' `stripe/object` metadata."""
    return {
        str(spec.metadata["stripe/object"]): spec.key
        for a in assets_defs
        for spec in a.specs
        if spec.metadata.get("stripe/object") in CATALOG
    }


def build_incremental_job(stripe_assets: Sequence[dg.AssetsDefinition], objects: Optional[Iterable[str]] = None):
    """`objects`: the catalog objects the job runs (default: every one of `stripe_assets`); the locations pass
    the default load's, so the hourly run stays what it was when they hold every list."""
    keys = selected_keys(stripe_assets, objects)
    return dg.define_asset_job(
        INCREMENTAL_JOB,
        selection=dg.AssetSelection.assets(*keys),
        config=incremental_run_config(keys, stripe_assets),
        description="Only what changed since the last run: new objects over `created`, updates and deletes from events.",
    )


def build_incremental_schedule(job, cron: str = "0 * * * *") -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=f"{INCREMENTAL_JOB}_hourly",
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Hourly sync:incremental run of every Stripe object.",
    )


def objects_in_events(events: Sequence[dict]) -> set[str]:
    """Catalog objects touched by a list of Stripe events (the `event` table itself always is), by the type
    of the object each event carries (`data.object.object`), never by the event type's prefix:
    `customer.subscription.updated` changes a subscription (and its items), not a customer."""
    changed = {"event"} if events else set()
    for event in events:
        stripe_type = ((event.get("data") or {}).get("object") or {}).get("object") or ""
        name = _OBJECT_BY_STRIPE_TYPE.get(stripe_type)
        if name:
            changed.add(name)
        changed.update(_ALSO_REFRESH.get(stripe_type, []))
    return changed


def _parse_cursor(cursor: Optional[str]) -> tuple[Optional[int], list[str]]:
    if not cursor:
        return None, []
    state = json.loads(cursor)
    return state["created"], state.get("ids", [])


def selected_keys(stripe_assets: Sequence[dg.AssetsDefinition], objects: Optional[Iterable[str]]) -> list[dg.AssetKey]:
    """The asset keys of catalog `objects` among `stripe_assets` (all of them for None), for a job's selection."""
    if objects is None:
        return [key for a in stripe_assets for key in a.keys]
    by_object = _keys_by_object(stripe_assets)
    return [by_object[name] for name in objects if name in by_object]


def build_events_sensor(
    stripe_assets: Sequence[dg.AssetsDefinition], job, minimum_interval_seconds: int = 60,
    objects: Optional[Iterable[str]] = None,
) -> dg.SensorDefinition:
    """`objects`: those the sensor may request (the job's); default every one of `stripe_assets`."""
    by_object = _keys_by_object(stripe_assets)
    if objects is not None:
        wanted = set(objects)
        by_object = {name: key for name, key in by_object.items() if name in wanted}

    @dg.sensor(
        name="stripe_events_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Polls Stripe's /v1/events and runs sync:incremental for the objects that changed.",
    )
    def stripe_events_sensor(context: dg.SensorEvaluationContext, stripe: StripeResource):
        # Imported when the sensor ticks: stripe-python is not needed to load definitions.
        from stripe import StripeError

        from ..source.errors import explain
        from ..reading.fetch import Window, iter_pages

        since, seen_ids = _parse_cursor(context.cursor)
        api = stripe.get_api()
        if since is None:
            # First tick: start from the newest event instead of replaying Stripe's 30 days of history.
            try:
                page = api.list_page("/v1/events", {"limit": 100})
            except StripeError as exc:
                return dg.SkipReason(str(explain(exc, "event", api.api_key)))
            data = page.get("data") or []
            newest = data[0]["created"] if data else 0
            # The events of that second are seen too (the next tick re-reads it with created[gte]).
            seen = [e["id"] for e in data if e["created"] == newest]
            context.update_cursor(json.dumps({"created": newest, "ids": seen}))
            return dg.SkipReason("Started watching Stripe events from now on.")
        events: list[dict] = []
        try:
            # created[gte] re-reads the cursor's second; ids already seen in it are skipped, so events
            # sharing one second are neither lost nor counted twice.
            for page in iter_pages(api, "/v1/events", Window(gte=since).params()):
                events.extend(e for e in page if e["id"] not in seen_ids)
                if len(events) >= MAX_EVENTS_PER_TICK:
                    break
        except StripeError as exc:
            return dg.SkipReason(str(explain(exc, "event", api.api_key)))
        if not events:
            return dg.SkipReason(f"No new Stripe events since {since}.")
        newest = max(e["created"] for e in events)
        ids_at_newest = [e["id"] for e in events if e["created"] == newest]
        if newest == since:
            ids_at_newest += seen_ids
        context.update_cursor(json.dumps({"created": newest, "ids": ids_at_newest}))
        changed = sorted(name for name in objects_in_events(events) if name in by_object)
        keys = [by_object[name] for name in changed]
        return dg.RunRequest(
            run_key=f"stripe-events-{newest}-{len(events)}-{ids_at_newest[0]}",
            asset_selection=keys,
            run_config=incremental_run_config(keys, stripe_assets),
            tags={"stripe/objects": ",".join(changed)[:200], "stripe/events": str(len(events))},
        )

    return stripe_events_sensor
