// A relying party built on npm openid-client v6 (a certified OpenID Connect RP library),
// signing in through gatehouse as a public client (PKCE, no secret) or a confidential one.
// Line protocol on stdio, so the test's own "browser" can drive the sign-in in between:
//   prints {"authorize": URL}; reads the callback URL the browser ended at;
//   then code exchange (the library validates the ID token: signature against the JWKS,
//   iss, aud, exp, iat, nonce, state, the iss response parameter), userinfo, refresh,
//   introspection (confidential only), and prints {"claims", "userinfo", "refreshed", ...,
//   "end_session": URL}.
// Usage: node rp_openid_client.mjs ISSUER CLIENT_ID REDIRECT_URI POST_LOGOUT_URI [SECRET]
import readline from 'node:readline';
import * as client from 'openid-client';

const [issuer, clientId, redirectUri, postLogout, secret] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const auth = secret ? client.ClientSecretBasic(secret) : client.None();
// The test server speaks plain http on 127.0.0.1.
const config = await client.discovery(new URL(issuer), clientId, secret, auth, {
  execute: [client.allowInsecureRequests],
});
const verifier = client.randomPKCECodeVerifier();
const challenge = await client.calculatePKCECodeChallenge(verifier);
const nonce = client.randomNonce();
const state = client.randomState();
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: 'openid email profile',
  code_challenge: challenge,
  code_challenge_method: 'S256',
  nonce,
  state,
  login_hint: 'ann@acme.test',
});
console.log(JSON.stringify({ authorize: url.href }));
const callback = (await lines.next()).value;
const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: verifier,
  expectedNonce: nonce,
  expectedState: state,
  idTokenExpected: true,
});
const claims = tokens.claims();
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
const out = {
  claims,
  userinfo,
  refreshed_claims: refreshed.claims(),
  rotated: refreshed.refresh_token !== tokens.refresh_token,
};
if (secret) {
  out.introspected = await client.tokenIntrospection(config, refreshed.access_token);
  await client.tokenRevocation(config, refreshed.refresh_token);
  try {
    await client.refreshTokenGrant(config, refreshed.refresh_token);
    out.after_revoke = 'refreshed';
  } catch (e) {
    out.after_revoke = e.error || e.code || String(e);
  }
}
out.end_session = client.buildEndSessionUrl(config, {
  id_token_hint: refreshed.id_token,
  post_logout_redirect_uri: postLogout,
  state: 'bye-state',
}).href;
console.log(JSON.stringify(out));
process.exit(0);
