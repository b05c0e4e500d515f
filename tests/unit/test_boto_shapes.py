"""The pure parts of the boto3 facade: Range as S3 reads it, If-* conditions, parameters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from deltaglider_async._boto import accept, check_conditions, parse_range


def test_ranges_as_s3_reads_them() -> None:
    assert parse_range("bytes=0-0", 10) == (0, 1)
    assert parse_range("bytes=5-", 10) == (5, 10)
    assert parse_range("bytes=-3", 10) == (7, 10)
    assert parse_range("bytes=2-99", 10) == (2, 10)
    for ignored in ("bytes=5-2", "bytes=a-b", "items=0-1", "bytes=0-1,3-4", "bytes=-", ""):
        assert parse_range(ignored, 10) is None, ignored
    for unsatisfiable in ("bytes=10-", "bytes=-0"):
        with pytest.raises(ClientError) as caught:
            parse_range(unsatisfiable, 10)
        assert caught.value.response["Error"]["Code"] == "InvalidRange"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def code_of(params: dict[str, object], etag: str = '"e"') -> str | None:
    modified = datetime(2026, 6, 1, tzinfo=UTC)
    try:
        check_conditions(dict(params), etag, modified)
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return None


def test_conditions_answer_like_s3() -> None:
    assert code_of({"IfMatch": '"e"'}) is None
    assert code_of({"IfMatch": "e"}) is None  # quotes optional
    assert code_of({"IfMatch": '"other"'}) == "PreconditionFailed"
    assert code_of({"IfNoneMatch": '"e"'}) == "304"
    assert code_of({"IfNoneMatch": "*"}) == "304"
    assert code_of({"IfModifiedSince": datetime(2026, 7, 1)}) == "304"  # naive means UTC
    assert code_of({"IfModifiedSince": "2026-05-01T00:00:00+00:00"}) is None
    assert code_of({"IfUnmodifiedSince": datetime(2026, 5, 1, tzinfo=UTC)}) == "PreconditionFailed"
    # If-Match wins over a failing If-Unmodified-Since, as in RFC 7232
    assert code_of({"IfMatch": '"e"', "IfUnmodifiedSince": datetime(2026, 5, 1)}) is None
    with pytest.raises(ClientError):
        check_conditions({"IfModifiedSince": 12}, '"e"', None)


def test_parameters_are_checked_against_botocores_model() -> None:
    assert accept("PutObject", {"CacheControl": "x", "RequestPayer": "requester"}) == {
        "CacheControl": "x"
    }
    with pytest.raises(ClientError, match="Unknown parameter in input: 'Colour'"):
        accept("PutObject", {"Colour": "red"})
    with pytest.raises(ClientError, match="VersionId is not supported"):
        accept("GetObject", {"VersionId": "1"})
