// A real, independently written OpenID provider (oidc-provider, a certified
// implementation) for tokenwarden's conformance tests. Listens on 127.0.0.1 on
// an ephemeral port and prints one JSON line: {"issuer": ..., "keys": {...}}.
// The client keys for private_key_jwt are made fresh at every start, so no key
// is committed. Short lifetimes make refreshes happen within a test.
import { generateKeyPair, exportJWK, exportPKCS8 } from 'jose';
import Provider from 'oidc-provider';
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';

const ACCESS_TOKEN_TTL = Number(process.env.TW_ACCESS_TOKEN_TTL ?? 5);

async function clientKey(alg) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), alg, use: 'sig', kid: `${alg}-key` };
  return { jwk, pem: await exportPKCS8(privateKey) };
}

const rs256 = await clientKey('RS256');
const es256 = await clientKey('ES256');
const es384 = await clientKey('ES384');
const eddsa = await clientKey('EdDSA');

const secretClient = (client_id, method, extra = {}) => ({
  client_id,
  client_secret: `${client_id}-TOPSECRET`, // the tests' secret marker
  token_endpoint_auth_method: method,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  scope: 'read write',
  ...extra,
});

const clients = [
  secretClient('cc-basic', 'client_secret_basic'),
  secretClient('cc-post', 'client_secret_post'),
  {
    client_id: 'cc-jwt',
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [rs256.jwk, es256.jwk, es384.jwk, eddsa.jwk] },
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: 'read write',
  },
  {
    // A user-facing app: authorization code (+PKCE), device code, refresh tokens.
    client_id: 'app',
    client_secret: 'app-TOPSECRET',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    redirect_uris: ['http://127.0.0.1/callback'],
    response_types: ['code'],
    scope: 'openid offline_access read write',
  },
  // DPoP (RFC 9449): clients whose tokens must be DPoP-bound; the second is
  // asked for the server's nonce (features.dPoP.requireNonce below).
  secretClient('cc-dpop', 'client_secret_basic', { dpop_bound_access_tokens: true }),
  secretClient('cc-dpop-nonce', 'client_secret_basic', { dpop_bound_access_tokens: true }),
  {
    // A public app with DPoP: its refresh tokens are bound to its key.
    client_id: 'cli-dpop',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    dpop_bound_access_tokens: true,
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    redirect_uris: ['http://127.0.0.1/callback'],
    response_types: ['code'],
    scope: 'openid offline_access read write',
  },
  {
    // A native app (RFC 8252): public, PKCE, any port on the loopback redirect.
    client_id: 'cli',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    redirect_uris: ['http://127.0.0.1/callback'],
    response_types: ['code'],
    scope: 'openid offline_access read write',
  },
];

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

// Mutual TLS (RFC 8705), where the tests give a PKI (TW_MTLS_DIR: ca.pem, a
// server certificate, a client certificate the CA issued for
// mtls-client.example, and a self-signed one): the same provider on an HTTPS
// listener that asks for client certificates, named by the discovery
// document's mtls_endpoint_aliases.
const mtlsDir = process.env.TW_MTLS_DIR;
const pem = (name) => fs.readFileSync(path.join(mtlsDir, name));
let mtls;
if (mtlsDir) {
  const tls = https.createServer({
    key: pem('server.key'),
    cert: pem('server.pem'),
    ca: [pem('ca.pem')],
    requestCert: true,
    rejectUnauthorized: false,
  });
  await new Promise((resolve) => tls.listen(0, '127.0.0.1', resolve));
  mtls = { server: tls, base: `https://127.0.0.1:${tls.address().port}` };
  const selfSigned = new crypto.X509Certificate(pem('self-client.pem'));
  clients.push(
    {
      client_id: 'mtls-pki',
      token_endpoint_auth_method: 'tls_client_auth',
      tls_client_auth_san_dns: 'mtls-client.example',
      tls_client_certificate_bound_access_tokens: true,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope: 'read write',
    },
    {
      client_id: 'mtls-self',
      token_endpoint_auth_method: 'self_signed_tls_client_auth',
      jwks: {
        keys: [{
          ...selfSigned.publicKey.export({ format: 'jwk' }),
          x5c: [selfSigned.raw.toString('base64')],
        }],
      },
      tls_client_certificate_bound_access_tokens: true,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope: 'read write',
    },
  );
}

/** The client certificate of a request over the mutual-TLS listener. */
function peerCertificate(ctx) {
  const peer = ctx.socket.getPeerCertificate?.(true);
  return peer && peer.raw ? new crypto.X509Certificate(peer.raw) : undefined;
}

const provider = new Provider(issuer, {
  clients,
  scopes: ['openid', 'offline_access', 'read', 'write'],
  features: {
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    devInteractions: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: {
      enabled: true,
      // Nonces are made from this secret; made fresh at every start.
      nonceSecret: crypto.randomBytes(32),
      requireNonce: (ctx) => ctx.oidc?.client?.clientId === 'cc-dpop-nonce',
    },
    mTLS: {
      enabled: Boolean(mtls),
      certificateBoundAccessTokens: true,
      selfSignedTlsClientAuth: true,
      tlsClientAuth: true,
      getCertificate: peerCertificate,
      // Issued by the tests' CA (node checked it against `ca`).
      certificateAuthorized: (ctx) => ctx.socket.authorized === true,
      certificateSubjectMatches: (ctx, property, expected) => property === 'tls_client_auth_san_dns'
        && (peerCertificate(ctx)?.subjectAltName ?? '').split(', ').includes(`DNS:${expected}`),
    },
  },
  discovery: mtls ? {
    mtls_endpoint_aliases: {
      token_endpoint: `${mtls.base}/token`,
      revocation_endpoint: `${mtls.base}/token/revocation`,
      introspection_endpoint: `${mtls.base}/token/introspection`,
      device_authorization_endpoint: `${mtls.base}/device/auth`,
    },
  } : {},
  pkce: { required: () => true },
  rotateRefreshToken: true,
  // Refresh tokens for every code grant that asked for offline_access.
  issueRefreshToken: async (ctx, client, code) =>
    client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    ClientCredentials: ACCESS_TOKEN_TTL,
    AuthorizationCode: 60,
    DeviceCode: 600,
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
    RefreshToken: 3600,
  },
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none',
    'tls_client_auth', 'self_signed_tls_client_auth'],
  enabledJWA: {
    clientAuthSigningAlgValues: ['HS256', 'RS256', 'PS256', 'ES256', 'ES384', 'EdDSA'],
    dPoPSigningAlgValues: ['ES256', 'EdDSA', 'Ed25519', 'RS256'],
  },
});
provider.proxy = false;
server.on('request', provider.callback());
mtls?.server.on('request', provider.callback());

const keys = { RS256: rs256.pem, ES256: es256.pem, ES384: es384.pem, EdDSA: eddsa.pem };
process.stdout.write(`${JSON.stringify({ issuer, keys, mtls: mtls?.base })}\n`);
// Ends with the test process: it closes our stdin.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
