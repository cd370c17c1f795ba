"""`datamesh new`, driven through a real pseudo-terminal as a user types, and with --no-input."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from generator.spec.domain import load_domain
from generator.spec.new_product import KEYS, QUESTIONS, with_defaults
from tests.test_cookiecutter import TEMPLATE, copy_repo, datamesh, snapshot

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Terminal:
    """`datamesh new` on a pseudo-terminal: what it prints, and lines typed at its prompts."""

    def __init__(self, root: Path, *args: str):
        self.master, slave = pty.openpty()
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": "1", "TERM": "dumb"}
        self.proc = subprocess.Popen(
            [str(BIN / "datamesh"), "--root", str(root), "new", *args],
            stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
        )
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {text!r}; the terminal shows:\n{self.seen}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    assert text in self.seen, f"ended before {text!r}; the terminal shows:\n{self.seen}"
                self.seen += ANSI.sub("", chunk.decode("utf-8", "replace")).replace("\r\n", "\n")
        shown, _, self.seen = self.seen.partition(text)
        return shown + text

    def prompt(self, words: str) -> str:
        """Everything up to the next prompt holding `words` (prompts end with the default: `]: `)."""
        return (self.expect(words) if words else "") + self.expect("]: ")

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def close(self) -> int:
        code = self.proc.wait(timeout=60)
        os.close(self.master)
        return code


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_repo(tmp_path / "repo")


def test_bad_answers_are_re_asked_with_the_reason_at_their_question(repo: Path) -> None:
    term = Terminal(repo)
    term.prompt("Product name")
    term.type("Orders-Daily")
    assert "name 'Orders-Daily' is not a safe identifier" in term.prompt("Product name")
    term.type("product_catalog")  # taken in the products domain
    assert "name 'product_catalog' is taken in the mesh by products/product_catalog" in term.prompt("Product name")
    term.type("ledger")
    # The registry's domains are the choices, and none is a default: my_domain is not registered.
    prompt = term.expect("Domain") + term.expect("): ")
    assert "(commerce, customers, finance, marketing, products, sales): " in prompt
    term.type("ledgers")
    refused = term.expect("Domain") + term.expect("): ")
    assert "domain 'ledgers' is not in the domain registry (domains/); known domains: commerce, customers" in refused
    assert "`datamesh domains new ledgers --owner-team TEAM --email EMAIL`" in refused
    term.type("finance")
    for _ in ("owner_team", "owner_email", "description"):
        term.prompt("")
        term.type("")
    term.prompt("Classification")
    term.type("secret")
    assert "classification 'secret' is not one of internal, public, confidential, restricted" in term.expect(
        "Classification"
    )
    term.type("internal")  # finance's audit trail wants confidential or restricted
    assert "[finance_audit_trail]" in term.prompt("Classification")
    term.type("confidential")
    term.prompt("Schedule")
    term.type("every day")
    assert "schedule 'every day' is not a cron expression" in term.prompt("Schedule")
    term.type("")
    term.prompt("hours")
    term.type("6")
    assert "[finance_sla_floors]" in term.prompt("hours")
    term.type("1")
    term.prompt("Retention")
    term.type("365")  # below the domain's retention policy: refused at its question
    assert "retention_days '365': [finance_retention_seven_years]" in term.prompt("Retention")
    term.type("2555")
    term.prompt("first output")
    term.type("")
    done = term.expect("datamesh demo --product finance/ledger")
    assert term.close() == 0
    assert "output_not_empty" in done and "1. Write your query in dbt/finance/ledger/models/ledger.sql" in done
    spec = yaml.safe_load((repo / "dbt/finance/ledger/data_product.yaml").read_text())
    assert (spec["retention_days"], spec["classification"], spec["sla"]["freshness_hours"]) == (
        2555, "confidential", 1
    )
    check = subprocess.run(
        [str(BIN / "datamesh"), "--root", str(repo), "validate", "finance/ledger"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert check.returncode == 0 and "warning" not in check.stdout + check.stderr, check.stdout + check.stderr


def run_new(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "datamesh"), "--root", str(root), "new", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def test_no_input_defaults_pass_every_policy_warnings_included(repo: Path) -> None:
    result = run_new(repo, "--no-input", "name=orders_daily", "domain=sales")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stdout + result.stderr
    policy = subprocess.run(
        [str(BIN / "datamesh"), "--root", str(repo), "policy", "check", "sales/orders_daily"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert policy.returncode == 0, policy.stdout  # 4 would mean warnings
    assert "Next:" in result.stdout and "output_not_empty" in result.stdout


def test_no_input_lists_every_problem_and_writes_nothing(repo: Path) -> None:
    before = snapshot(repo)
    result = run_new(repo, "--no-input", "name=Orders-Daily", "owner_email=nope", "retention_days=0")
    assert result.returncode == 2
    for answer in ("name 'Orders-Daily'", "owner_email 'nope'", "retention_days '0'"):
        assert f"\n  {answer}" in result.stderr
    assert run_new(repo, "--no-input", "colour=blue").returncode == 2
    assert snapshot(repo) == before


def test_the_questions_are_the_cookiecutter_templates(repo: Path) -> None:
    template = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    asked = [key for key in template if not key.startswith("_")]
    assert asked == list(KEYS)
    prompts = template["__prompts__"]
    for question in QUESTIONS:
        prompt = prompts[question.key]
        assert (prompt["__prompt__"] if isinstance(prompt, dict) else prompt) == question.prompt
        if question.choices:
            assert tuple(template[question.key]) == question.choices
    defaults = with_defaults({"name": "n1", "domain": "d1"})
    assert defaults["owner_team"] == "d1_team" and defaults["owner_email"] == "d1-team@company.com"
    assert defaults["output_name"] == "n1"
    for key in ("schedule", "freshness_hours", "retention_days"):
        assert defaults[key] == template[key]


def test_a_registered_domain_proposes_its_owner_team_and_refuses_others(repo: Path) -> None:
    before = snapshot(repo)
    refused = run_new(repo, "--no-input", "name=price_history", "domain=products", "owner_team=products_team")
    assert refused.returncode == 2
    expected = "owner_team 'products_team' is not a team of domain 'products' (domains/products.yaml); allowed: catalog"
    assert expected in refused.stderr
    assert snapshot(repo) == before
    made = run_new(repo, "--no-input", "name=price_history", "domain=products")
    assert made.returncode == 0, made.stderr
    spec = yaml.safe_load((repo / "dbt/products/price_history/data_product.yaml").read_text())
    assert spec["owner"]["team"] == "catalog"


def test_an_unregistered_domain_is_refused_until_datamesh_domains_new_registers_it(repo: Path) -> None:
    before = snapshot(repo)
    refused = run_new(repo, "--no-input", "name=first_one", "domain=brand_new")
    assert refused.returncode == 2
    assert "domain 'brand_new' is not in the domain registry (domains/); known domains: commerce, customers, " \
        "finance, marketing, products, sales." in refused.stderr
    assert "datamesh domains new brand_new --owner-team TEAM --email EMAIL` writes domains/brand_new.yaml" \
        in refused.stderr
    assert snapshot(repo) == before

    registered = datamesh(repo, "domains", "new", "brand_new", "--owner-team", "brand_team", "--email", "brand@co.com")
    assert registered.returncode == 0, registered.stderr
    domain = load_domain(repo / "domains/brand_new.yaml")  # the registry's own rules
    assert (domain.owner_team, domain.team_names) == ("brand_team", ["brand_team"])
    assert domain.on_call.email == "brand@co.com"
    made = run_new(repo, "--no-input", "name=first_one", "domain=brand_new")
    assert made.returncode == 0, made.stderr
    spec = yaml.safe_load((repo / "dbt/brand_new/first_one/data_product.yaml").read_text())
    assert spec["owner"]["team"] == "brand_team"  # the registered owner team is the default


def test_datamesh_domains_new_names_the_bad_argument_and_writes_nothing(repo: Path) -> None:
    before = snapshot(repo)
    bad = datamesh(repo, "domains", "new", "Brand-New", "--owner-team", "brand_team", "--email", "nobody")
    assert bad.returncode == 2
    assert "domains/Brand-New.yaml was not written:\n  NAME: 'Brand-New' is not a safe identifier" in bad.stderr
    assert "\n  --email: 'nobody' is not an email address" in bad.stderr
    again = datamesh(repo, "domains", "new", "sales", "--owner-team", "sales_analytics", "--email", "s@co.com")
    assert again.returncode == 2 and "domains/sales.yaml exists already" in again.stderr
    assert snapshot(repo) == before
