// The gRPC management services of a live `keyctl serve` (TLS on loopback)
// driven with the official Yandex Cloud Node SDK (@yandex-cloud/nodejs-sdk,
// pinned in package.json): a service account made with its
// serviceAccountService (the done operation's response) and listed, the
// default folder, cloud and organization read with folderService,
// cloudService and organizationService, then for the account's keys: a
// create for an unknown account refused (NOT_FOUND), create, list, delete
// (waited for).
//
//   NODE_PATH=DIR/node_modules node session.cjs ADDR ADMIN_TOKEN CA_PEM
//
// The Node SDK has no endpoint discovery: it uses its own map of the
// cloud's hosts, so each client is given ADDR (`session.client(Client,
// ADDR)`), and `waitForOperation` is given ADDR for OperationService.
// Prints one line per check and `N passed, M failed`; exits 1 on a failure.
'use strict';
const fs = require('node:fs');
const { Session, waitForOperation } = require('@yandex-cloud/nodejs-sdk');
const { apiKeyService, serviceAccount, serviceAccountService } = require('@yandex-cloud/nodejs-sdk/iam-v1');
const { cloudService, folderService } = require('@yandex-cloud/nodejs-sdk/resourcemanager-v1');
const { organizationService } = require('@yandex-cloud/nodejs-sdk/organizationmanager-v1');

const FOLDER = 'defaultfolder0000000';
const CLOUD = 'defaultcloud00000000';
const ORGANIZATION = 'defaultorganization0';

const [addr, token, ca] = process.argv.slice(2);
let passed = 0;
let failed = 0;
function check(name, ok, detail) {
  if (ok) {
    passed += 1;
    console.log(`ok   ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL ${name}: ${detail}`);
  }
}

async function main() {
  const session = new Session({ iamToken: token, ssl: { rootCerts: fs.readFileSync(ca) } });
  // The keys' service account, made and listed with the SDK.
  const accounts = session.client(serviceAccountService.ServiceAccountServiceClient, addr);
  const made = await accounts.create(serviceAccountService.CreateServiceAccountRequest.fromPartial({
    folderId: FOLDER, name: 'node-robot', description: 'by the Node SDK',
  }));
  const account = made.response && serviceAccount.ServiceAccount.decode(made.response.value);
  check('service account create: done, the account in its response', made.done && account && account.id &&
    account.name === 'node-robot' && account.folderId === FOLDER, JSON.stringify(made));
  const sa = account.id;
  const inFolder = await accounts.list(serviceAccountService.ListServiceAccountsRequest.fromPartial({ folderId: FOLDER }));
  check('service account list: the account', inFolder.serviceAccounts.some((a) => a.id === sa),
    JSON.stringify(inFolder));
  const folders = session.client(folderService.FolderServiceClient, addr);
  const folderList = await folders.list(folderService.ListFoldersRequest.fromPartial({ cloudId: CLOUD }));
  check('folder list: the default folder', folderList.folders.some((f) => f.id === FOLDER), JSON.stringify(folderList));
  const clouds = session.client(cloudService.CloudServiceClient, addr);
  const cloudList = await clouds.list(cloudService.ListCloudsRequest.fromPartial({}));
  check('cloud list: the default cloud', cloudList.clouds.some((c) => c.id === CLOUD), JSON.stringify(cloudList));
  const organizations = session.client(organizationService.OrganizationServiceClient, addr);
  const org = await organizations.get(organizationService.GetOrganizationRequest.fromPartial({
    organizationId: ORGANIZATION,
  }));
  check('organization get: the default organization', org.id === ORGANIZATION, JSON.stringify(org));

  const keys = session.client(apiKeyService.ApiKeyServiceClient, addr);
  try {
    await keys.create(apiKeyService.CreateApiKeyRequest.fromPartial({
      serviceAccountId: 'nosuchaccount0000000', scopes: ['yc.monitoring.read'],
    }));
    check('create for an unknown service account: NOT_FOUND', false, 'an answer');
  } catch (e) {
    check('create for an unknown service account: NOT_FOUND', e.code === 5, `${e.code} ${e.details || e.message}`);
  }
  const created = await keys.create(apiKeyService.CreateApiKeyRequest.fromPartial({
    serviceAccountId: sa, description: 'by the Node SDK', scopes: ['yc.monitoring.read'],
  }));
  check('create: a key and its secret', created.apiKey && created.secret.length > 40 &&
    created.apiKey.scopes.join() === 'yc.monitoring.read', JSON.stringify(created.apiKey));
  const id = created.apiKey.id;
  const listed = await keys.list(apiKeyService.ListApiKeysRequest.fromPartial({ serviceAccountId: sa }));
  check('list: the key', listed.apiKeys.length === 1 && listed.apiKeys[0].id === id &&
    listed.apiKeys[0].description === 'by the Node SDK', JSON.stringify(listed));
  const op = await keys.delete(apiKeyService.DeleteApiKeyRequest.fromPartial({ apiKeyId: id }));
  const done = await waitForOperation(op, session, 20000, addr);
  check('delete: waited for', done.done && done.id === op.id && done.response &&
    done.response.typeUrl === 'type.googleapis.com/google.protobuf.Empty', JSON.stringify(done));
  const after = await keys.list(apiKeyService.ListApiKeysRequest.fromPartial({ serviceAccountId: sa }));
  check('list: empty after the delete', after.apiKeys.length === 0, JSON.stringify(after));
  try {
    await keys.get(apiKeyService.GetApiKeyRequest.fromPartial({ apiKeyId: id }));
    check('get after delete: NOT_FOUND', false, 'an answer');
  } catch (e) {
    check('get after delete: NOT_FOUND', e.code === 5, `${e.code} ${e.details || e.message}`);
  }
}

main()
  .catch((e) => check('session ran to its end', false, `${e.code || ''} ${e.stack || e}`))
  .finally(() => {
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  });
