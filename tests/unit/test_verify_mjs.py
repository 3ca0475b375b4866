"""verify.mjs's building blocks against the standards and against Python, value for value: RFC 8785 (JCS)
and the v1 form over generated JSON (floats, astral-plane keys, escapes), the RFC 6962 tree heads of
Certificate Transparency, and AWS Signature Version 4 against botocore's signer."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attestly
from attestly.evidence import canonical_json, canonical_json_v1
from tests.sysdeps import require_tool
from tests.unit.test_merkle_rfc6962 import CT_LEAVES, CT_ROOTS

pytestmark = pytest.mark.unit
MJS = Path(attestly.__file__).parent / "verify.mjs"

_DRIVER = """
import * as v from %s;
import readline from "node:readline";
const out = [];
for await (const line of readline.createInterface({ input: process.stdin })) {
  const [op, arg] = JSON.parse(line);
  try {
    if (op === "canon") { const x = v.parseJson(arg); out.push([v.jcs(x), v.v1(x)]); }
    else if (op === "merkle") out.push(v.merkleRoot(arg.map((h) => Buffer.from(h, "hex"))).toString("hex"));
    else if (op === "sign") out.push(v.signV4(arg));
  } catch (e) { out.push({ error: e.message }); }
}
process.stdout.write(JSON.stringify(out));
"""


def _node(requests: list[list[Any]]) -> list[Any]:
    node = require_tool("node", packages="nodejs", why="the independent verifier verify.mjs")
    run = subprocess.run(
        [node, "--input-type=module", "-e", _DRIVER % json.dumps(MJS.as_uri())],
        input="\n".join(json.dumps(r) for r in requests),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return list(json.loads(run.stdout))


EDGE_FLOATS = [
    0.1,
    1e-7,
    1e21,
    1e20,
    1e-5,
    1e-4,
    1e16,
    1e15,
    1.2345678901234567e19,
    5e-324,
    1.7976931348623157e308,
    -0.0,
    0.0,
    2.5,
    100.0,
    -1.5e-10,
    123456789.125,
    1 / 3,
]
KEYS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(EDGE_FLOATS)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(VALUES, min_size=400, max_size=400))
def test_both_canonical_forms_match_python_value_for_value(values: list[Any]) -> None:
    values = [*values, {"\U0001d11e": 1, "\uff5a": 2, "é": 3, 'a\u0000\u001f"\\\u2028': EDGE_FLOATS}]
    texts = [json.dumps(v) for v in values]
    got = _node([["canon", t] for t in texts])
    for text, answer in zip(texts, got, strict=True):
        value = json.loads(text)
        assert answer == [canonical_json(value).decode(), canonical_json_v1(value).decode()], text


def test_integers_beyond_the_jcs_domain_are_refused_by_both() -> None:
    (answer,) = _node([["canon", '{"n": 9007199254740992}']])
    assert "exceeds safe integer domain" in answer["error"]
    with pytest.raises(ValueError, match="safe integer domain"):
        canonical_json({"n": 2**53})


def test_duplicate_keys_and_deep_nesting_are_malformed() -> None:
    dup, deep = _node([["canon", '{"a": 1, "a": 2}'], ["canon", "[" * 65 + "]" * 65]])
    assert "duplicate key" in dup["error"] and "nested deeper than 64" in deep["error"]


def test_tree_heads_match_the_certificate_transparency_vectors() -> None:
    got = _node([["merkle", [leaf.hex() for leaf in CT_LEAVES[:n]]] for n in range(len(CT_ROOTS))])
    assert got == CT_ROOTS


def test_sigv4_matches_botocore() -> None:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "tok/en+=")
    cases = [
        (
            "/evidence-bucket/",
            {"versions": "", "prefix": "objects/", "key-marker": "objects/sha256/a b+c~.json"},
        ),
        ("/evidence-bucket/objects/sha256/0a.json", {"versionId": "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"}),
        ("/b/reports/pci/2026-Q1/ünïcode & spaces.html", {"versionId": "null"}),
    ]
    for path, query in cases:
        from urllib.parse import quote

        qs = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query.items())
        request = AWSRequest(method="GET", url=f"http://127.0.0.1:5000{quote(path, safe='/-_.~')}?{qs}")
        request.headers["X-Amz-Content-SHA256"] = (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        auth = S3SigV4Auth(creds, "s3", "eu-west-1")
        fixed = datetime(2026, 12, 1, 12, 34, 56)
        with patch("botocore.auth.get_current_datetime", return_value=fixed):
            auth.add_auth(request)
        expected = request.headers["Authorization"]
        (mine,) = _node(
            [
                [
                    "sign",
                    {
                        "host": "127.0.0.1:5000",
                        "path": path,
                        "query": query,
                        "region": "eu-west-1",
                        "credentials": {
                            "accessKeyId": creds.access_key,
                            "secretAccessKey": creds.secret_key,
                            "sessionToken": creds.token,
                        },
                        "amzDate": "20261201T123456Z",
                    },
                ]
            ]
        )
        assert mine["headers"]["authorization"] == expected, (path, mine["canonicalRequest"])
