"""Access requests: someone asks for a role to read a product; a member of the team that owns the
product approves or denies.

A decision never grants anything. Approval writes the spec change (the role added to the access
list) for review; the grant follows when that change is merged and `datamesh grants sync` runs,
so the spec stays the only source of grants. The request's row holds its current state; its
history (request, approve, deny) and every grant and revoke are entries of the append-only audit
log, written in the same transaction as the change they record.

Who decides: a member of the team owning the product, in the domain registry (domains/<domain>.yaml).
The caller names who is asking: the CLI `store.actor()` ($DATAMESH_ACTOR, else the operating-system
user), the console's API the Airflow user its auth manager logged in (`get_name()`, the user name).
Either is matched against each member's `login`, else their email (case-insensitive). The Airflow
user name, not an email attribute: every auth manager has a user name and authenticates it (the
simple auth manager has no emails at all; FAB's email is profile data an admin types in), and with
SSO the user name is the company login the registry's `login` already records.

`decide_request` is what both the CLI and the API call: it finds the product's spec by its path
(spec/locate.py, so no other spec is parsed) and the domain's registry file, records the decision
and returns the spec change as a unified diff, also kept in the audit log's approve entry.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2.errors
import psycopg2.extensions

from generator.catalog import store
from generator.errors import NotAllowed, NotFound, SpecError, UserError
from generator.layout import CATALOG_SCHEMA, spec_path
from generator.spec.domain import Domain, Member, domain_file, load_registry
from generator.spec.edit import add_reader, unified_diff
from generator.spec.locate import locate
from generator.spec.mesh import ProductEntry
from generator.spec.model import DataProduct, domain_role
from generator.warehouse.transaction import transaction

_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*\Z")
CLI_IDENTITY = "$DATAMESH_ACTOR, else your operating-system user"

Connection = psycopg2.extensions.connection


@dataclass(frozen=True)
class AccessRequest:
    id: int
    domain: str
    product: str
    output: str | None
    role: str
    reason: str
    requested_by: str
    requested_at: dt.datetime
    status: str
    decided_by: str | None = None
    decided_at: dt.datetime | None = None
    decision_note: str | None = None

    @property
    def key(self) -> str:
        return f"{self.domain}__{self.product}"

    @property
    def access_field(self) -> tuple[str, str]:
        """Where the spec lists this reader: ("domains", d) for a domain role, else ("roles", role)."""
        prefix = domain_role("")
        if self.role.startswith(prefix):
            return "domains", self.role.removeprefix(prefix)
        return "roles", self.role


@dataclass(frozen=True)
class Decision:
    """A decided request and, for an approval, the spec change that carries it out."""

    request: AccessRequest
    spec_file: str  # repo-relative
    diff: str  # unified diff of the spec; empty when denied, or when the spec lists the reader already
    spec_text: str | None = None  # the spec's text with the change (approvals only), to write for review


_COLUMNS = (
    "id, domain, product, output, role, reason, requested_by, requested_at, status, decided_by, "
    "decided_at, decision_note"
)


def request_access(
    conn: Connection, spec: DataProduct, role: str, reason: str, output: str | None = None, by: str | None = None
) -> AccessRequest:
    """Record a pending request, in the name of `by` (default: `store.actor()`). UserError (and
    nothing written) for an unknown output, a role the warehouse does not have, an empty reason, or
    a role that may read the product already."""
    reason = reason.strip()
    if not reason:
        raise UserError("access request: --reason is empty; say why the role needs to read the product")
    if output is not None and spec.output(output) is None:
        outputs = ", ".join(o.name for o in spec.outputs)
        raise NotFound(f"access request: {spec.domain}/{spec.name} has no output {output!r}; it has: {outputs}")
    draft = AccessRequest(0, spec.domain, spec.name, output, role, reason, "", dt.datetime.now(), "pending")
    field, name = draft.access_field
    if name in getattr(spec.access, field):
        raise UserError(
            f"access request: {role!r} may read {spec.domain}/{spec.name} already (access.{field} "
            "of its spec); nothing was recorded"
        )
    with _write_rights(conn), transaction(conn) as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if cur.fetchone() is None:
            raise UserError(
                f"access request: role {role!r} does not exist in the warehouse; request access for an "
                "existing role (your team's reader role, or domain_<domain> for a whole domain)"
            )
        cur.execute(
            f"""INSERT INTO {CATALOG_SCHEMA}.access_requests (domain, product, output, role, reason, requested_by)
                VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
            (spec.domain, spec.name, output, role, reason, by or store.actor()),
        )
        made = AccessRequest(*cur.fetchone())
        store.audit(cur, "request", spec.domain, spec.name, spec.version,
                    {"request": made.id, "role": role, "output": output, "reason": reason}, by=by)
    return made


def get_request(conn: Connection, request_id: int) -> AccessRequest:
    with transaction(conn) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM {CATALOG_SCHEMA}.access_requests WHERE id = %s", (request_id,))
        row = cur.fetchone()
    if row is None:
        raise NotFound(f"no access request {request_id}; `datamesh access list` shows them")
    return AccessRequest(*row)


def list_requests(conn: Connection, status: str | None = None, key: str | None = None) -> list[AccessRequest]:
    with transaction(conn) as cur:
        cur.execute(
            f"""SELECT {_COLUMNS} FROM {CATALOG_SCHEMA}.access_requests
                WHERE (%(status)s IS NULL OR status = %(status)s)
                  AND (%(key)s IS NULL OR domain || '__' || product = %(key)s)
                ORDER BY id""",
            {"status": status, "key": key},
        )
        return [AccessRequest(*row) for row in cur.fetchall()]


def approver(domain: Domain | None, spec: DataProduct, who: str, identity: str = CLI_IDENTITY) -> Member:
    """The member of the team owning `spec` who `who` is; NotAllowed naming who may decide otherwise.
    `identity` tells the caller where `who` came from."""
    if domain is None:
        raise NotAllowed(
            f"{spec.domain}/{spec.name}: domain {spec.domain!r} has no registry file "
            f"({domain_file(spec.domain)}), so nobody may decide its access requests"
        )
    member = domain.member(who)
    allowed = [m.email for m in domain.members if m.team == spec.owner.team]
    if member is None or member.team != spec.owner.team:
        what = "is not a member of" if member is None else f"is in team {member.team!r}, not"
        raise NotAllowed(
            f"{who!r} {what} team {spec.owner.team!r}, which owns {spec.domain}/{spec.name} "
            f"({domain_file(spec.domain)}); only its members may decide: {', '.join(allowed) or 'none listed'}. "
            f"Your identity is {identity} (a member's login or email)."
        )
    return member


def decide(
    conn: Connection, request: AccessRequest, spec: DataProduct, domain: Domain | None, approve: bool,
    note: str | None = None, who: str | None = None, identity: str = CLI_IDENTITY, details: dict | None = None,
    by: str | None = None,
) -> AccessRequest:
    """Approve or deny a pending request as `who` (default: `store.actor()`), who must be a member
    of the owning team. Changes the request's state and appends the decision (with `details`) to the
    audit log, naming `by` (default: `who`); no grant."""
    who = who or store.actor()
    member = approver(domain, spec, who, identity)
    if request.status != "pending":
        raise UserError(
            f"access request {request.id} was {request.status} by {request.decided_by} already; "
            "file a new request to decide again"
        )
    status, action = ("approved", "approve") if approve else ("denied", "deny")
    with _write_rights(conn), transaction(conn) as cur:
        cur.execute(
            f"""UPDATE {CATALOG_SCHEMA}.access_requests
                SET status = %s, decided_by = %s, decided_at = now(), decision_note = %s
                WHERE id = %s AND status = 'pending' RETURNING {_COLUMNS}""",
            (status, member.email, note, request.id),
        )
        row = cur.fetchone()
        if row is None:
            raise UserError(f"access request {request.id} was decided meanwhile; see `datamesh access list`")
        store.audit(cur, action, spec.domain, spec.name, spec.version,
                    {"request": request.id, "role": request.role, "by": member.email, "note": note,
                     **(details or {})}, by=by or who)
    return AccessRequest(*row)


def decide_request(
    conn: Connection, root: Path, request_id: int, approve: bool, who: str, note: str | None = None,
    identity: str = CLI_IDENTITY, by: str | None = None,
) -> Decision:
    """Decide request `request_id` as `who` (checked against the owning team in the registry of
    the repo at `root`). An approval returns the spec change as a diff (and the changed text), and
    keeps the diff in the audit log; the spec file itself is not written here."""
    request = get_request(conn, request_id)
    entry = product_entry(root, request.domain, request.product)
    domain = _registry_domain(root, request.domain)
    before = entry.spec_path.read_text(encoding="utf-8")
    after = None
    diff = ""
    if approve:
        field, name = request.access_field
        after = add_reader(before, entry.shown, field, name)  # checked before the decision is recorded
        diff = unified_diff(before, after, entry.shown)
    decided = decide(conn, request, entry.spec, domain, approve, note, who, identity,
                     {"spec_file": entry.shown, "diff": diff} if approve else None, by)
    return Decision(decided, entry.shown, diff, after)


def product_entry(root: Path, domain: str, product: str) -> ProductEntry:
    """A product's spec from its own file; NotFound when the repo has no such product (any more)."""
    if not (_IDENTIFIER.match(domain) and _IDENTIFIER.match(product)):  # names from a URL: never a path
        raise NotFound(f"no product {domain}/{product}: not a product name")
    if not spec_path(root, domain, product).is_file():
        raise NotFound(f"no product {domain}/{product} in this mesh ({root}): no spec at "
                       f"{spec_path(root, domain, product).relative_to(root)}")
    return locate(root, domain, product)


def _registry_domain(root: Path, name: str) -> Domain | None:
    found, problems = load_registry(root, {name})
    if problems:
        raise SpecError(problems)
    entry = found.get(name)
    return entry.domain if entry else None


@contextmanager
def _write_rights(conn: Connection) -> Iterator[None]:
    """Turn a refused write into the grants a (read-only) catalog user must ask for."""
    try:
        yield
    except psycopg2.errors.InsufficientPrivilege as exc:
        raise UserError(
            f"role {conn.info.user!r} may read the catalog but not record access requests "
            f"({str(exc).strip().splitlines()[0]}). Ask the catalog's owner for: GRANT INSERT, UPDATE ON "
            f"{CATALOG_SCHEMA}.access_requests, INSERT ON {CATALOG_SCHEMA}.audit_log and USAGE on their sequences"
        ) from None


def grant_history(conn: Connection, domain: str | None = None, product: str | None = None) -> list[dict]:
    """The audit log's access entries (request, approve, deny, grant, revoke), oldest first."""
    with transaction(conn) as cur:
        cur.execute(
            f"""SELECT at, actor, action, domain, product, details FROM {CATALOG_SCHEMA}.audit_log
                WHERE action IN ('request', 'approve', 'deny', 'grant', 'revoke')
                  AND (%(domain)s IS NULL OR domain = %(domain)s)
                  AND (%(product)s IS NULL OR product = %(product)s)
                ORDER BY id""",
            {"domain": domain, "product": product},
        )
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
