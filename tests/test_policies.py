"""The policy engine: the repo's policies on good and bad specs, and broken policy files refused."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.errors import UserError
from generator.governance.messages import render_message
from generator.governance.policies import Finding, evaluate_spec, load_all_policies, load_policies
from generator.spec.load import load_spec
from generator.spec.mesh import spec_paths
from generator.spec.model import Classification, DataProduct

REPO_ROOT = Path(__file__).resolve().parents[1]
ORDERS = REPO_ROOT / "dbt/commerce/orders/data_product.yaml"  # confidential, with PII columns


@pytest.fixture(scope="module")
def orders() -> DataProduct:
    return load_spec(ORDERS)


def failed(findings: list[Finding], policy: str) -> list[Finding]:
    return [f for f in findings if f.policy == policy and not f.passed]


def evaluate(spec: DataProduct, root: Path = REPO_ROOT) -> list[Finding]:
    # A spec changed with model_copy skips validation (that is how a bad spec gets past the
    # model here); pydantic then warns when it dumps a value of the wrong type.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return evaluate_spec(load_policies(root, spec.domain), spec)


# Bad specs are built by changing one thing of a valid one, without validation: the policies are
# the second line of defence behind the spec model, and must hold on their own.
def _owner(spec: DataProduct, **changes: Any) -> DataProduct:
    return spec.model_copy(update={"owner": spec.owner.model_copy(update=changes)})


def _output(spec: DataProduct, name: str, **changes: Any) -> DataProduct:
    outputs = [o.model_copy(update=changes) if o.name == name else o for o in spec.outputs]
    return spec.model_copy(update={"outputs": outputs})


def _column(spec: DataProduct, output: str, column: str, **changes: Any) -> DataProduct:
    out = spec.output(output)
    assert out is not None
    columns = [c.model_copy(update=changes) if c.name == column else c for c in out.columns]
    return _output(spec, output, columns=columns)


BAD_SPECS: list[tuple[str, Callable[[DataProduct], DataProduct], str, str]] = [
    # (policy, how the spec goes wrong, the subject named, the message expected)
    (
        "owner_present",
        lambda s: _owner(s, email=""),
        "commerce/orders",
        r"^commerce/orders has no owner team and contact email: set owner\.team and owner\.email",
    ),
    (
        "owner_present",
        lambda s: _owner(s, team=""),
        "commerce/orders",
        r"^commerce/orders has no owner team",
    ),
    (
        "owner_present",
        lambda s: _owner(s, email="not-an-address"),
        "commerce/orders",
        r"^commerce/orders has no owner team and contact email",
    ),
    (
        "description_present",
        lambda s: s.model_copy(update={"description": None}),
        "commerce/orders",
        r"^commerce/orders has no description: add a `description`",
    ),
    (
        "classification_valid",
        lambda s: s.model_copy(update={"classification": "secret"}),
        "commerce/orders",
        r"^commerce/orders has classification 'secret': use one of public, internal, confidential, "
        r"restricted",
    ),
    (
        "pii_only_in_protected_products",
        lambda s: s.model_copy(update={"classification": Classification.internal}),
        "commerce/orders column orders_fact.customer_email",
        r"^commerce/orders: column orders_fact\.customer_email holds PII \(email\) but the product is "
        r"classified internal: classify the product confidential or restricted",
    ),
    (
        "retention_set",
        lambda s: s.model_copy(update={"retention_days": None}),
        "commerce/orders",
        r"^commerce/orders has no retention period: set retention_days",
    ),
    (
        "output_has_primary_key",
        lambda s: _output(s, "order_events", primary_key=[]),
        "commerce/orders output order_events",
        r"^commerce/orders: output order_events has no primary key: list the columns",
    ),
    (
        "column_has_description",
        lambda s: _column(s, "orders_fact", "total_amount", description=None),
        "commerce/orders column orders_fact.total_amount",
        r"^commerce/orders: column orders_fact\.total_amount has no description: add one",
    ),
]


@pytest.mark.parametrize(
    "policy, spoil, subject, message", BAD_SPECS, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_SPECS)]
)
def test_each_policy_fails_a_bad_spec_and_passes_the_good_one(
    orders: DataProduct, policy: str, spoil: Callable[[DataProduct], DataProduct], subject: str, message: str
) -> None:
    good = [f for f in evaluate(orders) if f.policy == policy]
    assert good and all(f.passed for f in good), [f.message for f in good]

    bad = failed(evaluate(spoil(orders)), policy)
    assert [f.subject for f in bad][:1] == [subject]
    assert re.search(message, bad[0].message), bad[0].message


def test_pii_policy_names_every_pii_column_of_a_public_product(orders: DataProduct) -> None:
    public = orders.model_copy(update={"classification": Classification.public})
    bad = failed(evaluate(public), "pii_only_in_protected_products")
    assert [f.subject for f in bad] == [
        "commerce/orders column orders_fact.customer_email",
        "commerce/orders column orders_fact.shipping_address",
    ]
    assert {f.enforcement for f in bad} == {"blocking"}


def test_warnings_do_not_block(orders: DataProduct) -> None:
    complete = orders.model_copy(update={"sla": orders.sla.model_copy(update={"completeness": 99.0})})
    spec = _output(complete, "order_events", primary_key=[])
    findings = [f for f in evaluate(spec) if not f.passed]
    assert [(f.policy, f.enforcement) for f in findings] == [("output_has_primary_key", "warning")]


@pytest.mark.parametrize("path", spec_paths(REPO_ROOT), ids=lambda p: p.parent.name)
def test_every_example_spec_passes_every_blocking_policy(path: Path) -> None:
    spec = load_spec(path)
    findings = evaluate_spec(load_policies(REPO_ROOT, spec.domain), spec)
    assert {f.policy for f in findings} >= {"owner_present", "retention_set", "column_has_description"}
    assert [f.message for f in findings if not f.passed and f.enforcement == "blocking"] == []


def test_a_domain_file_adds_policies_for_that_domain_only() -> None:
    revenue = load_spec(REPO_ROOT / "dbt/finance/revenue_metrics/data_product.yaml")
    short = revenue.model_copy(update={"retention_days": 365})
    bad = failed(evaluate(short), "finance_retention_seven_years")
    assert bad[0].enforcement == "blocking"
    assert bad[0].message.startswith("finance/revenue_metrics keeps data for 365 days")

    elsewhere = short.model_copy(update={"domain": "sales"})
    assert "finance_retention_seven_years" not in {f.policy for f in evaluate(elsewhere)}


# --- broken policy files ------------------------------------------------------------------------


def write_policies(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "policies" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def policy(name: str = "checked", applies_to: str = "product", **fields: str) -> dict[str, str]:
    return {
        "name": name,
        "description": "A policy under test.",
        "scope": "global",
        "enforcement": "blocking",
        "applies_to": applies_to,
        "assert": "product.name != ''",
        "message": "{product.name} fails.",
        **fields,
    }


def one_policy(name: str = "checked", applies_to: str = "product", **fields: str) -> str:
    return yaml.safe_dump({"policies": [policy(name, applies_to, **fields)]}, sort_keys=False)


BROKEN_FILES = [
    (
        {"global.yaml": one_policy("bad_syntax", **{"assert": "product.name =="})},
        r"policies/global\.yaml:7: policy 'bad_syntax': assert: CEL syntax error at line 1, column",
    ),
    (
        {"global.yaml": one_policy("typo", **{"assert": "product.owner.emial != null"})},
        r"policies/global\.yaml:7: policy 'typo': assert: unknown field 'emial' of product\.owner; "
        r"it has: email, slack, team",
    ),
    (
        # Never reached on evaluation (false && ...): found by walking the expression.
        {"global.yaml": one_policy("hidden_typo", **{"assert": "false && product.nme == 'x'"})},
        r"policy 'hidden_typo': assert: unknown field 'nme' of product",
    ),
    (
        {"global.yaml": one_policy("loop_typo", **{"assert": "product.outputs.all(o, o.keys != [])"})},
        r"policy 'loop_typo': assert: cannot be evaluated on an example spec: .*'keys'",
    ),
    (
        {"global.yaml": one_policy("wrong_var", **{"when": "column.pii != null"})},
        r"policy 'wrong_var': when: unknown variable 'column'; this policy can use product",
    ),
    (
        {"global.yaml": one_policy("not_bool", **{"assert": "product.name"})},
        r"policy 'not_bool': assert: must be a boolean expression",
    ),
    (
        {"global.yaml": one_policy("bad_message", message="{product.nme} is wrong")},
        r"policy 'bad_message': message: \{product\.nme\} does not name a value",
    ),
    (
        {"global.yaml": one_policy("bad_expression", message='{{ product.nme == null ? "a" : "b" }} fails.')},
        r"policy 'bad_expression': message: \{\{ product\.nme == null \? \"a\" : \"b\" \}\}: unknown field "
        r"'nme' of product; it has: ",
    ),
    (
        {"global.yaml": one_policy("expression_syntax", message="{{ product.name + }} fails.")},
        r"policy 'expression_syntax': message: \{\{ product\.name \+ \}\}: CEL syntax error",
    ),
    (
        {"global.yaml": one_policy("expression_list", message="{{ product.tags }} fails.")},
        r"policy 'expression_list': message: \{\{ product\.tags \}\} must give text or a number",
    ),
    (
        {"global.yaml": one_policy("extra_key", severity="high")},
        r"policies/global\.yaml:9: policy 'extra_key': severity: unknown key; a policy has name, "
        r"description",
    ),
    (
        {"global.yaml": one_policy("no_scope", scope="everywhere")},
        r"policy 'no_scope': scope: Input should be 'global' or 'domain'",
    ),
    (
        {"global.yaml": one_policy("in_domain_file", scope="domain")},
        r"policy 'in_domain_file': scope: is 'domain', but policies in this file must have scope 'global'",
    ),
    (
        {
            "global.yaml": one_policy("owner_present"),
            "domains/sales.yaml": one_policy("owner_present", scope="domain", **{"assert": "true"}),
        },
        r"policies/domains/sales\.yaml:2: policy 'owner_present': redefines the global policy "
        r"'owner_present'; a domain may add policies but not change global ones",
    ),
    (
        {"global.yaml": "policies:\n  - name: [unclosed\n"},
        r"policies/global\.yaml:\d+: <root>: not valid YAML",
    ),
]


@pytest.mark.parametrize(
    "files, message", BROKEN_FILES, ids=[re.search(r"'(\w+)'|<root>", m).group(0) for _, m in BROKEN_FILES]
)
def test_a_broken_policy_file_is_refused_naming_file_and_policy(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    root = write_policies(tmp_path, files)
    with pytest.raises(UserError, match=message):
        load_policies(root, "sales")


def test_a_domain_file_is_checked_even_when_no_product_is_in_its_domain(tmp_path: Path) -> None:
    broken = one_policy("hr_typo", scope="domain", **{"assert": "product.nme != ''"})
    root = write_policies(tmp_path, {"global.yaml": one_policy(), "domains/hr.yaml": broken})
    with pytest.raises(UserError, match=r"policies/domains/hr\.yaml:\d+: policy 'hr_typo': assert: unknown field"):
        load_all_policies(root, known_domains=["finance", "sales"])


def test_a_misspelt_domain_file_is_named_in_a_warning(tmp_path: Path) -> None:
    rule = one_policy("finance_rule", scope="domain")
    root = write_policies(tmp_path, {"global.yaml": one_policy(), "domains/finanse.yaml": rule})
    loaded = load_all_policies(root, known_domains=["finance", "sales"])
    assert loaded.warnings == (
        "policies/domains/finanse.yaml: no product of the mesh is in domain 'finanse', so these policies "
        "apply to nothing (known domains: finance, sales); did you mean finance.yaml?",
    )
    assert loaded.for_domain("finance").names() == ["checked"]  # what the warning is about


@pytest.mark.parametrize(
    "name, message",
    [
        ("finance.yml", r"policies/domains/finance\.yml: file name: domain policy files end in \.yaml: rename it to "
                        r"finance\.yaml, or it is never read"),
        ("Finance.yaml", r"policies/domains/Finance\.yaml: file name: 'Finance\.yaml' is not named after a domain"),
    ],
)
def test_a_domain_file_that_could_never_apply_is_refused(tmp_path: Path, name: str, message: str) -> None:
    rule = one_policy("finance_rule", scope="domain")
    root = write_policies(tmp_path, {"global.yaml": one_policy(), f"domains/{name}": rule})
    with pytest.raises(UserError, match=message):
        load_all_policies(root, known_domains=["finance"])


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    both = [policy("first", **{"assert": "product.nme == 'x'"}), policy("second", **{"assert": "1 +"})]
    text = yaml.safe_dump({"policies": both}, sort_keys=False)
    root = write_policies(tmp_path, {"global.yaml": text})
    with pytest.raises(UserError, match=r"(?s)2 problem\(s\).*'first'.*'second'"):
        load_policies(root)


def test_missing_global_policies_are_an_error_not_a_pass(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"policies/global\.yaml is missing"):
        load_policies(tmp_path)


def test_a_policy_cannot_run_python(tmp_path: Path, orders: DataProduct) -> None:
    marker = tmp_path / "pwned"
    escape = f"__import__('os').system('touch {marker}') == 0"
    root = write_policies(tmp_path, {"global.yaml": one_policy("escape", **{"assert": escape})})
    with pytest.raises(UserError, match=r"policy 'escape': assert: cannot be evaluated"):
        load_policies(root)
    assert not marker.exists()


def test_a_policy_that_fails_on_a_subject_fails_closed(tmp_path: Path, orders: DataProduct) -> None:
    # Valid on the example (whose column has pii), but `null.startsWith` on a column without PII.
    root = write_policies(
        tmp_path,
        {"global.yaml": one_policy("fragile", "column", **{"assert": "!column.pii.startsWith('x')"})},
    )
    findings = evaluate_spec(load_policies(root), orders)
    broken = failed(findings, "fragile")
    assert broken and broken[0].subject == "commerce/orders column orders_fact.order_id"
    assert broken[0].message.startswith(
        "policy fragile (policies/global.yaml) could not be evaluated on "
        "commerce/orders column orders_fact.order_id"
    )
    assert any(f.passed for f in findings)  # the PII columns evaluated fine


def test_messages_substitute_values_once_and_nothing_else() -> None:
    variables = {"product": {"name": "{product.secret}", "secret": "s3cret", "tags": ["a", "b"], "x": None}}
    template = "{product.name} / {product.tags} / {product.x} / {product.missing} / {0} {__class__}"
    expected = "{product.secret} / a, b / (none) / {product.missing} / {0} {__class__}"
    assert render_message(template, variables) == expected


def test_a_message_expression_words_each_case_and_is_not_expanded_again() -> None:
    template = (
        'output {output.name} {{ run.previous_rows == null ? "was never published" : "had " + '
        'string(run.previous_rows) + " rows" }}'
    )
    first = {"output": {"name": "o"}, "run": {"previous_rows": None}}
    assert render_message(template, first) == "output o was never published"
    again = {"output": {"name": "{{ 1 + 1 }}"}, "run": {"previous_rows": 30}}
    assert render_message(template, again) == "output {{ 1 + 1 }} had 30 rows"
    # a message is still shown when its expression fails on a subject
    broken = render_message('x {{ "at " + run.previous_rows }}', first)
    assert broken.startswith('x [{{ "at " + run.previous_rows }} could not be evaluated: ')


def test_numbers_in_messages_are_rounded_but_never_onto_a_threshold() -> None:
    run = {"non_null_pct": 99.8999, "change_pct": -100 / 3, "rows": 1000, "hours": 24.0}
    template = "{run.non_null_pct}% {run.change_pct}% {run.rows} {run.hours}"
    assert render_message(template, {"run": run}) == "99.8999% -33.333% 1000 24.0"


def test_one_policy_set_judges_many_products_independently(orders: DataProduct) -> None:
    # Results are memoised on the values an expression reads: a product must never inherit the
    # verdict of an earlier one that differs in a value the policy reads.
    policies = load_policies(REPO_ROOT, "commerce")
    internal = orders.model_copy(update={"classification": Classification.internal})
    no_retention = orders.model_copy(update={"retention_days": None})
    for spec, expected in [
        (orders, []),
        (internal, ["pii_only_in_protected_products"] * 2),
        (orders, []),
        (no_retention, ["retention_set"]),
        (internal, ["pii_only_in_protected_products"] * 2),
    ]:
        findings = evaluate_spec(policies, spec)
        blocking = [f.policy for f in findings if not f.passed and f.enforcement == "blocking"]
        assert blocking == expected


# --- the policies of issue 3 (personal data, retention, quality checks, finance) ----------------


def _access(spec: DataProduct, **changes: Any) -> DataProduct:
    return spec.model_copy(update={"access": spec.access.model_copy(update=changes)})


def _sla(spec: DataProduct, **changes: Any) -> DataProduct:
    return spec.model_copy(update={"sla": spec.sla.model_copy(update=changes)})


MORE_BAD_SPECS: list[tuple[str, Callable[[DataProduct], DataProduct], str, str, str]] = [
    # (policy, how the spec goes wrong, enforcement, subject, message)
    (
        "pii_category_valid",
        lambda s: _column(s, "orders_fact", "customer_email", pii="e-mail"),
        "blocking",
        "commerce/orders column orders_fact.customer_email",
        r"^commerce/orders: column orders_fact\.customer_email has PII category 'e-mail': use one of email",
    ),
    (
        "pii_column_tagged",
        lambda s: _column(s, "orders_fact", "shipping_address", pii=None),
        "warning",
        "commerce/orders column orders_fact.shipping_address",
        r"^commerce/orders: column orders_fact\.shipping_address looks like personal data but has no "
        r"`pii` category: set `pii:`",
    ),
    (
        "pii_readers_cleared",
        lambda s: _access(s, pii_roles=[]),
        "blocking",
        "commerce/orders",
        r"^commerce/orders publishes PII \(orders_fact\.customer_email, orders_fact\.shipping_address\) "
        r"but clears no reader for it \(pii_roles: \(none\); pii_domains: \(none\)\): list the roles",
    ),
    (
        "pii_readers_cleared",
        lambda s: _access(s, pii_roles=["auditor"]),  # cleared, but not a reader of the product
        "blocking",
        "commerce/orders",
        r"^commerce/orders publishes PII .* \(pii_roles: auditor;",
    ),
    (
        "retention_within_bounds",
        lambda s: s.model_copy(update={"retention_days": 4000}),
        "blocking",
        "commerce/orders",
        r"^commerce/orders keeps data for 4000 days: the mesh allows 1 to 3650 days",
    ),
    (
        "quality_checks_present",
        lambda s: _sla(s, completeness=None),
        "warning",
        "commerce/orders",
        r"^commerce/orders declares no completeness threshold: set sla\.completeness \(e\.g\. 99\.5\) so the "
        r"gate checks the null rate of every column on each run\.$",
    ),
]


@pytest.fixture(scope="module")
def complete_orders(orders: DataProduct) -> DataProduct:
    """orders with a completeness threshold, so that every global static policy passes on it."""
    return _sla(orders, completeness=99.0)


@pytest.mark.parametrize(
    "policy, spoil, enforcement, subject, message",
    MORE_BAD_SPECS,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(MORE_BAD_SPECS)],
)
def test_issue_3_policies_fail_a_bad_spec_and_pass_a_good_one(
    complete_orders: DataProduct,
    policy: str,
    spoil: Callable[[DataProduct], DataProduct],
    enforcement: str,
    subject: str,
    message: str,
) -> None:
    good = [f for f in evaluate(complete_orders) if f.policy == policy]
    assert good and all(f.passed for f in good), [f.message for f in good]

    bad = failed(evaluate(spoil(complete_orders)), policy)
    assert [f.subject for f in bad][:1] == [subject]
    assert bad[0].enforcement == enforcement
    assert re.search(message, bad[0].message), bad[0].message


@pytest.fixture(scope="module")
def revenue() -> DataProduct:
    """The finance example, with one column held to a completeness stricter than the domain's floor."""
    spec = load_spec(REPO_ROOT / "dbt/finance/revenue_metrics/data_product.yaml")
    return _column_completeness(spec, "refunded_amount", 99.95)


def _column_completeness(spec: DataProduct, column: str, completeness: float) -> DataProduct:
    [current] = [c for c in spec.output("daily_revenue").columns if c.name == column]
    constraints = current.constraints.model_copy(update={"completeness": completeness})
    return _column(spec, "daily_revenue", column, constraints=constraints)


FINANCE_BAD_SPECS: list[tuple[str, Callable[[DataProduct], DataProduct], str]] = [
    (
        "finance_sla_floors",
        lambda s: _sla(s, freshness_hours=2),
        r"^finance/revenue_metrics promises freshness of 2\.0 hours and completeness of 99\.9%: finance "
        r"requires sla\.freshness_hours of at most 1 and sla\.completeness of at least 99\.9\.",
    ),
    (
        "finance_sla_floors",
        lambda s: _sla(s, completeness=99.5),
        r"^finance/revenue_metrics promises freshness of 1\.0 hours and completeness of 99\.5%",
    ),
    (
        "finance_sla_floors",
        lambda s: _sla(s, completeness=None),
        r"completeness of \(none\)%",
    ),
    (
        "finance_audit_trail",
        lambda s: s.model_copy(update={"version": "1.1.0"}),  # no changelog entry for 1.1.0
        r"^finance/revenue_metrics 1\.1\.0 is not auditable \(classification confidential\): finance "
        r"products are confidential or restricted, and every published version has a changelog entry",
    ),
    (
        "finance_audit_trail",
        lambda s: s.model_copy(update={"classification": Classification.internal}),
        r"is not auditable \(classification internal\)",
    ),
    (
        "finance_column_completeness_floor",
        lambda s: _column_completeness(s, "refunded_amount", 95.0),
        r"^finance/revenue_metrics: column daily_revenue\.refunded_amount sets constraints\.completeness to "
        r"95\.0%: finance columns must be at least 99\.9% complete",
    ),
    (
        "finance_retention_seven_years",
        lambda s: s.model_copy(update={"retention_days": 2000}),
        r"^finance/revenue_metrics keeps data for 2000 days: financial records must be kept at least seven",
    ),
]


@pytest.mark.parametrize(
    "policy, spoil, message", FINANCE_BAD_SPECS, ids=[f"{c[0]}-{i}" for i, c in enumerate(FINANCE_BAD_SPECS)]
)
def test_finance_tightens_the_global_policies(
    revenue: DataProduct, policy: str, spoil: Callable[[DataProduct], DataProduct], message: str
) -> None:
    good = [f for f in evaluate(revenue) if f.policy == policy]
    assert good and all(f.passed for f in good)
    bad = failed(evaluate(spoil(revenue)), policy)
    assert len(bad) == 1 and bad[0].enforcement == "blocking"
    assert re.search(message, bad[0].message), bad[0].message
    # the same spec outside finance is not held to finance's rules
    elsewhere = spoil(revenue).model_copy(update={"domain": "sales"})
    assert policy not in {f.policy for f in evaluate(elsewhere)}


def test_every_run_time_kind_is_validated_on_load(tmp_path: Path) -> None:
    files = {
        "global.yaml": yaml.safe_dump(
            {
                "policies": [
                    policy("volume_typo", "run_output", **{"assert": "run.row_count > 0"}),
                    policy("input_typo", "input", **{"assert": "input.age > 1.0"}),
                    policy("change_var", "change", **{"assert": "column.name != ''"}),
                ]
            },
            sort_keys=False,
        )
    }
    root = write_policies(tmp_path, files)
    with pytest.raises(UserError) as raised:
        load_policies(root)
    text = str(raised.value)
    assert "3 problem(s) in the policy files; no product was evaluated" in text
    assert (
        "policy 'volume_typo': assert: unknown field 'row_count' of run; it has: change_pct, previous_rows, rows"
        in text
    )
    assert (
        "policy 'input_typo': assert: unknown field 'age' of input; it has: age_hours, days_left, deprecated, domain"
        in text
    )
    assert "policy 'change_var': assert: unknown variable 'column'; this policy can use product, change" in text
