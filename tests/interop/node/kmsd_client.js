// Calling kmsd from Node.js with the stock @grpc/grpc-js stack.
//
// The regions between `// [docs:NAME]` and `// [/docs]` are the snippets of
// docs/clients.md (a test checks they are equal). tests/tests/interop.rs
// runs this file against a real kmsd, over its unix socket and over TCP
// with mutual TLS.
//
// Usage: node kmsd_client.js PROTO_DIR ENDPOINT [--ca CA --cert CERT --key KEY]
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

// [docs:load]
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

function load(protoDir) {
  const options = { keepCase: true, longs: Number, defaults: true };
  const kms = protoLoader.loadSync(['kms/v1/kms.proto', 'kms/v1/admin.proto'], {
    ...options,
    includeDirs: [protoDir],
  });
  return grpc.loadPackageDefinition(kms).kms.v1;
}
// [/docs]

// [docs:connect]
// A KeyManagement client: "unix:/run/kmsd/kmsd.sock", or "host:port" with
// mutual TLS (PEM buffers). Create one per process and share it.
function connect(kmsV1, endpoint, tls) {
  const credentials = endpoint.startsWith('unix:')
    ? grpc.credentials.createInsecure()
    : grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
  return new kmsV1.KeyManagement(endpoint, credentials);
}
// [/docs]

// [docs:errors]
const RETRYABLE = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.DEADLINE_EXCEEDED,
]);

// google.rpc.Status and ErrorInfo, the two messages kmsd's status details use.
const rpc = protobuf.Root.fromJSON({
  nested: { google: { nested: { rpc: { nested: {
    Status: { fields: {
      code: { type: 'int32', id: 1 },
      message: { type: 'string', id: 2 },
      details: { rule: 'repeated', type: 'Any', id: 3 },
    } },
    Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
    ErrorInfo: { fields: {
      reason: { type: 'string', id: 1 },
      domain: { type: 'string', id: 2 },
      metadata: { keyType: 'string', type: 'string', id: 3 },
    } },
  } } } } },
});

// kmsd's machine-readable reason (docs/api.md#errors), from the
// google.rpc.ErrorInfo in the status details.
function reason(error) {
  const [bytes] = error.metadata?.get('grpc-status-details-bin') ?? [];
  if (!bytes) return undefined;
  const status = rpc.lookupType('google.rpc.Status').decode(bytes);
  const info = status.details.find(
    (any) => any.type_url === 'type.googleapis.com/google.rpc.ErrorInfo');
  return info && rpc.lookupType('google.rpc.ErrorInfo').decode(info.value).reason;
}
// [/docs]

// Promisified unary call with a deadline.
function call(client, method, request) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + 5000);
    client[method](request, { deadline }, (error, reply) =>
      error ? reject(error) : resolve(reply));
  });
}

async function envelope(kms) {
  // [docs:envelope]
  const context = { bucket: 'photos', object: 'cat.jpg' };
  // PUT: a fresh data key; encrypt with .plaintext, store .ciphertext_blob.
  const dataKey = await call(kms, 'GenerateDataKey', { encryption_context: context });
  // GET: the same context opens it again.
  const opened = await call(kms, 'Decrypt', {
    ciphertext_blob: dataKey.ciphertext_blob,
    encryption_context: context,
  });
  assert.deepEqual(opened.plaintext, dataKey.plaintext);
  // [/docs]
  return dataKey;
}

async function wrongContext(kms, dataKey) {
  // [docs:wrong-context]
  await assert.rejects(
    call(kms, 'Decrypt', {
      ciphertext_blob: dataKey.ciphertext_blob,
      encryption_context: { bucket: 'other' },
    }),
    (error) => error.code === grpc.status.INVALID_ARGUMENT
      && reason(error) === 'INVALID_CIPHERTEXT');
  // [/docs]
}

async function denied(kms, keyId) {
  await assert.rejects(call(kms, 'GenerateDataKey', { key_id: keyId }), (error) => {
    assert.equal(error.code, grpc.status.PERMISSION_DENIED, error.message);
    assert.equal(reason(error), 'PERMISSION_DENIED');
    assert.ok(!RETRYABLE.has(error.code));
    return true;
  });
}

async function health(endpoint, credentials) {
  const { protoPath } = require('grpc-health-check');
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath, { enums: String }));
  const client = new pkg.grpc.health.v1.Health(endpoint, credentials);
  const reply = await call(client, 'Check', { service: 'kms.v1.KeyManagement' });
  assert.equal(reply.status, 'SERVING');
  client.close();
}

async function services(endpoint, credentials) {
  const dir = path.dirname(require.resolve('@grpc/reflection/package.json'));
  const definition = protoLoader.loadSync(
    path.join(dir, 'build/proto/grpc/reflection/v1/reflection.proto'), { keepCase: true });
  const pkg = grpc.loadPackageDefinition(definition);
  const client = new pkg.grpc.reflection.v1.ServerReflection(endpoint, credentials);
  const names = await new Promise((resolve, reject) => {
    const stream = client.ServerReflectionInfo({ deadline: new Date(Date.now() + 5000) });
    stream.on('data', (reply) => {
      resolve(reply.list_services_response.service.map((s) => s.name).sort());
      stream.end();
    });
    stream.on('error', reject);
    stream.write({ list_services: '' });
  });
  client.close();
  return names;
}

async function main() {
  const [protoDir, endpoint, ...rest] = process.argv.slice(2);
  const flags = {};
  for (let i = 0; i < rest.length; i += 2) flags[rest[i].replace(/^--/, '')] = rest[i + 1];
  const read = (file) => (file ? fs.readFileSync(file) : undefined);
  const tls = { ca: read(flags.ca), cert: read(flags.cert), key: read(flags.key) };
  const kmsV1 = load(protoDir);
  const kms = connect(kmsV1, endpoint, tls);
  const credentials = endpoint.startsWith('unix:')
    ? grpc.credentials.createInsecure()
    : grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);

  const dataKey = await envelope(kms);
  console.log(`envelope ok: key ${dataKey.key_id} version ${dataKey.key_version}`);
  await wrongContext(kms, dataKey);
  console.log('wrong context ok: INVALID_ARGUMENT INVALID_CIPHERTEXT');
  await denied(kms, flags['denied-key-id'] ?? 'not-mine');
  console.log('denied ok: PERMISSION_DENIED');
  await health(endpoint, credentials);
  console.log('health ok: SERVING');
  console.log(`services: ${(await services(endpoint, credentials)).join(' ')}`);
  kms.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
