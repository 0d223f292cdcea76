// The peer of scripts/bench-oidc: npm oidc-provider (panva's certified OpenID Provider) with its
// own in-memory adapter, set up to do what gatehouse does for an app:
//   - one confidential client, client_secret_basic, PKCE S256 required, RS256 ID tokens;
//   - a refresh token at every code exchange (gatehouse issues one without offline_access; so
//     does this: `issueRefreshToken`), rotated at every use (`rotateRefreshToken: true`; a used
//     one presented again revokes the grant, as in gatehouse);
//   - access tokens as RS256 JWTs for the resource `urn:bench:api` (requested with `resource=`):
//     the tokens of the code-exchange and refresh runs; oidc-provider's userinfo endpoint only
//     takes its own opaque (stored) access tokens, so the userinfo run uses opaque ones, asked
//     for without `resource=`;
//   - ID tokens carrying the user's claims (as gatehouse's do: `conformIdTokenClaims: false`);
//   - TTLs as gatehouse's: code 60 s, access and ID tokens 10 min.
// Signing in needs no form: /interaction/<uid> finishes the login as the bench user, and the
// signed-in session's grant holds what the app asks for, so a GET /auth with the session cookie
// answers 303 to the redirect URI with ?code=, as gatehouse's authorize does.
//
// Usage: node oidc_peer.mjs CONFIG.json
//   CONFIG: {"modules": "<node_modules dir holding oidc-provider>", "client_id": "...",
//            "client_secret": "...", "redirect_uri": "...", "account": "<sub>"}
// Prints {"issuer": URL} once listening.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const mod = (p) => import(pathToFileURL(path.join(config.modules, p)).href);
const { default: Provider, errors } = await mod('oidc-provider/lib/index.js');
const { setStorage } = await mod('oidc-provider/lib/adapters/memory_adapter.js');
const { default: QuickLRU } = await mod('quick-lru/index.js');

// The built-in memory adapter keeps at most 1,000 entries (an LRU): the benchmark holds tens of
// thousands of codes, grants and tokens at once, so it gets room for all of them.
setStorage(new QuickLRU({ maxSize: 10_000_000 }));

const API = 'urn:bench:api';
const OIDC_SCOPE = 'openid email profile';
const account = {
  sub: config.account,
  email: 'user@bench.test',
  email_verified: true,
  name: 'Bench User',
  given_name: 'Bench',
  family_name: 'User',
  preferred_username: 'user@bench.test',
  groups: [],
};

const server = http.createServer();
await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
const issuer = `http://127.0.0.1:${server.address().port}`;

const signingKey = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ format: 'jwk' });

const provider = new Provider(issuer, {
  clients: [{
    client_id: config.client_id,
    client_secret: config.client_secret,
    redirect_uris: [config.redirect_uri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  }],
  jwks: { keys: [{ ...signingKey, kid: 'bench-rs256', alg: 'RS256', use: 'sig' }] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  findAccount: async (ctx, id) => (id === account.sub
    ? { accountId: id, claims: async () => ({ ...account }) }
    : undefined),
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username', 'groups'],
  },
  conformIdTokenClaims: false,
  pkce: { methods: ['S256'], required: () => true },
  rotateRefreshToken: true,
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    IdToken: 600,
    RefreshToken: 14 * 24 * 3600,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
  },
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => {
        if (resource !== API) throw new errors.InvalidTarget();
        return {
          scope: 'api',
          audience: API,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  // A first-party app: the signed-in user's consent is given (gatehouse asks none either). One
  // grant per session and app, as oidc-provider models it: its session-bound codes and tokens
  // (no offline_access) stay valid only while the session's grant for the app is theirs, so a
  // session's later authorizations reuse its grant.
  loadExistingGrant: async (ctx) => {
    if (!ctx.oidc.session?.accountId) return undefined;
    const id = ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    const existing = id && await ctx.oidc.provider.Grant.find(id);
    if (existing) return existing;
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(OIDC_SCOPE);
    grant.addResourceScope(API, 'api');
    await grant.save();
    return grant;
  },
});

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.url.startsWith('/interaction/')) {
    // The login "form": the bench user, at once.
    provider.interactionFinished(req, res, { login: { accountId: account.sub } }, {
      mergeWithLastSubmission: false,
    }).catch((e) => {
      res.statusCode = 400;
      res.end(String(e));
    });
    return;
  }
  callback(req, res);
});
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
process.stdout.on('error', () => {});
console.log = console.error;
console.info = console.error;
