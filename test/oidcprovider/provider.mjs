// A real OpenID Connect provider (panva/oidc-provider) for tollgate's tests.
//
//   node provider.mjs CONFIG.json
//
// CONFIG: {"port": 0, "issuer": "http://127.0.0.1:PORT", "dir": "/tmp/x",
//          "alg": "RS256" | "ES256",
//          "clients": [{"id": "...", "secret": "...", "ttl": 300,
//                       "claims": {"groups": ["dev"], "sub": "..."}}]}
//
// It listens on 127.0.0.1:port only and issues JWT access tokens through the
// client_credentials grant with a resource indicator (RFC 8707): the token's
// `aud` is the requested `resource`. A client's `claims` are merged into its
// tokens (groups, Kubernetes service-account claims, even `sub`).
//
// Test hooks beside the provider's own routes:
//   GET  /admin/stats   -> {"jwks_fetches": N, "kid": "current kid"}
//   POST /admin/rotate  -> a new signing key replaces the old one, which
//                          leaves the JWKS at once ("rotated out")
// The signing key is kept in DIR/keys.json, so a restart on the same
// directory serves the same key (the provider "comes back").
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

import Provider from 'oidc-provider';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const alg = cfg.alg || 'RS256';
const keysFile = join(cfg.dir, 'keys.json');

function newKey() {
  const pair = alg.startsWith('ES')
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = pair.privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: randomBytes(8).toString('hex'), alg, use: 'sig' };
}

function loadKeys() {
  if (existsSync(keysFile)) return JSON.parse(readFileSync(keysFile, 'utf8'));
  const keys = { keys: [newKey()] };
  writeFileSync(keysFile, JSON.stringify(keys), { mode: 0o600 });
  return keys;
}

const clients = new Map(cfg.clients.map((c) => [c.id, c]));

function makeProvider(jwks) {
  const provider = new Provider(cfg.issuer, {
    jwks,
    clients: cfg.clients.map((c) => ({
      client_id: c.id,
      client_secret: c.secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: alg,
    })),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        getResourceServerInfo: (_ctx, resource, client) => ({
          scope: 'registry',
          audience: resource,
          accessTokenTTL: clients.get(client.clientId)?.ttl || 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg } },
        }),
      },
    },
    formats: {
      customizers: {
        jwt: (_ctx, token, jwt) => {
          Object.assign(jwt.payload, clients.get(token.clientId)?.claims || {});
        },
      },
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  return provider;
}

let jwks = loadKeys();
let provider = makeProvider(jwks);
let handler = provider.callback();
let jwksFetches = 0;

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const server = createServer((req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  if (path === '/admin/stats' && req.method === 'GET') {
    json(res, 200, { jwks_fetches: jwksFetches, kid: jwks.keys[0].kid });
    return;
  }
  if (path === '/admin/rotate' && req.method === 'POST') {
    jwks = { keys: [newKey()] };
    writeFileSync(keysFile, JSON.stringify(jwks), { mode: 0o600 });
    provider = makeProvider(jwks);
    handler = provider.callback();
    json(res, 200, { kid: jwks.keys[0].kid });
    return;
  }
  if (path === '/jwks') jwksFetches += 1;
  handler(req, res);
});

server.listen(cfg.port, '127.0.0.1', () => {
  // The harness waits for this line.
  console.log(`listening ${server.address().port}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
