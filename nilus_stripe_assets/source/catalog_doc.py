"""The README's objects table, written from the catalog (a test compares the README with it).

    .venv/bin/python -m nilus_stripe_assets.source.catalog_doc      # rewrite the table in README.md

The table sits between `<!-- objects:start -->` and `<!-- objects:end -->`: one row per catalog object, the
default load's 24 first, then the other lists by product area, and the SDK lists left out with their reason.
"""

from __future__ import annotations

import re
from pathlib import Path

from .catalog import CATALOG, LEFT_OUT, StripeObject

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- objects:start -->", "<!-- objects:end -->"


def _endpoint(obj: StripeObject) -> str:
    if obj.parent is None:
        params = "&".join(f"{k}={v}" for k, v in obj.list_params.items())
        return f"`{obj.path}{'?' + params if params else ''}`"
    params = [f"{k}={v}" for k, v in obj.list_params.items()]
    if obj.parent.param:
        params.append(f"{obj.parent.param}=…")
    return f"`{obj.parent.path_template}{'?' + '&'.join(params) if params else ''}`"


def _reached(obj: StripeObject) -> str:
    if obj.parent is None:
        return ""
    parent = obj.parent
    how = f"each `{parent.object}`"
    if parent.only_if:
        how += " with " + ", ".join(f"`{field}={str(value).lower()}`" for field, value in parent.only_if)
    if parent.embedded_field:
        how += f" (its embedded `{parent.embedded_field}`, the endpoint only when `has_more`)"
    return f"{how}; column `{parent.id_column}`"


def _changes(obj: StripeObject) -> str:
    """How a run sees the object's changes after the first load."""
    if obj.name == "event":
        return "is the event stream"
    if obj.relist_on:
        kinds = ", ".join(f"`{kind}`" for kind, _ in obj.relist_on)
        return f"re-listed for the `{obj.parent.object}`s that {kinds} events name"
    if obj.strategy == "replace":
        return "re-read whole"
    if obj.event_types:
        return f"events ({len(obj.event_types)} types)" + (", deletes flagged" if obj.deletable else "")
    if obj.parent is not None and obj.parent.embedded_field:
        return f"its `{obj.parent.object}`'s events"
    if obj.parent is not None and obj.parent.relist_days:
        return f"re-listed for the last {obj.parent.relist_days} days' parents"
    return "new ones by `created`"


def render() -> str:
    rows = ["| Object | Group | Endpoint | Strategy | `created` filter | Reached through | Changes after the first load "
            "| Not set up → empty |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    ordered = [o for o in CATALOG.values() if o.default_load]
    ordered += sorted((o for o in CATALOG.values() if not o.default_load), key=lambda o: (o.group, o.name))
    for o in ordered:
        group = "stripe" if o.default_load else f"stripe_{o.group}"
        connect = " (Connect locations)" if o.connect_only else ""
        rows.append(f"| `{o.name}`{connect} | {group} | {_endpoint(o)} | {o.strategy} | "
                    f"{'yes' if o.supports_created else 'no'} | {_reached(o)} | {_changes(o)} | {o.product or ''} |")
    left = ["", f"stripe-python 16.1 lists the catalog leaves out ({len(LEFT_OUT)}):", ""]
    left += [f"- `{row['sdk_method']}` (`{row['path']}`): {row['reason']}" for row in LEFT_OUT]
    return "\n".join([START, *rows, *left, END])


def replace_table(text: str) -> str:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"README.md has no {START} … {END} section")
    return pattern.sub(lambda _: render(), text, count=1)


def main() -> None:
    README.write_text(replace_table(README.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote the objects table of {README}")


if __name__ == "__main__":
    main()
