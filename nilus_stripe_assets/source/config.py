"""The spec's configuration surface, validated before any request is sent to Stripe.

Three user inputs come from the spec (`docs/stripe-source.md`):

* `source_table`: `<object>`, `<object>:sync` or `<object>:sync:incremental` -> `parse_source_table`;
* the source address `stripe://?api_key=<key>` (placeholders like `{STRIPE_API_KEY}` are read from the
  environment) -> `parse_stripe_uri`, `validate_api_key`;
* the sink's `incremental_strategy` (`merge` / `replace` / `append`) -> `resolve_strategy`.

Every problem raises `ConfigError`, whose text is one line naming the problem and the fix, and never
contains an API key (keys are shown masked, e.g. `sk_test_…abcd`).

This module must not import Dagster.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from typing import Mapping, Optional
from urllib.parse import unquote, urlsplit

from .catalog import CATALOG, DEFAULT_OBJECTS, STRATEGIES, STRIPE_OBJECT_TYPE, StripeObject

__all__ = [
    "ConfigError",
    "MODES",
    "SourceTable",
    "parse_source_table",
    "suggest_object",
    "unknown_object",
    "StripeURI",
    "URI_PARAMETERS",
    "parse_stripe_uri",
    "validate_api_key",
    "check_api_base",
    "check_account",
    "literal_api_key",
    "mask_key",
    "mask_url_passwords",
    "key_mode",
    "default_global_rate",
    "GLOBAL_RATE_LIMITS",
    "resolve_strategy",
]

# --------------------------------------------------------------------------------------------------
# Errors and secret masking
# --------------------------------------------------------------------------------------------------

# Anything that looks like a Stripe key: secret/restricted/publishable, test/live, including Stripe's
# own masked form (`sk_test_********abcd`), plus legacy keys without a mode part.
_TOKEN_RE = re.compile(r"\b(?:sk|rk|pk)_(?:(?:test|live)_[A-Za-z0-9*]+|[A-Za-z0-9]{16,})")
_KEY_PREFIX_RE = re.compile(r"^((?:sk|rk|pk)_(?:test|live)_)(.*)$", re.S)
_VALID_KEY_RE = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9]{8,}$")
# Stripe-compatible servers (stripe-mock's documented key is `sk_test_123`) take shorter keys; Stripe does not.
_COMPATIBLE_KEY_RE = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9]+$")
STRIPE_HOST = "api.stripe.com"


def mask_key(key: Optional[str]) -> str:
    """Show a key the way Stripe's Dashboard does: `sk_test_…abcd` (prefix through the mode, last 4).

    Input that does not look like a key reveals at most its last 2 characters (`…z9`), and short
    input nothing at all (`***`). Whitespace is ignored.
    """
    if not key:
        return "***"
    k = "".join(str(key).split())
    m = _KEY_PREFIX_RE.match(k)
    if m:
        rest = m.group(2)
        return f"{m.group(1)}…{rest[-4:]}" if len(rest) >= 8 else f"{m.group(1)}…"
    if len(k) >= 12:
        return "…" + k[-2:]
    return "***"


# A URL's password: scheme://user:PASSWORD@ (up to the token's last '@', so a password holding an unescaped
# '@' is masked whole). Parsing is not needed, so an address too broken to parse is masked too.
_URL_PASSWORD_RE = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@\"'<>]*:)[^\s\"'<>]*@")


def mask_url_passwords(text: str) -> str:
    """`postgresql://u:secret@[bad/db` -> `postgresql://u:***@[bad/db`, wherever a URL with a password appears."""
    return _URL_PASSWORD_RE.sub(lambda m: m.group(1) + "***@", text)


def _scrub_tokens(text: str) -> str:
    """Replace every key-looking token in `text` with its masked form, and every URL's password with ***."""
    return _TOKEN_RE.sub(lambda m: mask_key(m.group(0)), mask_url_passwords(text))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class ConfigError(ValueError):
    """A configuration problem found before any request. `str()` is one line: the problem and the fix.

    Key-looking substrings are masked on construction, so the message, `args` and `repr` are safe to log.
    """

    def __init__(self, message: str):
        super().__init__(_scrub_tokens(_one_line(message)))


# --------------------------------------------------------------------------------------------------
# source_table
# --------------------------------------------------------------------------------------------------

MODES: tuple[str, ...] = ("async", "sync", "sync:incremental")

# The default load's 23 first (what most people mean), then every other list the catalog reads.
_VALID_OBJECTS = (", ".join(sorted(DEFAULT_OBJECTS)) + "; and the other Stripe lists: "
                  + ", ".join(sorted(set(CATALOG) - set(DEFAULT_OBJECTS))))


@dataclass(frozen=True)
class SourceTable:
    object: StripeObject
    mode: str  # one of MODES

    @property
    def incremental(self) -> bool:
        return self.mode == "sync:incremental"

    def __str__(self) -> str:  # the canonical `source_table` text, e.g. "charge:sync:incremental"
        return self.object.name if self.mode == "async" else f"{self.object.name}:{self.mode}"


def _build_aliases() -> dict[str, str]:
    """Spellings people use for a catalog object -> its catalog name (plural, path, compact, type)."""
    aliases: dict[str, str] = {}
    for name, obj in CATALOG.items():
        segment = obj.path.rstrip("/").rsplit("/", 1)[-1]  # "invoiceitems", "payment_intents"
        for alias in (
            name,
            name.replace("_", ""),
            segment,
            segment.replace("_", ""),
            STRIPE_OBJECT_TYPE[name],
            name + "s",
            name.replace("_", "") + "s",
        ):
            aliases.setdefault(alias, name)
    return aliases


_ALIASES = _build_aliases()


def _singulars(word: str) -> list[str]:
    out = [word]
    if word.endswith("ies"):
        out.append(word[:-3] + "y")
    if word.endswith("es"):
        out.append(word[:-2])
    if word.endswith("s"):
        out.append(word[:-1])
    return out


def suggest_object(name: str) -> Optional[str]:
    """Best catalog name for a misspelt/plural/path-style object name, or None."""
    key = re.sub(r"[\s\-.]+", "_", name.strip().lower()).strip("_")
    if not key:
        return None
    for cand in (key, key.replace("_", "")):
        for single in _singulars(cand):
            if single in _ALIASES:
                return _ALIASES[single]
    close = difflib.get_close_matches(key, list(_ALIASES), n=1, cutoff=0.6)
    return _ALIASES[close[0]] if close else None


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unknown_object(name: str) -> ConfigError:
    guess = suggest_object(name)
    hint = f" Did you mean '{guess}'?" if guess else ""
    return ConfigError(f"No such resource '{_clip(name)}'.{hint} Valid objects: {_VALID_OBJECTS}.")


def parse_source_table(text: str) -> SourceTable:
    """Parse `source_table`: `<object>` (async), `<object>:sync` or `<object>:sync:incremental`.

    Whitespace around the text and its parts is ignored; names are case-insensitive. Object names
    must be the singular catalog names (`charge`, `invoice_item`); plurals and Stripe path names
    (`charges`, `invoiceitems`) are rejected with a suggestion, as Stripe answers "No such resource".
    """
    if text is None or not str(text).strip():
        raise ConfigError(f"source_table is empty; set it to one of the supported objects: {_VALID_OBJECTS}.")
    parts = [p.strip().lower() for p in str(text).strip().split(":")]
    raw_name = str(text).strip().split(":")[0].strip()
    name, suffix = parts[0], ":".join(parts[1:])
    if not name:
        raise ConfigError(
            f"source_table '{str(text).strip()}' has no object name before ':'; "
            f"write <object>[:sync[:incremental]] with one of: {_VALID_OBJECTS}."
        )
    obj = CATALOG.get(name)
    if obj is None:
        raise unknown_object(raw_name)
    if len(parts) == 1:
        return SourceTable(obj, "async")
    if suffix in ("sync", "sync:incremental"):
        return SourceTable(obj, suffix)
    if suffix in ("incremental", "incremental:sync"):
        raise ConfigError(
            f"Loading mode 'incremental' must be combined with 'sync': "
            f"use '{obj.name}:sync:incremental' instead of '{obj.name}:{suffix}'."
        )
    raise ConfigError(
        f"Unknown loading mode '{suffix}' in source_table '{obj.name}:{suffix}'; use one of "
        f"'{obj.name}' (async, the default), '{obj.name}:sync' or '{obj.name}:sync:incremental'."
    )


# --------------------------------------------------------------------------------------------------
# stripe:// URI and API keys
# --------------------------------------------------------------------------------------------------

URI_PARAMETERS: tuple[str, ...] = ("api_key", "stripe_account", "api_base")
_URI_FORM = "stripe://?api_key={STRIPE_API_KEY}[&stripe_account=acct_…][&api_base=http://host:port]"
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ACCOUNT_RE = re.compile(r"^acct_[A-Za-z0-9]+$")


@dataclass(frozen=True)
class StripeURI:
    api_key: Optional[str]
    stripe_account: Optional[str]
    api_base: Optional[str]

    def __repr__(self) -> str:  # never print the key
        key = None if self.api_key is None else mask_key(self.api_key)
        return f"StripeURI(api_key={key!r}, stripe_account={self.stripe_account!r}, api_base={self.api_base!r})"

    __str__ = __repr__


def _resolve_placeholders(param: str, value: str, env: Mapping[str, str]) -> str:
    stripped = _PLACEHOLDER_RE.sub("", value)
    if "{" in stripped or "}" in stripped:
        raise ConfigError(
            f"Parameter {param} in the stripe:// address uses an unsupported placeholder; write "
            f"{{NAME}} to read environment variable NAME, e.g. {param}={{STRIPE_API_KEY}}."
        )

    def lookup(m: re.Match) -> str:
        var = m.group(1)
        val = env.get(var)
        if val is None:
            raise ConfigError(
                f"Environment variable {var} is not set (the stripe:// address reads {param} from {{{var}}}); "
                f"export {var} or provide it through your secrets."
            )
        if not val.strip():
            raise ConfigError(
                f"Environment variable {var} is empty (the stripe:// address reads {param} from {{{var}}}); "
                f"set it to your Stripe key."
            )
        return val

    return _PLACEHOLDER_RE.sub(lookup, value)


def parse_stripe_uri(uri: str, env: Mapping[str, str] = os.environ) -> StripeURI:
    """Parse the source address `stripe://?api_key=<key>[&stripe_account=acct_…][&api_base=<url>]`.

    * Values are URL-decoded; `{NAME}` placeholders are then replaced from `env` (a missing or empty
      variable is an error naming the variable, never its value).
    * `api_key`, when present, is checked with `validate_api_key`. It may be omitted (-> `None`) when the
      caller supplies the key another way; callers must then validate that key themselves.
    * `stripe_account` (Connect) must be an `acct_…` id; `api_base` (an emulator or proxy) an http(s) URL,
      returned without a trailing slash.
    * A scheme other than `stripe`, a host or path part, unknown or repeated parameters are errors.
    """
    if uri is None or not str(uri).strip():
        raise ConfigError(f"The Stripe source address is empty; write it as {_URI_FORM}.")
    text = str(uri).strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        raise ConfigError(f"The Stripe source address is not a valid URI; write it as {_URI_FORM}.") from None
    if parts.scheme.lower() != "stripe" or not text.lower().startswith("stripe://"):
        scheme = parts.scheme.lower() if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,20}", parts.scheme or "") else ""
        shown = f" (got '{scheme}:')" if scheme and scheme != "stripe" else ""
        raise ConfigError(
            f"The Stripe source address must start with 'stripe://'{shown}; write it as {_URI_FORM} "
            f"(accepted parameters: {', '.join(URI_PARAMETERS)})."
        )
    if parts.netloc or parts.path not in ("", "/"):
        # Do not echo the text: `stripe://sk_test_…` would otherwise print the key.
        raise ConfigError(
            f"The stripe:// address must have no host or path, only parameters after '?'; write it as "
            f"{_URI_FORM} (accepted parameters: {', '.join(URI_PARAMETERS)})."
        )
    if parts.fragment or text.endswith("#"):
        raise ConfigError(
            "The stripe:// address contains '#', which is not part of any parameter; URL-encode it as %23 "
            f"or remove it (accepted parameters: {', '.join(URI_PARAMETERS)})."
        )

    values: dict[str, str] = {}
    for segment in parts.query.split("&"):
        if not segment:
            continue
        raw_name, sep, raw_value = segment.partition("=")
        name = unquote(raw_name).strip().lower()
        if name not in URI_PARAMETERS:
            shown = f"'{name}'" if re.fullmatch(r"[a-z_][a-z0-9_]{0,39}", name) else "(not shown)"
            raise ConfigError(
                f"Unknown parameter {shown} in the stripe:// address; accepted parameters: "
                f"{', '.join(URI_PARAMETERS)} (e.g. {_URI_FORM})."
            )
        if name in values:
            raise ConfigError(
                f"Parameter {name} appears more than once in the stripe:// address; give each of "
                f"{', '.join(URI_PARAMETERS)} at most once."
            )
        value = unquote(raw_value)
        if not sep or not value.strip():
            raise ConfigError(f"Parameter {name} in the stripe:// address has no value; write {name}=<value>.")
        values[name] = _resolve_placeholders(name, value, env)

    api_key = values.get("api_key")

    account = values.get("stripe_account")
    if account is not None:
        account = check_account(account, "or drop the parameter")

    api_base = values.get("api_base")
    if api_base is not None:
        api_base = check_api_base(api_base, "api_base", "fix or drop the parameter")

    if api_key is not None:
        validate_api_key(api_key, api_base or env.get("STRIPE_API_BASE"))

    return StripeURI(api_key=api_key, stripe_account=account, api_base=api_base)


def check_account(value: str, fix: str = "") -> str:
    """`value` stripped if it is a Stripe account id (`acct_…`), else a ConfigError."""
    account = str(value).strip()
    if not _ACCOUNT_RE.match(account):
        raise ConfigError(
            f"stripe_account '{_clip(account)}' is not a Stripe account id; use the connected account's id, "
            f"which starts with acct_ (e.g. acct_1A2b3C4d5E6f7G8h){', ' + fix if fix else ''}."
        )
    return account


def check_api_base(value: str, setting: str = "api_base", fix: str = "fix or drop it") -> str:
    """`value` without a trailing slash if it is an http(s) URL with a host and no credentials, query or
    fragment; else a ConfigError naming `setting` (the URI parameter, the resource field or STRIPE_API_BASE)."""
    text = str(value).strip()
    try:
        b = urlsplit(text)
        ok = b.scheme in ("http", "https") and bool(b.hostname) and not b.query and not b.fragment
        _ = b.port  # raises ValueError on a bad port
        ok = ok and "@" not in b.netloc
    except ValueError:
        ok = False
    if not ok:
        # The value is not echoed: a URL with credentials would show them.
        raise ConfigError(
            f"{setting} must be an http(s) URL with a host and no credentials or query, such as "
            f"http://127.0.0.1:12111 for an emulator or https://api.stripe.com; {fix}."
        )
    return text.rstrip("/")


def literal_api_key(address: str) -> Optional[str]:
    """The api_key of a stripe:// address when it is written out instead of read from a {VARIABLE}."""
    try:
        query = urlsplit(str(address).strip()).query
    except ValueError:
        return None
    for segment in query.split("&"):
        name, _, value = segment.partition("=")
        value = unquote(value).strip()
        if unquote(name).strip().lower() == "api_key" and value and not _PLACEHOLDER_RE.search(value):
            return value
    return None


def validate_api_key(key: str, api_base: Optional[str] = None) -> None:
    """Reject keys that cannot work, before any request. Messages show the key masked only.

    Accepted: `^(sk|rk)_(test|live)_[A-Za-z0-9]{8,}$` (secret or restricted, test or live). Against another
    server than Stripe's own (`api_base`: an emulator, stripe-mock, localstripe) any length after the prefix.
    """
    if key is None or not str(key).strip():
        raise ConfigError(
            "The Stripe API key is empty; set STRIPE_API_KEY (or api_key in the stripe:// address) to a "
            "secret (sk_test_…/sk_live_…) or restricted (rk_test_…/rk_live_…) key."
        )
    key = str(key)
    masked = mask_key(key)
    if any(ch.isspace() for ch in key):
        raise ConfigError(
            f"The Stripe API key {masked} contains whitespace (a copy-paste error?); remove the spaces or "
            f"line breaks around or inside it."
        )
    if key.startswith(("pk_test_", "pk_live_")):
        raise ConfigError(
            f"{masked} is a publishable key, which cannot read data; use a secret (sk_) or restricted (rk_) key "
            f"from Stripe Dashboard → Developers → API keys."
        )
    stripe_itself = not api_base or urlsplit(api_base).hostname == STRIPE_HOST
    if not (_VALID_KEY_RE if stripe_itself else _COMPATIBLE_KEY_RE).match(key):
        length = "at least 8 letters or digits" if stripe_itself else "letters or digits"
        raise ConfigError(
            f"The Stripe API key {masked} is malformed; expected sk_test_, sk_live_, rk_test_ or rk_live_ "
            f"followed by {length}, as copied from Stripe Dashboard → Developers → API keys."
        )


def key_mode(key: str) -> str:
    """`"test"` or `"live"`, from the key's prefix (`sk_test_…` / `rk_live_…`)."""
    m = re.match(r"^(?:sk|rk|pk)_(test|live)_", (key or "").strip())
    if not m:
        raise ConfigError(
            f"Cannot tell whether the Stripe API key {mask_key(key)} is a test or live key; expected it to start "
            f"with sk_test_, sk_live_, rk_test_ or rk_live_."
        )
    return m.group(1)


# docs.stripe.com/rate-limits: live mode allows 100 read requests/s, sandboxes/test mode 25.
GLOBAL_RATE_LIMITS: dict[str, int] = {"test": 25, "live": 100}
DEFAULT_API_BASE = "https://api.stripe.com"


def default_global_rate(key: str) -> int:
    """Stripe's per-account request rate for this key's mode (requests per second)."""
    return GLOBAL_RATE_LIMITS[key_mode(key)]


# --------------------------------------------------------------------------------------------------
# Write strategy
# --------------------------------------------------------------------------------------------------


def resolve_strategy(
    obj: StripeObject, mode: str, override: Optional[str] = None, partitioned: bool = False
) -> str:
    """The write strategy for `obj` loaded in `mode`: the spec's default, or the `override`
    (sink option `incremental_strategy`), after rejecting combinations that lose or duplicate data.

    * Only `merge`, `replace` and `append` exist.
    * `replace` on a partitioned load swaps only that partition's `created` slice, so it is allowed.
    * `replace` for an object whose rows change (a `merge` object) with `sync:incremental` is rejected:
      it would swap the table for only the new rows. Snapshot objects whose default is `replace`
      (coupon, tax_rate, webhook_endpoint) are small; in `sync:incremental` they are refreshed whole,
      so that mode works for them without losing rows.
    * `append` for an object whose rows change (everything but `event`) in `sync:incremental` mode or a
      partitioned load is rejected: re-fetched rows would be duplicated. Use `merge`. (`append` on a full
      async/sync load is allowed: it keeps one snapshot per run, which is a deliberate choice.)
    * `merge` is always allowed; for `event` it is idempotent by id. Overriding a replace-default snapshot
      object (coupon, tax_rate, webhook_endpoint) to `merge` is allowed, but then rows deleted in Stripe
      stay in the table (merge never deletes).
    """
    if mode not in MODES:
        raise ConfigError(f"Unknown loading mode '{mode}'; use one of: {', '.join(MODES)}.")
    is_default = override is None or not str(override).strip()
    if is_default:
        strategy = obj.strategy
    else:
        strategy = str(override).strip().lower()
        if strategy not in STRATEGIES:
            raise ConfigError(
                f"Unknown incremental_strategy '{str(override).strip()}'; use one of: {', '.join(STRATEGIES)}."
            )

    incremental = mode == "sync:incremental"
    if strategy == "replace" and incremental and obj.strategy != "replace":
        raise ConfigError(
            f"replace with '{obj.name}:sync:incremental' would swap the table for only the new rows; "
            f"set incremental_strategy: merge or load '{obj.name}' without ':sync:incremental'."
        )
    if strategy == "append" and obj.name != "event" and (incremental or partitioned):
        where = "sync:incremental mode" if incremental else "a partitioned load"
        raise ConfigError(
            f"append for '{obj.name}' in {where} would duplicate rows ({obj.name} rows change after creation "
            f"and are fetched again); set incremental_strategy: merge."
        )
    return strategy


def describe_url(url: str) -> str:
    """The address without its password, for messages: postgresql://user@host:port/db."""
    import psycopg  # only those who use PostgreSQL import it
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        return "(an address that is not a PostgreSQL connection URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"
