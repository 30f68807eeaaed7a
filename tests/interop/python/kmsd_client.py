"""Calling kmsd from Python with the stock grpcio stack.

The regions between `# [docs:NAME]` and `# [/docs]` are the snippets of
docs/clients.md (a test checks they are equal). tests/tests/interop.rs runs
this file against a real kmsd, over its unix socket and over TCP with
mutual TLS; stubs are generated from proto/ first:

    python -m grpc_tools.protoc -I proto --python_out=gen --grpc_python_out=gen \
        kms/v1/kms.proto kms/v1/admin.proto

Usage: kmsd_client.py ENDPOINT [--ca CA --cert CERT --key KEY]
"""

import argparse
import sys

# [docs:imports]
import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from kms.v1 import kms_pb2, kms_pb2_grpc  # generated from proto/
# [/docs]

# Reflection v1 has the same messages as v1alpha, which is what
# grpcio-reflection ships; only the service name differs.
from grpc_reflection.v1alpha import reflection_pb2


# [docs:connect]
def connect(endpoint, ca=None, cert=None, key=None):
    """A channel to kmsd: "unix:/run/kmsd/kmsd.sock", or "host:port" with
    mutual TLS (PEM bytes). Create one per process and share it."""
    if endpoint.startswith("unix:"):
        return grpc.insecure_channel(endpoint)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
    return grpc.secure_channel(endpoint, credentials)
# [/docs]


# [docs:errors]
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}


def reason(error):
    """kmsd's machine-readable reason (docs/api.md#errors), from the
    google.rpc.ErrorInfo in the status details."""
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return None
# [/docs]


def envelope(channel):
    # [docs:envelope]
    kms = kms_pb2_grpc.KeyManagementStub(channel)
    context = {"bucket": "photos", "object": "cat.jpg"}
    # PUT: a fresh data key; encrypt with .plaintext, store .ciphertext_blob.
    data_key = kms.GenerateDataKey(
        kms_pb2.GenerateDataKeyRequest(encryption_context=context), timeout=5
    )
    # GET: the same context opens it again.
    opened = kms.Decrypt(
        kms_pb2.DecryptRequest(
            ciphertext_blob=data_key.ciphertext_blob, encryption_context=context
        ),
        timeout=5,
    )
    assert opened.plaintext == data_key.plaintext
    # [/docs]
    return kms, data_key


def wrong_context(kms, data_key):
    # [docs:wrong-context]
    try:
        kms.Decrypt(
            kms_pb2.DecryptRequest(
                ciphertext_blob=data_key.ciphertext_blob,
                encryption_context={"bucket": "other"},
            ),
            timeout=5,
        )
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason(error) == "INVALID_CIPHERTEXT"
    # [/docs]
    else:
        raise AssertionError("a wrong context opened the blob")


def denied(kms, key_id):
    try:
        kms.GenerateDataKey(kms_pb2.GenerateDataKeyRequest(key_id=key_id), timeout=5)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error
        assert reason(error) == "PERMISSION_DENIED", reason(error)
        assert error.code() not in RETRYABLE
    else:
        raise AssertionError(f"the policy let this caller use {key_id}")


def health(channel):
    # [docs:health]
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(
        health_pb2.HealthCheckRequest(service="kms.v1.KeyManagement"), timeout=5
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    # [/docs]


def services(channel):
    info = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (response,) = list(info(iter([request]), timeout=5))
    return sorted(s.name for s in response.list_services_response.service)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("endpoint")
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--denied-key-id", default="not-mine")
    args = parser.parse_args()
    read = lambda path: open(path, "rb").read() if path else None
    channel = connect(args.endpoint, read(args.ca), read(args.cert), read(args.key))
    with channel:
        kms, data_key = envelope(channel)
        print("envelope ok: key", data_key.key_id, "version", data_key.key_version)
        wrong_context(kms, data_key)
        print("wrong context ok: INVALID_ARGUMENT INVALID_CIPHERTEXT")
        denied(kms, args.denied_key_id)
        print("denied ok: PERMISSION_DENIED")
        health(channel)
        print("health ok: SERVING")
        print("services:", " ".join(services(channel)))


if __name__ == "__main__":
    sys.exit(main())
