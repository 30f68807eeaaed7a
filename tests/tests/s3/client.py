"""boto3 scenarios against kms-s3-gateway, run by tests/tests/s3/*.rs.

Usage: client.py ENDPOINT SCENARIO [ARGS...]

Credentials come from the environment (AWS_ACCESS_KEY_ID, ...), set by the
Rust test. Each scenario asserts what a real S3 client sees and exits
non-zero with the reason on failure; some print one JSON line of results
for the Rust side (which checks the disk and kmsd's metrics).
"""

import base64
import hashlib
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

MIB = 1024 * 1024
# botocore takes SSE-C keys as text (32 characters = 32 bytes) and does the
# base64 and MD5 itself.
KEY_A = "sse-c-test-key-A-0123456789abcde"
KEY_B = "sse-c-test-key-B-0123456789abcde"


def client(endpoint):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            # Retries only on connection errors and 5xx, as boto3 users
            # get them; every assertion is on the final answer.
            retries={"mode": "standard", "max_attempts": 3},
            # One connection reused for every request of a scenario.
            max_pool_connections=4,
        ),
    )


def body(mode, size):
    """A recognisable plaintext: the Rust test scans the disk for it."""
    marker = f"PLAINTEXT-{mode}-".encode()
    return (marker * (size // len(marker) + 1))[:size]


def ssec(key=KEY_A, copy_source=False):
    prefix = "CopySource" if copy_source else ""
    return {
        f"{prefix}SSECustomerAlgorithm": "AES256",
        f"{prefix}SSECustomerKey": key,
    }


CONTEXT = base64.b64encode(json.dumps({"team": "blue"}).encode()).decode()

# Each mode: the PutObject parameters, and what HEAD must report.
MODES = {
    "none": ({}, {}),
    "sse-s3": ({"ServerSideEncryption": "AES256"}, {"ServerSideEncryption": "AES256"}),
    "sse-kms-default": (
        {"ServerSideEncryption": "aws:kms"},
        {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "default"},
    ),
    "sse-kms-key": (
        {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "app-key"},
        {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "app-key"},
    ),
    "sse-kms-context": (
        {
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": "app-key",
            "SSEKMSEncryptionContext": CONTEXT,
        },
        {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "app-key"},
    ),
    "sse-c": (
        ssec(),
        {
            "SSECustomerAlgorithm": "AES256",
            "SSECustomerKeyMD5": base64.b64encode(hashlib.md5(KEY_A.encode()).digest()).decode(),
        },
    ),
}


def read_params(mode):
    return ssec() if mode == "sse-c" else {}


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def expect_error(status, code, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except ClientError as error:
        got = (
            error.response["ResponseMetadata"]["HTTPStatusCode"],
            error.response["Error"]["Code"],
        )
        # HEAD answers carry no body, so botocore reports the status as code.
        want = (status, str(status) if call.__name__ == "head_object" else code)
        check(got == want, f"{call.__name__}: expected {want}, got {got}: {error}")
        return
    raise AssertionError(f"{call.__name__}: expected {status} {code}, got success")


def modes(s3, bucket):
    """PUT/HEAD/GET/range GET/CopyObject/multipart/listing in every mode."""
    s3.create_bucket(Bucket=bucket)
    fetched = {}
    for mode, (put_params, reported) in MODES.items():
        data = body(mode, 300_000)
        put = s3.put_object(Bucket=bucket, Key=f"{mode}/single", Body=data, **put_params)
        for name, value in reported.items():
            check(put.get(name) == value, f"{mode}: PUT {name}={put.get(name)!r}")
        if mode == "sse-kms-context":
            echoed = json.loads(base64.b64decode(put.get("SSEKMSEncryptionContext", "")))
            check(echoed == {"team": "blue"}, f"{mode}: PUT context {echoed}")

        head = s3.head_object(Bucket=bucket, Key=f"{mode}/single", **read_params(mode))
        check(head["ContentLength"] == len(data), f"{mode}: HEAD length {head['ContentLength']}")
        for name, value in reported.items():
            check(head.get(name) == value, f"{mode}: HEAD {name}={head.get(name)!r}")
        if mode == "none":
            check("ServerSideEncryption" not in head, f"{mode}: HEAD reports SSE")

        got = s3.get_object(Bucket=bucket, Key=f"{mode}/single", **read_params(mode))
        check(got["Body"].read() == data, f"{mode}: GET body differs")
        for name, value in reported.items():
            check(got.get(name) == value, f"{mode}: GET {name}={got.get(name)!r}")

        part = s3.get_object(
            Bucket=bucket, Key=f"{mode}/single", Range="bytes=200000-200099", **read_params(mode)
        )
        check(part["Body"].read() == data[200000:200100], f"{mode}: range body differs")
        check(
            part["ContentRange"] == f"bytes 200000-200099/{len(data)}",
            f"{mode}: {part['ContentRange']}",
        )
        headers = part["ResponseMetadata"]["HTTPHeaders"]
        fetched[mode] = int(headers.get("x-kms-gateway-fetched-bytes", "-1"))
        tail = s3.get_object(
            Bucket=bucket, Key=f"{mode}/single", Range="bytes=-10", **read_params(mode)
        )
        check(tail["Body"].read() == data[-10:], f"{mode}: suffix range differs")

        # Copy within the mode, then into SSE-KMS: always readable, with the
        # destination's encryption.
        s3.copy_object(
            Bucket=bucket,
            Key=f"{mode}/copy",
            CopySource={"Bucket": bucket, "Key": f"{mode}/single"},
            **put_params,
            **(ssec(copy_source=True) if mode == "sse-c" else {}),
        )
        copied = s3.get_object(Bucket=bucket, Key=f"{mode}/copy", **read_params(mode))
        check(copied["Body"].read() == data, f"{mode}: copy differs")
        s3.copy_object(
            Bucket=bucket,
            Key=f"{mode}/as-kms",
            CopySource={"Bucket": bucket, "Key": f"{mode}/single"},
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId="app-key",
            **(ssec(copy_source=True) if mode == "sse-c" else {}),
        )
        as_kms = s3.get_object(Bucket=bucket, Key=f"{mode}/as-kms")
        check(as_kms["ServerSideEncryption"] == "aws:kms", f"{mode}: copy to KMS")
        check(as_kms["Body"].read() == data, f"{mode}: copy to KMS differs")

        multipart(s3, bucket, mode, put_params)

    sizes = {
        o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="sse-c/")["Contents"]
    }
    check(sizes["sse-c/single"] == 300_000, f"listing sizes {sizes}")
    print(json.dumps({"fetched": fetched}))


def multipart(s3, bucket, mode, put_params):
    """Two parts (5 MiB and 1 MiB + 7), completed out of upload order."""
    key = f"{mode}/multipart"
    data = body(mode, 6 * MIB + 7)
    create = s3.create_multipart_upload(Bucket=bucket, Key=key, **put_params)
    upload_id = create["UploadId"]
    pieces = {2: data[5 * MIB :], 1: data[: 5 * MIB]}
    etags = {}
    for number, piece in pieces.items():
        part = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=piece,
            **read_params(mode),
        )
        etags[number] = part["ETag"]
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2)]},
        **read_params(mode),
    )
    if "ServerSideEncryption" in put_params:
        check(done.get("ServerSideEncryption") == put_params["ServerSideEncryption"], f"{mode}: complete")
    head = s3.head_object(Bucket=bucket, Key=key, **read_params(mode))
    check(head["ContentLength"] == len(data), f"{mode}: multipart length")
    got = s3.get_object(Bucket=bucket, Key=key, **read_params(mode))
    check(got["Body"].read() == data, f"{mode}: multipart body differs")
    across = s3.get_object(
        Bucket=bucket, Key=key, Range=f"bytes={5 * MIB - 5}-{5 * MIB + 4}", **read_params(mode)
    )
    check(across["Body"].read() == data[5 * MIB - 5 : 5 * MIB + 5], f"{mode}: range across parts")


def errors(s3, bucket):
    """The SSE-C and header errors, with the codes AWS S3 returns."""
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="c", Body=b"customer data", **ssec())
    s3.put_object(Bucket=bucket, Key="plain", Body=b"plain data")
    # Missing or wrong key.
    expect_error(400, "InvalidRequest", s3.get_object, Bucket=bucket, Key="c")
    expect_error(403, "AccessDenied", s3.get_object, Bucket=bucket, Key="c", **ssec(KEY_B))
    expect_error(400, "InvalidRequest", s3.head_object, Bucket=bucket, Key="c")
    expect_error(403, "AccessDenied", s3.head_object, Bucket=bucket, Key="c", **ssec(KEY_B))
    # A key for an object that has none.
    expect_error(400, "InvalidRequest", s3.get_object, Bucket=bucket, Key="plain", **ssec())
    # Malformed triples (boto3 computes the MD5 unless given one).
    wrong_md5 = base64.b64encode(hashlib.md5(KEY_B.encode()).digest()).decode()
    expect_error(
        400, "InvalidArgument", s3.put_object, Bucket=bucket, Key="x", Body=b"x",
        SSECustomerKeyMD5=wrong_md5, **ssec(),
    )
    expect_error(
        400, "InvalidArgument", s3.put_object, Bucket=bucket, Key="x", Body=b"x",
        **ssec("too-short-16-byte"),
    )
    expect_error(
        400, "InvalidEncryptionAlgorithmError", s3.put_object, Bucket=bucket, Key="x", Body=b"x",
        SSECustomerAlgorithm="AES128", SSECustomerKey=KEY_A,
    )
    # Mixed or unknown encryption.
    expect_error(
        400, "InvalidArgument", s3.put_object, Bucket=bucket, Key="x", Body=b"x",
        ServerSideEncryption="aws:kms", **ssec(),
    )
    expect_error(
        400, "InvalidArgument", s3.put_object, Bucket=bucket, Key="x", Body=b"x",
        SSEKMSKeyId="app-key",
    )
    expect_error(
        501, "NotImplemented", s3.put_object, Bucket=bucket, Key="x", Body=b"x",
        ServerSideEncryption="aws:kms:dsse",
    )
    expect_error(
        400, "KMS.NotFoundException", s3.put_object, Bucket=bucket, Key="x", Body=b"x",
        ServerSideEncryption="aws:kms", SSEKMSKeyId="no-such-key",
    )
    # Copies need the source's key, and the right one.
    expect_error(
        400, "InvalidRequest", s3.copy_object, Bucket=bucket, Key="y",
        CopySource={"Bucket": bucket, "Key": "c"},
    )
    expect_error(
        403, "AccessDenied", s3.copy_object, Bucket=bucket, Key="y",
        CopySource={"Bucket": bucket, "Key": "c"}, **ssec(KEY_B, copy_source=True),
    )
    # Every part of an SSE-C upload needs the upload's key.
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m", **ssec())["UploadId"]
    expect_error(
        403, "AccessDenied", s3.upload_part, Bucket=bucket, Key="m", UploadId=upload,
        PartNumber=1, Body=b"part", **ssec(KEY_B),
    )
    expect_error(
        400, "InvalidRequest", s3.upload_part, Bucket=bucket, Key="m", UploadId=upload,
        PartNumber=1, Body=b"part",
    )
    # A range beyond the object.
    expect_error(416, "InvalidRange", s3.get_object, Bucket=bucket, Key="c", Range="bytes=100-200", **ssec())


def bucket_default(s3, bucket):
    """PutBucketEncryption applies to writes without SSE headers only."""
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": "app-key",
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    check(rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == "app-key", str(rule))
    check(rule["BucketKeyEnabled"] is True, str(rule))
    data = body("bucket-default", 1000)
    put = s3.put_object(Bucket=bucket, Key="default", Body=data)
    check(put["ServerSideEncryption"] == "aws:kms", str(put))
    check(put["SSEKMSKeyId"] == "app-key", str(put))
    check(put["BucketKeyEnabled"] is True, str(put))
    head = s3.head_object(Bucket=bucket, Key="default")
    check(head["ServerSideEncryption"] == "aws:kms" and head["BucketKeyEnabled"], str(head))
    check(s3.get_object(Bucket=bucket, Key="default")["Body"].read() == data, "default body")
    # The request's own encryption wins.
    put = s3.put_object(Bucket=bucket, Key="s3", Body=data, ServerSideEncryption="AES256")
    check(put["ServerSideEncryption"] == "AES256", str(put))
    put = s3.put_object(Bucket=bucket, Key="c", Body=data, **ssec())
    check("ServerSideEncryption" not in put and put["SSECustomerAlgorithm"] == "AES256", str(put))
    put = s3.put_object(Bucket=bucket, Key="no-bucket-key", Body=data, BucketKeyEnabled=False)
    check(put["BucketKeyEnabled"] is False, str(put))
    # Invalid configurations.
    expect_error(
        400, "InvalidArgument", s3.put_bucket_encryption, Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256", "KMSMasterKeyID": "k"}}]
        },
    )
    s3.delete_bucket_encryption(Bucket=bucket)
    expect_error(
        404, "ServerSideEncryptionConfigurationNotFoundError", s3.get_bucket_encryption, Bucket=bucket
    )
    put = s3.put_object(Bucket=bucket, Key="after", Body=data)
    check("ServerSideEncryption" not in put, str(put))


def bucket_keys_put(s3, bucket, count):
    """COUNT small PUTs to one bucket whose default uses bucket keys."""
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"},
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    for i in range(count):
        s3.put_object(Bucket=bucket, Key=f"o/{i:04}", Body=f"object {i}".encode())


def bucket_keys_get(s3, bucket, count):
    """Reads COUNT objects back."""
    for i in range(count):
        got = s3.get_object(Bucket=bucket, Key=f"o/{i:04}")
        check(got["Body"].read() == f"object {i}".encode(), f"object {i}")
        check(got["BucketKeyEnabled"] is True, f"object {i}: {got.get('BucketKeyEnabled')}")


def get(s3, bucket, key):
    """One GET; prints its status and code (for errors the Rust side makes)."""
    try:
        s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        print(json.dumps({"status": 200}))
    except ClientError as error:
        print(
            json.dumps(
                {
                    "status": error.response["ResponseMetadata"]["HTTPStatusCode"],
                    "code": error.response["Error"]["Code"],
                }
            )
        )


def main():
    endpoint, scenario, *args = sys.argv[1:]
    s3 = client(endpoint)
    scenarios = {
        "modes": modes,
        "errors": errors,
        "bucket-default": bucket_default,
        "bucket-keys-put": lambda s3, b, n: bucket_keys_put(s3, b, int(n)),
        "bucket-keys-get": lambda s3, b, n: bucket_keys_get(s3, b, int(n)),
        "get": get,
    }
    scenarios[scenario](s3, *args)


if __name__ == "__main__":
    main()
