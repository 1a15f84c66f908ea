#!/usr/bin/env python3
"""The gRPC management services of a live `keyctl serve` (TLS on loopback),
driven with the official Yandex Cloud Python SDK's public API only.

    grpc_session.py session ADDR ADMIN_TOKEN CA_PEM
    grpc_session.py nodes ADDR_A ADDR_B ADMIN_TOKEN CA_PEM
    grpc_session.py throttle ADDR ADMIN_TOKEN CA_PEM
    grpc_session.py off ADDR CA_PEM

`session`: `yandexcloud.SDK(endpoint=ADDR, iam_token=…, root_certificates=…)`
(endpoint discovery through ApiEndpointService), `sdk.client(ApiKeyServiceStub)`,
`sdk.wait_operation_and_get_result`: a service account made with
`ServiceAccountService.Create` (the done operation's response) and listed, one call each to
`FolderService.List`, `CloudService.List` and `OrganizationService.Get`,
then for the account's keys: a create for an unknown account refused
(NOT_FOUND), create with scopes and expiry, get,
list with paging, update with a mask (waited for), list operations, list
scopes, delete (waited for), a replayed idempotent create, a cancel, and a
refusal of each kind (no token, wrong token, unknown id, bad argument). The
created key verifies on `/v1/authorize` (HTTPS) with exactly its scopes, and
not after the delete. Then a gRPC call in plaintext to the TLS port fails
cleanly (UNAVAILABLE) and the server still answers.

`throttle`: failed authentications over gRPC are throttled per address as
REST's are. `off` (a server without admin tokens): gRPC calls are
UNIMPLEMENTED, saying why.

`nodes`: a service account made through node A is used on node A, and an
Update made through node A is found with `OperationService.Get`
on node B (both over one store), response included.

Prints one line per check and `N passed, M failed`; exits 1 on any failure.
"""

import datetime
import ssl
import sys
import urllib.error
import urllib.request
import uuid

import grpc
import yandexcloud
from google.protobuf import empty_pb2, field_mask_pb2, timestamp_pb2
from yandex.cloud.iam.v1.api_key_pb2 import ApiKey
from yandex.cloud.iam.v1.api_key_service_pb2 import (
    CreateApiKeyRequest,
    DeleteApiKeyMetadata,
    DeleteApiKeyRequest,
    GetApiKeyRequest,
    ListApiKeyOperationsRequest,
    ListApiKeyScopesRequest,
    ListApiKeysRequest,
    UpdateApiKeyMetadata,
    UpdateApiKeyRequest,
)
from yandex.cloud.iam.v1.api_key_service_pb2_grpc import ApiKeyServiceStub
from yandex.cloud.iam.v1.service_account_pb2 import ServiceAccount
from yandex.cloud.iam.v1.service_account_service_pb2 import (
    CreateServiceAccountMetadata,
    CreateServiceAccountRequest,
    ListServiceAccountsRequest,
)
from yandex.cloud.iam.v1.service_account_service_pb2_grpc import ServiceAccountServiceStub
from yandex.cloud.operation.operation_service_pb2 import CancelOperationRequest, GetOperationRequest
from yandex.cloud.operation.operation_service_pb2_grpc import OperationServiceStub
from yandex.cloud.organizationmanager.v1.organization_service_pb2 import GetOrganizationRequest
from yandex.cloud.organizationmanager.v1.organization_service_pb2_grpc import OrganizationServiceStub
from yandex.cloud.resourcemanager.v1.cloud_service_pb2 import ListCloudsRequest
from yandex.cloud.resourcemanager.v1.cloud_service_pb2_grpc import CloudServiceStub
from yandex.cloud.resourcemanager.v1.folder_service_pb2 import ListFoldersRequest
from yandex.cloud.resourcemanager.v1.folder_service_pb2_grpc import FolderServiceStub

TYPE = "type.googleapis.com/"
FOLDER = "defaultfolder0000000"
CLOUD = "defaultcloud00000000"
ORGANIZATION = "defaultorganization0"
TIMEOUT = 20

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name}: {detail}")


def refused(name, call, code):
    """`call` must fail with the gRPC status `code`."""
    try:
        call()
        check(name, False, f"expected {code.name}, got an answer")
    except grpc.RpcError as e:
        check(name, e.code() == code, f"expected {code.name}, got {e.code().name}: {e.details()}")


def authorize(addr, ca, secret, scope):
    """GET /v1/authorize over HTTPS: the status and the granted scopes."""
    context = ssl.create_default_context(cafile=ca)
    request = urllib.request.Request(f"https://{addr}/v1/authorize?scope={scope}")
    request.add_header("Authorization", f"Api-Key {secret}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=TIMEOUT) as r:
            return r.status, r.headers.get("x-api-key-scopes", "")
    except urllib.error.HTTPError as e:
        return e.code, ""


def service_account(sdk, name):
    """A service account made with the SDK in the default folder; its id.
    The operation answers done, its `response` the account. (Not through
    `sdk.wait_operation_and_get_result`: `OperationService.Get` finds key
    operations only, not resource ones.)"""
    op = sdk.client(ServiceAccountServiceStub).Create(
        CreateServiceAccountRequest(folder_id=FOLDER, name=name, description="made by the SDK"), timeout=TIMEOUT)
    account, meta = ServiceAccount(), CreateServiceAccountMetadata()
    check(f"service account create: {name}", op.done and op.response.Unpack(account) and
          op.metadata.Unpack(meta) and account.id and account.name == name and account.folder_id == FOLDER and
          meta.service_account_id == account.id, f"{op}")
    return account.id


def resources(sdk):
    """The resource services answer the SDK: the account's folder, cloud
    and organization."""
    folders = sdk.client(FolderServiceStub).List(ListFoldersRequest(cloud_id=CLOUD), timeout=TIMEOUT)
    check("folder list: the default folder", FOLDER in [f.id for f in folders.folders], f"{folders}")
    clouds = sdk.client(CloudServiceStub).List(ListCloudsRequest(), timeout=TIMEOUT)
    check("cloud list: the default cloud", CLOUD in [c.id for c in clouds.clouds], f"{clouds}")
    org = sdk.client(OrganizationServiceStub).Get(GetOrganizationRequest(organization_id=ORGANIZATION),
                                                  timeout=TIMEOUT)
    check("organization get: the default organization", org.id == ORGANIZATION, f"{org}")


def session(addr, token, ca):
    ca_pem = open(ca, "rb").read()
    sdk = yandexcloud.SDK(endpoint=addr, iam_token=token, root_certificates=ca_pem)
    keys = sdk.client(ApiKeyServiceStub)

    # The keys' service account, made and listed with the SDK.
    sa = service_account(sdk, "grpc-robot")
    listed = sdk.client(ServiceAccountServiceStub).List(ListServiceAccountsRequest(folder_id=FOLDER), timeout=TIMEOUT)
    check("service account list: the account", [a.id for a in listed.service_accounts if a.name == "grpc-robot"] == [sa],
          f"{listed}")
    resources(sdk)
    refused("create for an unknown service account", lambda: keys.Create(
        CreateApiKeyRequest(service_account_id="nosuchaccount0000000", scopes=["yc.monitoring.read"]),
        timeout=TIMEOUT), grpc.StatusCode.NOT_FOUND)

    # Create with scopes and expiry.
    expiry = timestamp_pb2.Timestamp()
    expiry.FromDatetime(datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(days=1))
    scopes = ["yc.monitoring.read", "yc.logging.write"]
    created = keys.Create(CreateApiKeyRequest(service_account_id=sa, description="made by the SDK", scopes=scopes,
                                              expires_at=expiry), timeout=TIMEOUT)
    key, secret = created.api_key, created.secret
    check("create: a secret, once", len(secret) > 40 and key.id and secret.endswith(key.masked_secret[4:]),
          f"{key}")
    check("create: scopes and expiry as asked", sorted(key.scopes) == sorted(scopes) and key.expires_at == expiry,
          f"{key.scopes} {key.expires_at}")

    # Get.
    got = keys.Get(GetApiKeyRequest(api_key_id=key.id), timeout=TIMEOUT)
    check("get: the same key", got.id == key.id and got.service_account_id == sa and
          got.description == "made by the SDK" and sorted(got.scopes) == sorted(scopes), f"{got}")

    # The key verifies with exactly its scopes.
    status, granted = authorize(addr, ca, secret, "yc.monitoring.read")
    check("authorize: a held scope", status == 200 and sorted(granted.split(",")) == sorted(scopes),
          f"{status} {granted}")
    status, _ = authorize(addr, ca, secret, "yc.postbox.send")
    check("authorize: a scope not held is refused", status == 403, f"{status}")

    # List with paging.
    more = [keys.Create(CreateApiKeyRequest(service_account_id=sa, scopes=["yc.monitoring.read"]),
                        timeout=TIMEOUT).api_key.id for _ in range(2)]
    first = keys.List(ListApiKeysRequest(service_account_id=sa, page_size=2), timeout=TIMEOUT)
    second = keys.List(ListApiKeysRequest(service_account_id=sa, page_size=2, page_token=first.next_page_token),
                       timeout=TIMEOUT)
    listed = [k.id for k in first.api_keys] + [k.id for k in second.api_keys]
    check("list: two pages", len(first.api_keys) == 2 and first.next_page_token and
          len(second.api_keys) == 1 and second.next_page_token == "", f"{first} {second}")
    check("list: every key once", sorted(listed) == sorted([key.id] + more), f"{listed}")

    # Update with a mask, waited for: only the masked field changes.
    op = keys.Update(UpdateApiKeyRequest(api_key_id=key.id, update_mask=field_mask_pb2.FieldMask(paths=["description"]),
                                         description="renamed", scopes=["yc.postbox.send"]), timeout=TIMEOUT)
    check("update: an operation, done", op.done and op.metadata.type_url == TYPE + "yandex.cloud.iam.v1.UpdateApiKeyMetadata",
          f"{op}")
    result = sdk.wait_operation_and_get_result(op, response_type=ApiKey, meta_type=UpdateApiKeyMetadata,
                                               timeout=TIMEOUT)
    check("update: waited, the key as changed", result.response.description == "renamed" and
          sorted(result.response.scopes) == sorted(scopes) and result.meta.api_key_id == key.id, f"{result}")
    op2 = keys.Update(UpdateApiKeyRequest(api_key_id=key.id, update_mask=field_mask_pb2.FieldMask(paths=["scopes"]),
                                          scopes=["yc.monitoring.read"]), timeout=TIMEOUT)
    result2 = sdk.wait_operation_and_get_result(op2, response_type=ApiKey, meta_type=UpdateApiKeyMetadata,
                                                timeout=TIMEOUT)
    check("update: scopes by mask", list(result2.response.scopes) == ["yc.monitoring.read"], f"{result2}")
    status, granted = authorize(addr, ca, secret, "yc.monitoring.read")
    check("authorize: the narrowed scopes", status == 200 and granted == "yc.monitoring.read", f"{status} {granted}")

    # The operation by id, and a cancel of it.
    operations = sdk.client(OperationServiceStub)
    again = operations.Get(GetOperationRequest(operation_id=op.id), timeout=TIMEOUT)
    unpacked = ApiKey()
    check("operation get: the same operation, response included",
          again.id == op.id and again.done and again.response.Unpack(unpacked) and unpacked.description == "renamed",
          f"{again}")
    refused("operation cancel: a finished operation", lambda: operations.Cancel(
        CancelOperationRequest(operation_id=op.id), timeout=TIMEOUT), grpc.StatusCode.FAILED_PRECONDITION)
    refused("operation get: unknown id", lambda: operations.Get(
        GetOperationRequest(operation_id="a" * 20), timeout=TIMEOUT), grpc.StatusCode.NOT_FOUND)

    # List operations: create and both updates, newest first.
    listing = keys.ListOperations(ListApiKeyOperationsRequest(api_key_id=key.id), timeout=TIMEOUT)
    kinds = [o.metadata.type_url.rsplit(".", 1)[-1] for o in listing.operations]
    check("list operations: newest first", kinds == ["UpdateApiKeyMetadata", "UpdateApiKeyMetadata",
                                                     "CreateApiKeyMetadata"] and listing.operations[1].id == op.id,
          f"{kinds}")

    # List scopes, paged.
    one = keys.ListScopes(ListApiKeyScopesRequest(page_size=1), timeout=TIMEOUT)
    rest = keys.ListScopes(ListApiKeyScopesRequest(page_token=one.next_page_token), timeout=TIMEOUT)
    names = list(one.scopes) + list(rest.scopes)
    check("list scopes: paged names", len(one.scopes) == 1 and one.next_page_token and
          "yc.monitoring.read" in names and len(set(names)) == len(names), f"{names}")

    # Idempotent create: a replay is the same key without the secret.
    idem = (("idempotency-key", str(uuid.uuid4())),)
    request = CreateApiKeyRequest(service_account_id=sa, scopes=["yc.monitoring.read"])
    a = keys.Create(request, metadata=idem, timeout=TIMEOUT)
    b = keys.Create(request, metadata=idem, timeout=TIMEOUT)
    check("idempotent create: replayed, no second key, no secret",
          a.api_key.id == b.api_key.id and a.secret and b.secret == "", f"{a.api_key.id} {b.api_key.id}")
    refused("idempotent create: the key with another request", lambda: keys.Create(
        CreateApiKeyRequest(service_account_id=sa, description="other"), metadata=idem, timeout=TIMEOUT),
        grpc.StatusCode.FAILED_PRECONDITION)

    # Refusals.
    bare = ApiKeyServiceStub(grpc.secure_channel(addr, grpc.ssl_channel_credentials(ca_pem)))
    refused("no token", lambda: bare.Get(GetApiKeyRequest(api_key_id=key.id), timeout=TIMEOUT),
            grpc.StatusCode.UNAUTHENTICATED)
    wrong = yandexcloud.SDK(endpoint=addr, iam_token="W" + token[1:], root_certificates=ca_pem)
    refused("wrong token", lambda: wrong.client(ApiKeyServiceStub).Get(GetApiKeyRequest(api_key_id=key.id),
                                                                       timeout=TIMEOUT),
            grpc.StatusCode.UNAUTHENTICATED)
    refused("unknown id", lambda: keys.Get(GetApiKeyRequest(api_key_id="b" * 20), timeout=TIMEOUT),
            grpc.StatusCode.NOT_FOUND)
    refused("bad argument: unknown scope", lambda: keys.Create(
        CreateApiKeyRequest(service_account_id=sa, scopes=["no.such.scope"]), timeout=TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT)
    refused("bad argument: masked scopes absent", lambda: keys.Update(UpdateApiKeyRequest(
        api_key_id=key.id, update_mask=field_mask_pb2.FieldMask(paths=["scopes"])), timeout=TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT)
    refused("bad argument: page size", lambda: keys.List(ListApiKeysRequest(service_account_id=sa, page_size=1001),
                                                         timeout=TIMEOUT), grpc.StatusCode.INVALID_ARGUMENT)
    refused("bad argument: malformed id", lambda: keys.Get(GetApiKeyRequest(api_key_id="x"), timeout=TIMEOUT),
            grpc.StatusCode.INVALID_ARGUMENT)
    after = keys.Get(GetApiKeyRequest(api_key_id=key.id), timeout=TIMEOUT)
    check("refusals changed nothing", after.description == "renamed" and list(after.scopes) == ["yc.monitoring.read"],
          f"{after}")

    # Delete, waited for; then the key is gone and refused.
    deleted = keys.Delete(DeleteApiKeyRequest(api_key_id=key.id), timeout=TIMEOUT)
    result = sdk.wait_operation_and_get_result(deleted, response_type=empty_pb2.Empty, meta_type=DeleteApiKeyMetadata,
                                               timeout=TIMEOUT)
    check("delete: waited", result.meta.api_key_id == key.id and
          deleted.response.type_url == TYPE + "google.protobuf.Empty", f"{deleted}")
    refused("get after delete", lambda: keys.Get(GetApiKeyRequest(api_key_id=key.id), timeout=TIMEOUT),
            grpc.StatusCode.NOT_FOUND)
    status, _ = authorize(addr, ca, secret, "yc.monitoring.read")
    check("authorize: refused after the delete", status == 401, f"{status}")

    # A gRPC call in plaintext to the TLS listener: a clean failure.
    plain = sdk.client(ApiKeyServiceStub, endpoint=addr, insecure=True)
    refused("plaintext gRPC to the TLS port", lambda: plain.ListScopes(ListApiKeyScopesRequest(), timeout=TIMEOUT),
            grpc.StatusCode.UNAVAILABLE)
    check("the server still answers", len(keys.ListScopes(ListApiKeyScopesRequest(), timeout=TIMEOUT).scopes) > 0)


def nodes(addr_a, addr_b, token, ca):
    ca_pem = open(ca, "rb").read()
    sdk = yandexcloud.SDK(endpoint=addr_a, iam_token=token, root_certificates=ca_pem)
    keys = sdk.client(ApiKeyServiceStub)
    sa = service_account(sdk, "nodes-robot")
    key = keys.Create(CreateApiKeyRequest(service_account_id=sa, scopes=["yc.monitoring.read"]),
                      timeout=TIMEOUT).api_key
    op = keys.Update(UpdateApiKeyRequest(api_key_id=key.id, update_mask=field_mask_pb2.FieldMask(paths=["description"]),
                                         description="through node A"), timeout=TIMEOUT)
    on_b = sdk.client(OperationServiceStub, endpoint=addr_b).Get(GetOperationRequest(operation_id=op.id),
                                                                  timeout=TIMEOUT)
    found = ApiKey()
    meta = UpdateApiKeyMetadata()
    check("node B finds node A's update", on_b.id == op.id and on_b.done and on_b.response.Unpack(found) and
          found.description == "through node A" and on_b.metadata.Unpack(meta) and meta.api_key_id == key.id,
          f"{on_b}")


def throttle(addr, token, ca):
    """Failed authentications over gRPC count against the REST API's
    per-address throttle: after 20 in a minute, even the right token waits."""
    ca_pem = open(ca, "rb").read()
    wrong = yandexcloud.SDK(endpoint=addr, iam_token="W" + token[1:], root_certificates=ca_pem)
    stub = wrong.client(ApiKeyServiceStub)
    codes = set()
    for _ in range(20):
        try:
            stub.ListScopes(ListApiKeyScopesRequest(), timeout=TIMEOUT)
        except grpc.RpcError as e:
            codes.add(e.code())
    check("20 wrong tokens: UNAUTHENTICATED", codes == {grpc.StatusCode.UNAUTHENTICATED}, f"{codes}")
    right = yandexcloud.SDK(endpoint=addr, iam_token=token, root_certificates=ca_pem).client(ApiKeyServiceStub)
    refused("then the right token: throttled", lambda: right.ListScopes(ListApiKeyScopesRequest(), timeout=TIMEOUT),
            grpc.StatusCode.RESOURCE_EXHAUSTED)


def off(addr, ca):
    """Without admin tokens the gRPC services are off: UNIMPLEMENTED, saying why."""
    bare = ApiKeyServiceStub(grpc.secure_channel(addr, grpc.ssl_channel_credentials(open(ca, "rb").read())))
    try:
        bare.ListScopes(ListApiKeyScopesRequest(), timeout=TIMEOUT)
        check("management API off: UNIMPLEMENTED", False, "an answer")
    except grpc.RpcError as e:
        check("management API off: UNIMPLEMENTED", e.code() == grpc.StatusCode.UNIMPLEMENTED and
              "no admin tokens" in e.details(), f"{e.code().name}: {e.details()}")


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    try:
        {"session": session, "nodes": nodes, "throttle": throttle, "off": off}[mode](*args)
    except Exception as e:  # an unexpected failure is one failed check, shown
        check("session ran to its end", False, repr(e))
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
