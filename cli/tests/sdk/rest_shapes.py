#!/usr/bin/env python3
"""The management REST API of a live `keyctl serve`, read with the official
Yandex Cloud SDK's message types.

    rest_shapes.py URL ADMIN_TOKEN

URL is the server's base (`http://127.0.0.1:PORT`). A REST session — the
keys' service account made (`POST /iam/v1/serviceAccounts`, an `Operation`
whose response is the SDK's `ServiceAccount`) and listed
(`ListServiceAccountsResponse`), the default folder, cloud and organization
read (`ListFoldersResponse`, `ListCloudsResponse`, `Organization`), a key
create for an unknown account refused (404), create with scopes and expiry, get, list with paging, update with a mask, list
operations, list scopes, delete, and one refusal of each kind — whose every
answer is parsed with `google.protobuf.json_format.Parse` at its defaults
(unknown fields are errors) into the SDK's `ApiKey`, `ListApiKeysResponse`,
`CreateApiKeyResponse`, `ListApiKeyScopesResponse`,
`ListApiKeyOperationsResponse`, `Operation` (its `Any`s unpacked) and
`google.rpc.Status`. The kinds of operation the cloud lacks are the
project's own messages (package `apikeys.v1`), registered here as a client
built from the project's definitions would. The created key is checked on
`/v1/authorize` with exactly its scopes, and refused after the delete.

Prints one line per check and `N passed, M failed`; exits 1 on any failure.
"""

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

from google.protobuf import descriptor_pb2, descriptor_pool, empty_pb2, json_format, message_factory
from google.rpc import status_pb2
from yandex.cloud.iam.v1 import api_key_pb2, api_key_service_pb2 as svc
from yandex.cloud.iam.v1 import service_account_pb2, service_account_service_pb2 as sa_svc
from yandex.cloud.operation import operation_pb2
from yandex.cloud.organizationmanager.v1 import organization_pb2
from yandex.cloud.resourcemanager.v1 import cloud_service_pb2, folder_service_pb2

API = "/iam/v1"
FOLDER = "defaultfolder0000000"
CLOUD = "defaultcloud00000000"
ORGANIZATION = "defaultorganization0"
TYPE = "type.googleapis.com/"


def project_types():
    """The project's `apikeys.v1` messages, added to the default pool so the
    JSON parser can unpack `Any`s that name them."""
    pool = descriptor_pool.Default()
    f = descriptor_pb2.FileDescriptorProto(name="apikeys/v1/operations.proto", package="apikeys.v1", syntax="proto3")
    f.dependency.append("google/protobuf/timestamp.proto")
    label = descriptor_pb2.FieldDescriptorProto
    for name in ["CreateApiKeyMetadata", "RevokeApiKeyMetadata", "ReissueApiKeyMetadata",
                 "ImportApiKeyMetadata", "LeakApiKeyMetadata"]:
        m = f.message_type.add(name=name)
        m.field.add(name="api_key_id", json_name="apiKeyId", number=1,
                    type=label.TYPE_STRING, label=label.LABEL_OPTIONAL)
    changes = f.message_type.add(name="ApiKeyChanges")
    changes.field.add(name="description", json_name="description", number=1,
                      type=label.TYPE_STRING, label=label.LABEL_OPTIONAL)
    changes.field.add(name="scopes", json_name="scopes", number=2,
                      type=label.TYPE_STRING, label=label.LABEL_REPEATED)
    changes.field.add(name="expires_at", json_name="expiresAt", number=3, type=label.TYPE_MESSAGE,
                      type_name=".google.protobuf.Timestamp", label=label.LABEL_OPTIONAL)
    # The SDK's modules have loaded timestamp.proto into this pool already.
    pool.AddSerializedFile(f.SerializeToString())
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName("apikeys.v1." + n))
            for n in ["CreateApiKeyMetadata", "RevokeApiKeyMetadata", "ApiKeyChanges"]}


class Session:
    def __init__(self, base, token):
        self.base = base.rstrip("/")
        self.token = token
        self.passed = 0
        self.failed = 0

    def call(self, method, path, body=None, token="default", headers=None):
        """(status, parsed JSON, response headers) of one request."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        token = self.token if token == "default" else token
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, r.read().decode(), {k.lower(): v for k, v in r.headers.items()}
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), {k.lower(): v for k, v in e.headers.items()}

    def check(self, what, condition, detail=""):
        if condition:
            self.passed += 1
            print(f"ok   {what}")
        else:
            self.failed += 1
            print(f"FAIL {what} {detail}")
        return condition

    def parse(self, what, text, message):
        """`text` parsed strictly into `message`; a failure is a failed check."""
        try:
            json_format.Parse(text, message)
        except json_format.ParseError as e:
            self.check(f"{what} parses as {message.DESCRIPTOR.full_name}", False, f"{e}: {text[:400]}")
            return None
        self.check(f"{what} parses as {message.DESCRIPTOR.full_name}", True)
        return message

    def refusal(self, what, answer, status, code):
        got, text, _ = answer
        parsed = self.parse(what, text, status_pb2.Status()) if text else None
        self.check(f"{what}: HTTP {status}, code {code}", got == status and parsed is not None and parsed.code == code,
                   f"got HTTP {got}: {text[:300]}")

    def unpack(self, what, any_message, message):
        ok = any_message.Unpack(message)
        self.check(f"{what} unpacks as {message.DESCRIPTOR.full_name}", ok, any_message.type_url)
        return message if ok else None

    def authorize(self, secret, scope):
        request = urllib.request.Request(f"{self.base}/v1/authorize?scope={urllib.parse.quote(scope)}")
        request.add_header("Authorization", f"Api-Key {secret}")
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code


def resources(s):
    """The keys' service account, made and listed; the default folder,
    cloud and organization read. Returns the account's id."""
    name = "sdk-" + uuid.uuid4().hex[:12]
    status, text, _ = s.call("POST", f"{API}/serviceAccounts", {"folderId": FOLDER, "name": name})
    s.check("service account create answers 200", status == 200, text[:300])
    op = s.parse("service account create", text, operation_pb2.Operation())
    account = s.unpack("service account create response", op.response, service_account_pb2.ServiceAccount())
    meta = s.unpack("service account create metadata", op.metadata, sa_svc.CreateServiceAccountMetadata())
    s.check("service account create: done, the account as asked",
            op.done and account.id and account.name == name and account.folder_id == FOLDER
            and meta.service_account_id == account.id, str(op))
    status, text, _ = s.call("GET", f"{API}/serviceAccounts?folderId={FOLDER}")
    listed = s.parse("service account list", text, sa_svc.ListServiceAccountsResponse())
    s.check("service account list: the account", listed is not None and
            [a.id for a in listed.service_accounts if a.name == name] == [account.id], text[:300])
    status, text, _ = s.call("GET", f"/resource-manager/v1/folders?cloudId={CLOUD}")
    folders = s.parse("folder list", text, folder_service_pb2.ListFoldersResponse())
    s.check("folder list: the default folder", folders is not None and FOLDER in [f.id for f in folders.folders])
    status, text, _ = s.call("GET", "/resource-manager/v1/clouds")
    clouds = s.parse("cloud list", text, cloud_service_pb2.ListCloudsResponse())
    s.check("cloud list: the default cloud", clouds is not None and CLOUD in [c.id for c in clouds.clouds])
    status, text, _ = s.call("GET", f"/organization-manager/v1/organizations/{ORGANIZATION}")
    org = s.parse("organization get", text, organization_pb2.Organization())
    s.check("organization get: the default organization", org is not None and org.id == ORGANIZATION)
    s.refusal("key create for an unknown service account", s.call("POST", f"{API}/apiKeys", {
        "serviceAccountId": "nosuchaccount0000000", "scopes": ["yc.monitoring.read"]}), 404, 5)
    return account.id


def run(s):
    types = project_types()
    account = resources(s)

    # Create with scopes and expiry: the answer, secret included.
    status, text, headers = s.call("POST", f"{API}/apiKeys", {
        "serviceAccountId": account, "description": "from the SDK test",
        "scopes": ["yc.monitoring.read", "yc.postbox.send"], "expiresAt": "2030-01-01T00:00:00Z"})
    s.check("create answers 200", status == 200, text[:300])
    s.check("create says Cache-Control: no-store", headers.get("cache-control") == "no-store", str(headers))
    created = s.parse("create", text, svc.CreateApiKeyResponse())
    if created is None:
        return
    key_id, secret = created.api_key.id, created.secret
    s.check("create: scopes and expiry as asked",
            list(created.api_key.scopes) == ["yc.monitoring.read", "yc.postbox.send"]
            and created.api_key.expires_at.ToJsonString() == "2030-01-01T00:00:00Z"
            and created.api_key.masked_secret == "****" + secret[-6:], str(created.api_key))
    s.check("the key verifies with its scope", s.authorize(secret, "yc.postbox.send") == 200)
    s.check("and not with another", s.authorize(secret, "yc.ai.translate.execute") == 403)

    # Get.
    status, text, _ = s.call("GET", f"{API}/apiKeys/{key_id}")
    got = s.parse("get", text, api_key_pb2.ApiKey())
    s.check("get shows the created key", got is not None and got == created.api_key)

    # List with paging (three keys, two per page).
    for n in range(2):
        s.call("POST", f"{API}/apiKeys", {"serviceAccountId": account, "description": f"page {n}"})
    seen, token, pages = [], "", 0
    while True:
        query = urllib.parse.urlencode({"serviceAccountId": account, "pageSize": 2, "pageToken": token})
        status, text, _ = s.call("GET", f"{API}/apiKeys?{query}")
        page = s.parse(f"list page {pages + 1}", text, svc.ListApiKeysResponse())
        if page is None:
            return
        seen += [k.id for k in page.api_keys]
        pages += 1
        token = page.next_page_token
        if not token or pages > 5:
            break
    s.check("list: 3 keys over 2 pages, the created one among them", len(seen) == 3 and pages == 2 and key_id in seen,
            f"{pages} pages: {seen}")

    # Update with a mask: an Operation packing UpdateApiKeyMetadata and ApiKey.
    status, text, _ = s.call("PATCH", f"{API}/apiKeys/{key_id}",
                             {"updateMask": "description", "description": "renamed", "scopes": ["yc.ai.translate.execute"]})
    op = s.parse("update", text, operation_pb2.Operation())
    if op is not None:
        meta = s.unpack("update metadata", op.metadata, svc.UpdateApiKeyMetadata())
        s.check("update metadata names the key", meta is not None and meta.api_key_id == key_id)
        updated = s.unpack("update response", op.response, api_key_pb2.ApiKey())
        s.check("update: description changed, scopes outside the mask untouched",
                updated is not None and updated.description == "renamed"
                and list(updated.scopes) == ["yc.monitoring.read", "yc.postbox.send"] and op.done)

    # Operations of the key: create and update, each with metadata and response.
    status, text, _ = s.call("GET", f"{API}/apiKeys/{key_id}/operations")
    ops = s.parse("list operations", text, svc.ListApiKeyOperationsResponse())
    if ops is not None:
        urls = [o.metadata.type_url for o in ops.operations]
        s.check("operations: update then create", urls == [TYPE + "yandex.cloud.iam.v1.UpdateApiKeyMetadata",
                                                          TYPE + "apikeys.v1.CreateApiKeyMetadata"], str(urls))
        create_meta = s.unpack("create metadata", ops.operations[-1].metadata, types["CreateApiKeyMetadata"]())
        s.check("create metadata names the key", create_meta is not None and create_meta.api_key_id == key_id)
        changes = s.unpack("listed update response", ops.operations[0].response, types["ApiKeyChanges"]())
        s.check("listed update response holds its change", changes is not None and changes.description == "renamed")

    # Scopes, paged.
    names, token, pages = [], "", 0
    while True:
        query = urllib.parse.urlencode({"pageSize": 5, "pageToken": token})
        status, text, _ = s.call("GET", f"{API}/apiKeyScopes?{query}")
        page = s.parse(f"scopes page {pages + 1}", text, svc.ListApiKeyScopesResponse())
        if page is None:
            break
        names += list(page.scopes)
        pages += 1
        token = page.next_page_token
        if not token or pages > 50:
            break
    s.check("scopes: names over several pages", pages > 1 and "yc.monitoring.read" in names
            and len(names) == len(set(names)), f"{pages} pages: {names}")

    # The extension fields travel only when asked for: a strict parser refuses them.
    status, text, _ = s.call("GET", f"{API}/apiKeys/{key_id}?view=FULL")
    strict_refuses = False
    try:
        json_format.Parse(text, api_key_pb2.ApiKey())
    except json_format.ParseError:
        strict_refuses = True
    s.check("view=FULL adds fields a strict parser refuses (the default view has none)",
            strict_refuses and json.loads(text).get("status") == "ACTIVE", text[:300])

    # Refusals, each a google.rpc.Status.
    s.refusal("no token", s.call("GET", f"{API}/apiKeys/{key_id}", token=None), 401, 16)
    s.refusal("wrong token", s.call("GET", f"{API}/apiKeys/{key_id}", token="wrong-token-" + uuid.uuid4().hex), 401, 16)
    s.refusal("unknown id", s.call("GET", f"{API}/apiKeys/{'a' * 20}"), 404, 5)
    s.refusal("bad argument", s.call("POST", f"{API}/apiKeys", {"serviceAccountId": account, "scopes": ["yc.nothing"]}),
              400, 3)
    s.refusal("masked scopes without any",
              s.call("PATCH", f"{API}/apiKeys/{key_id}", {"updateMask": "scopes"}), 400, 3)
    _, text, _ = s.call("POST", f"{API}/apiKeys", {"serviceAccountId": account})
    revoked = json.loads(text)["apiKey"]["id"]
    s.call("POST", f"{API}/apiKeys/{revoked}:revoke", {})
    s.refusal("update of a revoked key (failed precondition)",
              s.call("PATCH", f"{API}/apiKeys/{revoked}", {"description": "x"}), 400, 9)

    # Delete: an Operation packing DeleteApiKeyMetadata and Empty.
    status, text, _ = s.call("DELETE", f"{API}/apiKeys/{key_id}",
                             headers={"Idempotency-Key": str(uuid.uuid4())})
    op = s.parse("delete", text, operation_pb2.Operation())
    if op is not None:
        meta = s.unpack("delete metadata", op.metadata, svc.DeleteApiKeyMetadata())
        s.check("delete metadata names the key", meta is not None and meta.api_key_id == key_id)
        s.unpack("delete response", op.response, empty_pb2.Empty())
    s.check("the deleted key no longer verifies", s.authorize(secret, "yc.postbox.send") == 401)
    s.refusal("get after delete", s.call("GET", f"{API}/apiKeys/{key_id}"), 404, 5)


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    s = Session(sys.argv[1], sys.argv[2])
    try:
        run(s)
    except Exception as e:  # a crash is a failure, reported as one
        s.check("the session ran to its end", False, repr(e))
    print(f"{s.passed} passed, {s.failed} failed")
    return 1 if s.failed else 0


if __name__ == "__main__":
    sys.exit(main())
