"""PostgreSQL connection strings (DSNs) as messages may show them: never their password, nor any part of one
that cannot be parsed.

A DSN is a secret: a malformed one must not be echoed (libpq's own parse errors quote it whole), and one that
libpq parses, but not as its writer meant, must be refused before it is used. A password with an unencoded `@`
or `/` in a URL is read by libpq as part of the host, port or database name, and those are what messages show.
psycopg (libpq's parser) loads only when a DSN is checked.
"""

from __future__ import annotations

import re

INVALID_DSN = (
    "state.dsn is not a valid PostgreSQL connection string (URL or key=value); a password with @, / or : must be "
    "percent-encoded"
)
HIDDEN = "***"

_URL = re.compile(r"^postgres(?:ql)?://", re.IGNORECASE)
# key=value passwords (quoted or not) and URL user info, wherever they show up in a message
_KEY_PASSWORD = re.compile(r"""(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|"[^"]*"?|\S+)""", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^\s\"'/]*@", re.IGNORECASE)
_QUOTED_URL = re.compile(r"""(["'])[a-z][a-z0-9+.-]*://.*?\1""", re.IGNORECASE)


def dsn_problem(dsn: str) -> str | None:
    """Why `dsn` cannot be used as written (None when it can): empty, not parsed by libpq, or parsed into
    something other than what it says (an unencoded `@` or `/` in a URL's password, a port that is not a
    number). The answer never repeats any part of the DSN."""
    if not dsn.strip():
        return "is empty"
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:  # libpq's message quotes the DSN: not shown
        return "is not valid"
    if _URL.match(dsn):
        rest = _URL.sub("", dsn, count=1)
        authority, _, path = rest.partition("/")
        if authority.count("@") > 1 or "@" in path.partition("?")[0]:
            return "is not valid"
    port = str(parts.get("port") or "")
    if any(not number.strip().isdigit() for number in port.split(",") if number.strip()):
        return "is not valid"
    return None


def where(dsn: str) -> str:
    """host:port/database of a DSN, for messages: never the password (nor the user). A DSN that `dsn_problem`
    refuses is not shown at all."""
    if dsn_problem(dsn) is not None:
        return "(an invalid connection string)"
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(dsn)
    host = str(parts.get("host") or parts.get("hostaddr") or "localhost")
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or 'postgres'}"


def password_of(dsn: str) -> str | None:
    from psycopg.conninfo import conninfo_to_dict

    try:
        value = conninfo_to_dict(dsn).get("password")
    except Exception:
        return None
    return str(value) if value else None


def masked(text: str, dsn: str) -> str:
    """`text` (a libpq or server message) with the DSN, anything like a URL or key=value password, and the DSN's
    own password replaced by ***."""
    if dsn.strip():
        text = text.replace(dsn.strip(), HIDDEN)
    text = _QUOTED_URL.sub(lambda m: f"{m.group(1)}{HIDDEN}{m.group(1)}", text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{HIDDEN}@", text)
    text = _KEY_PASSWORD.sub(lambda m: f"{m.group(1)}{HIDDEN}", text)
    password = password_of(dsn)
    if password:
        text = text.replace(password, HIDDEN)
    return text
