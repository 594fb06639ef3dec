"""The README's objects table is the catalog's (written by source/catalog_doc.py): one row per object."""

import re

from nilus_stripe_assets.source import catalog_doc
from nilus_stripe_assets.source.catalog import CATALOG, LEFT_OUT


def test_readme_objects_table_is_written_from_the_catalog():
    text = catalog_doc.README.read_text(encoding="utf-8")
    section = text[text.index(catalog_doc.START): text.index(catalog_doc.END) + len(catalog_doc.END)]
    assert section == catalog_doc.render(), (
        "README.md's objects table is stale: run .venv/bin/python -m nilus_stripe_assets.source.catalog_doc"
    )
    names = re.findall(r"^\| `(\w+)`", section, re.M)
    assert sorted(names) == sorted(CATALOG) and len(names) >= 80
    assert names[:24] == [n for n, o in CATALOG.items() if o.default_load]
    assert all(row["reason"] in section for row in LEFT_OUT)
    issuing = next(line for line in section.splitlines() if line.startswith("| `issuing_card`"))
    assert "stripe_issuing" in issuing and issuing.rstrip().endswith("| Issuing |")
