// The app's side of scripts/bench-oidc, for gatehouse and the peer alike (Node's fetch: keep-alive
// connections, CONCURRENCY requests at a time): authorization codes for the code-exchange run,
// refresh-token families for the refresh run, access tokens for the userinfo run, and a check that
// both servers do the same work (RS256 ID token, access token format, refresh rotation with reuse
// detection).
//
// Usage: node oidc_client.mjs CONFIG.json MODE [N OUT]
//   CONFIG: {"authorize": URL, "token": URL, "userinfo": URL, "client_id", "client_secret",
//            "redirect_uri", "scope", "params": {extra authorization parameters},
//            "cookie": "name=value" (a signed-in session) or null (sign in through the peer's
//            form-less interaction), "concurrency": 16}
//   MODE codes N OUT    N codes, "CODE VERIFIER" per line (the first written are the oldest)
//   MODE refresh N OUT  N families (code + exchange each): one refresh token per line
//   MODE access N OUT   N access tokens (code + exchange each), one per line
//   MODE check          what the tokens are, and refresh rotation with reuse detection
// Prints one JSON line: what was made and how long it took, or the check's findings.
import crypto from 'node:crypto';
import fs from 'node:fs';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const [mode, nArg, out] = process.argv.slice(3);
const n = Number(nArg || 0);
const concurrency = config.concurrency || 16;

// Cookie jars: gatehouse's signed-in session is shared by every worker; the peer gets one session
// per worker (its in-memory sessions are shared objects: concurrent authorizations of one
// session get each other's grant and their codes are then not found).
function newJar() {
  const jar = new Map();
  if (config.cookie) {
    const [name, ...rest] = config.cookie.split('=');
    jar.set(name, rest.join('='));
  }
  return jar;
}
function keepCookies(jar, res) {
  for (const c of res.headers.getSetCookie()) {
    const [pair, ...attrs] = c.split(';');
    const i = pair.indexOf('=');
    const name = pair.slice(0, i).trim();
    const value = pair.slice(i + 1).trim();
    const expired = attrs.some((a) => {
      const [k, v] = a.trim().split('=');
      return (k.toLowerCase() === 'expires' && Date.parse(v) < Date.now())
        || (k.toLowerCase() === 'max-age' && Number(v) <= 0);
    });
    if (expired || value === '') jar.delete(name); else jar.set(name, value);
  }
}
const cookieHeader = (jar) => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');

const b64url = (buf) => buf.toString('base64url');
function pkce() {
  const verifier = b64url(crypto.randomBytes(32));
  return { verifier, challenge: b64url(crypto.createHash('sha256').update(verifier).digest()) };
}

// One authorization with the session: follows the server's redirects (the peer's first one goes
// through its interaction) until it sends the browser back to the app; returns the code.
async function code(jar) {
  const { verifier, challenge } = pkce();
  const url = new URL(config.authorize);
  const q = {
    client_id: config.client_id,
    redirect_uri: config.redirect_uri,
    response_type: 'code',
    scope: config.scope,
    state: b64url(crypto.randomBytes(8)),
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...(config.params || {}),
  };
  for (const [k, v] of Object.entries(q)) url.searchParams.set(k, v);
  let at = url.href;
  for (let hop = 0; hop < 8; hop += 1) {
    const res = await fetch(at, { redirect: 'manual', headers: { cookie: cookieHeader(jar) } });
    keepCookies(jar, res);
    const body = await res.text();
    const location = res.headers.get('location');
    if (res.status < 300 || res.status > 399 || !location) {
      throw new Error(`authorization: ${res.status} at ${at}: ${body.slice(0, 300)}`);
    }
    const next = new URL(location, at).href;
    if (next.startsWith(config.redirect_uri)) {
      const got = new URL(next).searchParams;
      if (!got.get('code')) throw new Error(`authorization refused: ${next}`);
      return { code: got.get('code'), verifier };
    }
    at = next;
  }
  throw new Error('authorization: too many redirects');
}

const basic = `Basic ${Buffer.from(`${encodeURIComponent(config.client_id)}:${encodeURIComponent(config.client_secret)}`).toString('base64')}`;
async function token(form) {
  const res = await fetch(config.token, {
    method: 'POST',
    headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
  return { status: res.status, body: await res.json() };
}
async function exchange(jar) {
  const c = await code(jar);
  const r = await token({
    grant_type: 'authorization_code',
    code: c.code,
    redirect_uri: config.redirect_uri,
    code_verifier: c.verifier,
  });
  if (r.status !== 200 || !r.body.refresh_token) {
    throw new Error(`code exchange: ${r.status} ${JSON.stringify(r.body)}`);
  }
  return r.body;
}

// N results of `make(jar)`, CONCURRENCY at a time (one jar per worker), in the order they were
// made. The peer's sessions are signed in first (its form-less interaction).
async function many(count, make) {
  const jars = Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, newJar);
  if (!config.cookie) await Promise.all(jars.map((jar) => code(jar)));
  const results = [];
  let next = 0;
  await Promise.all(jars.map(async (jar) => {
    while (next < count) {
      next += 1;
      results.push(await make(jar));
    }
  }));
  return results;
}

function jws(t) {
  const parts = String(t).split('.');
  if (parts.length !== 3) return null;
  return JSON.parse(Buffer.from(parts[0], 'base64url').toString());
}

const started = performance.now();
if (mode === 'codes') {
  const codes = await many(n, code);
  fs.writeFileSync(out, codes.map((c) => `${c.code} ${c.verifier}\n`).join(''));
  console.log(JSON.stringify({ made: codes.length, seconds: (performance.now() - started) / 1000 }));
} else if (mode === 'refresh' || mode === 'access') {
  const got = await many(n, exchange);
  const field = mode === 'refresh' ? 'refresh_token' : 'access_token';
  fs.writeFileSync(out, got.map((t) => `${t[field]}\n`).join(''));
  let userinfo = null;
  if (mode === 'access') {
    const res = await fetch(config.userinfo, { headers: { authorization: `Bearer ${got[0].access_token}` } });
    userinfo = res.status;
    if (res.status !== 200) throw new Error(`userinfo: ${res.status} ${await res.text()}`);
  }
  console.log(JSON.stringify({ made: got.length, seconds: (performance.now() - started) / 1000, userinfo }));
} else if (mode === 'check') {
  const [first] = await many(1, exchange);
  const id = jws(first.id_token);
  const at = jws(first.access_token);
  const second = await token({ grant_type: 'refresh_token', refresh_token: first.refresh_token });
  const rotated = second.status === 200 && second.body.refresh_token
    && second.body.refresh_token !== first.refresh_token;
  const reuse = await token({ grant_type: 'refresh_token', refresh_token: first.refresh_token });
  const after = rotated
    ? await token({ grant_type: 'refresh_token', refresh_token: second.body.refresh_token })
    : { status: 0 };
  const idClaims = JSON.parse(Buffer.from(first.id_token.split('.')[1], 'base64url').toString());
  console.log(JSON.stringify({
    id_token: id ? id.alg : 'none',
    id_token_email: Boolean(idClaims.email),
    access_token: at ? `JWT ${at.alg} typ=${at.typ}` : 'opaque',
    refresh_rotates: Boolean(rotated),
    reuse_refused: reuse.status === 400,
    reuse_revokes_family: after.status === 400,
  }));
} else {
  throw new Error(`unknown mode ${mode}`);
}
