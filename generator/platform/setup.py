"""`datamesh platform setup`: make a warehouse ready for the mesh, on every deploy, idempotently.

It runs the catalog migrations, then brings what the platform manages to what the specs ask for:

- the role `domain_<d>` (NOLOGIN, no other attribute) of every domain that owns a product or is
  granted one (`access.domains`);
- each product's build schema `<key>__build`, owned by its domain role (with what is in it);
- each domain role's read access to the operational sources its specs declare (USAGE on the schema,
  SELECT on the table), and no other such access: a grant no spec asks for any more is revoked;
- the read grants on every published schema, equal to the specs' access lists (platform/grants.py);
- the catalog's domain rows, equal to the domain registry (domains/<domain>.yaml).

What a domain role `domain_<d>` may do, and no more (least privilege that works):
- own (and so write) the build schema of each of its products; the platform creates that schema,
  so the role needs no CREATE on the database (setup revokes one if it was granted) and cannot make
  schemas;
- read the operational tables its specs declare under `inputs.sources`;
- read other products' published schemas when their specs grant its domain (done by publish).

Which grants setup manages, and so may revoke: USAGE on schemas and SELECT on tables held directly
by a `domain_*` role, on schemas that are not the platform's own (the catalog, and the product
schemas `<domain>__<product>...`, whose grants publish manages). It never touches another role's
privileges. While a spec of a domain is broken, that domain's grants are left as they are: what
the broken spec asks for cannot be known.

Access roles that specs name (analyst, finance_controller, ...) belong to the organisation: setup
lists the missing ones with the SQL that creates them, and creates them (NOLOGIN) only when told to
(`--create-roles`). Publish refuses a role that does not exist, so a typo never becomes a role.

The code is data and small functions: `observe` reads the warehouse, `wanted` reads the specs,
`plan` (pure) turns both into a list of `Change`s, and `setup_platform` applies them in one
transaction (or only returns them: a dry run). Concurrent setups take one advisory lock, so the
second waits and then finds nothing to change.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2.extensions

from generator.catalog import store
from generator.errors import Problem, SpecError
from generator.layout import CATALOG_SCHEMA, DBT_DIR
from generator.platform import grants
from generator.platform.access import OWNED_KINDS
from generator.spec.domain import load_registry
from generator.spec.load import load_spec
from generator.spec.mesh import ProductEntry, load_mesh, spec_paths
from generator.spec.model import domain_role
from generator.warehouse.connection import Warehouse
from generator.warehouse.transaction import transaction

log = logging.getLogger(__name__)

Cursor = psycopg2.extensions.cursor

SETUP_LOCK = "datamesh.platform.setup"
DOMAIN_ROLE_PREFIX = domain_role("")
# Role attributes a domain role must not have (pg_roles column -> the ALTER ROLE keyword that clears it).
_FORBIDDEN_ATTRIBUTES = {
    "rolcanlogin": "NOLOGIN",
    "rolsuper": "NOSUPERUSER",
    "rolcreatedb": "NOCREATEDB",
    "rolcreaterole": "NOCREATEROLE",
    "rolreplication": "NOREPLICATION",
    "rolbypassrls": "NOBYPASSRLS",
}
_SOURCE_KINDS = ["r", "p", "v", "m", "f"]  # what a declared source may be: tables, views, foreign tables


@dataclass(frozen=True)
class Change:
    """One change setup makes: what kind, one line for a person, and the SQL that makes it."""

    kind: str  # migrate, create role, alter role, revoke, create schema, own schema, grant
    description: str
    sql: str


@dataclass(frozen=True)
class Wanted:
    """What the specs ask of the warehouse."""

    domain_roles: tuple[str, ...]
    build_schemas: dict[str, str]  # schema -> the domain role that owns it
    schema_reads: frozenset[tuple[str, str]]  # (role, source schema): USAGE
    table_reads: frozenset[tuple[str, str, str]]  # (role, schema, table): SELECT
    sources_named_by: dict[tuple[str, str], list[str]]  # (schema, table) -> "spec: inputs.sources[i]"
    access_roles: dict[str, list[str]]  # role -> "spec: access.roles" for each spec naming it
    held_roles: frozenset[str] = frozenset()  # domain roles whose grants are not revoked now


@dataclass(frozen=True)
class Observed:
    """What the warehouse holds now, as far as setup manages it."""

    database: str
    roles: dict[str, frozenset[str]]  # every role -> its attributes a domain role must not have
    schema_owners: dict[str, str]
    public_schemas: frozenset[str]  # schemas on which PUBLIC holds a privilege
    sources: frozenset[tuple[str, str]]  # the declared sources that exist
    foreign_owned: dict[str, list[tuple[str, str, str]]]  # build schema -> (relation, kind, owner)
    domain_grants: frozenset[tuple[str, str, str]]  # (domain role, schema, table or '') held now
    database_create: frozenset[str]  # domain roles holding CREATE on the database


@dataclass(frozen=True)
class Plan:
    changes: list[Change]
    missing_roles: dict[str, list[str]]  # access role -> where specs name it (not created)
    waiting_sources: dict[str, list[str]]  # "schema.table" -> where specs declare it (not there yet)


@dataclass
class SetupReport:
    """What a setup did (or, in a dry run, would do) and what is left for a person to do."""

    changes: list[Change]
    missing_roles: dict[str, list[str]]
    waiting_sources: dict[str, list[str]]
    problems: list[Problem] = field(default_factory=list)  # broken specs: their products were skipped
    skipped: list[str] = field(default_factory=list)  # the spec files not set up
    products: int = 0
    dry_run: bool = False

    @property
    def complete(self) -> bool:
        return not self.missing_roles and not self.problems


# --- the specs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedSpecs:
    entries: list[ProductEntry]
    problems: list[Problem]  # every problem of the mesh, as `datamesh validate` reports it
    skipped: list[str]  # spec files that could not be loaded (their products are not set up)

    @property
    def held_domains(self) -> frozenset[str]:
        """Domains with a spec that could not be read: their grants wait (see the module doc)."""
        parts = [Path(shown).parts for shown in self.skipped]
        return frozenset(p[1] for p in parts if len(p) >= 3 and p[0] == DBT_DIR)


def load_specs(root: Path) -> LoadedSpecs:
    """Every spec that loads on its own, and the mesh's problems: a broken spec of one product
    never keeps another product from being set up (cross-spec problems, such as an input naming a
    product that does not load, do not matter to setup: roles, schemas and grants are per spec)."""
    root = root.resolve()
    try:
        return LoadedSpecs(load_mesh(root).products, [], [])
    except SpecError as exc:
        problems = exc.problems
    entries, skipped = [], []
    for path in spec_paths(root):
        shown = str(path.relative_to(root))
        try:
            spec = load_spec(path, shown)
        except SpecError:
            skipped.append(shown)
            continue
        if path.parent.relative_to(root / DBT_DIR).parts != (spec.domain, spec.name):
            skipped.append(shown)  # load_mesh reported where it must live
            continue
        entries.append(ProductEntry(spec, path, shown))
    return LoadedSpecs(entries, problems, skipped)


def wanted(entries: Sequence[ProductEntry], held_domains: Iterable[str] = ()) -> Wanted:
    domains = {e.spec.domain for e in entries} | {d for e in entries for d in e.spec.access.domains}
    schema_reads, table_reads = set(), set()
    named_by: dict[tuple[str, str], list[str]] = defaultdict(list)
    access_roles: dict[str, list[str]] = defaultdict(list)
    for entry in entries:
        role = entry.spec.domain_role
        for i, source in enumerate(entry.spec.inputs.sources):
            schema_reads.add((role, source.schema_))
            table_reads.add((role, source.schema_, source.table))
            named_by[(source.schema_, source.table)].append(f"{entry.shown}: inputs.sources[{i}]")
        for where in ("roles", "pii_roles"):
            for name in getattr(entry.spec.access, where):
                mention = f"{entry.shown}: access.{where}"
                if mention not in access_roles[name]:
                    access_roles[name].append(mention)
    return Wanted(
        domain_roles=tuple(sorted(domain_role(d) for d in domains)),
        build_schemas={e.spec.build_schema: e.spec.domain_role for e in entries},
        schema_reads=frozenset(schema_reads),
        table_reads=frozenset(table_reads),
        sources_named_by=dict(named_by),
        access_roles=dict(access_roles),
        held_roles=frozenset(domain_role(d) for d in held_domains),
    )


# --- the warehouse --------------------------------------------------------------------------------


def observe(cur: Cursor, want: Wanted) -> Observed:
    cur.execute("SELECT current_database()")
    database = cur.fetchone()[0]
    attributes = list(_FORBIDDEN_ATTRIBUTES)
    cur.execute(f"SELECT rolname, {', '.join(attributes)} FROM pg_roles")
    roles = {
        name: frozenset(a for a, on in zip(attributes, flags, strict=True) if on)
        for name, *flags in cur.fetchall()
    }
    cur.execute(
        """SELECT nspname, pg_get_userbyid(nspowner),
                  EXISTS (SELECT 1 FROM aclexplode(nspacl) a WHERE a.grantee = 0)
             FROM pg_namespace"""
    )
    rows = cur.fetchall()
    owners = {name: owner for name, owner, _ in rows}
    public = frozenset(name for name, _, has_public in rows if has_public)
    declared = sorted(want.sources_named_by)
    cur.execute(
        """SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
              AND c.relkind = ANY(%s)""",
        ([s for s, _ in declared], [t for _, t in declared], _SOURCE_KINDS),
    )
    sources = frozenset(cur.fetchall())
    # Relations in build schemas not owned by the schema's domain role (a sequence owned by a
    # column follows its table, so it is not listed).
    cur.execute(
        """SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY(%s) AND c.relkind = ANY(%s)
              AND NOT EXISTS (SELECT 1 FROM pg_depend d
                               WHERE c.relkind = 'S' AND d.classid = 'pg_class'::regclass
                                 AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
            ORDER BY 1, 2""",
        (list(want.build_schemas), list(OWNED_KINDS)),
    )
    foreign: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for schema, relation, kind, owner in cur.fetchall():
        if owner != want.build_schemas[schema]:
            foreign[schema].append((relation, kind, owner))
    like = DOMAIN_ROLE_PREFIX.replace("_", r"\_") + "%"
    cur.execute(
        """SELECT r.rolname, n.nspname, ''
             FROM pg_namespace n, aclexplode(n.nspacl) a JOIN pg_roles r ON r.oid = a.grantee
            WHERE r.rolname LIKE %(like)s AND a.privilege_type = 'USAGE'
           UNION
           SELECT r.rolname, n.nspname, c.relname
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
             JOIN pg_roles r ON r.oid = a.grantee
            WHERE r.rolname LIKE %(like)s AND a.privilege_type = 'SELECT' AND c.relkind = ANY(%(kinds)s)""",
        {"like": like, "kinds": _SOURCE_KINDS},
    )
    grants = frozenset(cur.fetchall())
    cur.execute(
        """SELECT r.rolname FROM pg_database d, aclexplode(d.datacl) a JOIN pg_roles r ON r.oid = a.grantee
            WHERE d.datname = current_database() AND a.privilege_type = 'CREATE' AND r.rolname LIKE %s""",
        (like,),
    )
    create = frozenset(row[0] for row in cur.fetchall())
    return Observed(database, roles, owners, public, sources, dict(foreign), grants, create)


# --- the plan (pure) ------------------------------------------------------------------------------


def quote(name: str) -> str:
    """A PostgreSQL identifier, quoted (as psycopg2.sql.Identifier does, without a connection)."""
    return '"' + name.replace('"', '""') + '"'


def plan(want: Wanted, seen: Observed, create_roles: bool = False) -> Plan:
    changes = _domain_roles(want, seen)
    missing: dict[str, list[str]] = {}
    for role, named in sorted(want.access_roles.items()):
        if role in seen.roles or role in want.domain_roles:
            continue
        if create_roles:
            changes.append(
                Change("create role", f"{role} (NOLOGIN; access role named in {named[0]})",
                       f"CREATE ROLE {quote(role)} NOLOGIN;")
            )
        else:
            missing[role] = named
    changes += _build_schemas(want, seen)
    changes += _source_grants(want, seen)
    waiting = {
        f"{schema}.{table}": named
        for (schema, table), named in sorted(want.sources_named_by.items())
        if (schema, table) not in seen.sources
    }
    return Plan(changes, missing, waiting)


def _domain_roles(want: Wanted, seen: Observed) -> list[Change]:
    changes = []
    for role in want.domain_roles:
        if role not in seen.roles:
            changes.append(Change("create role", f"{role} (NOLOGIN)", f"CREATE ROLE {quote(role)} NOLOGIN;"))
        elif seen.roles[role]:
            clear = [_FORBIDDEN_ATTRIBUTES[a] for a in _FORBIDDEN_ATTRIBUTES if a in seen.roles[role]]
            changes.append(
                Change("alter role", f"{role}: {' '.join(clear)} (a domain role is used through SET ROLE only)",
                       f"ALTER ROLE {quote(role)} {' '.join(clear)};")
            )
    for role in sorted(seen.database_create):
        changes.append(
            Change("revoke", f"CREATE on database {seen.database} from {role}",
                   f"REVOKE CREATE ON DATABASE {quote(seen.database)} FROM {quote(role)};")
        )
    return changes


def _build_schemas(want: Wanted, seen: Observed) -> list[Change]:
    changes = []
    for schema, role in sorted(want.build_schemas.items()):
        owner = seen.schema_owners.get(schema)
        if owner is None:
            changes.append(
                Change("create schema", f"{schema} (owner {role})",
                       f"CREATE SCHEMA IF NOT EXISTS {quote(schema)} AUTHORIZATION {quote(role)};")
            )
            continue
        foreign = seen.foreign_owned.get(schema, [])
        if owner != role or foreign:
            statements = [f"ALTER SCHEMA {quote(schema)} OWNER TO {quote(role)};"] if owner != role else []
            statements += [
                f"ALTER {OWNED_KINDS[kind]} {quote(schema)}.{quote(name)} OWNER TO {quote(role)};"
                for name, kind, _ in foreign
            ]
            was = sorted({owner} | {o for _, _, o in foreign} - {role})
            changes.append(
                Change("own schema", f"{schema}: owned by {role} now (was {', '.join(was)}; "
                       f"{len(foreign)} relation(s) in it)", " ".join(statements))
            )
        if schema in seen.public_schemas:
            changes.append(
                Change("revoke", f"all on schema {schema} from PUBLIC",
                       f"REVOKE ALL ON SCHEMA {quote(schema)} FROM PUBLIC;")
            )
    return changes


def _is_source_schema(schema: str, want: Wanted) -> bool:
    """Whether grants on `schema` are setup's to manage (see the module doc)."""
    if schema == CATALOG_SCHEMA or schema.startswith("pg_") or schema == "information_schema":
        return False
    declared = {s for _, s in want.schema_reads}
    return "__" not in schema or schema in declared  # mesh names never hold '__': product schemas do


def _source_grants(want: Wanted, seen: Observed) -> list[Change]:
    changes = []
    for role, schema in sorted(want.schema_reads):
        if schema in seen.schema_owners and (role, schema, "") not in seen.domain_grants:
            changes.append(
                Change("grant", f"USAGE on schema {schema} to {role}",
                       f"GRANT USAGE ON SCHEMA {quote(schema)} TO {quote(role)};")
            )
    for role, schema, table in sorted(want.table_reads):
        if (schema, table) in seen.sources and (role, schema, table) not in seen.domain_grants:
            changes.append(
                Change("grant", f"SELECT on {schema}.{table} to {role}",
                       f"GRANT SELECT ON {quote(schema)}.{quote(table)} TO {quote(role)};")
            )
    stale = sorted(
        (role, schema, table)
        for role, schema, table in seen.domain_grants
        if role not in want.held_roles
        and _is_source_schema(schema, want)
        and ((role, schema) not in want.schema_reads if not table else (role, schema, table) not in want.table_reads)
    )
    # tables first: a person reads "SELECT on x.t" then "USAGE on x", the order they were granted in
    for role, schema, table in sorted(stale, key=lambda g: (g[2] == "", g)):
        if table:
            changes.append(
                Change("revoke", f"SELECT on {schema}.{table} from {role} (no spec declares it)",
                       f"REVOKE SELECT ON {quote(schema)}.{quote(table)} FROM {quote(role)};")
            )
        else:
            changes.append(
                Change("revoke", f"USAGE on schema {schema} from {role} (no spec declares a source in it)",
                       f"REVOKE USAGE ON SCHEMA {quote(schema)} FROM {quote(role)};")
            )
    return changes


# --- apply ----------------------------------------------------------------------------------------


def setup_platform(
    warehouse: Warehouse,
    entries: Sequence[ProductEntry],
    *,
    create_roles: bool = False,
    dry_run: bool = False,
    held_domains: Iterable[str] = (),
) -> SetupReport:
    """Migrate the catalog and make the warehouse what `entries` ask for (module doc). In a dry run,
    only return the changes it would make. Safe to run at any time, and twice at once."""
    want = wanted(entries, held_domains)
    conn = warehouse.connect()
    try:
        if dry_run:
            changes = [_migration_change(m) for m in store.pending(conn)]
        else:
            applied = set(store.migrate(conn))  # only what this process applied: another may have
            changes = [_migration_change(m) for m in store.migrations() if m.name in applied]
        with transaction(conn) as cur:
            # One setup at a time: the second waits, then finds the first's work done. Roles are
            # cluster-wide and CREATE ROLE has no IF NOT EXISTS, so it must not race.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (SETUP_LOCK,))
            # A publish renames the build schema away and makes a new one: not while we look at it.
            for key in sorted(e.spec.key for e in entries):
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"datamesh.publish.{key}",))
            result = plan(want, observe(cur, want), create_roles)
            if not dry_run:
                for change in result.changes:
                    cur.execute(change.sql)
        # Last, with the roles there: published schemas' read grants equal to the access lists
        # (a role still missing is reported above and simply gets nothing).
        synced = grants.sync(conn, entries, roles_must_exist=False, dry_run=dry_run)
    finally:
        conn.close()
    result.changes.extend(Change(c.action, f"{c.description} (access list)", c.sql) for c in synced.changes)
    for change in result.changes:
        log.info("%s%s: %s", "would " if dry_run else "", change.kind, change.description)
    return SetupReport(
        changes + result.changes, result.missing_roles, result.waiting_sources,
        products=len(entries), dry_run=dry_run,
    )


def setup_repo(
    warehouse: Warehouse, root: Path, *, create_roles: bool = False, dry_run: bool = False
) -> SetupReport:
    """`setup_platform` for every spec of the repo that loads; the others are reported, not set up."""
    loaded = load_specs(root)
    registry, _ = load_registry(root)  # a broken domain file is among loaded.problems already
    if registry and not dry_run:
        conn = warehouse.connect()
        try:
            store.migrate(conn)
            store.sync_domains(conn, [e.domain for e in registry.values()])
        finally:
            conn.close()
    report = setup_platform(
        warehouse, loaded.entries, create_roles=create_roles, dry_run=dry_run, held_domains=loaded.held_domains
    )
    report.problems, report.skipped = loaded.problems, loaded.skipped
    return report


def _migration_change(migration: store.Migration) -> Change:
    return Change("migrate", f"catalog migration {migration.name}", migration.sql.strip())


def create_domain_roles(conn: psycopg2.extensions.connection, domains: list[str]) -> list[str]:
    """Only the domain roles of `domains` (NOLOGIN), for callers with no specs. Returns those created."""
    roles = sorted({domain_role(d) for d in domains})
    with transaction(conn) as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (SETUP_LOCK,))
        cur.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (roles,))
        created = sorted(set(roles) - {row[0] for row in cur.fetchall()})
        for role in created:
            cur.execute(f"CREATE ROLE {quote(role)} NOLOGIN")
    return created
