"""Access requests: someone asks for a role to read a product; a member of the team that owns the
product approves or denies.

A decision never grants anything. Approval writes the spec change (the role added to the access
list) for review; the grant follows when that change is merged and `datamesh grants sync` runs,
so the spec stays the only source of grants. The request's row holds its current state; its
history (request, approve, deny) and every grant and revoke are entries of the append-only audit
log, written in the same transaction as the change they record.

Who decides: the approver is `store.actor()` ($DATAMESH_ACTOR, else the operating-system user),
matched against the email or login of the domain registry's members (domains/<domain>.yaml).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg2.extensions

from generator.catalog import store
from generator.errors import UserError
from generator.layout import CATALOG_SCHEMA
from generator.spec.domain import Domain, Member, domain_file
from generator.spec.model import DataProduct, domain_role
from generator.warehouse.transaction import transaction

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


_COLUMNS = (
    "id, domain, product, output, role, reason, requested_by, requested_at, status, decided_by, "
    "decided_at, decision_note"
)


def request_access(
    conn: Connection, spec: DataProduct, role: str, reason: str, output: str | None = None
) -> AccessRequest:
    """Record a pending request. UserError (and nothing written) for an unknown output, a role
    the warehouse does not have, an empty reason, or a role that may read the product already."""
    reason = reason.strip()
    if not reason:
        raise UserError("access request: --reason is empty; say why the role needs to read the product")
    if output is not None and spec.output(output) is None:
        outputs = ", ".join(o.name for o in spec.outputs)
        raise UserError(f"access request: {spec.domain}/{spec.name} has no output {output!r}; it has: {outputs}")
    with transaction(conn) as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if cur.fetchone() is None:
            raise UserError(
                f"access request: role {role!r} does not exist in the warehouse; request access for an "
                "existing role (your team's reader role, or domain_<domain> for a whole domain)"
            )
        draft = AccessRequest(0, spec.domain, spec.name, output, role, reason, "", dt.datetime.now(), "pending")
        field, name = draft.access_field
        if name in getattr(spec.access, field):
            raise UserError(
                f"access request: {role!r} may read {spec.domain}/{spec.name} already (access.{field} "
                "of its spec); nothing was recorded"
            )
        cur.execute(
            f"""INSERT INTO {CATALOG_SCHEMA}.access_requests (domain, product, output, role, reason, requested_by)
                VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
            (spec.domain, spec.name, output, role, reason, store.actor()),
        )
        made = AccessRequest(*cur.fetchone())
        store.audit(cur, "request", spec.domain, spec.name, spec.version,
                    {"request": made.id, "role": role, "output": output, "reason": reason})
    return made


def get_request(conn: Connection, request_id: int) -> AccessRequest:
    with transaction(conn) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM {CATALOG_SCHEMA}.access_requests WHERE id = %s", (request_id,))
        row = cur.fetchone()
    if row is None:
        raise UserError(f"no access request {request_id}; `datamesh access list` shows them")
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


def approver(domain: Domain | None, spec: DataProduct, who: str) -> Member:
    """The member of the team owning `spec` who `who` is; UserError naming who may decide otherwise."""
    if domain is None:
        raise UserError(
            f"{spec.domain}/{spec.name}: domain {spec.domain!r} has no registry file "
            f"({domain_file(spec.domain)}), so nobody may decide its access requests"
        )
    member = domain.member(who)
    allowed = [m.email for m in domain.members if m.team == spec.owner.team]
    if member is None or member.team != spec.owner.team:
        what = "is not a member of" if member is None else f"is in team {member.team!r}, not"
        raise UserError(
            f"{who!r} {what} team {spec.owner.team!r}, which owns {spec.domain}/{spec.name} "
            f"({domain_file(spec.domain)}); only its members may decide: {', '.join(allowed) or 'none listed'}. "
            "Your identity is $DATAMESH_ACTOR, else your operating-system user (a member's email or login)."
        )
    return member


def decide(
    conn: Connection, request: AccessRequest, spec: DataProduct, domain: Domain | None, approve: bool,
    note: str | None = None,
) -> AccessRequest:
    """Approve or deny a pending request as `store.actor()`, who must be a member of the owning
    team. Changes the request's state and appends the decision to the audit log; no grant."""
    who = store.actor()
    member = approver(domain, spec, who)
    if request.status != "pending":
        raise UserError(
            f"access request {request.id} was {request.status} by {request.decided_by} already; "
            "file a new request to decide again"
        )
    status, action = ("approved", "approve") if approve else ("denied", "deny")
    with transaction(conn) as cur:
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
                    {"request": request.id, "role": request.role, "by": member.email, "note": note})
    return AccessRequest(*row)


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
