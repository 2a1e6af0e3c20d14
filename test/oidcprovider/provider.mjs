// A real OpenID Connect provider (panva/oidc-provider) for tollgate's tests.
//
//   node provider.mjs CONFIG.json
//
// CONFIG: {"port": 0, "issuer": "http://127.0.0.1:PORT", "dir": "/tmp/x",
//          "alg": "RS256" | "ES256",
//          "clients": [{"id": "...", "secret": "...", "ttl": 300,
//                       "claims": {"groups": ["dev"], "sub": "..."},
//                       "device": true}],
//          "accounts": {"alice": {"groups": ["dev"], "name": "Alice"}},
//          "device_ttl": 600}
//
// It listens on 127.0.0.1:port only and issues JWT access tokens through the
// client_credentials grant with a resource indicator (RFC 8707): the token's
// `aud` is the requested `resource`. A client's `claims` are merged into its
// tokens (groups, Kubernetes service-account claims, even `sub`).
//
// A client with "device": true is a confidential OIDC client of the device
// authorization grant (RFC 8628) instead: grant types device_code and
// refresh_token, refresh tokens for scope offline_access, rotated at every
// use (reusing an old one revokes the whole grant, as strict IdPs do). Its ID
// tokens carry the account's claims (groups, name, email) under scope openid.
// A person approves a device code through the provider's own pages, as in
// a browser: the user-code form at verification_uri, then oidc-provider's
// built-in login and consent interactions (devInteractions: any configured
// account signs in, the password is not checked).
//
// Test hooks beside the provider's own routes:
//   GET  /admin/stats   -> {"jwks_fetches": N, "kid": "current kid",
//                           "refreshes": {account: N}, "refresh_errors": N,
//                           "refresh_tokens": [every refresh token issued]}
//   POST /admin/account {"id", "claims"?, "disabled"?} -> creates or changes
//                          an account; a disabled one fails its refreshes
//                          with invalid_grant
//   POST /admin/revoke  {"account"} -> revokes every grant of the account
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
// Accounts survive a key rotation (a new Provider); so do the tokens and
// grants, which live in the module-wide memory adapter.
const accounts = new Map(Object.entries(cfg.accounts || {}).map(([id, claims]) => [id, { claims, disabled: false }]));
const grantsOf = new Map(); // account -> Set of the ids of its grants
const stats = { refreshes: {}, refresh_errors: 0, refresh_tokens: [] };

async function findAccount(_ctx, id) {
  const a = accounts.get(id);
  if (!a || a.disabled) return undefined;
  return { accountId: id, claims: async () => ({ ...a.claims, sub: id }) };
}

function clientMetadata(c) {
  const base = {
    client_id: c.id,
    client_secret: c.secret,
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_post',
    id_token_signed_response_alg: alg,
  };
  if (c.device) {
    return { ...base, grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'] };
  }
  return { ...base, grant_types: ['client_credentials'] };
}

function makeProvider(jwks) {
  const provider = new Provider(cfg.issuer, {
    jwks,
    clients: cfg.clients.map(clientMetadata),
    findAccount,
    claims: { openid: ['sub', 'groups', 'name', 'email'] },
    // Claims in the ID token itself, not only at userinfo: the broker maps
    // the ID token, as most IdPs (Keycloak, Entra, Okta) allow.
    conformIdTokenClaims: false,
    rotateRefreshToken: true,
    ttl: {
      DeviceCode: cfg.device_ttl || 600,
      Grant: 14 * 24 * 3600,
      IdToken: 600,
      Interaction: 600,
      RefreshToken: 14 * 24 * 3600,
      Session: 14 * 24 * 3600,
    },
    features: {
      // The login and consent pages a person sees after the user-code form.
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      deviceFlow: { enabled: true },
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
  // Opaque tokens are their jti: a test can look for them where they must not be.
  provider.on('refresh_token.saved', (token) => stats.refresh_tokens.push(token.jti));
  // Grants come from the consent page; /admin/revoke ends them by account.
  provider.on('grant.saved', (grant) => {
    if (!grantsOf.has(grant.accountId)) grantsOf.set(grant.accountId, new Set());
    grantsOf.get(grant.accountId).add(grant.jti);
  });
  provider.on('grant.success', (ctx) => {
    if (ctx.oidc.params.grant_type !== 'refresh_token') return;
    const id = ctx.oidc.account?.accountId || '?';
    stats.refreshes[id] = (stats.refreshes[id] || 0) + 1;
  });
  provider.on('grant.error', (ctx, err) => {
    if (ctx.oidc.params?.grant_type === 'refresh_token') stats.refresh_errors += 1;
    console.error('grant.error', ctx.oidc.params?.grant_type, err.message, err.error_description || '');
  });
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

async function readJSON(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return body ? JSON.parse(body) : {};
}

async function revokeGrants({ account }) {
  const ids = [...(grantsOf.get(account) || [])];
  await Promise.all(ids.flatMap((id) => [
    provider.Grant.adapter.destroy(id),
    provider.RefreshToken.revokeByGrantId(id),
    provider.AccessToken.revokeByGrantId(id),
  ]));
  grantsOf.delete(account);
  return [200, { revoked: ids.length }];
}

function changeAccount({ id, claims, disabled }) {
  if (!id) return [400, { error: 'id required' }];
  const a = accounts.get(id) || { claims: {}, disabled: false };
  if (claims) a.claims = claims;
  if (disabled !== undefined) a.disabled = Boolean(disabled);
  accounts.set(id, a);
  return [200, { id, ...a }];
}

const adminPosts = {
  '/admin/account': changeAccount,
  '/admin/revoke': revokeGrants,
};

const server = createServer((req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  if (path === '/admin/stats' && req.method === 'GET') {
    json(res, 200, { jwks_fetches: jwksFetches, kid: jwks.keys[0].kid, ...stats });
    return;
  }
  if (adminPosts[path] && req.method === 'POST') {
    readJSON(req)
      .then((body) => adminPosts[path](body))
      .then(([status, out]) => json(res, status, out))
      .catch((err) => json(res, 500, { error: String(err) }));
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
