"""The fast path's SigV4 signature is botocore's, byte for byte, for every request it sends."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from deltaglider_async._storage.lean import UNSIGNED_PAYLOAD, LeanS3

MOMENT = datetime(2026, 12, 1, 21, 41, 34, tzinfo=UTC)


def botocore_headers(method: str, url: str, credentials: Any, unsigned: bool) -> dict[str, str]:
    request = AWSRequest(method=method, url=url)
    request.context["timestamp"] = MOMENT.strftime("%Y%m%dT%H%M%SZ")
    if unsigned:
        request.context["client_config"] = SimpleNamespace(s3={"payload_signing_enabled": False})
    auth = S3SigV4Auth(credentials, "s3", "eu-west-3")
    auth._modify_request_before_signing(request)
    signature = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request
    )
    auth._inject_signature_to_request(request, signature)
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.mark.parametrize("token", [None, "session-token/+="])
@pytest.mark.parametrize(
    ("method", "bucket", "key", "query", "payload"),
    [
        ("HEAD", "bkt", "app/v 1+ü.zip.delta", None, None),
        (
            "GET",
            "bkt",
            "",
            {"list-type": "2", "prefix": "a b/", "continuation-token": "x=/+"},
            None,
        ),
        ("PUT", "bkt", "big.bin", {"partNumber": "3", "uploadId": "u/1+2"}, UNSIGNED_PAYLOAD),
        ("GET", "dotted.bucket.name", "q/../w.zip", None, None),
    ],
)
async def test_fast_path_signature_equals_botocore(
    token: str | None,
    method: str,
    bucket: str,
    key: str,
    query: dict[str, str] | None,
    payload: str | None,
) -> None:
    credentials = ReadOnlyCredentials(
        "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token
    )

    async def current() -> ReadOnlyCredentials:
        return credentials

    lean = LeanS3(
        endpoint_url="http://127.0.0.1:8333",
        region="eu-west-3",
        credentials=current,
        path_style=False,
        concurrency=1,
        timeout=5,
    )
    try:
        extra = {} if payload is None else {"payload": payload}
        url, ours = await lean._request(method, bucket, key, query, now=MOMENT, **extra)
    finally:
        await lean.close()
    theirs = botocore_headers(method, str(url), credentials, payload is not None)
    assert ours["Authorization"] == theirs["authorization"]
    assert ours["x-amz-date"] == theirs["x-amz-date"]
    assert ours.get("x-amz-security-token") == theirs.get("x-amz-security-token")
