// A customer's IT admin, who has no account, opens a setup link in a fresh browser (Debian's
// Chromium, never a downloaded browser) and connects Okta, played by pysaml2 behind
// saml_idp_server.py in "console" mode: the guide shows gatehouse's values first, the admin
// enters them at the IdP (which only then offers its metadata), pastes the metadata, passes
// Test sign-in, activates, takes a SCIM token, and ends on the setup summary. Reloads and a
// second click on the way do nothing twice. Screenshots go to SCREENSHOT_DIR.
// Usage: node browser_setup_link.mjs LINK_URL IDP_BASE
import { journey, shot, submit, text } from './admin_pages.mjs';

const [link, idp] = process.argv.slice(2);
await journey(async (page) => {
  const out = {};
  // The link's page says what it is for; its button opens it.
  await page.goto(link);
  out.for = await text(page, '#setup-for');
  await shot(page, 'setup-link-landing');
  await submit(page, '#open-setup');
  out.landed = new URL(page.url()).pathname;
  out.left_before = await text(page, '#setup-left');
  out.nav = (await page.textContent('header')).replace(/\s+/g, ' ').trim();
  await shot(page, 'setup-summary');

  // The guide for Okta: gatehouse's values first.
  await submit(page, 'a:has-text("Add a connection")');
  await page.check('input[name=idp][value=okta]');
  await page.fill('#start-name', 'Acme Okta');
  await shot(page, 'choose-idp');
  await submit(page, '#start-guide');
  const guide = page.url();
  // A reload of the guide makes nothing new.
  await page.reload();
  out.guide_title = await text(page, '#setup-guide h2');
  out.steps = await text(page, '#guide-steps');
  await page.click('button.copy[data-copy="acs-url"]');
  out.copy_visible = await page.isVisible('button.copy[data-copy="acs-url"]');
  const acs = await text(page, '#acs-url');
  const entity = await text(page, '#sp-entity-id');
  await shot(page, 'guide');

  // At the IdP: its metadata only once the app has gatehouse's values.
  out.metadata_before = (await page.request.get(`${idp}/metadata`)).status();
  await page.request.post(`${idp}/app`, { form: { acs_url: acs, sp_entity_id: entity } });
  const metadata = await (await page.request.get(`${idp}/metadata`)).text();

  // Back in gatehouse: the metadata, then Test sign-in through the IdP and back.
  await page.fill('#upd-metadata-xml', metadata);
  await submit(page, 'button:has-text("Save IdP settings")');
  out.saved = await text(page, '#page-notice');
  await page.reload();
  await shot(page, 'idp-settings-saved');
  await page.click('#test-sign-in');
  await page.waitForSelector('#test-outcome', { timeout: 30000 });
  out.test_outcome = await text(page, '#test-outcome');
  out.test_would = await text(page, '#test-would');
  await shot(page, 'test-passed');
  await submit(page, '#activate');
  out.activated = await text(page, '#page-notice');
  out.draft_after = await page.isVisible('#status');
  // Back and reload after activating: still one connection, nothing asked twice.
  await page.goBack();
  await page.reload();
  out.after_back = page.url() === guide;
  await shot(page, 'activated');

  // A SCIM token, shown once.
  await page.goto(new URL('/sso/admin/orgs/acme/scim', link).href);
  await shot(page, 'scim');
  await submit(page, 'button:has-text("Generate token")');
  out.scim_base_url = await text(page, '#secret-1');
  out.scim_token = await text(page, '#secret-2');
  const shown = page.url();
  await page.reload();
  // A reload shows it no more, and makes no new one.
  out.reload_hides = page.url() === shown && !(await page.textContent('body')).includes(out.scim_token);
  await shot(page, 'scim-token');

  // The summary: what is configured and what is left.
  await page.goto(new URL('/sso/admin/orgs/acme/setup', link).href);
  out.connections = await text(page, '#setup-connections');
  out.scim = await text(page, '#setup-scim');
  out.done = (await page.$('#setup-done')) !== null;
  out.left_after = (await page.$('#setup-left')) ? await text(page, '#setup-left') : '';
  await shot(page, 'setup-summary-after');
  // Pages outside the link's intents are not there.
  const roles = await page.goto(new URL('/sso/admin/orgs/acme/roles', link).href);
  out.roles_status = roles.status();
  await shot(page, 'outside-intents');
  return out;
});
