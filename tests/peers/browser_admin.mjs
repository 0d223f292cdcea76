// A new admin's first session in the admin UI, in Debian's Chromium (never a downloaded
// browser): sign in (password + TOTP), add a SAML connection by pasting IdP metadata, copy the
// ACS URL, run "Test sign-in", activate the draft, generate a SCIM token, map a group to a role, try to require
// SSO for all (refused), add a break-glass account, require SSO for all, then open the audit
// event of a failed SAML sign-in and read its cause. Screenshots go to SCREENSHOT_DIR.
// Usage: node browser_admin.mjs BASE ADMIN_EMAIL PASSWORD TOTP_CODE ORG METADATA_FILE
import fs from 'node:fs';
import { journey, shot, signIn, submit, text } from './admin_pages.mjs';

const [base, email, password, code, org, metadataFile] = process.argv.slice(2);

await journey(async (page) => {
  const out = {};
  // Sign in: e-mail, password, TOTP code; back to the admin UI.
  await signIn(page, base, email, password, code);
  await shot(page, 'organizations');
  await submit(page, `a[href="/sso/admin/orgs/${org}"]`);
  await shot(page, 'overview');

  // A SAML connection from pasted metadata.
  await submit(page, 'header a:has-text("Add connection")');
  await page.fill('#saml-name', 'Acme IdP');
  await page.selectOption('#saml-preset', 'okta');
  await page.fill('#metadata-xml', fs.readFileSync(metadataFile, 'utf8'));
  await page.fill('form:has(#metadata-xml) input[name=confirm_password]', password);
  await shot(page, 'new-connection');
  await submit(page, 'button:has-text("Create SAML connection")');
  await shot(page, 'connection');
  await page.click('button.copy[data-copy="acs-url"]');
  out.acs_url = await text(page, '#acs-url');
  out.copy_button = await text(page, 'button.copy[data-copy="acs-url"]');

  // Test sign-in: through the IdP and back, with what it sent.
  await page.click('#test-sign-in');
  await page.waitForSelector('#received', { timeout: 30000 });
  out.received = await text(page, '#received');
  out.test_outcome = await text(page, '#test-outcome');
  out.draft_before = await page.isVisible('#status');
  await shot(page, 'test-sign-in');
  // The draft goes live once its test passed.
  await page.fill('#activation input[name=confirm_password]', password);
  await submit(page, '#activate');
  out.activated = await text(page, '#page-notice');
  out.draft_after = await page.isVisible('#status');
  await shot(page, 'activated');

  // A SCIM token, shown once.
  await submit(page, 'header a:has-text("SCIM")');
  await page.fill('form:has([name=revoke_others]) input[name=confirm_password]', password);
  await submit(page, 'button:has-text("Generate token")');
  out.scim_base_url = await text(page, '#secret-1');
  out.scim_token = await text(page, '#secret-2');
  await shot(page, 'scim-token');

  // A role and a group mapping, with the preview.
  await page.goto(`${base}/sso/admin/orgs/${org}/roles`);
  await page.fill('#role-name', 'developer');
  await page.fill('#role-rank', '5');
  await submit(page, 'button:has-text("Add role")');
  await page.fill('#map-group', 'Engineering');
  await page.fill('#map-role', 'developer');
  await submit(page, 'button:has-text("Map group")');
  await page.fill('#groups', 'Engineering, Everyone');
  await submit(page, 'button:has-text("Preview")');
  out.preview = await text(page, '#preview');
  await shot(page, 'roles');

  // Require SSO for all: refused without a break-glass account.
  await page.goto(`${base}/sso/admin/orgs/${org}`);
  await page.selectOption('#mode', 'all');
  await page.fill('form:has(#mode) input[name=confirm_password]', password);
  await submit(page, 'button:has-text("Save enforcement")');
  out.refusal = await text(page, '#page-error');
  await shot(page, 'enforcement-refused');
  await page.fill('#bg-email', `breakglass@${org}.test`);
  await page.fill('form:has(#bg-email) input[name=confirm_password]', password);
  await submit(page, 'button:has-text("Create break-glass account")');
  out.breakglass_shown = (await text(page, '#secret-2')).startsWith('otpauth://');
  await shot(page, 'break-glass');
  await submit(page, 'text=Done');
  await page.selectOption('#mode', 'all');
  await page.fill('form:has(#mode) input[name=confirm_password]', password);
  await submit(page, 'button:has-text("Save enforcement")');
  out.enforcement = await text(page, '#enforcement');
  await shot(page, 'enforcement-all');

  // A failed SAML sign-in (a response that is not XML), then its audit event.
  const acsPost = await page.request.post(out.acs_url, { form: { SAMLResponse: Buffer.from('not xml').toString('base64') } });
  out.failed_status = acsPost.status();
  await page.goto(`${base}/sso/admin/orgs/${org}/audit?action=login.saml&outcome=failure`);
  await shot(page, 'audit-log');
  await submit(page, 'table tr.outcome-failure a');
  out.cause = await text(page, '#cause');
  await shot(page, 'audit-event');
  // The log names who did what to whom.
  await page.goto(`${base}/sso/admin/orgs/${org}/audit`);
  out.audit_actor_links = await page.locator('td.actor a').count();
  await shot(page, 'audit-log-named');
  // A mapping is removed from the Roles page; reload and back do not remove anything else.
  await page.goto(`${base}/sso/admin/orgs/${org}/roles`);
  await submit(page, '#mappings button:has-text("Remove")');
  out.unmapped = await text(page, '#page-notice');
  await page.reload();
  await page.goBack();
  await shot(page, 'mapping-removed');
  // The user the SCIM token made, and the instance's own events.
  await page.goto(`${base}/sso/admin/orgs/${org}/users`);
  await shot(page, 'users');
  await page.goto(`${base}/sso/admin/audit`);
  out.instance_events = await page.locator('#instance-events tr').count();
  await shot(page, 'instance-audit');
  return out;
});
