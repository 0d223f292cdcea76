// A certified OpenID Provider (npm oidc-provider) for the gatehouse tests, with in-memory
// accounts. Usage: node oidc_provider.mjs CONFIG.json
//   CONFIG: {"accounts": {"<login>": {claims...}}, "clients_file": "PATH",
//            "id_token_claims": false}  (true: the user's claims go in the ID token too)
// Clients are read from clients_file on every lookup, so a test can register its redirect URI
// once gatehouse has created the connection. Prints {"issuer": URL} once listening.
// The login form is the provider's own development form (any password is accepted for a
// known login); consent is pre-granted (first-party client), as an enterprise IdP does.
import fs from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

const stores = new Map();
class Adapter {
  constructor(name) {
    this.name = name;
    if (!stores.has(name)) stores.set(name, new Map());
    this.store = stores.get(name);
  }

  async upsert(id, payload) { this.store.set(id, payload); }

  async find(id) {
    if (this.name === 'Client') {
      const clients = fs.existsSync(config.clients_file)
        ? JSON.parse(fs.readFileSync(config.clients_file, 'utf8')) : [];
      return clients.find((c) => c.client_id === id);
    }
    return this.store.get(id);
  }

  async findByUid(uid) {
    for (const v of this.store.values()) if (v.uid === uid) return v;
    return undefined;
  }

  async findByUserCode(code) {
    for (const v of this.store.values()) if (v.userCode === code) return v;
    return undefined;
  }

  async consume(id) {
    const v = this.store.get(id);
    if (v) v.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { this.store.delete(id); }

  async revokeByGrantId(grantId) {
    for (const [k, v] of this.store) if (v.grantId === grantId) this.store.delete(k);
  }
}

const server = http.createServer();
await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  adapter: Adapter,
  conformIdTokenClaims: !config.id_token_claims,
  findAccount: async (ctx, id) => {
    const account = config.accounts[id];
    if (!account) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...account }) };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'groups', 'tid', 'hd'],
  },
  features: { devInteractions: { enabled: true } },
  pkce: { methods: ['S256'], required: () => true },
  cookies: { keys: ['gatehouse-test-only-cookie-key'] },
  // First-party client: consent is pre-granted for what it asks.
  loadExistingGrant: async (ctx) => {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
});
server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
// The reader may close stdout after that line: the provider's own notices go to stderr.
process.stdout.on('error', () => {});
console.log = console.error;
console.info = console.error;
