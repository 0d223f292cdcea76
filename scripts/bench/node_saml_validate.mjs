// Validates the same signed SAMLResponse N times with npm @node-saml/node-saml (one process,
// one core) and prints {"per_second", "p50_ms", "p99_ms", "ok"}.
// Usage: node node_saml_validate.mjs CONFIG.json   CONFIG: {saml_response, idp_cert_pem,
//        acs_url, sp_entity_id, idp_entity_id, iterations}
import { readFileSync } from 'node:fs';
import { SAML } from '@node-saml/node-saml';

const c = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const saml = new SAML({
  callbackUrl: c.acs_url,
  idpCert: c.idp_cert_pem,
  issuer: c.sp_entity_id,
  audience: c.sp_entity_id,
  idpIssuer: c.idp_entity_id,
  wantAssertionsSigned: false,
  wantAuthnResponseSigned: false,
  acceptedClockSkewMs: 180000,
  validateInResponseTo: 'never',
});
const times = [];
let ok = 0;
const start = process.hrtime.bigint();
for (let i = 0; i < c.iterations; i++) {
  const t0 = process.hrtime.bigint();
  try {
    const r = await saml.validatePostResponseAsync({ SAMLResponse: c.saml_response });
    if (r && r.profile) ok++;
  } catch (e) {
    if (i === 0) console.error(String(e));
  }
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
const secs = Number(process.hrtime.bigint() - start) / 1e9;
times.sort((a, b) => a - b);
const pct = (p) => times[Math.min(times.length - 1, Math.floor(times.length * p))];
console.log(JSON.stringify({ per_second: c.iterations / secs, p50_ms: pct(0.5), p99_ms: pct(0.99), ok }));
